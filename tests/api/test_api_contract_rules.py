"""The schema says exactly what the server accepts (issue 26): each mismatch the fuzzer found,
and the rules that keep the two together, checked one by one against the test client.

contract/run.py checks the same against a live server with generated requests; these are the
fast, named cases a regression shows up in first.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from agents import catalog
from agents.models import Agent

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(api) -> dict:
    return api.get("/api/schema/").json()


def parameter(schema: dict, path: str, name: str, method: str = "get") -> dict:
    return next(p for p in schema["paths"][path][method]["parameters"] if p["name"] == name)


def error_code(response) -> str:
    return response.json()["error"]["code"]


# --- 1. an empty value is a value: refused where the schema's enum or format refuses it ------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/analytics", "interval"),
        ("/api/analytics", "startDate"),
        ("/api/analytics", "endDate"),
        ("/api/calls", "status"),
        ("/api/calls", "sentiment"),
        ("/api/calls", "agent"),
        ("/api/calls", "startDate"),
        ("/api/calls", "endDate"),
    ],
)
@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_value_is_refused_where_the_schema_refuses_it(
    api, path: str, name: str, value: str
) -> None:
    response = api.get(path, {name: value})
    assert response.status_code == 400, response.content
    assert name in response.json()["error"]["details"]


@pytest.mark.parametrize("name", ["caller", "search"])
def test_an_empty_free_text_filter_is_accepted_as_the_schema_allows(api, name: str) -> None:
    assert api.get("/api/calls", {name: ""}).status_code == 200


def test_an_empty_recording_id_or_download_flag_is_refused(api, make_call) -> None:
    call = make_call()
    for params in ({"recording": ""}, {"download": ""}, {"download": "yes"}, {"download": "1"}):
        response = api.get(f"/api/calls/{call.pk}/recording", params)
        assert response.status_code == 400, params
        assert set(params) <= set(response.json()["error"]["details"])


def test_the_interval_enum_is_all_the_server_takes(schema, api) -> None:
    interval = parameter(schema, "/api/analytics", "interval")["schema"]
    assert set(interval["enum"]) == {"hour", "day", "week"}
    for value in interval["enum"]:
        assert api.get("/api/analytics", {"interval": value}).status_code == 200


# --- 2. startDate / endDate: the formats the schema declares, read as it declares them -------


def test_the_period_bounds_are_a_date_or_a_date_time_in_the_schema(schema) -> None:
    for path in ("/api/calls", "/api/analytics"):
        for name in ("startDate", "endDate"):
            formats = {s["format"] for s in parameter(schema, path, name)["schema"]["anyOf"]}
            assert formats == {"date", "date-time"}, (path, name)


@pytest.mark.parametrize(
    "value",
    [
        "2026-03-10",
        "2026-03-10T12:00:00Z",
        "2026-03-10t12:00:00z",  # RFC 3339 allows lower case
        "2026-03-10T12:00:00.123456789+05:30",  # more fraction digits than microseconds
        "2026-03-10T12:00:00-00:00",
        "2026-06-30T23:59:60Z",  # a leap second
        "2026-03-10T12:00",  # no offset: the server's zone (documented)
    ],
)
@pytest.mark.parametrize("path", ["/api/calls", "/api/analytics"])
def test_rfc_3339_dates_and_date_times_are_accepted(api, path: str, value: str) -> None:
    response = api.get(path, {"startDate": value, "endDate": value})
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "params",
    [
        {"startDate": "0001-01-01"},
        {"endDate": "0001-01-01"},  # analytics: a week before it would be before year 1
        {"startDate": "0001-01-01T00:00:00+23:59", "endDate": "0001-01-01T00:00:00+23:59"},
        {"startDate": "9999-12-31", "endDate": "9999-12-31"},
        {"startDate": "9999-12-31T23:59:59-23:59", "endDate": "9999-12-31T23:59:59-23:59"},
        {"startDate": "9999-12-25", "endDate": "9999-12-31", "interval": "week"},
        {"startDate": "0001-01-01", "endDate": "0001-01-02", "interval": "hour"},
    ],
)
@pytest.mark.parametrize("path", ["/api/calls", "/api/analytics"])
def test_the_ends_of_the_calendar_are_answered_not_500(api, path: str, params: dict) -> None:
    if path == "/api/calls":
        params = {k: v for k, v in params.items() if k != "interval"}
    response = api.get(path, params)
    if path == "/api/analytics" and params == {"startDate": "0001-01-01"}:
        # Up to now in days: over MAX_BUCKETS, the documented 400 (a rule between parameters).
        assert "interval" in response.json()["error"]["details"]
        return
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("value", ["2026-W05-1", "20260131", "2026-01-31T09", "2026-01-31T9:30"])
def test_other_iso_8601_forms_are_refused(api, value: str) -> None:
    # Python's ISO parser takes these; the schema's formats do not, so neither does the API.
    response = api.get("/api/calls", {"startDate": value})
    assert response.status_code == 400
    assert "startDate" in response.json()["error"]["details"]


# --- 3. limit and offset: the schema's minimums are the server's -----------------------------


def test_limit_and_offset_minimums_are_in_the_schema(schema) -> None:
    for path in ("/api/calls", "/api/agents"):
        assert parameter(schema, path, "limit")["schema"]["minimum"] == 1
        assert parameter(schema, path, "offset")["schema"]["minimum"] == 0


def test_limit_zero_is_refused_and_one_accepted(api) -> None:
    assert api.get("/api/calls", {"limit": 0}).status_code == 400
    assert api.get("/api/calls", {"limit": 1}).status_code == 200
    assert api.get("/api/calls", {"offset": 0}).status_code == 200
    assert api.get("/api/calls", {"offset": -1}).status_code == 400


def test_huge_limits_and_offsets_are_a_page_not_a_500(api, make_call) -> None:
    make_call()
    assert len(api.get("/api/calls", {"limit": "9" * 40}).json()["results"]) == 1
    assert api.get("/api/calls", {"offset": "9" * 5000}).json()["results"] == []
    assert api.get("/api/calls", {"limit": "0" * 30 + "1"}).status_code == 200


def test_ordering_is_a_list_of_known_terms(schema, api) -> None:
    ordering = parameter(schema, "/api/calls", "ordering")
    assert (ordering["style"], ordering["explode"]) == ("form", False)
    terms = set(ordering["schema"]["items"]["enum"])
    assert {"started_at", "-started_at", "agent", "-status"} <= terms
    assert api.get("/api/calls", {"ordering": "caller,-status"}).status_code == 200
    assert api.get("/api/calls", {"ordering": ""}).status_code == 200  # an empty list
    assert api.get("/api/calls", {"ordering": " caller"}).status_code == 400
    assert api.get("/api/calls", {"ordering": "caller,"}).status_code == 400


def test_an_unknown_agent_filter_is_a_404_and_a_malformed_one_a_400(schema, api) -> None:
    assert parameter(schema, "/api/calls", "agent")["schema"]["pattern"] == "^[-a-zA-Z0-9_]+$"
    assert api.get("/api/calls", {"agent": "nobody"}).status_code == 404
    assert api.get("/api/calls", {"agent": "no body"}).status_code == 400


# --- 4. bodies: JSON types as declared, no silent coercion ----------------------------------


@pytest.fixture
def editor_api(make_user, client_for) -> APIClient:
    return client_for(
        make_user(
            "calls.view_call", "calls.change_call", "agents.view_agent", "agents.change_agent"
        )
    )


@pytest.mark.parametrize("notes", [0, 1.5, True, ["x"], {"x": 1}, "   ", "\u2003\x85"])
def test_a_note_that_is_not_a_string_with_text_is_refused(editor_api, make_call, notes) -> None:
    call = make_call()
    response = editor_api.post(f"/api/calls/{call.pk}/notes", {"notes": notes}, format="json")
    assert response.status_code == 400, response.content
    assert "notes" in response.json()["error"]["details"]


def test_the_notes_schema_requires_text(schema) -> None:
    import re

    notes = schema["components"]["schemas"]["NoteCreateRequest"]["properties"]["notes"]
    assert notes["minLength"] == 1
    assert not re.search(notes["pattern"], " \t\x1c\x85\u2003")
    assert re.search(notes["pattern"], "  a ")


def test_the_documented_note_example_is_accepted(schema, editor_api, make_call) -> None:
    call = make_call()
    body = schema["paths"]["/api/calls/{id}/notes"]["post"]["requestBody"]["content"]
    [example] = body["application/json"]["examples"].values()
    response = editor_api.post(f"/api/calls/{call.pk}/notes", example["value"], format="json")
    assert response.status_code == 201


AGENT = {"name": "Typed", "slug": "typed", "instructions": "Be brief."}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", 5),
        ("slug", 5),
        ("is_active", "true"),
        ("is_default", 1),
        ("vad_prefix_padding_ms", "300"),
        ("vad_prefix_padding_ms", 300.5),
        ("max_call_minutes", True),
        ("vad_threshold", "0.5"),
        ("greeting", 0),
        ("language", " en"),
        ("slug", " typed"),
        ("phone_numbers", [" +14155550100"]),
        ("phone_numbers", ["+14155550100", "+14155550100"]),
    ],
)
def test_agent_fields_take_their_json_type_only(editor_api, field: str, value) -> None:
    response = editor_api.post("/api/agents", {**AGENT, field: value}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]


def test_an_integer_is_a_number(editor_api) -> None:
    response = editor_api.post("/api/agents", {**AGENT, "vad_threshold": 1}, format="json")
    assert response.status_code == 201, response.content


def test_the_documented_agent_example_is_accepted(schema, editor_api) -> None:
    body = schema["paths"]["/api/agents"]["post"]["requestBody"]["content"]["application/json"]
    example = next(iter(body["examples"].values()))["value"]
    response = editor_api.post("/api/agents", example, format="json")
    assert response.status_code == 201, response.content


# --- the agent's schema states its ranges, codes and rules between fields ----------------------


def test_the_agent_schema_states_the_validators_ranges_and_codes(schema) -> None:
    components = schema["components"]["schemas"]
    ranges = {
        "vad_threshold": catalog.VAD_THRESHOLD,
        "vad_prefix_padding_ms": catalog.VAD_PREFIX_PADDING_MS,
        "vad_silence_duration_ms": catalog.VAD_SILENCE_DURATION_MS,
        "idle_timeout_ms": catalog.IDLE_TIMEOUT_MS,
        "max_call_minutes": catalog.MAX_CALL_MINUTES,
    }
    for component in ("Agent", "AgentRequest", "PatchedAgentRequest"):
        properties = components[component]["properties"]
        for name, bounds in ranges.items():
            assert (properties[name]["minimum"], properties[name]["maximum"]) == (
                bounds.low,
                bounds.high,
            ), (component, name)
        assert properties["greeting"]["maxLength"] == catalog.GREETING_MAX_CHARS
        assert set(properties["language"]["enum"]) == {"", *catalog.LANGUAGE_CODES}
        assert properties["phone_numbers"]["uniqueItems"] is True
    request = components["AgentRequest"]
    assert request["properties"]["instructions"]["maxLength"] == 16000
    assert len(request["allOf"]) == 8  # the rules between fields, as `not` clauses


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "gpt-4o-realtime-preview", "voice": "cedar"},
        {"turn_detection": "semantic_vad", "idle_timeout_ms": 10000},
        {"is_default": True, "is_active": False},
    ],
)
def test_each_rule_between_fields_is_a_400_and_in_the_schema(schema, editor_api, fields) -> None:
    import jsonschema

    rules = schema["components"]["schemas"]["AgentRequest"]["allOf"]
    assert any(not _matches(rule, fields, jsonschema) for rule in rules)
    response = editor_api.post("/api/agents", {**AGENT, **fields}, format="json")
    assert response.status_code == 400, response.content


def _matches(rule: dict, instance: dict, jsonschema) -> bool:
    return jsonschema.Draft4Validator(rule).is_valid(instance)


def test_a_valid_change_refused_by_the_stored_agent_is_a_409(editor_api, make_agent) -> None:
    make_agent(slug="preview", model="gpt-4o-realtime-preview", voice="ash")
    response = editor_api.patch("/api/agents/preview", {"voice": "marin"}, format="json")
    assert (response.status_code, error_code(response)) == (409, "conflicts_with_stored_agent")
    assert "voice" in response.json()["error"]["details"]
    make_agent(slug="semantic", turn_detection="semantic_vad")
    response = editor_api.patch("/api/agents/semantic", {"idle_timeout_ms": 9000}, format="json")
    assert (response.status_code, error_code(response)) == (409, "conflicts_with_stored_agent")


def test_a_slug_taken_by_a_rename_is_a_409(editor_api, make_agent) -> None:
    make_agent(slug="one")
    make_agent(slug="two")
    response = editor_api.patch("/api/agents/two", {"slug": "one"}, format="json")
    assert (response.status_code, error_code(response)) == (409, "slug_taken")
    assert editor_api.patch("/api/agents/two", {"slug": "two"}, format="json").status_code == 200
    assert {"one", "two"} <= set(Agent.objects.values_list("slug", flat=True))


def test_a_number_kept_by_its_own_agent_is_not_a_conflict(editor_api, make_agent) -> None:
    make_agent(slug="sales", phone_numbers=("+18005550100",))
    response = editor_api.patch(
        "/api/agents/sales", {"phone_numbers": ["+18005550100"]}, format="json"
    )
    assert response.status_code == 200, response.content
