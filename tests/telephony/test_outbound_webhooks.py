"""An outbound call's webhooks: answering machine detection's result (/twilio/amd-status) and
status callbacks, both signed by Twilio over URLs that name our call."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from twilio.request_validator import RequestValidator

from calls import services
from calls.models import Call, CallStatus

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://voice.example.com"
ACCOUNT = "AC" + "b" * 32
CALL_SID = "CA" + "d" * 32

pytestmark = [pytest.mark.django_db]


@pytest.fixture(autouse=True)
def twilio_settings():
    with override_settings(TWILIO_AUTH_TOKEN=AUTH_TOKEN, PUBLIC_BASE_URL=PUBLIC):
        yield


@pytest.fixture
def outbound_call(make_agent) -> Call:
    """An outbound call as POST /api/calls leaves it: queued, Twilio's CallSid not yet read."""
    return services.call_create_outbound(
        agent=make_agent(), to="+15550009999", from_="+18005550100", agent_snapshot={},
        outbound={"machine_detection": "hangup"},
    )  # fmt: skip


def signed_post(client: Client, path: str, params: dict[str, str], *, token: str = AUTH_TOKEN):
    signature = RequestValidator(token).compute_signature(PUBLIC + path, params)
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature, HTTP_HOST="127.0.0.1")


def amd(answered_by: str, **extra: str) -> dict[str, str]:
    return {"CallSid": CALL_SID, "AccountSid": ACCOUNT, "AnsweredBy": answered_by,
            "MachineDetectionDuration": "2350", **extra}  # fmt: skip


def test_the_amd_result_is_recorded_once(client: Client, outbound_call: Call) -> None:
    path = f"/twilio/amd-status?call={outbound_call.pk}"
    assert signed_post(client, path, amd("machine_end_beep")).status_code == 200
    outbound_call.refresh_from_db()
    # The callback came before Twilio's answer to the create: it brings the CallSid.
    assert (outbound_call.answered_by, outbound_call.call_sid) == ("machine_end_beep", CALL_SID)
    assert outbound_call.metadata.custom["machine_detection"] == {
        "answered_by": "machine_end_beep",
        "detection_ms": 2350,
    }
    # The first answer is the one the bridge acted on: a later one changes nothing.
    assert signed_post(client, path, amd("human")).status_code == 200
    outbound_call.refresh_from_db()
    assert outbound_call.answered_by == "machine_end_beep"


@pytest.mark.parametrize("signature", ["", "bogus"])
def test_an_unsigned_amd_result_is_refused(client: Client, outbound_call, signature) -> None:
    path = f"/twilio/amd-status?call={outbound_call.pk}"
    response = client.post(path, amd("human"), HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 403
    outbound_call.refresh_from_db()
    assert outbound_call.answered_by == ""


def test_a_signature_over_another_call_is_refused(client: Client, outbound_call, make_agent):
    """Twilio signs the URL with its query: a result signed for one call cannot be replayed
    against another by changing ?call=."""
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        f"{PUBLIC}/twilio/amd-status?call=00000000-0000-0000-0000-000000000000", amd("human")
    )
    response = client.post(
        f"/twilio/amd-status?call={outbound_call.pk}", amd("human"),
        HTTP_X_TWILIO_SIGNATURE=signature,
    )  # fmt: skip
    assert response.status_code == 403


def test_bad_amd_results_are_400(client: Client, outbound_call: Call) -> None:
    path = f"/twilio/amd-status?call={outbound_call.pk}"
    assert signed_post(client, path, amd("")).status_code == 400
    assert (
        signed_post(client, path, amd("human", MachineDetectionDuration="soon")).status_code == 400
    )
    assert signed_post(client, path, {"AnsweredBy": "human"}).status_code == 400


def test_an_unexpected_answer_is_kept_as_unknown(client: Client, outbound_call: Call) -> None:
    path = f"/twilio/amd-status?call={outbound_call.pk}"
    assert signed_post(client, path, amd("robot")).status_code == 200
    outbound_call.refresh_from_db()
    assert outbound_call.answered_by == "unknown"


def test_a_result_for_an_unknown_call_is_acknowledged(client: Client) -> None:
    assert signed_post(client, "/twilio/amd-status", amd("human")).status_code == 200
    assert not Call.objects.exists()


def status(call_status: str, sequence: int, **extra: str) -> dict[str, str]:
    return {"CallSid": CALL_SID, "AccountSid": ACCOUNT, "CallStatus": call_status,
            "Direction": "outbound-api", "SequenceNumber": str(sequence), **extra}  # fmt: skip


def test_outbound_status_callbacks_move_the_call_on(client: Client, outbound_call: Call) -> None:
    path = f"/twilio/call-status?call={outbound_call.pk}"
    for call_status, sequence in (("initiated", 0), ("ringing", 1), ("in-progress", 2)):
        assert signed_post(client, path, status(call_status, sequence)).status_code == 200
    outbound_call.refresh_from_db()
    assert (outbound_call.call_sid, outbound_call.status) == (CALL_SID, CallStatus.IN_PROGRESS)
    # Out of order: the late `ringing` changes nothing; the end closes the call.
    signed_post(client, path, status("completed", 3, CallDuration="42"))
    signed_post(client, path, status("ringing", 1))
    outbound_call.refresh_from_db()
    assert (outbound_call.status, outbound_call.duration_s) == (CallStatus.COMPLETED, 42)
    assert outbound_call.ended_at is not None


@pytest.mark.parametrize("final", ["busy", "no-answer", "failed"])
def test_a_call_never_answered_ends_with_its_status(client, outbound_call, final) -> None:
    path = f"/twilio/call-status?call={outbound_call.pk}"
    signed_post(client, path, status("ringing", 1))
    signed_post(client, path, status(final, 2, CallDuration="0"))
    outbound_call.refresh_from_db()
    assert (outbound_call.status, outbound_call.stream_sid) == (final, "")
    assert outbound_call.ended_at is not None and outbound_call.answered_at is None


def test_the_call_id_cannot_take_over_another_calls_sid(client, outbound_call, make_call):
    """?call= only gives a CallSid to a call that has none: a call with its own is not moved."""
    other = make_call(call_sid="CA" + "e" * 32, status=CallStatus.IN_PROGRESS)
    path = f"/twilio/call-status?call={other.pk}"
    signed_post(client, path, status("completed", 1))
    other.refresh_from_db()
    outbound_call.refresh_from_db()
    assert (other.call_sid, other.status) == ("CA" + "e" * 32, CallStatus.IN_PROGRESS)
    assert outbound_call.call_sid is None


def test_an_unsigned_status_callback_is_refused(client: Client, outbound_call: Call) -> None:
    path = f"/twilio/call-status?call={outbound_call.pk}"
    response = client.post(path, status("completed", 3), HTTP_X_TWILIO_SIGNATURE="bogus")
    assert response.status_code == 403
    outbound_call.refresh_from_db()
    assert (outbound_call.status, outbound_call.call_sid) == (CallStatus.QUEUED, None)
