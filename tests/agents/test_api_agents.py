"""/api/agents: who may read and write, the body, validation naming fields, 409 on delete."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from rest_framework.test import APIClient

from agents.models import Agent, PhoneNumber

pytestmark = pytest.mark.django_db

LIST = "/api/agents"


def detail(slug: str) -> str:
    return f"/api/agents/{slug}"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body["error"]


def field_errors(response) -> dict[str, list[str]]:
    """A 400's details, each field named in the message too."""
    error = assert_error(response, 400, "invalid")
    for name in error["details"]:
        assert name in error["message"]
    return error["details"]


@pytest.fixture
def api(client_for, editor) -> APIClient:
    return client_for(editor)


# --- who may ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", LIST), ("post", LIST), ("get", detail("x")), ("patch", detail("x")),
     ("delete", detail("x"))],
)  # fmt: skip
def test_anonymous_is_401(method: str, path: str) -> None:
    response = getattr(APIClient(), method)(path, {}, format="json")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


def test_reading_needs_view_agent(client_for, make_user, make_agent) -> None:
    make_agent(slug="sales")
    calls_only = client_for(make_user("calls.view_call", is_staff=True))
    error = assert_error(calls_only.get(LIST), 403, "permission_denied")
    assert "agents.view_agent" in error["message"]
    assert_error(calls_only.get(detail("sales")), 403, "permission_denied")


def test_writing_needs_change_agent(client_for, reader, make_agent, agent_body) -> None:
    make_agent(slug="sales")
    client = client_for(reader)
    assert client.get(LIST).status_code == 200
    assert client.get(detail("sales")).status_code == 200
    for response in (
        client.post(LIST, agent_body(), format="json"),
        client.patch(detail("sales"), {"name": "x"}, format="json"),
        client.delete(detail("sales")),
    ):
        error = assert_error(response, 403, "permission_denied")
        assert "agents.change_agent" in error["message"]
    assert Agent.objects.count() == 1


def test_the_permission_through_a_group_and_superusers(client_for, make_user) -> None:
    group = Group.objects.create(name="agent editors")
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="agents", codename__in=["view_agent", "change_agent"]
        )
    )
    user = make_user()
    user.groups.add(group)
    assert client_for(user).get(LIST).status_code == 200
    boss = client_for(make_user(is_superuser=True))
    assert boss.get(LIST).status_code == 200


def test_the_admin_session_works_with_csrf_on_writes(make_user, agent_body) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(make_user("agents.view_agent", "agents.change_agent"))
    assert client.get(LIST).status_code == 200
    error = assert_error(client.post(LIST, agent_body(), format="json"), 403, "permission_denied")
    assert "CSRF" in error["message"]


# --- reading ----------------------------------------------------------------------------------


def test_the_list_is_by_name_with_numbers_and_versions(api, make_agent) -> None:
    make_agent(name="Support", slug="support", phone_numbers=("+18005550199",))
    make_agent(name="After hours", slug="after-hours", greeting="We are closed.")
    body = api.get(LIST).json()
    assert body["count"] == 2
    first, second = body["results"]
    assert (first["slug"], second["slug"]) == ("after-hours", "support")
    assert second["phone_numbers"] == ["+18005550199"]
    assert first["greeting"] == "We are closed."
    assert first["version"] == 1
    assert first["url"].endswith("/api/agents/after-hours")


def test_the_list_is_a_fixed_number_of_queries(api, make_agent, django_assert_max_num_queries):
    for n in range(12):
        make_agent(phone_numbers=(f"+1800555{n:04d}",))
    # Token and user, permissions (user, groups), the count, the page, the numbers.
    with django_assert_max_num_queries(6):
        assert len(api.get(LIST).json()["results"]) == 12


def test_one_agent_has_every_field(api, make_agent) -> None:
    make_agent(
        name="Sales",
        slug="sales",
        phone_numbers=("+18005550100",),
        voice="marin",
        language="en",
        idle_timeout_ms=15000,
    )
    body = api.get(detail("sales")).json()
    assert set(body) == {
        "slug", "url", "name", "is_default", "is_active", "version", "phone_numbers",
        "model", "backend", "instructions", "greeting", "voice", "language", "turn_detection",
        "vad_threshold", "vad_prefix_padding_ms", "vad_silence_duration_ms", "vad_eagerness",
        "noise_reduction", "idle_timeout_ms", "transcription_model", "max_call_minutes",
        "tools", "created_at", "updated_at",
    }  # fmt: skip
    assert (body["voice"], body["language"], body["idle_timeout_ms"]) == ("marin", "en", 15000)
    assert body["max_call_minutes"] is None


def test_an_unknown_agent_is_404(api) -> None:
    assert_error(api.get(detail("nobody")), 404, "not_found")
    assert_error(api.patch(detail("nobody"), {"name": "x"}, format="json"), 404, "not_found")
    assert_error(api.delete(detail("nobody")), 404, "not_found")


# --- creating ---------------------------------------------------------------------------------


def test_create_answers_201_with_the_agent_and_its_location(api, agent_body) -> None:
    response = api.post(
        LIST,
        agent_body(greeting="Hi, support here.", phone_numbers=["+18005550199"], voice="cedar"),
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Location"] == body["url"]
    assert (body["slug"], body["version"], body["voice"]) == ("support", 1, "cedar")
    assert body["phone_numbers"] == ["+18005550199"]
    assert (body["model"], body["turn_detection"], body["vad_threshold"]) == (
        "gpt-realtime",
        "server_vad",
        0.5,
    )
    agent = Agent.objects.get(slug="support")
    assert agent.greeting == "Hi, support here."


def test_the_version_cannot_be_written(api, agent_body) -> None:
    response = api.post(LIST, agent_body(version=42), format="json")
    assert response.json()["version"] == 1
    response = api.patch(detail("support"), {"version": 7}, format="json")
    assert response.json()["version"] == 1


def test_name_slug_and_instructions_are_required(api) -> None:
    errors = field_errors(api.post(LIST, {}, format="json"))
    assert set(errors) == {"name", "slug", "instructions"}


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"instructions": "   "}, "instructions", "blank"),
        ({"greeting": "x" * 1001}, "greeting", "at most 1000"),
        ({"model": "gpt-9"}, "model", "not a valid choice"),
        ({"voice": "darth"}, "voice", "not a valid choice"),
        ({"model": "gpt-4o-realtime-preview", "voice": "marin"}, "voice", "not available"),
        ({"transcription_model": "x"}, "transcription_model", "not a valid choice"),
        ({"language": "english"}, "language", "ISO-639-1"),
        ({"turn_detection": "ptt"}, "turn_detection", "not a valid choice"),
        ({"vad_threshold": 1.2}, "vad_threshold", "0 to 1"),
        ({"vad_silence_duration_ms": 99}, "vad_silence_duration_ms", "100 ms to 5000 ms"),
        ({"vad_prefix_padding_ms": 2001}, "vad_prefix_padding_ms", "0 ms to 2000 ms"),
        ({"idle_timeout_ms": 4999}, "idle_timeout_ms", "5000 ms to 300000 ms"),
        (
            {"turn_detection": "semantic_vad", "idle_timeout_ms": 10000},
            "idle_timeout_ms",
            "server_vad",
        ),
        ({"max_call_minutes": 241}, "max_call_minutes", "1 minutes to 240 minutes"),
        ({"slug": "not a slug"}, "slug", "slug"),
        ({"phone_numbers": ["4155550100"]}, "phone_numbers", "E.164"),
        ({"phone_numbers": "+14155550100"}, "phone_numbers", "list"),
        ({"is_default": True, "is_active": False}, "is_active", "must be active"),
    ],
)
def test_bad_values_are_400_naming_the_field(api, agent_body, fields, field, words) -> None:
    errors = field_errors(api.post(LIST, agent_body(**fields), format="json"))
    assert field in errors, errors
    assert words in str(errors[field]), errors[field]
    assert not Agent.objects.exists()


def test_instructions_over_the_limit_are_400(api, agent_body, settings) -> None:
    settings.AGENT_INSTRUCTIONS_MAX_CHARS = 100
    errors = field_errors(api.post(LIST, agent_body(instructions="x" * 101), format="json"))
    assert "at most 100" in errors["instructions"][0]


def test_a_taken_slug_is_409(api, agent_body, make_agent) -> None:
    # Well-formed, refused by what is stored (another agent's slug): a conflict, not a 400.
    make_agent(slug="support")
    error = assert_error(api.post(LIST, agent_body(), format="json"), 409, "slug_taken")
    assert "slug" in error["details"] and "slug" in error["message"]


def test_a_number_on_another_agent_is_409_naming_it(api, agent_body, make_agent) -> None:
    make_agent(slug="sales", phone_numbers=("+18005550100",))
    response = api.post(LIST, agent_body(phone_numbers=["+18005550100"]), format="json")
    [message] = assert_error(response, 409, "phone_number_taken")["details"]["phone_numbers"]
    assert "+18005550100" in message and "'sales'" in message
    assert not Agent.objects.filter(slug="support").exists()


def test_a_number_twice_is_400(api, agent_body) -> None:
    response = api.post(
        LIST, agent_body(phone_numbers=["+18005550100", "+18005550100"]), format="json"
    )
    assert "twice" in field_errors(response)["phone_numbers"][0]


def test_a_new_default_replaces_the_old_one(api, agent_body, make_agent) -> None:
    make_agent(slug="main", is_default=True)
    response = api.post(LIST, agent_body(is_default=True), format="json")
    assert response.status_code == 201, response.content
    assert list(Agent.objects.filter(is_default=True).values_list("slug", flat=True)) == ["support"]


# --- changing ---------------------------------------------------------------------------------


def test_patch_changes_fields_and_bumps_the_version(api, make_agent) -> None:
    make_agent(slug="sales")
    response = api.patch(detail("sales"), {"greeting": "Sales, hello!"}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["greeting"], response.json()["version"]) == ("Sales, hello!", 2)
    response = api.patch(detail("sales"), {"name": "Sales team"}, format="json")
    assert (response.json()["name"], response.json()["version"]) == ("Sales team", 2)


def test_patch_checks_fields_against_the_stored_ones(api, make_agent) -> None:
    make_agent(slug="sales", voice="marin")
    response = api.patch(detail("sales"), {"model": "gpt-4o-realtime-preview"}, format="json")
    # The request alone is valid; the stored voice refuses it: a conflict with the agent.
    assert "voice" in assert_error(response, 409, "conflicts_with_stored_agent")["details"]
    response = api.patch(
        detail("sales"), {"model": "gpt-4o-realtime-preview", "voice": "ash"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["version"] == 2


def test_patch_replaces_the_numbers(api, make_agent) -> None:
    make_agent(slug="sales", phone_numbers=("+18005550100", "+18005550101"))
    response = api.patch(
        detail("sales"), {"phone_numbers": ["+18005550101", "+18005550102"]}, format="json"
    )
    assert response.json()["phone_numbers"] == ["+18005550101", "+18005550102"]
    assert response.json()["version"] == 1  # numbers are not what the model is told
    assert (
        api.patch(detail("sales"), {"phone_numbers": []}, format="json").json()["phone_numbers"]
        == []
    )
    assert not PhoneNumber.objects.exists()


def test_patch_can_rename_the_slug(api, make_agent) -> None:
    make_agent(slug="sales")
    response = api.patch(detail("sales"), {"slug": "sales-emea"}, format="json")
    assert response.json()["url"].endswith("/api/agents/sales-emea")
    assert api.get(detail("sales-emea")).status_code == 200


def test_unsetting_the_only_default_is_409(api, make_agent) -> None:
    make_agent(slug="main", is_default=True)
    response = api.patch(detail("main"), {"is_default": False}, format="json")
    error = assert_error(response, 409, "default_required")
    assert "make another agent the default" in error["details"]["is_default"][0]
    response = api.patch(detail("main"), {"is_active": False}, format="json")
    assert "is_active" in assert_error(response, 409, "conflicts_with_stored_agent")["details"]


def test_making_an_agent_default_moves_the_flag(api, make_agent) -> None:
    make_agent(slug="main", is_default=True)
    make_agent(slug="night")
    assert api.patch(detail("night"), {"is_default": True}, format="json").status_code == 200
    flags = dict(Agent.objects.values_list("slug", "is_default"))
    assert flags == {"main": False, "night": True}


def test_put_is_not_offered(api, make_agent) -> None:
    make_agent(slug="sales")
    response = api.put(detail("sales"), {"name": "x"}, format="json")
    assert_error(response, 405, "method_not_allowed")
    assert "PUT" not in response["Allow"]


# --- deleting ---------------------------------------------------------------------------------


def test_delete_an_agent_without_calls_is_204(api, make_agent) -> None:
    make_agent(slug="main", is_default=True)
    make_agent(slug="temp", phone_numbers=("+18005550100",))
    response = api.delete(detail("temp"))
    assert response.status_code == 204
    assert not Agent.objects.filter(slug="temp").exists()
    assert not PhoneNumber.objects.exists()


def test_delete_an_agent_with_calls_is_409_saying_deactivate(api, make_agent, make_call) -> None:
    make_agent(slug="main", is_default=True)
    sales = make_agent(slug="sales")
    make_call(agent=sales)
    error = assert_error(api.delete(detail("sales")), 409, "agent_has_calls")
    assert "deactivate it instead (is_active: false)" in error["message"]
    assert error["details"] == {"calls": 1}
    assert Agent.objects.filter(slug="sales").exists()
    # The way out works.
    assert api.patch(detail("sales"), {"is_active": False}, format="json").status_code == 200


def test_delete_the_default_agent_is_409(api, make_agent) -> None:
    make_agent(slug="main", is_default=True)
    error = assert_error(api.delete(detail("main")), 409, "agent_is_default")
    assert "make another agent the default" in error["message"]


# --- the calls API, by agent ------------------------------------------------------------------


def test_calls_are_filtered_by_the_agents_slug(client_for, make_user, make_agent, make_call):
    sales = make_agent(name="Sales", slug="sales")
    support = make_agent(name="Support", slug="support")
    sold = make_call(agent=sales)
    make_call(agent=support)
    make_call()
    api = client_for(make_user("calls.view_call"))
    body = api.get("/api/calls", {"agent": "sales"}).json()
    assert [item["id"] for item in body["results"]] == [str(sold.pk)]
    assert body["results"][0]["agent"] == {"slug": "sales", "name": "Sales"}
