"""POST /api/calls: the agent dials out through Twilio's REST API (the stand-in on loopback),
every request Twilio's documented one, every refusal in the error shape and on the record."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone
from support import twilio_rest_in_thread

from bridge_project.config import STANDIN_ACCOUNT_SID, STANDIN_AUTH_TOKEN
from calls.models import Call, CallDirection, CallStatus
from telephony.security import stream_token_valid

pytestmark = pytest.mark.django_db

PUBLIC = "https://bridge.example.test"
OURS = "+18005550100"
TO = "+15550009999"


@pytest.fixture
def twilio(settings):
    settings.TWILIO_ACCOUNT_SID = ""
    settings.TWILIO_AUTH_TOKEN = ""
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.TWILIO_PHONE_NUMBER = ""
    with twilio_rest_in_thread(
        accounts={STANDIN_ACCOUNT_SID: STANDIN_AUTH_TOKEN}, owned_numbers=[OURS, "+18005550111"]
    ) as standin:
        settings.TWILIO_API_BASE_URL = standin.url
        yield standin


@pytest.fixture
def dialler(make_user, client_for):
    return client_for(make_user("calls.add_call", "calls.view_call", username="dialler"))


@pytest.fixture
def agent(make_agent):
    return make_agent(
        slug="reminders",
        is_default=True,
        instructions="Remind {name} of the appointment on {appointment}.",
        greeting="Hello {name}, this is the clinic.",
        phone_numbers=(OURS,),
    )


def place(client, body: dict, **headers: str):
    return client.post("/api/calls", body, format="json", **headers)


def test_a_call_is_recorded_and_dialled_as_twilio_documents(twilio, dialler, agent) -> None:
    body = {"to": TO, "agent": "reminders", "context": {"name": "Ada", "appointment": "Tuesday"}}
    response = place(dialler, body)
    assert response.status_code == 201, response.json()
    data = response.json()
    [create] = twilio.creates()
    call = Call.objects.get(pk=data["id"])
    assert data["call_sid"] == call.call_sid == create_sid(twilio)
    assert response["Location"].endswith(f"/api/calls/{call.pk}")
    assert (call.direction, call.status, call.caller) == (
        CallDirection.OUTBOUND_API,
        CallStatus.QUEUED,
        TO,
    )
    assert create.form["To"] == [TO] and create.form["From"] == [OURS]
    assert create.form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert create.form["StatusCallback"] == [f"{PUBLIC}/twilio/call-status?call={call.pk}"]
    assert create.form["StatusCallbackMethod"] == ["POST"]
    assert create.form["MachineDetection"] == ["DetectMessageEnd"]
    assert create.form["AsyncAmd"] == ["true"]
    assert create.form["AsyncAmdStatusCallback"] == [f"{PUBLIC}/twilio/amd-status?call={call.pk}"]
    assert create.form["MachineDetectionTimeout"] == ["30"]
    # The TwiML is the inbound one (no <Say> before it), its token bound to the call id only.
    root = ET.fromstring(create.value("Twiml"))
    [connect] = list(root)
    assert connect.tag == "Connect" and connect.get("action") == f"{PUBLIC}/twilio/stream-ended"
    parameters = {p.get("name"): p.get("value") for p in connect.iter("Parameter")}
    assert parameters["callId"] == str(call.pk)
    assert stream_token_valid(str(call.pk), "", parameters["token"])
    assert (parameters["caller"], parameters["dialled"], parameters["agent"]) == (
        TO,
        OURS,
        "reminders",
    )
    assert twilio.problems == []  # nothing Twilio would not know


def create_sid(twilio) -> str:
    return next(iter(twilio.calls))


def test_context_fills_the_agents_words_for_this_call_only(twilio, dialler, agent) -> None:
    body = {"to": TO, "context": {"name": "Ada", "appointment": "Tuesday at 10"}}
    call = Call.objects.get(pk=place(dialler, body).json()["id"])
    told = call.agent_snapshot["agent"]
    assert told["instructions"] == "Remind Ada of the appointment on Tuesday at 10."
    assert told["greeting"] == "Hello Ada, this is the clinic."
    assert "Remind Ada" in call.agent_snapshot["session"]["session"]["instructions"]
    assert call.metadata.custom["outbound"]["context"] == body["context"]
    assert call.metadata.custom["outbound"]["requested_by"] == "dialler"
    agent.refresh_from_db()
    assert "{name}" in agent.instructions  # the agent itself is unchanged


def test_a_missing_placeholder_is_refused_before_anything_is_dialled(
    twilio, dialler, agent
) -> None:
    response = place(dialler, {"to": TO, "context": {"name": "Ada"}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "missing_context"
    assert error["details"]["missing"] == ["appointment"]
    assert twilio.creates() == [] and not Call.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "5550009999"}, "to"),
        ({"to": TO, "from": "+15551112222"}, "from"),
        ({"to": TO, "machine_detection": "maybe"}, "machine_detection"),
        ({"to": TO, "context": {"name": ["a"]}}, "context"),
        ({"to": TO, "context": {"name": True}}, "context"),
    ],
)
def test_bad_values_are_a_400_naming_the_field(twilio, dialler, agent, body, field) -> None:
    body = {**body, "context": {"name": "Ada", "appointment": "Tue", **body.get("context", {})}}
    response = place(dialler, body)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in (error["details"] or {}) or error["details"].get("field") == field
    assert twilio.creates() == []


def test_an_unknown_or_inactive_agent_is_refused(twilio, dialler, agent, make_agent) -> None:
    assert place(dialler, {"to": TO, "agent": "nobody"}).status_code == 404
    make_agent(slug="retired", is_active=False)
    response = place(dialler, {"to": TO, "agent": "retired"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "agent_inactive"


def test_from_must_be_ours_and_defaults_to_the_agents_number(twilio, dialler, agent) -> None:
    context = {"name": "Ada", "appointment": "Tue"}
    assert place(dialler, {"to": TO, "context": context}).status_code == 201
    assert twilio.creates()[-1].form["From"] == [OURS]


def test_who_may_place_calls(twilio, agent, client_for, make_user) -> None:
    body = {"to": TO, "context": {"name": "Ada", "appointment": "Tue"}}
    assert place(client_for(None), body).status_code == 401
    reader = client_for(make_user("calls.view_call", "calls.change_call"))
    response = place(reader, body)
    assert response.status_code == 403
    assert "calls.add_call" in response.json()["error"]["message"]
    assert twilio.creates() == []


def test_a_retry_with_the_same_idempotency_key_dials_once(twilio, dialler, agent) -> None:
    body = {"to": TO, "context": {"name": "Ada", "appointment": "Tue"}}
    first = place(dialler, body, HTTP_IDEMPOTENCY_KEY="reminder-42")
    again = place(dialler, body, HTTP_IDEMPOTENCY_KEY="reminder-42")
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert len(twilio.creates()) == 1
    # The same key for another request is a client bug: said, not silently answered.
    other = place(dialler, {**body, "to": "+15550008888"}, HTTP_IDEMPOTENCY_KEY="reminder-42")
    assert other.status_code == 422
    assert other.json()["error"]["details"]["call_id"] == first.json()["id"]
    # Without a key, each request is a call.
    place(dialler, body)
    assert len(twilio.creates()) == 2


def test_twilios_refusal_is_a_clear_error_and_a_failed_call(twilio, dialler, agent) -> None:
    message = "The phone number you are attempting to call, +15550009999, is not valid."
    twilio.fail_next(400, code=21211, message=message)
    response = place(dialler, {"to": TO, "context": {"name": "Ada", "appointment": "Tue"}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "twilio_refused"
    assert (error["details"]["twilio_code"], error["details"]["twilio_message"]) == (21211, message)
    call = Call.objects.get(pk=error["details"]["call_id"])
    assert (call.status, call.call_sid) == (CallStatus.FAILED, None)
    assert "21211" in call.end_reason and call.ended_at is not None
    assert len(twilio.creates()) == 1


def test_twilio_down_is_a_502_and_never_a_second_dial(twilio, dialler, agent) -> None:
    twilio.fail_next(503, count=5)
    response = place(dialler, {"to": TO, "context": {"name": "Ada", "appointment": "Tue"}})
    assert response.status_code == 502
    assert response.json()["error"]["details"]["twilio_status"] == 503
    # After a 5xx Twilio may have placed the call: asking again could ring the phone twice.
    assert len(twilio.creates()) == 1


def test_twilios_429_is_retried_then_passed_on(twilio, dialler, agent, monkeypatch) -> None:
    from telephony import rest

    monkeypatch.setattr(rest, "RETRY_BASE_S", 0.01)
    twilio.fail_next(429, count=1, retry_after_s=0)
    body = {"to": TO, "context": {"name": "Ada", "appointment": "Tue"}}
    assert place(dialler, body).status_code == 201
    twilio.fail_next(429, count=10, retry_after_s=0)
    refused = place(dialler, body)
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0  # as every 429 of the API (the schema says so)
    details = refused.json()["error"]["details"]
    assert details["retry_after_s"] > 0 and details["twilio_status"] == 429


def test_the_per_agent_limit_answers_429(twilio, dialler, agent, settings) -> None:
    settings.OUTBOUND_MAX_CONCURRENT_PER_AGENT = 1
    body = {"to": TO, "context": {"name": "Ada", "appointment": "Tue"}}
    assert place(dialler, body).status_code == 201
    refused = place(dialler, body)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_calls"
    assert int(refused["Retry-After"]) > 0
    assert len(twilio.creates()) == 1
    # A call over frees its slot.
    Call.objects.update(status=CallStatus.COMPLETED)
    assert place(dialler, body).status_code == 201
    # So does one whose end Twilio never reported, hours later.
    assert place(dialler, body).status_code == 429
    Call.objects.update(started_at=timezone.now() - dt.timedelta(hours=3))
    assert place(dialler, body).status_code == 201


def test_machine_detection_off_asks_for_none(twilio, dialler, agent) -> None:
    body = {"to": TO, "machine_detection": "off", "context": {"name": "Ada", "appointment": "T"}}
    assert place(dialler, body).status_code == 201
    form = twilio.creates()[-1].form
    assert not {"MachineDetection", "AsyncAmd", "AsyncAmdStatusCallback"} & set(form)


def test_voicemail_needs_something_to_say(twilio, dialler, make_agent) -> None:
    make_agent(slug="quiet", greeting="", phone_numbers=(OURS,))
    response = place(dialler, {"to": TO, "agent": "quiet", "machine_detection": "voicemail"})
    assert response.status_code == 400
    assert response.json()["error"]["details"]["voicemail_message"]
    body = {"to": TO, "agent": "quiet", "machine_detection": "voicemail",
            "voicemail_message": "Please call us back."}  # fmt: skip
    call = Call.objects.get(pk=place(dialler, body).json()["id"])
    assert call.agent_snapshot["outbound"] == {
        "machine_detection": "voicemail",
        "voicemail_message": "Please call us back.",
    }


def test_status_callbacks_before_twilios_answer_find_the_call(twilio, dialler, agent) -> None:
    """Twilio may post `initiated` before its answer to the create is read: the callback's URL
    names our call, which then takes the CallSid from it."""
    from calls import services

    body = {"to": TO, "context": {"name": "Ada", "appointment": "Tue"}}
    call = Call.objects.get(pk=place(dialler, body).json()["id"])
    call_sid = call.call_sid
    Call.objects.filter(pk=call.pk).update(call_sid=None)
    applied = services.call_status_apply(
        call_sid=call_sid, status="ringing", sequence=1, duration_s=None, call_id=str(call.pk)
    )
    assert applied is not None and applied.pk == call.pk
    call.refresh_from_db()
    assert (call.call_sid, call.status) == (call_sid, CallStatus.RINGING)
    query = parse_qs(urlsplit(twilio.creates()[-1].value("StatusCallback")).query)
    assert query == {"call": [str(call.pk)]}
