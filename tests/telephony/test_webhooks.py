"""Twilio's webhooks: signatures over the public URL, the call record, TwiML, status order."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from django.test import Client, override_settings
from twilio.request_validator import RequestValidator

from calls.models import Call, CallMetadata
from telephony.security import account_sid_allowed, stream_token_valid

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://voice.example.com"
OUR_ACCOUNT = "AC" + "b" * 32  # what incoming_params() sends
OTHER_ACCOUNT = "AC" + "c" * 32

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("twilio_settings"),
]


@pytest.fixture
def twilio_settings():
    with override_settings(TWILIO_AUTH_TOKEN=AUTH_TOKEN, PUBLIC_BASE_URL=PUBLIC):
        yield


def incoming_params(**overrides: str) -> dict[str, str]:
    params = {
        "CallSid": "CA" + "a" * 32,
        "AccountSid": "AC" + "b" * 32,
        "From": "+14155550123",
        "To": "+14155550100",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
        "FromCity": "SAN FRANCISCO",
        "FromState": "CA",
        "FromCountry": "US",
        "CallerName": "",
    }
    params.update(overrides)
    return params


def signed_post(client: Client, path: str, params: dict[str, str], *, url: str | None = None):
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url or PUBLIC + path, params)
    # Served on another host and scheme than the public one, as behind a TLS proxy.
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature, HTTP_HOST="127.0.0.1")


def test_bad_signature_is_403(client: Client) -> None:
    response = client.post(
        "/twilio/incoming-call", incoming_params(), HTTP_X_TWILIO_SIGNATURE="bogus"
    )
    assert response.status_code == 403
    assert Call.objects.count() == 0


def test_missing_signature_is_403(client: Client) -> None:
    assert client.post("/twilio/incoming-call", incoming_params()).status_code == 403


def test_signature_over_the_internal_url_is_rejected(client: Client) -> None:
    response = signed_post(
        client,
        "/twilio/incoming-call",
        incoming_params(),
        url="http://127.0.0.1/twilio/incoming-call",
    )
    assert response.status_code == 403


def test_incoming_call_creates_call_and_metadata(client: Client) -> None:
    response = signed_post(client, "/twilio/incoming-call", incoming_params())
    assert response.status_code == 200
    call = Call.objects.get()
    assert (call.caller, call.direction, call.status) == ("+14155550123", "inbound", "ringing")
    metadata = CallMetadata.objects.get(call=call)
    assert (metadata.city, metadata.state, metadata.country) == ("SAN FRANCISCO", "CA", "US")
    assert metadata.caller_name == ""  # Twilio's empty string means unknown
    assert metadata.custom["webhook"]["ApiVersion"] == "2010-04-01"
    assert hasattr(call, "analytics")


def test_incoming_call_answers_connect_stream_twiml_with_token(client: Client) -> None:
    response = signed_post(client, "/twilio/incoming-call", incoming_params())
    assert response["Content-Type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    stream = root.find("./Connect/Stream")
    assert stream is not None
    assert stream.get("url") == "wss://voice.example.com/streams"
    parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    call = Call.objects.get()
    assert parameters["callId"] == str(call.id)
    assert stream_token_valid(str(call.id), call.call_sid, parameters["token"])
    assert not stream_token_valid(str(call.id), "CAother", parameters["token"])
    # Nothing follows <Connect>: when our side closes the stream, Twilio asks its action URL.
    assert [child.tag for child in root] == ["Connect"]
    assert root.find("./Connect").get("action") == f"{PUBLIC}/twilio/stream-ended"


def test_a_greeting_before_the_stream_is_a_setting(client: Client) -> None:
    with override_settings(TWILIO_GREETING="Hello!"):
        response = signed_post(client, "/twilio/incoming-call", incoming_params())
    root = ET.fromstring(response.content)
    assert (root[0].tag, root[0].text) == ("Say", "Hello!")


def test_the_dialled_number_picks_the_agent_and_the_call_keeps_its_snapshot(client: Client):
    from agents.models import Agent, PhoneNumber

    sales = Agent.objects.create(
        name="Sales", slug="sales", instructions="Sell.", voice="cedar", model="gpt-realtime"
    )
    PhoneNumber.objects.create(agent=sales, number="+14155550100")
    signed_post(client, "/twilio/incoming-call", incoming_params())
    call = Call.objects.get()
    assert (call.agent, call.agent_version) == (sales, sales.version)
    assert call.agent_snapshot["agent"]["instructions"] == "Sell."
    session = call.agent_snapshot["session"]["session"]
    assert (session["instructions"], session["audio"]["output"]["voice"]) == ("Sell.", "cedar")


def test_a_number_of_no_agent_reaches_the_default_agent(client: Client) -> None:
    from agents.models import Agent

    default = Agent.objects.get(is_default=True)  # seeded at migrate from the environment
    signed_post(client, "/twilio/incoming-call", incoming_params(To="+14155559999"))
    call = Call.objects.get()
    assert call.agent == default
    assert call.agent_snapshot["version"] == default.version


def ended_call(reason: str) -> Call:
    signed_post(Client(), "/twilio/incoming-call", incoming_params())
    call = Call.objects.get()
    Call.objects.filter(pk=call.pk).update(end_reason=reason)
    return call


def test_a_stream_the_bridge_ended_on_purpose_hangs_up(client: Client) -> None:
    ended_call("time limit reached")
    response = signed_post(client, "/twilio/stream-ended", incoming_params())
    assert [child.tag for child in ET.fromstring(response.content)] == ["Hangup"]


@pytest.mark.parametrize("reason", ["", "model unavailable: HTTP 503", "server shutting down"])
def test_a_stream_lost_otherwise_plays_the_fallback(client: Client, reason: str) -> None:
    ended_call(reason)
    with override_settings(FALLBACK_MESSAGE="Sorry!", FALLBACK_DIAL_NUMBER="+14155550199"):
        response = signed_post(client, "/twilio/stream-ended", incoming_params())
    root = ET.fromstring(response.content)
    assert [(child.tag, child.text) for child in root] == [
        ("Say", "Sorry!"),
        ("Dial", "+14155550199"),
    ]
    with override_settings(FALLBACK_MESSAGE="Sorry!", FALLBACK_DIAL_NUMBER=""):
        response = signed_post(client, "/twilio/stream-ended", incoming_params())
    assert [child.tag for child in ET.fromstring(response.content)] == ["Say", "Hangup"]


def test_stream_ended_is_signed_like_every_webhook(client: Client) -> None:
    response = client.post("/twilio/stream-ended", incoming_params())
    assert response.status_code == 403


def test_retried_incoming_call_does_not_duplicate(client: Client) -> None:
    signed_post(client, "/twilio/incoming-call", incoming_params())
    signed_post(client, "/twilio/incoming-call", incoming_params())
    assert Call.objects.count() == 1
    assert CallMetadata.objects.count() == 1


def test_incoming_call_without_call_sid_is_400(client: Client) -> None:
    response = signed_post(client, "/twilio/incoming-call", incoming_params(CallSid=""))
    assert response.status_code == 400
    assert b"CallSid" in response.content


def _status(client: Client, status: str, sequence: int | None, **extra: str):
    params = {"CallSid": "CA" + "a" * 32, "CallStatus": status, **extra}
    if sequence is not None:
        params["SequenceNumber"] = str(sequence)
    return signed_post(client, "/twilio/call-status", params)


def test_call_status_updates_status_duration_and_times(client: Client) -> None:
    signed_post(client, "/twilio/incoming-call", incoming_params())
    assert _status(client, "in-progress", 0).status_code == 200
    call = Call.objects.get()
    assert call.status == "in-progress" and call.answered_at is not None
    _status(client, "completed", 1, CallDuration="42")
    call.refresh_from_db()
    assert call.status == "completed"
    assert call.duration_s == 42
    assert call.ended_at is not None


def test_out_of_order_callbacks_never_reopen_a_finished_call(client: Client) -> None:
    signed_post(client, "/twilio/incoming-call", incoming_params())
    _status(client, "completed", 3, CallDuration="10")
    _status(client, "in-progress", 1)  # late
    _status(client, "ringing", None)  # no sequence, still not allowed to reopen
    call = Call.objects.get()
    assert call.status == "completed"
    assert call.status_sequence == 3


def test_unknown_call_sid_is_acknowledged_and_creates_nothing(client: Client) -> None:
    response = signed_post(
        client, "/twilio/call-status", {"CallSid": "CAunknown", "CallStatus": "completed"}
    )
    assert response.status_code == 200
    assert Call.objects.count() == 0


def test_malformed_status_numbers_are_400(client: Client) -> None:
    signed_post(client, "/twilio/incoming-call", incoming_params())
    response = _status(client, "completed", None, CallDuration="ten")
    assert response.status_code == 400
    assert b"CallDuration" in response.content


def test_webhooks_accept_only_post(client: Client) -> None:
    assert client.get("/twilio/incoming-call").status_code == 405


def test_account_sid_allowed_only_names_our_account() -> None:
    with override_settings(TWILIO_ACCOUNT_SID=OUR_ACCOUNT):
        assert account_sid_allowed(OUR_ACCOUNT)
        assert not account_sid_allowed(OTHER_ACCOUNT)
        assert not account_sid_allowed("")
        assert not account_sid_allowed(OUR_ACCOUNT + " ")
        assert not account_sid_allowed("AC" + "é" * 32)
    with override_settings(TWILIO_ACCOUNT_SID=""):  # development without the setting
        assert account_sid_allowed(OTHER_ACCOUNT)
        assert account_sid_allowed("")


@override_settings(TWILIO_ACCOUNT_SID=OUR_ACCOUNT)
def test_incoming_call_for_another_account_is_403_and_creates_nothing(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    # Validly signed: only the account tells it apart.
    response = signed_post(
        client, "/twilio/incoming-call", incoming_params(AccountSid=OTHER_ACCOUNT)
    )
    assert response.status_code == 403
    assert b"AccountSid" in response.content
    assert Call.objects.count() == 0
    assert CallMetadata.objects.count() == 0
    [warning] = [r for r in caplog.records if r.name == "telephony.views"]
    assert warning.levelname == "WARNING"
    assert OTHER_ACCOUNT in warning.getMessage()
    assert "/twilio/incoming-call" in warning.getMessage()


@override_settings(TWILIO_ACCOUNT_SID=OUR_ACCOUNT)
def test_incoming_call_without_account_sid_is_403(client: Client) -> None:
    params = incoming_params()
    del params["AccountSid"]
    assert signed_post(client, "/twilio/incoming-call", params).status_code == 403
    assert Call.objects.count() == 0


@override_settings(TWILIO_ACCOUNT_SID=OUR_ACCOUNT)
def test_our_account_is_served(client: Client) -> None:
    assert signed_post(client, "/twilio/incoming-call", incoming_params()).status_code == 200
    assert _status(client, "in-progress", 0, AccountSid=OUR_ACCOUNT).status_code == 200
    assert Call.objects.get().status == "in-progress"


@override_settings(TWILIO_ACCOUNT_SID=OUR_ACCOUNT)
def test_status_callback_for_another_account_is_403_and_changes_nothing(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    signed_post(client, "/twilio/incoming-call", incoming_params())
    before = Call.objects.get()
    response = _status(client, "completed", 5, CallDuration="42", AccountSid=OTHER_ACCOUNT)
    assert response.status_code == 403
    after = Call.objects.get()
    assert (after.status, after.duration_s, after.ended_at, after.status_sequence) == (
        before.status,
        before.duration_s,
        before.ended_at,
        before.status_sequence,
    )
    assert after.status == "ringing"
    assert any(
        r.levelname == "WARNING" and "/twilio/call-status" in r.getMessage()
        for r in caplog.records
        if r.name == "telephony.views"
    )
