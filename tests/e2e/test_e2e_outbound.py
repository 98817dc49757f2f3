"""Outbound calls end to end (issue 23): POST /api/calls on the served app, Twilio's REST API
played by its stand-in, which dials back as Twilio does (status callbacks, answering machine
detection, the callee's media stream: a person or a machine with a greeting and a beep), the
realtime stand-in as the model. Each call ends on the record like an inbound one."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest
from e2e_support import AUTH_TOKEN, PUBLIC_BASE_URL, call_rows, finished_call, wait_for

from simulator.twilio.callee import CalleePlan, DialOut, OutboundLeg

pytestmark = pytest.mark.slow

OURS = "+18005550100"
NOT_VERIFIED = "+18005550177"  # ours in the product, unknown to the Twilio account
TO = "+15550009999"
GREETING = "Hello {name}, this is the clinic calling about your appointment."
MESSAGE = "Hi {name}, this is the clinic. Please call us back about {appointment}."
CONTEXT = {"name": "Ada", "appointment": "Tuesday"}


@pytest.fixture
def token(make_user) -> str:
    from rest_framework.authtoken.models import Token

    user = make_user("calls.add_call", "calls.view_call", username="scheduler")
    return Token.objects.create(user=user).key


@pytest.fixture
def clinic(make_agent):
    return make_agent(
        name="Clinic",
        slug="clinic",
        instructions="You call {name} about the appointment on {appointment}. Be brief.",
        greeting=GREETING,
        phone_numbers=(OURS, NOT_VERIFIED),
    )


def api_post(url: str, token: str, body: dict, *, key: str = "") -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    request = urllib.request.Request(
        f"{url}/api/calls", data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def dialling(live_bridge) -> dict[str, Any]:
    """The REST stand-in's options: it dials back to this server, signing as Twilio would."""
    dial_out = DialOut(
        server_url=live_bridge.url, public_base_url=PUBLIC_BASE_URL, auth_token=AUTH_TOKEN
    )
    return {"dial_out": dial_out, "owned_numbers": [OURS]}


@dataclass
class Outbound:
    answers: list[tuple[int, dict[str, Any]]]  # what POST /api/calls answered (each request)
    leg: OutboundLeg  # the call as the callee side lived it
    creates: list  # the REST API's create requests
    updates: list  # ... and updates of the call
    problems: list[str]  # parameters or TwiML Twilio would not know

    @property
    def placed(self) -> dict[str, Any]:
        return self.answers[0][1]


def place_and_follow(live_bridge, token: str, plan: CalleePlan, body: dict, *, key: str = ""):
    """POST the call (twice with a key: a client's retry), let the callee live it out."""

    async def scenario(_model, _caller):
        rest = live_bridge.twilio_rest
        rest.plan_callee(TO, plan)
        answers = [await asyncio.to_thread(api_post, live_bridge.url, token, body, key=key)]
        if key:
            answers.append(await asyncio.to_thread(api_post, live_bridge.url, token, body, key=key))
        status, placed = answers[0]
        assert status == 201, placed
        leg = await rest.wait_leg(placed["call_sid"], 60)
        updates = rest.updates(placed["call_sid"])
        return Outbound(answers, leg, rest.creates(), updates, list(rest.problems))

    return live_bridge.run(scenario, rest=dialling(live_bridge))


def ended(call_id: str, statuses: tuple[str, ...]):
    from calls.models import Call

    def done() -> Call | None:
        call = Call.objects.filter(pk=call_id).first()
        return call if call and call.status in statuses and call.ended_at else None

    return wait_for(done, 20, f"call {call_id} to end")


def callbacks_answered(leg) -> list[tuple[str, str | None, int | None]]:
    return [(c.kind, c.call_status, c.status) for c in leg.callbacks]


def test_a_person_answers_hears_the_greeting_and_the_call_is_on_the_record(
    live_bridge, token, clinic
) -> None:
    body = {"to": TO, "agent": "clinic", "context": CONTEXT}
    outbound = place_and_follow(live_bridge, token, CalleePlan("human", ring_s=0.5), body)
    leg = outbound.leg
    assert outbound.problems == []  # every request as Twilio documents it
    call = finished_call(outbound.placed["id"])
    # Twilio's `completed` callback can close the call before the bridge has stored the
    # recording: wait for the bridge's finalization too.
    wait_for(lambda: call.recordings.exists(), 20, "the recording")
    rows = call_rows(call)
    assert (call.direction, call.answered_by, call.caller) == ("outbound-api", "human", TO)
    assert leg.answered_by == "human" and leg.errors == []
    # Every callback Twilio sent was taken: initiated, ringing, answered, completed, AMD.
    statuses = [c.call_status for c in leg.status_callbacks()]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
    assert {c.status for c in leg.callbacks} == {200}
    assert [c.params["AnsweredBy"] for c in leg.amd_callbacks()] == ["human"]
    # The agent waited for detection: nothing played while the person said "Hello?" and
    # Twilio listened for the silence after it; then the greeting, filled from the context.
    hello_end_ms = leg.caller.speech_spans_ms[0][1]
    first_agent_audio_ms = leg.caller.agent_arrivals[0][0]
    assert first_agent_audio_ms > hello_end_ms + 1000
    greeting = rows.transcripts[0]
    assert greeting.speaker == "agent"
    assert greeting.text == "Hello Ada, this is the clinic calling about your appointment."
    assert any(line.speaker == "caller" for line in rows.transcripts)
    assert sum(line.speaker == "agent" for line in rows.transcripts) >= 2  # greeting and reply
    assert rows.recording is not None and rows.recording.duration_s > 3
    assert call.duration_s is not None and call.answered_at is not None
    [create] = outbound.creates
    assert create.form["From"] == [OURS] and create.form["To"] == [TO]


def test_a_machine_gets_the_voicemail_message_after_the_beep_then_the_call_hangs_up(
    live_bridge, token, clinic
) -> None:
    body = {"to": TO, "agent": "clinic", "context": CONTEXT, "machine_detection": "voicemail",
            "voicemail_message": MESSAGE}  # fmt: skip
    plan = CalleePlan("machine", ring_s=0.5, machine_greeting_s=3.0)
    outbound = place_and_follow(live_bridge, token, plan, body)
    leg = outbound.leg
    call = ended(outbound.placed["id"], ("completed",))
    assert call.end_reason == "voicemail: message left"
    assert (call.answered_by, leg.answered_by) == ("machine_end_beep", "machine_end_beep")
    # Nothing was said over the machine's greeting or its beep; the message came after it,
    # was left whole (the hang-up waited for it to play) and is the agent's line.
    beep_end_ms = (plan.machine_greeting_s + plan.beep_s) * 1000
    assert leg.caller.agent_arrivals[0][0] >= beep_end_ms
    assert leg.message_ms > 1500
    assert len(leg.message) == len(leg.caller.played)
    lines = call_rows(call).transcripts
    assert [(line.speaker, line.text) for line in lines if line.speaker == "agent"] == [
        ("agent", "Hi Ada, this is the clinic. Please call us back about Tuesday.")
    ]
    # Hung up through Twilio's REST API, as documented.
    assert [u.form for u in outbound.updates] == [{"Status": ["completed"]}]
    assert leg.ended_by == "twilio"


def test_with_hangup_a_machine_is_hung_up_on_without_a_word(live_bridge, token, clinic) -> None:
    body = {"to": TO, "agent": "clinic", "context": CONTEXT}  # machine_detection: hangup
    plan = CalleePlan("machine", ring_s=0.5, machine_greeting_s=3.0)
    outbound = place_and_follow(live_bridge, token, plan, body)
    call = ended(outbound.placed["id"], ("completed",))
    assert call.end_reason == "voicemail"
    assert outbound.leg.caller.agent_audio == bytearray() and outbound.leg.message_ms == 0
    assert [u.form for u in outbound.updates] == [{"Status": ["completed"]}]
    assert not call.transcripts.filter(speaker="agent").exists()


@pytest.mark.parametrize("outcome", ["busy", "no-answer"])
def test_a_call_nobody_answers_ends_on_the_record(live_bridge, token, clinic, outcome) -> None:
    body = {"to": TO, "agent": "clinic", "context": CONTEXT}
    outbound = place_and_follow(live_bridge, token, CalleePlan(outcome, ring_s=0.5), body)
    leg = outbound.leg
    call = ended(outbound.placed["id"], (outcome,))
    assert leg.caller is None  # no media stream was ever opened
    assert (call.stream_sid, call.answered_at, call.answered_by) == ("", None, "")
    assert not call.recordings.exists()
    assert [c.call_status for c in leg.status_callbacks()][-1] == outcome


def test_a_retried_request_with_the_same_idempotency_key_dials_once(
    live_bridge, token, clinic
) -> None:
    body = {"to": TO, "agent": "clinic", "context": CONTEXT}
    outbound = place_and_follow(
        live_bridge, token, CalleePlan("busy", ring_s=0.2), body, key="remind-ada-tuesday"
    )
    (first_status, first), (again_status, again) = outbound.answers
    assert (first_status, again_status) == (201, 201)
    assert again["id"] == first["id"] and again["call_sid"] == first["call_sid"]
    assert len(outbound.creates) == 1


def test_twilios_refusal_is_a_clear_error_and_a_failed_call(live_bridge, token, clinic) -> None:
    """The account has not verified the caller id: Twilio answers 400, code 21210."""
    body = {"to": TO, "agent": "clinic", "from": NOT_VERIFIED, "context": CONTEXT}

    async def scenario(_model, _caller):
        return await asyncio.to_thread(api_post, live_bridge.url, token, body)

    status, answer = live_bridge.run(scenario, rest=dialling(live_bridge))
    assert status == 400
    error = answer["error"]
    assert (error["code"], error["details"]["twilio_code"]) == ("twilio_refused", 21210)
    assert NOT_VERIFIED in error["message"]
    call = ended(error["details"]["call_id"], ("failed",))
    assert "21210" in call.end_reason and call.call_sid is None


def test_the_greeting_waits_for_detection_at_most_its_timeout(
    live_bridge, token, clinic, settings, monkeypatch
) -> None:
    """Twilio's detection result never arrives (lost): the agent does not stay silent for
    ever; it speaks once OUTBOUND_AMD_TIMEOUT_S (and the grace after it) has passed."""
    from calls import services
    from realtime.bridge import AMD_GRACE_S

    settings.OUTBOUND_AMD_TIMEOUT_S = 3
    monkeypatch.setattr(services, "call_answered_by_apply", lambda **kwargs: None)
    body = {"to": TO, "agent": "clinic", "context": CONTEXT}
    outbound = place_and_follow(live_bridge, token, CalleePlan("human", ring_s=0.2), body)
    call = finished_call(outbound.placed["id"])
    bound_ms = (settings.OUTBOUND_AMD_TIMEOUT_S + AMD_GRACE_S) * 1000
    first_agent_audio_ms = outbound.leg.caller.agent_arrivals[0][0]
    assert bound_ms - 500 < first_agent_audio_ms < bound_ms + 3000
    assert call.answered_by == ""  # never said
    assert call.transcripts.filter(speaker="agent").exists()
