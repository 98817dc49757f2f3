"""The Agents section of the back-office: the list, the change form and its rules, deleting."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import services
from agents.models import Agent, PhoneNumber
from realtime.configuration import session_preview

pytestmark = pytest.mark.django_db
LIST = "/admin/agents/agent/"


def change_url(agent: Agent) -> str:
    return f"{LIST}{agent.pk}/change/"


@pytest.fixture
def staff_editor(make_user) -> User:
    return make_user(
        "agents.view_agent", "agents.change_agent", "agents.add_agent", "agents.delete_agent",
        "calls.view_call", username="lead", is_staff=True,
    )  # fmt: skip


@pytest.fixture
def staff_reader(make_user) -> User:
    return make_user("agents.view_agent", username="watcher", is_staff=True)


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def form_data(agent: Agent, **changes: Any) -> dict[str, Any]:
    """The change form as the browser posts it, numbers included (the inline formset)."""
    numbers = list(agent.phone_numbers.order_by("created_at", "pk"))
    data: dict[str, Any] = {
        "name": agent.name,
        "slug": agent.slug,
        "instructions": agent.instructions,
        "greeting": agent.greeting,
        "voice": agent.voice,
        "backend": agent.backend,
        "model": agent.model,
        "language": agent.language,
        "turn_detection": agent.turn_detection,
        "vad_threshold": agent.vad_threshold,
        "vad_prefix_padding_ms": agent.vad_prefix_padding_ms,
        "vad_silence_duration_ms": agent.vad_silence_duration_ms,
        "vad_eagerness": agent.vad_eagerness,
        "noise_reduction": agent.noise_reduction,
        "idle_timeout_ms": agent.idle_timeout_ms or "",
        "transcription_model": agent.transcription_model,
        "max_call_minutes": agent.max_call_minutes or "",
        "phone_numbers-TOTAL_FORMS": len(numbers) + 1,
        "phone_numbers-INITIAL_FORMS": len(numbers),
        "phone_numbers-MIN_NUM_FORMS": 0,
        "phone_numbers-MAX_NUM_FORMS": 1000,
    }
    if agent.is_default:
        data["is_default"] = "on"
    if agent.is_active:
        data["is_active"] = "on"
    for index, phone in enumerate(numbers):
        data[f"phone_numbers-{index}-id"] = phone.pk
        data[f"phone_numbers-{index}-agent"] = agent.pk
        data[f"phone_numbers-{index}-number"] = phone.number
        data[f"phone_numbers-{index}-label"] = phone.label
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def errors_in(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code  # the form again, with errors
    return {
        name: list(errors) for name, errors in response.context["adminform"].form.errors.items()
    }


# --- the list ---------------------------------------------------------------------------------


def test_the_list_shows_who_answers_what_and_how_busy(staff_editor, make_agent, make_call) -> None:
    main = make_agent(name="Main line", slug="main", is_default=True)
    sales = make_agent(name="Sales", slug="sales", phone_numbers=("+18005550100", "+18005550101"))
    services.agent_update(agent=sales, fields={"greeting": "Hi"})
    make_call(agent=sales)
    make_call(agent=sales, started_at=timezone.now() - timezone.timedelta(days=2))
    body = page(logged_in(staff_editor), LIST)
    row = body[body.index(f'href="/admin/agents/agent/{sales.pk}/change/"') :]
    row = row[: row.index("</tr>")]
    assert "Sales" in row and "sales" in row
    assert "+18005550100, +18005550101" in row
    assert '<td class="field-calls_today_column"><a href=' in row and ">1</a>" in row
    assert "agent=sales" in row  # the count links to those calls
    assert '<td class="field-version">2</td>' in row
    main_row = body[body.index(f'href="/admin/agents/agent/{main.pk}/change/"') :]
    main_row = main_row[: main_row.index("</tr>")]
    assert "default for all other numbers" in main_row
    assert 'alt="True"' in main_row  # the default column


def test_the_list_is_a_fixed_number_of_queries(staff_editor, make_agent, make_call) -> None:
    client = logged_in(staff_editor)
    make_agent(phone_numbers=("+18005550100",))

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            page(client, LIST)
        return len(captured)

    few = queries()
    for n in range(8):
        agent = make_agent(phone_numbers=(f"+1800555{n:04d}", f"+1888555{n:04d}"))
        make_call(agent=agent)
    assert queries() == few


def test_the_list_is_searchable_by_number(staff_editor, make_agent) -> None:
    sales = make_agent(name="Sales", phone_numbers=("+18005550100",))
    make_agent(name="Support", phone_numbers=("+18005550199",))
    response = logged_in(staff_editor).get(LIST, {"q": "5550100"})
    assert [a.pk for a in response.context["cl"].result_list] == [sales.pk]


def test_agents_are_in_the_back_office_links(staff_reader) -> None:
    body = page(logged_in(staff_reader), "/admin/")
    nav = re.search(r'<nav class="bo-nav" aria-label="Back-office">(.*?)</nav>', body, re.S)
    assert re.findall(r'href="([^"]+)"', nav.group(1)) == [LIST]  # no calls permission
    assert 'id="backoffice-module"' in body and f'href="{LIST}"' in body


def test_who_may_open_the_agents(client, make_user, staff_reader) -> None:
    assert client.get(LIST).status_code == 302
    client.force_login(make_user("calls.view_call", is_staff=True))
    assert client.get(LIST).status_code == 403
    client.force_login(staff_reader)
    assert client.get(LIST).status_code == 200


# --- the change form --------------------------------------------------------------------------


def test_the_form_is_grouped_who_what_how(staff_editor, make_agent) -> None:
    agent = make_agent(phone_numbers=("+18005550100",))
    response = logged_in(staff_editor).get(change_url(agent))
    fieldsets = [(name, opts["fields"]) for name, opts in response.context["adminform"].fieldsets]
    assert [name for name, _ in fieldsets] == [
        "Who",
        "What it says",
        "How it listens",
        "What it can do",
        "What the model is sent",
    ]
    assert fieldsets[0][1] == ("name", "slug", "is_default", "is_active")
    assert fieldsets[1][1] == ("instructions", "greeting", "backend", "model", "voice", "language")
    assert set(fieldsets[2][1]) == {
        "turn_detection", "vad_threshold", "vad_prefix_padding_ms", "vad_silence_duration_ms",
        "vad_eagerness", "noise_reduction", "idle_timeout_ms", "transcription_model",
        "max_call_minutes",
    }  # fmt: skip
    body = response.content.decode()
    # The numbers inline sits right after "Who", before "What it says".
    who = body.index(">Who</h2>")
    numbers = body.index('id="phone_numbers-group"')
    says = body.index(">What it says</h2>")
    assert who < numbers < says
    assert 'value="+18005550100"' in body


def test_the_names_are_offered_as_lists(staff_editor, make_agent) -> None:
    agent = make_agent()
    body = page(logged_in(staff_editor), change_url(agent))
    voice = re.search(r'<select name="voice"[^>]*>(.*?)</select>', body, re.S).group(1)
    assert re.findall(r'<option value="([^"]+)"', voice)[:3] == ["alloy", "ash", "ballad"]
    assert '<select name="model"' in body and '<select name="transcription_model"' in body


def test_the_session_json_is_shown_read_only(staff_editor, make_agent) -> None:
    agent = make_agent(instructions="Be <brief> & kind.", voice="coral", greeting="Hello!")
    body = page(logged_in(staff_editor), change_url(agent))
    block = re.search(r'<pre class="bo-json">(.*?)</pre>', body, re.S)
    assert block, "no session JSON on the page"
    text = (
        block.group(1)
        .replace("&quot;", '"')
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
    )
    assert json.loads(text) == session_preview(services.agent_config(agent=agent))
    assert "Be &lt;brief&gt; &amp; kind." in block.group(1)  # escaped: JSON inside HTML
    assert 'name="session_json"' not in body and 'name="version"' not in body


def test_saving_a_prompt_bumps_the_version_and_logs_who(staff_editor, make_agent) -> None:
    agent = make_agent(phone_numbers=("+18005550100",))
    client = logged_in(staff_editor)
    response = client.post(change_url(agent), form_data(agent, instructions="New prompt."))
    assert response.status_code == 302, errors_in(response)
    agent.refresh_from_db()
    assert (agent.instructions, agent.version) == ("New prompt.", 2)
    response = client.post(change_url(agent), form_data(agent, name="Renamed"))
    assert response.status_code == 302
    agent.refresh_from_db()
    assert (agent.name, agent.version) == ("Renamed", 2)
    from django.contrib.admin.models import LogEntry

    assert LogEntry.objects.filter(object_id=str(agent.pk), user=staff_editor).count() == 2


def test_numbers_are_edited_inline_and_checked(staff_editor, make_agent) -> None:
    make_agent(slug="sales", phone_numbers=("+18005550100",))
    support = make_agent(slug="support")
    client = logged_in(staff_editor)
    taken = form_data(support, **{"phone_numbers-0-number": "+18005550100"})
    errors = client.post(change_url(support), taken).context["inline_admin_formsets"]
    assert "already reaches another agent" in str(errors[0].formset.errors)
    bad = form_data(support, **{"phone_numbers-0-number": "555-0100"})
    errors = client.post(change_url(support), bad).context["inline_admin_formsets"]
    assert "E.164" in str(errors[0].formset.errors)
    good = form_data(support, **{"phone_numbers-0-number": "+18005550199"})
    assert client.post(change_url(support), good).status_code == 302
    assert PhoneNumber.objects.get(number="+18005550199").agent == support


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model": "gpt-4o-realtime-preview", "voice": "marin"}, "voice"),
        ({"instructions": ""}, "instructions"),
        ({"greeting": "x" * 1001}, "greeting"),
        ({"language": "xx"}, "language"),
        ({"vad_threshold": "2"}, "vad_threshold"),
        ({"turn_detection": "semantic_vad", "idle_timeout_ms": "10000"}, "idle_timeout_ms"),
    ],
)
def test_bad_values_are_form_errors_on_their_field(staff_editor, make_agent, changes, field):
    agent = make_agent()
    response = logged_in(staff_editor).post(change_url(agent), form_data(agent, **changes))
    assert field in errors_in(response)
    agent.refresh_from_db()
    assert agent.version == 1


def test_an_odd_stored_value_is_shown_and_refused_not_replaced(staff_editor, make_agent):
    agent = make_agent()
    Agent.objects.filter(pk=agent.pk).update(voice="robot")  # as an odd environment seeds it
    agent.refresh_from_db()
    client = logged_in(staff_editor)
    body = page(client, change_url(agent))
    assert '<option value="robot" selected>robot (unknown: choose another)</option>' in body
    assert "voice" in errors_in(client.post(change_url(agent), form_data(agent)))


def test_making_an_agent_the_default_unsets_the_previous_one(staff_editor, make_agent) -> None:
    main = make_agent(slug="main", is_default=True)
    night = make_agent(slug="night")
    response = logged_in(staff_editor).post(change_url(night), form_data(night, is_default="on"))
    assert response.status_code == 302
    assert dict(Agent.objects.values_list("slug", "is_default")) == {"main": False, "night": True}
    main.refresh_from_db()
    assert main.version == 1


def test_unsetting_the_default_is_a_form_error(staff_editor, make_agent) -> None:
    main = make_agent(slug="main", is_default=True)
    response = logged_in(staff_editor).post(change_url(main), form_data(main, is_default=None))
    assert "make another agent the default" in errors_in(response)["is_default"][0]
    main.refresh_from_db()
    assert main.is_default


def test_adding_an_agent_through_the_form(staff_editor, make_agent) -> None:
    make_agent(slug="main", is_default=True)
    data = {
        "name": "After hours",
        "slug": "after-hours",
        "is_active": "on",
        "instructions": "We are closed; take a message.",
        "greeting": "Hello, we are closed.",
        "voice": "sage",
        "backend": "realtime",
        "model": "gpt-realtime",
        "language": "",
        "turn_detection": "server_vad",
        "vad_threshold": "0.5",
        "vad_prefix_padding_ms": "300",
        "vad_silence_duration_ms": "500",
        "vad_eagerness": "auto",
        "noise_reduction": "",
        "transcription_model": "gpt-4o-mini-transcribe",
        "phone_numbers-TOTAL_FORMS": "1",
        "phone_numbers-INITIAL_FORMS": "0",
        "phone_numbers-MIN_NUM_FORMS": "0",
        "phone_numbers-MAX_NUM_FORMS": "1000",
        "phone_numbers-0-number": "+18005550177",
        "phone_numbers-0-label": "Night line",
    }
    response = logged_in(staff_editor).post(f"{LIST}add/", data)
    assert response.status_code == 302, errors_in(response)
    agent = Agent.objects.get(slug="after-hours")
    assert (agent.version, agent.is_default, agent.greeting) == (1, False, "Hello, we are closed.")
    assert list(agent.phone_numbers.values_list("number", "label")) == [
        ("+18005550177", "Night line")
    ]


def test_a_reader_sees_the_form_but_changes_nothing(staff_reader, make_agent) -> None:
    agent = make_agent()
    client = logged_in(staff_reader)
    body = page(client, change_url(agent))
    assert 'name="instructions"' not in body and 'class="bo-json"' in body
    assert client.post(change_url(agent), form_data(agent, name="x")).status_code == 403


# --- deleting ---------------------------------------------------------------------------------


def test_deleting_an_agent_with_calls_is_refused_saying_deactivate(
    staff_editor, make_agent, make_call
) -> None:
    make_agent(slug="main", is_default=True)
    sales = make_agent(name="Sales", slug="sales")
    make_call(agent=sales)
    client = logged_in(staff_editor)
    response = client.post(f"{LIST}{sales.pk}/delete/", {"post": "yes"}, follow=True)
    body = response.content.decode()
    assert "Sales answered 1 call(s)" in body and "deactivate it instead" in body
    assert Agent.objects.filter(pk=sales.pk).exists()


def test_deleting_the_default_is_refused(staff_editor, make_agent) -> None:
    main = make_agent(name="Main", slug="main", is_default=True)
    response = logged_in(staff_editor).get(f"{LIST}{main.pk}/delete/", follow=True)
    assert "make another agent the default first" in response.content.decode()
    assert Agent.objects.filter(pk=main.pk).exists()


def test_an_unused_agent_is_deleted(staff_editor, make_agent) -> None:
    make_agent(slug="main", is_default=True)
    temp = make_agent(slug="temp", phone_numbers=("+18005550100",))
    response = logged_in(staff_editor).post(f"{LIST}{temp.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Agent.objects.filter(pk=temp.pk).exists()
    assert not PhoneNumber.objects.exists()


def test_there_is_no_bulk_delete(staff_editor, make_agent) -> None:
    make_agent()
    assert "delete_selected" not in page(logged_in(staff_editor), LIST)


# --- the test call button ---------------------------------------------------------------------


def test_the_test_call_button_is_offered_for_an_agent_with_a_number(staff_editor, make_agent):
    agent = make_agent(phone_numbers=("+18005550100",))
    body = page(logged_in(staff_editor), change_url(agent))
    action = f'action="/admin/agents/agent/{agent.pk}/test-call/"'
    assert action in body and ">Place a test call</button>" in body


def test_the_button_is_disabled_without_a_number(staff_editor, make_agent) -> None:
    agent = make_agent()
    body = page(logged_in(staff_editor), change_url(agent))
    assert '<button type="button" disabled' in body
    assert "This agent has no number" in body
    assert "/test-call/" not in body
    response = logged_in(staff_editor).post(f"{LIST}{agent.pk}/test-call/", follow=True)
    assert "This agent has no number to call" in response.content.decode()


def test_the_button_is_disabled_for_an_inactive_agent(staff_editor, make_agent) -> None:
    make_agent(is_default=True)
    agent = make_agent(is_active=False, phone_numbers=("+18005550100",))
    client = logged_in(staff_editor)
    body = page(client, change_url(agent))
    assert "This agent is inactive" in body and "/test-call/" not in body
    response = client.post(f"{LIST}{agent.pk}/test-call/", follow=True)
    assert "This agent is inactive: activate it first." in response.content.decode()


def test_there_is_no_test_call_in_production(staff_editor, make_agent, settings) -> None:
    agent = make_agent(phone_numbers=("+18005550100",))
    settings.DJANGO_ENV = "production"
    client = logged_in(staff_editor)
    assert "Place a test call" not in page(client, change_url(agent))
    assert client.post(f"{LIST}{agent.pk}/test-call/").status_code == 403


def test_placing_a_test_call_needs_change_agent(staff_reader, make_agent) -> None:
    agent = make_agent(phone_numbers=("+18005550100",))
    client = logged_in(staff_reader)
    assert "agents.change_agent permission" in page(client, change_url(agent))
    assert client.post(f"{LIST}{agent.pk}/test-call/").status_code == 403
    assert client.get(f"{LIST}{agent.pk}/test-call/").status_code == 405
