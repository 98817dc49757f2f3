"""Outbound calls in the back-office: the "Call a number" page (placing the call through the Twilio
REST stand-in on loopback), "Call back" on a call's page, the direction in the call list and its
filter, answering machine detection on the call page, and analytics split by direction."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from support import twilio_rest_in_thread

from calls.models import Call, CallDirection, CallStatus
from simulator.twilio.rest import TwilioRestStandIn

pytestmark = pytest.mark.django_db

PLACE = "/admin/calls/call/place/"
LIST = "/admin/calls/call/"
ANALYTICS = "/admin/calls/call/analytics/"
AGENT_NUMBER = "+15550001111"
ACCOUNT_NUMBER = "+15550000100"
CALLEE = "+15550009999"


@pytest.fixture
def twilio(settings) -> Iterator[TwilioRestStandIn]:
    """The Twilio REST stand-in on a loop of its own (the admin's views are synchronous and the
    test client calls them on this thread); no account of our own, so the product uses the
    stand-in's credentials."""
    with twilio_rest_in_thread() as standin:
        settings.TWILIO_ACCOUNT_SID = ""
        settings.TWILIO_AUTH_TOKEN = ""
        settings.TWILIO_API_BASE_URL = standin.url
        settings.TWILIO_PHONE_NUMBER = ACCOUNT_NUMBER
        yield standin


@pytest.fixture
def caller_agent(make_agent):
    return make_agent(
        name="Reminders",
        slug="reminders",
        instructions="You call {name} to remind them of their appointment.",
        phone_numbers=(AGENT_NUMBER,),
    )


@pytest.fixture
def dialler(make_staff) -> User:
    return make_staff("calls.view_call", "calls.add_call", username="dialler")


def form(**fields: str | list[str]) -> dict[str, str | list[str]]:
    data: dict[str, str | list[str]] = {
        "agent": "reminders",
        "to": CALLEE,
        "from_number": "",
        "machine_detection": "hangup",
        "voicemail_message": "",
        "context_key": ["name", "", ""],
        "context_value": ["Ada", "", ""],
        "idempotency_key": "",
    }
    data.update(fields)
    return data


def outbound_calls() -> list[Call]:
    return list(Call.objects.filter(direction=CallDirection.OUTBOUND_API))


# --- the page ---------------------------------------------------------------------------------


def test_the_page_offers_active_agents_our_numbers_and_context_rows(
    client_as, dialler, caller_agent, make_agent, twilio
) -> None:
    make_agent(name="Retired", slug="retired", is_active=False, phone_numbers=("+15550002222",))
    response = client_as(dialler).get(PLACE)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="csrfmiddlewaretoken"' in body
    assert '<option value="reminders"' in body
    assert '<option value="retired"' not in body  # an inactive agent answers no calls
    # Every number we may call from, the inactive agent's too, and the account's.
    for number in (AGENT_NUMBER, "+15550002222", ACCOUNT_NUMBER):
        assert f'<option value="{number}"' in body
    assert "The agent&#x27;s number (its first), else the account&#x27;s" in body
    # Three blank rows work without script; the template row is for "Add a row".
    assert body.count('name="context_key"') == 3 + 1
    assert re.search(r'value="hangup"[^>]*checked', body)


def test_the_call_list_links_the_page_for_those_who_may_place_calls(
    client_as, dialler, viewer
) -> None:
    assert f'href="{PLACE}"' in client_as(dialler).get(LIST).content.decode()
    assert f'href="{PLACE}"' not in client_as(viewer).get(LIST).content.decode()


def test_without_calls_add_call_the_page_is_403_and_nothing_is_dialled(
    client_as, viewer, caller_agent, twilio
) -> None:
    client = client_as(viewer)
    assert client.get(PLACE).status_code == 403
    assert client.post(PLACE, form()).status_code == 403
    assert twilio.creates() == [] and outbound_calls() == []


def test_a_post_without_the_csrf_token_is_refused(dialler, caller_agent, twilio) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(dialler)
    assert client.post(PLACE, form()).status_code == 403
    assert twilio.creates() == []


def test_a_query_fills_the_form_in(client_as, dialler, caller_agent, make_agent, settings) -> None:
    settings.TWILIO_PHONE_NUMBER = ACCOUNT_NUMBER
    make_agent(name="Sales", slug="sales", is_default=True)
    query = {"to": CALLEE, "agent": "reminders", "from": ACCOUNT_NUMBER}
    body = client_as(dialler).get(PLACE, query).content.decode()
    assert f'name="to" value="{CALLEE}"' in body
    assert '<option value="reminders" selected>' in body
    assert f'<option value="{ACCOUNT_NUMBER}" selected>' in body


def test_an_agent_that_cannot_call_is_replaced_by_the_default_with_a_notice(
    client_as, dialler, caller_agent, make_agent
) -> None:
    make_agent(name="Sales", slug="sales", is_default=True)
    body = client_as(dialler).get(PLACE, {"to": CALLEE, "agent": "gone"}).content.decode()
    assert "The agent &#x27;gone&#x27; is not active (or no longer exists)" in body
    assert '<option value="sales" selected>' in body


# --- placing the call -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chosen", "expected_from"), [("", AGENT_NUMBER), (ACCOUNT_NUMBER, ACCOUNT_NUMBER)]
)
def test_a_submit_places_the_call_and_opens_its_page(
    client_as, dialler, caller_agent, twilio, chosen, expected_from
) -> None:
    client = client_as(dialler)
    # Typed as people type numbers; five rows, as the page's "Add a row" posts them.
    data = form(
        to="+1 (555) 000-9999",
        from_number=chosen,
        context_key=["name", "", "time", "", "place"],
        context_value=["Ada", "", "10:00", "", "the clinic"],
    )
    response = client.post(PLACE, data)
    [call] = outbound_calls()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/calls/call/{call.pk}/change/"
    [create] = twilio.creates()
    assert (create.value("To"), create.value("From")) == (CALLEE, expected_from)
    assert create.value("MachineDetection") == "DetectMessageEnd"
    call.refresh_from_db()
    assert call.call_sid == next(iter(twilio.calls))  # the CallSid Twilio answered with
    assert (call.caller, call.agent.slug, call.status) == (CALLEE, "reminders", CallStatus.QUEUED)
    placed = call.metadata.custom["outbound"]
    assert placed["context"] == {"name": "Ada", "time": "10:00", "place": "the clinic"}
    assert placed["requested_by"] == "dialler"
    page = client.get(response["Location"]).content.decode()
    assert f"Calling {CALLEE} with Reminders: the call is queued with Twilio." in page


def test_sending_the_form_twice_places_one_call(client_as, dialler, caller_agent, twilio) -> None:
    client = client_as(dialler)
    first = client.post(PLACE, form(idempotency_key="k1"))
    second = client.post(PLACE, form(idempotency_key="k1"))
    assert first["Location"] == second["Location"]
    assert len(twilio.creates()) == 1 and len(outbound_calls()) == 1
    page = client.get(second["Location"]).content.decode()
    assert "This form was already sent" in page


def test_a_twilio_refusal_is_shown_with_the_failed_call_and_the_form_as_typed(
    client_as, dialler, caller_agent, twilio
) -> None:
    message = f"The phone number you are attempting to call, {CALLEE}, is not valid."
    twilio.fail_next(400, code=21211, message=message)
    response = client_as(dialler).post(
        PLACE, form(voicemail_message="Hi {name}", context_value=["Ada", "", ""])
    )
    assert response.status_code == 200
    body = html.unescape(response.content.decode())
    [call] = outbound_calls()
    assert call.status == CallStatus.FAILED
    assert "21211" in body and message in body
    link = re.search(r'<a href="([^"]+)" id="bo-failed-call">', body).group(1)
    assert link == f"/admin/calls/call/{call.pk}/change/"
    # What was typed is still there, and the next submit is a new request (a new key).
    assert f'name="to" value="{CALLEE}"' in body
    assert 'name="context_value" value="Ada"' in body
    assert "Hi {name}</textarea>" in body
    assert re.search(r'name="idempotency_key" value="[0-9a-f]{32}"', body)


def test_a_refusal_is_shown_against_the_field_it_names(
    client_as, dialler, caller_agent, twilio
) -> None:
    client = client_as(dialler)
    body = client.post(PLACE, form(context_key=[""], context_value=[""])).content.decode()
    # The agent's instructions need {name}: the context's field says so.
    context_errors = re.search(r'id="bo-context">.*?</fieldset>', body, re.S).group(0)
    assert "The agent&#x27;s text needs context for: name." in context_errors
    body = client.post(PLACE, form(to="12345")).content.decode()
    to_row = re.search(r'class="form-row field-to errors">.*?</div>\s*</div>', body, re.S)
    assert "is not an E.164 number" in to_row.group(0)
    assert twilio.creates() == [] and outbound_calls() == []


def test_a_context_value_without_a_name_is_refused_by_the_form(
    client_as, dialler, caller_agent, twilio
) -> None:
    body = client_as(dialler).post(
        PLACE, form(context_key=["name", ""], context_value=["Ada", "orphan"])
    )
    assert "The value &#x27;orphan&#x27; needs a name." in body.content.decode()
    assert twilio.creates() == []


# --- "Call back" ------------------------------------------------------------------------------


def test_call_back_opens_the_page_filled_in_with_the_other_party_and_agent(
    client_as, dialler, caller_agent, make_full_call
) -> None:
    call = make_full_call(caller="+14155550123", agent=caller_agent)
    client = client_as(dialler)
    page = client.get(f"/admin/calls/call/{call.pk}/change/").content.decode()
    link = html.unescape(re.search(r'<a href="([^"]+)" class="bo-call-back">', page).group(1))
    assert link == f"{PLACE}?to=%2B14155550123&agent=reminders"
    body = client.get(link).content.decode()
    assert 'name="to" value="+14155550123"' in body
    assert '<option value="reminders" selected>' in body


def test_call_back_needs_the_permission_and_a_number_to_dial(
    client_as, dialler, viewer, make_full_call
) -> None:
    call = make_full_call(caller="+14155550123")
    assert "bo-call-back" not in client_as(viewer).get(f"{LIST}{call.pk}/change/").content.decode()
    withheld = make_full_call(caller="anonymous")
    page = client_as(dialler).get(f"{LIST}{withheld.pk}/change/").content.decode()
    assert "bo-call-back" not in page


# --- the list and the call page ---------------------------------------------------------------


def test_the_direction_filter_and_markers(client_as, viewer, make_call) -> None:
    inbound = make_call(caller="+14155550123")
    placed = make_call(caller=CALLEE, direction=CallDirection.OUTBOUND_API)
    client = client_as(viewer)

    def listed(direction: str) -> set:
        response = client.get(LIST, {"direction": direction})
        return {c.pk for c in response.context["cl"].result_list}

    assert listed("inbound") == {inbound.pk}
    assert listed("outbound") == {placed.pk}
    body = client.get(LIST).content.decode()
    assert body.count("bo-direction--inbound") == 1 and body.count("bo-direction--outbound") == 1
    assert "Outbound (we called)" in body  # the filter's choice


def test_the_call_page_shows_what_answered_an_outbound_call(
    client_as, viewer, make_full_call
) -> None:
    placed = make_full_call(
        caller=CALLEE, direction=CallDirection.OUTBOUND_API, answered_by="machine_end_beep"
    )
    client = client_as(viewer)
    page = client.get(f"{LIST}{placed.pk}/change/").content.decode()
    assert re.search(r"Answered by</dt><dd[^>]*>Machine End Beep</dd>", page)
    inbound = make_full_call()
    assert "Answered by" not in client.get(f"{LIST}{inbound.pk}/change/").content.decode()


# --- analytics by direction -------------------------------------------------------------------


@pytest.fixture
def march_by_direction(make_call) -> dict[str, Call]:
    def at(day: int) -> dt.datetime:
        return timezone.make_aware(dt.datetime(2026, 3, day, 10))

    return {
        "in_2": make_call(started_at=at(2)),
        "out_2": make_call(started_at=at(2), direction=CallDirection.OUTBOUND_API),
        "in_3": make_call(started_at=at(3)),
        "dial_3": make_call(started_at=at(3), direction=CallDirection.OUTBOUND_DIAL),
    }


def test_the_api_counts_calls_by_direction(client_for, viewer, march_by_direction) -> None:
    response = client_for(viewer).get(
        "/api/analytics", {"startDate": "2026-03-01", "endDate": "2026-03-04", "interval": "day"}
    )
    body = response.json()
    assert body["totals"]["calls_by_direction"] == {"inbound": 2, "outbound": 2}
    assert [entry["calls_by_direction"] for entry in body["series"]] == [
        {"inbound": 0, "outbound": 0},
        {"inbound": 1, "outbound": 1},
        {"inbound": 1, "outbound": 1},
        {"inbound": 0, "outbound": 0},
    ]


def test_the_schema_states_the_direction_counts(client_for, viewer) -> None:
    schema = client_for(viewer).get("/api/schema/").json()
    components = schema["components"]["schemas"]
    assert "calls_by_direction" in components["AnalyticsMeasures"]["required"]
    assert "calls_by_direction" in components["AnalyticsBucket"]["required"]
    counts = components["CallsByDirection"]
    assert counts["required"] == ["inbound", "outbound"]
    assert {name: field["type"] for name, field in counts["properties"].items()} == {
        "inbound": "integer",
        "outbound": "integer",
    }


def test_the_analytics_page_counts_calls_by_direction(
    client_as, viewer, march_by_direction
) -> None:
    client = client_as(viewer)
    params = {"start": "2026-03-01", "end": "2026-03-07", "interval": "day"}
    body = client.get(ANALYTICS, params).content.decode()
    tile = re.search(r'Inbound / outbound</span><span class="bo-tile-value">([^<]+)<', body)
    assert tile.group(1) == "2 / 2"
    # The figures per day end with the inbound and outbound counts.
    assert re.search(r"<td>Mon 02 Mar</td>(<td>[^<]*</td>){10}<td>1</td><td>1</td></tr>", body)
    link = re.search(r'<a href="([^"]+)">outbound</a>', body).group(1)
    shown = {c.pk for c in client.get(html.unescape(link)).context["cl"].result_list}
    assert shown == {march_by_direction["out_2"].pk, march_by_direction["dial_3"].pk}
