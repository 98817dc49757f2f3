"""An agent's backend (the OpenAI Realtime API or GPT-Live): the model and voice it allows, the
settings it ignores, the version, the migration, and the API's 400s, 409s and representation."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from agents import catalog, services
from agents.models import Agent

pytestmark = pytest.mark.django_db

LIST = "/api/agents"
# Values unlike the defaults, so "kept" and "applied" can be told apart.
LISTENING = {
    "turn_detection": "semantic_vad",
    "vad_threshold": 0.7,
    "vad_prefix_padding_ms": 200,
    "vad_silence_duration_ms": 800,
    "vad_eagerness": "low",
    "noise_reduction": "far_field",
    "idle_timeout_ms": None,
    "transcription_model": "whisper-1",
}
# One valid value of each realtime-only setting, to send in a request.
A_VALUE = {**LISTENING, "turn_detection": "server_vad", "idle_timeout_ms": 9000}
assert set(A_VALUE) == set(catalog.REALTIME_ONLY_FIELDS)


def detail(slug: str) -> str:
    return f"{LIST}/{slug}"


def errors_of(**fields: Any) -> dict[str, list[str]]:
    values: dict[str, Any] = {"name": "Live", "slug": "live", "instructions": "Be brief."}
    values.update(fields)
    try:
        Agent(**values).full_clean()
    except ValidationError as error:
        return error.message_dict
    return {}


@pytest.fixture
def api(client_for, editor) -> APIClient:
    return client_for(editor)


def error(response, status: int, code: str) -> dict[str, list[str]]:
    assert response.status_code == status, response.content
    body = response.json()["error"]
    assert body["code"] == code, body
    for name in body["details"]:
        assert name in body["message"]
    return body["details"]


# --- the model: which model and voice each backend has ----------------------------------------


def test_a_gpt_live_agent_is_valid_with_its_models_and_voices() -> None:
    for model in catalog.LIVE_MODELS:
        for voice in ("marin", "gleam", "alloy", "willow"):
            assert errors_of(backend="gpt-live", model=model, voice=voice) == {}


def test_a_gpt_live_agent_keeps_realtime_settings_it_does_not_use() -> None:
    # Stored values of the Realtime API's settings are no error: a switch back uses them.
    assert errors_of(backend="gpt-live", model="gpt-live-1", **{**LISTENING}) == {}


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        (
            {"backend": "gpt-live", "model": "gpt-realtime"},
            "model",
            "gpt-realtime is not a model of OpenAI GPT-Live (backend gpt-live). Use one of: "
            "gpt-live-1, gpt-live-1.1.",
        ),
        (
            {"backend": "realtime", "model": "gpt-live-1.1"},
            "model",
            "gpt-live-1.1 is not a model of OpenAI Realtime API (backend realtime)",
        ),
        (
            {"backend": "realtime", "voice": "gleam"},
            "voice",
            "The voice 'gleam' is not one of OpenAI Realtime API (backend realtime)",
        ),
        ({"backend": "gpt-live", "model": "gpt-live-1", "voice": "robot"}, "voice", "Unknown"),
        ({"backend": "gpt-live", "model": "gpt-9"}, "model", "Unknown model 'gpt-9'"),
        ({"backend": "other"}, "backend", "not a valid choice"),
        # The realtime previews still lack marin and cedar.
        ({"model": "gpt-4o-realtime-preview", "voice": "cedar"}, "voice", "not available"),
    ],
)
def test_the_model_and_voice_must_be_the_backends(fields, field, words) -> None:
    errors = errors_of(**fields)
    assert field in errors, errors
    assert words in " ".join(errors[field]), errors[field]


def test_the_database_refuses_an_unknown_backend(make_agent) -> None:
    agent = make_agent()
    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.filter(pk=agent.pk).update(backend="gpt-5-live")


# --- the services: defaults, the version, the configuration ------------------------------------


def test_a_new_gpt_live_agent_gets_the_gpt_live_defaults(make_agent) -> None:
    agent = make_agent(backend="gpt-live")
    assert (agent.backend, agent.model, agent.voice) == ("gpt-live", "gpt-live-1.1", "marin")
    chosen = make_agent(backend="gpt-live", model="gpt-live-1", voice="gleam")
    assert (chosen.model, chosen.voice) == ("gpt-live-1", "gleam")
    realtime = make_agent()
    assert (realtime.backend, realtime.model, realtime.voice) == (
        "realtime",
        "gpt-realtime",
        "alloy",
    )


def test_the_backend_is_in_the_agents_configuration(make_agent) -> None:
    from realtime.model import AgentConfig

    config = services.agent_config(agent=make_agent(backend="gpt-live"))
    assert config["backend"] == "gpt-live"
    assert AgentConfig.from_dict(config).backend == "gpt-live"


def test_changing_the_backend_bumps_the_version(make_agent) -> None:
    agent = make_agent(**{**LISTENING})
    live = services.agent_update(agent=agent, fields={"backend": "gpt-live", "model": "gpt-live-1"})
    assert (live.backend, live.version) == ("gpt-live", 2)
    # The Realtime API's settings were kept, and apply again after a switch back.
    assert {name: getattr(live, name) for name in LISTENING} == LISTENING
    back = services.agent_update(
        agent=live, fields={"backend": "realtime", "model": "gpt-realtime"}
    )
    assert (back.backend, back.version) == ("realtime", 3)
    assert {name: getattr(back, name) for name in LISTENING} == LISTENING


def test_switching_to_gpt_live_with_a_realtime_model_is_refused(make_agent) -> None:
    agent = make_agent()
    with pytest.raises(ValidationError) as refused:
        services.agent_update(agent=agent, fields={"backend": "gpt-live"})
    assert "model" in refused.value.message_dict
    agent.refresh_from_db()
    assert (agent.backend, agent.version) == ("realtime", 1)


# --- the migration -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_makes_every_existing_agent_a_realtime_one() -> None:
    before = [("agents", "0003_agent_tools")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        OldAgent = old.get_model("agents", "Agent")
        assert "backend" not in {field.name for field in OldAgent._meta.fields}
        OldAgent.objects.create(name="Old", slug="old", instructions="x", model="gpt-realtime-mini")
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    agent = Agent.objects.get(slug="old")
    assert (agent.backend, agent.model, agent.version) == ("realtime", "gpt-realtime-mini", 1)
    agent.full_clean()


def test_the_seeded_default_agent_is_a_realtime_one(settings) -> None:
    import importlib

    from django.apps import apps as global_apps

    seed = importlib.import_module("agents.migrations.0002_seed_default_agent")
    settings.TWILIO_PHONE_NUMBER = ""
    seed.seed_default_agent(global_apps, None)
    agent = Agent.objects.get(slug="default")
    assert (agent.backend, agent.model) == ("realtime", settings.OPENAI_REALTIME_MODEL)


# --- the API: creating and changing a GPT-Live agent --------------------------------------------


def test_a_gpt_live_agent_is_created_with_its_defaults(api, agent_body) -> None:
    response = api.post(LIST, agent_body(backend="gpt-live"), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["backend"], body["model"], body["voice"], body["version"]) == (
        "gpt-live",
        "gpt-live-1.1",
        "marin",
        1,
    )
    # Not this agent's settings: null, with every field still there.
    assert {name: body[name] for name in catalog.REALTIME_ONLY_FIELDS} == dict.fromkeys(
        catalog.REALTIME_ONLY_FIELDS
    )
    assert body["max_call_minutes"] is None and body["language"] == ""
    stored = Agent.objects.get(slug="support")
    assert (stored.turn_detection, stored.vad_threshold) == ("server_vad", 0.5)


def test_a_gpt_live_agent_is_created_with_its_model_and_voice(api, agent_body) -> None:
    body = agent_body(
        backend="gpt-live", model="gpt-live-1", voice="gleam", max_call_minutes=10, language="fr"
    )
    response = api.post(LIST, body, format="json")
    assert response.status_code == 201, response.content
    assert {key: response.json()[key] for key in ("model", "voice", "max_call_minutes")} == {
        "model": "gpt-live-1",
        "voice": "gleam",
        "max_call_minutes": 10,
    }


@pytest.mark.parametrize("field", catalog.REALTIME_ONLY_FIELDS)
def test_a_realtime_setting_for_a_new_gpt_live_agent_is_400(api, agent_body, field) -> None:
    response = api.post(LIST, agent_body(backend="gpt-live", **{field: A_VALUE[field]}), "json")
    details = error(response, 400, "invalid")
    assert details == {
        field: [
            f"{field} does not apply to GPT-Live agents (backend gpt-live), which take turns and "
            "transcribe by themselves: leave it out."
        ]
    }
    assert not Agent.objects.exists()


def test_each_realtime_setting_is_its_own_error(api, agent_body) -> None:
    response = api.post(LIST, agent_body(backend="gpt-live", **A_VALUE), format="json")
    details = error(response, 400, "invalid")
    assert set(details) == set(catalog.REALTIME_ONLY_FIELDS)
    assert all(len(messages) == 1 for messages in details.values())


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"model": "gpt-live-1"}, "model", "not a model of OpenAI Realtime API"),  # no backend
        ({"backend": "realtime", "model": "gpt-live-1"}, "model", "OpenAI Realtime API"),
        ({"backend": "gpt-live", "model": "gpt-realtime"}, "model", "OpenAI GPT-Live"),
        ({"voice": "gleam"}, "voice", "not one of OpenAI Realtime API"),
        ({"model": "gpt-realtime", "voice": "gleam"}, "voice", "gleam"),
        ({"backend": "gpt-live", "voice": "darth"}, "voice", "not a valid choice"),
        ({"backend": "live"}, "backend", "not a valid choice"),
    ],
)
def test_a_model_or_voice_of_the_other_backend_is_400(api, agent_body, fields, field, words):
    details = error(api.post(LIST, agent_body(**fields), format="json"), 400, "invalid")
    assert field in details and words in " ".join(details[field]), details


def test_an_agent_is_switched_to_gpt_live_and_back(api, make_agent) -> None:
    make_agent(slug="sales", **{**LISTENING})
    response = api.patch(
        detail("sales"), {"backend": "gpt-live", "model": "gpt-live-1"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["backend"], body["model"], body["version"]) == ("gpt-live", "gpt-live-1", 2)
    assert all(body[name] is None for name in catalog.REALTIME_ONLY_FIELDS)
    # A GPT-Live voice the Realtime API lacks.
    response = api.patch(detail("sales"), {"voice": "willow"}, format="json")
    assert (response.status_code, response.json()["version"]) == (200, 3)
    # Back: the settings it had before are there again, and may be changed in the same write.
    response = api.patch(
        detail("sales"),
        {"backend": "realtime", "model": "gpt-realtime", "voice": "marin", "vad_threshold": 0.4},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert {name: body[name] for name in LISTENING} == {**LISTENING, "vad_threshold": 0.4}
    assert body["version"] == 4


def test_a_switch_that_sets_a_realtime_setting_is_400(api, make_agent) -> None:
    make_agent(slug="sales")
    response = api.patch(
        detail("sales"),
        {"backend": "gpt-live", "model": "gpt-live-1", "vad_threshold": 0.3},
        format="json",
    )
    assert set(error(response, 400, "invalid")) == {"vad_threshold"}
    assert Agent.objects.get(slug="sales").backend == "realtime"


def test_a_realtime_setting_for_a_stored_gpt_live_agent_is_409(api, make_agent) -> None:
    # Well-formed on its own; the stored backend refuses it: a conflict with the agent, as the
    # API answers every rule against stored fields (the schema cannot know the stored backend).
    make_agent(slug="live", backend="gpt-live")
    response = api.patch(
        detail("live"), {"turn_detection": "semantic_vad", "noise_reduction": ""}, format="json"
    )
    details = error(response, 409, "conflicts_with_stored_agent")
    assert set(details) == {"turn_detection", "noise_reduction"}
    assert "does not apply to GPT-Live agents" in details["turn_detection"][0]
    agent = Agent.objects.get(slug="live")
    assert (agent.turn_detection, agent.version) == ("server_vad", 1)


@pytest.mark.parametrize(
    ("stored", "change", "field"),
    [
        ({}, {"backend": "gpt-live"}, "model"),  # the stored gpt-realtime
        ({}, {"model": "gpt-live-1"}, "model"),  # the stored realtime backend
        ({}, {"voice": "gleam"}, "voice"),
        ({"backend": "gpt-live"}, {"model": "gpt-realtime"}, "model"),
        ({"backend": "gpt-live", "voice": "gleam"}, {"backend": "realtime"}, "model"),
    ],
)
def test_a_change_the_stored_backend_refuses_is_409(api, make_agent, stored, change, field):
    make_agent(slug="sales", **stored)
    response = api.patch(detail("sales"), change, format="json")
    assert field in error(response, 409, "conflicts_with_stored_agent")


def test_a_gpt_live_agent_changes_what_applies_to_it(api, make_agent) -> None:
    make_agent(slug="live", backend="gpt-live")
    response = api.patch(
        detail("live"),
        {"greeting": "Hi!", "max_call_minutes": 5, "language": "de", "model": "gpt-live-1"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert (response.json()["greeting"], response.json()["version"]) == ("Hi!", 2)


# --- the API schema: what it says about backends ------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def _openapi_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable` as JSON Schema's null type (what a client validator does)."""
    if isinstance(node, list):
        return [_openapi_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _openapi_to_json_schema(value) for key, value in node.items()}
    if converted.pop("nullable", False) and "type" in converted:
        converted["type"] = [converted["type"], "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
    return converted


def validator(schema: dict[str, Any], component: str) -> Any:
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    document = _openapi_to_json_schema(copy.deepcopy(schema))
    registry = Registry().with_resource("urn:api", Resource(document, specification=DRAFT4))
    return jsonschema.Draft4Validator(
        {"$ref": f"urn:api#/components/schemas/{component}"}, registry=registry
    )


def test_a_gpt_live_agent_as_read_is_valid_against_the_schema(schema, api, make_agent) -> None:
    make_agent(slug="live", backend="gpt-live", phone_numbers=("+18005550100",))
    make_agent(slug="rt", idle_timeout_ms=8000)
    agent = validator(schema, "Agent")
    for slug in ("live", "rt"):
        body = api.get(detail(slug)).json()
        assert not list(agent.iter_errors(body)), slug
    # And null is refused where the schema does not allow it (the check has teeth).
    assert list(agent.iter_errors({**api.get(detail("rt")).json(), "model": None}))


def test_the_schema_says_the_realtime_settings_read_as_null(schema) -> None:
    components = schema["components"]["schemas"]
    agent = components["Agent"]["properties"]
    assert components["NullEnum"] == {"enum": [None]}
    for name in catalog.REALTIME_ONLY_FIELDS:
        field = agent[name]
        assert field.get("nullable") or {"$ref": "#/components/schemas/NullEnum"} in field.get(
            "oneOf", []
        ), name
        assert "null for a GPT-Live agent" in field["description"], name
    backend = agent["backend"]["allOf"][0]["$ref"].rsplit("/", 1)[1]
    assert components[backend]["enum"] == list(catalog.BACKENDS)
    # Writes take no null: a realtime-only setting is left out, not cleared.
    for component in ("AgentRequest", "PatchedAgentRequest"):
        for name in ("turn_detection", "vad_threshold", "transcription_model"):
            assert "NullEnum" not in str(components[component]["properties"][name])


REFUSED_CREATES = [
    {"backend": "gpt-live", "turn_detection": "server_vad"},
    {"backend": "gpt-live", "idle_timeout_ms": 9000},
    {"backend": "gpt-live", "model": "gpt-realtime"},
    {"model": "gpt-live-1"},
    {"backend": "realtime", "model": "gpt-live-1"},
    {"voice": "gleam"},
    {"backend": "realtime", "voice": "gleam"},
    {"model": "gpt-realtime-mini", "voice": "gleam"},
]
ACCEPTED_CREATES = [
    {"backend": "gpt-live"},
    {"backend": "gpt-live", "model": "gpt-live-1", "voice": "gleam", "max_call_minutes": 3},
    {"backend": "realtime", "model": "gpt-realtime", "voice": "cedar", "vad_threshold": 0.2},
    {"voice": "marin", "turn_detection": "semantic_vad"},
]


@pytest.mark.parametrize("fields", REFUSED_CREATES)
def test_each_refused_create_is_400_and_refused_by_the_schema(schema, api, agent_body, fields):
    body = agent_body(**fields)
    assert list(validator(schema, "AgentRequest").iter_errors(body)), "the schema allows it"
    assert api.post(LIST, body, format="json").status_code == 400


@pytest.mark.parametrize("fields", ACCEPTED_CREATES)
def test_each_accepted_create_is_201_and_valid_in_the_schema(schema, api, agent_body, fields):
    body = agent_body(**fields)
    assert not list(validator(schema, "AgentRequest").iter_errors(body))
    response = api.post(LIST, body, format="json")
    assert response.status_code == 201, response.content
    assert not list(validator(schema, "Agent").iter_errors(response.json()))


@pytest.mark.parametrize(
    ("change", "valid"),
    [
        ({"backend": "gpt-live", "turn_detection": "server_vad"}, False),
        ({"backend": "gpt-live", "model": "gpt-realtime"}, False),
        ({"backend": "realtime", "model": "gpt-live-1"}, False),
        ({"backend": "realtime", "voice": "gleam"}, False),
        ({"model": "gpt-realtime", "voice": "gleam"}, False),
        # Judged against the stored agent (409), not by the request's form:
        ({"model": "gpt-live-1"}, True),
        ({"voice": "gleam"}, True),
        ({"turn_detection": "server_vad"}, True),
        ({"backend": "gpt-live"}, True),
        ({"backend": "gpt-live", "model": "gpt-live-1"}, True),
    ],
)
def test_the_patch_schema_states_the_rules_of_one_request(schema, api, make_agent, change, valid):
    make_agent(slug="sales")
    assert (not list(validator(schema, "PatchedAgentRequest").iter_errors(change))) is valid
    status = api.patch(detail("sales"), change, format="json").status_code
    assert status in ((200, 409) if valid else (400,)), status


def test_the_documented_gpt_live_examples(schema, api) -> None:
    operation = schema["paths"]["/api/agents"]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    live = next(
        example["value"] for example in examples.values() if "GPT-Live" in example["summary"]
    )
    response = api.post(LIST, live, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["backend"] == "gpt-live"
