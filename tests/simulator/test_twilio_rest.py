"""The Twilio REST stand-in (issue 22) answers as Twilio's 2010-04-01 Calls API does, driven by
the `twilio` package's own client pointed at it; faults on demand; a record of every request;
and the simulated caller acting on the server's REST requests as Twilio does (a hang-up ends
the media stream, a redirect leaves <Connect> for the new TwiML). Loopback only, bounded."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from sim_support import AUTH_TOKEN, PUBLIC_BASE_URL, FakeBridge
from support import REPO_ROOT, free_port
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.rest.api.v2010.account.call import CallInstance
from websockets.asyncio.server import ServerConnection

from bridge_project.config import STANDIN_ACCOUNT_SID, STANDIN_AUTH_TOKEN
from simulator.twilio.caller import SimulatedTwilioCaller
from simulator.twilio.rest import TwilioRestStandIn
from simulator.twilio.script import Silence

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

CALL_SID = "CA" + "1" * 32
OTHER_ACCOUNT = "AC" + "f" * 32
TWIML = "<Response><Say>Hello</Say></Response>"
CREATE = {"To": "+15550001111", "From": "+15550002222", "Twiml": TWIML}


@pytest.fixture
async def rest() -> AsyncIterator[TwilioRestStandIn]:
    async with TwilioRestStandIn() as standin:
        yield standin


def client_for(standin: TwilioRestStandIn, token: str = STANDIN_AUTH_TOKEN) -> Client:
    """The `twilio` package's client, pointed at the stand-in as the product points it."""
    client = Client(STANDIN_ACCOUNT_SID, token)
    client.api.base_url = standin.url
    return client


def raw(
    standin: TwilioRestStandIn,
    method: str,
    path: str,
    form: dict[str, str] | list[tuple[str, str]] | None = None,
    *,
    auth: tuple[str, str] | None = (STANDIN_ACCOUNT_SID, STANDIN_AUTH_TOKEN),
) -> tuple[int, dict[str, str], Any]:
    """One plain HTTP request: status, headers, parsed JSON body (or None)."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(standin.url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read()
            return response.status, dict(response.headers), json.loads(body) if body else None
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def calls_path(account: str = STANDIN_ACCOUNT_SID, sid: str | None = None) -> str:
    tail = f"Calls/{sid}.json" if sid else "Calls.json"
    return f"/2010-04-01/Accounts/{account}/{tail}"


def instance_fields() -> list[str]:
    """The JSON fields CallInstance reads: Twilio's call resource, as its client knows it."""
    return re.findall(r'payload\.get\(\s*"([a-z_]+)"', inspect.getsource(CallInstance.__init__))


# --- the API, through Twilio's client ---------------------------------------------------------


async def test_create_answers_twilios_call_resource(rest: TwilioRestStandIn):
    def create() -> CallInstance:
        return client_for(rest).calls.create(
            to="+15550001111",
            from_="+15550002222",
            twiml=TWIML,
            status_callback="https://voice.example.com/twilio/call-status",
            status_callback_event=["initiated", "ringing", "answered", "completed"],
            machine_detection="Enable",
            async_amd="true",
            async_amd_status_callback="https://voice.example.com/twilio/amd",
        )

    call = await asyncio.to_thread(create)
    assert call.sid is not None and re.fullmatch(r"CA[0-9a-f]{32}", call.sid)
    assert (call.status, call.direction, call.to, call._from) == (
        "queued",
        "outbound-api",
        "+15550001111",
        "+15550002222",
    )
    assert call.to_formatted == "(555) 000-1111" and call.api_version == "2010-04-01"
    assert call.account_sid == STANDIN_ACCOUNT_SID
    assert call.uri == calls_path(sid=call.sid)
    assert call.date_created is not None and call.start_time is None
    # The body has exactly the fields Twilio's client reads, in Twilio's date format.
    status, _, body = await asyncio.to_thread(raw, rest, "GET", calls_path(sid=call.sid))
    assert status == 200 and sorted(body) == sorted(instance_fields())
    assert parsedate_to_datetime(body["date_created"]).utcoffset().total_seconds() == 0
    assert (
        body["subresource_uris"]["recordings"] == calls_path(sid=call.sid)[:-5] + "/Recordings.json"
    )
    # The request as recorded: repeated StatusCallbackEvent, Basic auth of the account.
    created = rest.creates()[0]
    assert created.status == 201
    assert created.form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert created.auth == (STANDIN_ACCOUNT_SID, STANDIN_AUTH_TOKEN)
    assert rest.call(call.sid).params["Twiml"] == [TWIML]
    assert rest.problems == []


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": "+15550002222", "Twiml": TWIML}, 21201),
        ({"To": "+15550001111", "Twiml": TWIML}, 21213),
        ({"To": "+15550001111", "From": "+15550002222"}, 21205),
        ({"To": "+15550001111", "From": "+15550002222", "Url": "not a url"}, 21205),
        ({"To": "+15550001111", "From": "+15550002222", "Twiml": "<Response>" + "x" * 4000}, 32018),
        ({"To": "555-1111", "From": "+15550002222", "Twiml": TWIML}, 21211),
        ({"To": "+15550001111", "From": "twilio", "Twiml": TWIML}, 21212),
        ({**CREATE, "StatusCallbackEvent": "hangup"}, 21626),
        ({**CREATE, "StatusCallback": "ftp://x"}, 21609),
        ({**CREATE, "Method": "PUT"}, 20001),
        ({**CREATE, "MachineDetection": "Yes"}, 20001),
        ({**CREATE, "AsyncAmd": "yes"}, 20001),
        ({**CREATE, "Timeout": "soon"}, 20001),
    ],
)  # fmt: skip
async def test_a_bad_create_is_refused_with_twilios_code(
    rest: TwilioRestStandIn, form: dict[str, str], code: int
):
    status, _, body = await asyncio.to_thread(raw, rest, "POST", calls_path(), form)
    assert (status, body["code"], body["status"]) == (400, code, 400)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert not rest.calls


async def test_a_create_from_a_number_not_owned_is_refused():
    async with TwilioRestStandIn(owned_numbers=["+15550002222"]) as standin:
        form = {"To": "+15550001111", "From": "+15550009999", "Url": "https://x.example/t"}
        status, _, body = await asyncio.to_thread(raw, standin, "POST", calls_path(), form)
        assert (status, body["code"]) == (400, 21210)
        form["From"] = "+15550002222"
        status, _, body = await asyncio.to_thread(raw, standin, "POST", calls_path(), form)
        assert status == 201 and body["from_formatted"] == "(555) 000-2222"


async def test_unknown_parameters_are_ignored_as_twilio_ignores_them_and_noted(
    rest: TwilioRestStandIn,
):
    form = {"To": "+15550001111", "From": "+15550002222", "Twiml": "<Say>no Response</Say>"}
    status, _, _ = await asyncio.to_thread(
        raw, rest, "POST", calls_path(), {**form, "Colour": "red"}
    )
    assert status == 201
    assert rest.problems == [
        "create: 'Colour' is not a parameter of Twilio's (ignored)",
        "create: TwiML's root element is <Say>, not <Response> "
        "(Twilio fails the call: error 12100)",
    ]


async def test_hang_up_redirect_and_fetch_a_registered_call(rest: TwilioRestStandIn):
    rest.register_call(CALL_SID, "+14155550123", "+14155550100")
    dial = '<Response><Dial callerId="+14155550100"><Number>+15550003333</Number></Dial></Response>'

    def scenario() -> tuple[CallInstance, CallInstance, CallInstance, TwilioRestException]:
        calls = client_for(rest).calls
        fetched = calls(CALL_SID).fetch()
        redirected = calls(CALL_SID).update(twiml=dial)
        hung_up = calls(CALL_SID).update(status="completed")
        with pytest.raises(TwilioRestException) as refused:
            calls(CALL_SID).update(twiml=TWIML)
        return fetched, redirected, hung_up, refused.value

    fetched, redirected, hung_up, refused = await asyncio.to_thread(scenario)
    assert (fetched.status, fetched.direction, fetched._from) == (
        "in-progress",
        "inbound",
        "+14155550123",
    )
    assert fetched.start_time is not None and fetched.end_time is None
    assert redirected.status == "in-progress"
    assert hung_up.status == "completed" and hung_up.end_time is not None
    assert hung_up.duration is not None
    # An ended call cannot be updated: Twilio's 21220.
    assert (refused.status, refused.code) == (400, 21220)
    assert "Call is not in-progress. Cannot redirect." in refused.msg
    call = rest.call(CALL_SID)
    assert [r.twiml for r in call.redirects] == [dial] and call.ended_by_rest
    assert [(r.value("Twiml"), r.value("Status"), r.status) for r in rest.updates(CALL_SID)] == [
        (dial, None, 200),
        (None, "completed", 200),
        (TWIML, None, 400),
    ]


async def test_cancel_ends_only_a_call_not_yet_answered(rest: TwilioRestStandIn):
    rest.register_call(CALL_SID, "+14155550123", "+14155550100")
    ringing = rest.register_call("CA" + "2" * 32, "+14155550123", "+14155550100", status="ringing")

    def cancel(sid: str) -> str:
        return str(client_for(rest).calls(sid).update(status="canceled").status)

    assert await asyncio.to_thread(cancel, CALL_SID) == "in-progress"  # documented: no effect
    assert await asyncio.to_thread(cancel, ringing.sid) == "canceled"
    # Hanging up a call nobody answered cancels it too.
    queued = rest.register_call("CA" + "3" * 32, "+1415", "+1416", status="queued")
    assert (
        await asyncio.to_thread(
            lambda: client_for(rest).calls(queued.sid).update(status="completed").status
        )
        == "canceled"
    )


async def test_a_bad_update_is_refused(rest: TwilioRestStandIn):
    rest.register_call(CALL_SID, "+14155550123", "+14155550100")
    cases = [
        ({"Status": "busy"}, 20001),
        ({"Url": "/relative"}, 21205),
        ({"Twiml": "<Response>" + "x" * 4000 + "</Response>"}, 32018),
        ({"Url": "https://x.example/t", "Method": "DELETE"}, 20001),
    ]
    for form, code in cases:
        status, _, body = await asyncio.to_thread(raw, rest, "POST", calls_path(sid=CALL_SID), form)
        assert (status, body["code"]) == (400, code), form
    assert rest.call(CALL_SID).status == "in-progress" and not rest.call(CALL_SID).redirects


async def test_authentication_is_twilios(rest: TwilioRestStandIn):
    rest.register_call(CALL_SID, "+14155550123", "+14155550100")
    path = calls_path(sid=CALL_SID)
    for auth in (None, (STANDIN_ACCOUNT_SID, "0" * 32), ("AC" + "9" * 32, STANDIN_AUTH_TOKEN)):
        status, headers, body = await asyncio.to_thread(raw, rest, "GET", path, auth=auth)
        assert status == 401
        assert body == {
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
            "detail": "Your AccountSid or AuthToken was incorrect.",
        }
        assert headers["WWW-Authenticate"] == 'Basic realm="Twilio API"'
    # Another account's path with our credentials: refused too.
    status, _, _ = await asyncio.to_thread(raw, rest, "GET", calls_path(OTHER_ACCOUNT, CALL_SID))
    assert status == 401

    def bad_token() -> TwilioRestException:
        with pytest.raises(TwilioRestException) as refused:
            client_for(rest, token="0" * 32).calls(CALL_SID).fetch()
        return refused.value

    refused = await asyncio.to_thread(bad_token)
    assert (refused.status, refused.code) == (401, 20003)


async def test_an_unknown_call_or_path_is_twilios_404(rest: TwilioRestStandIn):
    status, _, body = await asyncio.to_thread(
        raw, rest, "POST", calls_path(sid=CALL_SID), {"Status": "completed"}
    )
    assert (status, body["code"]) == (404, 20404)
    assert body["message"] == f"The requested resource {calls_path(sid=CALL_SID)} was not found"
    # A call of another account is not found with this one's credentials.
    async with TwilioRestStandIn(
        accounts={STANDIN_ACCOUNT_SID: STANDIN_AUTH_TOKEN, OTHER_ACCOUNT: "a" * 32}
    ) as two:
        two.register_call(CALL_SID, "+1415", "+1416", OTHER_ACCOUNT)
        status, _, _ = await asyncio.to_thread(raw, two, "GET", calls_path(sid=CALL_SID))
        assert status == 404
        status, _, body = await asyncio.to_thread(
            raw, two, "GET", calls_path(OTHER_ACCOUNT, CALL_SID), auth=(OTHER_ACCOUNT, "a" * 32)
        )
        assert status == 200 and body["account_sid"] == OTHER_ACCOUNT
    status, _, body = await asyncio.to_thread(raw, rest, "GET", "/2010-04-01/Accounts.json")
    assert (status, body["code"]) == (404, 20404)


async def test_list_and_delete(rest: TwilioRestStandIn):
    rest.register_call(CALL_SID, "+14155550123", "+14155550100")

    def scenario() -> tuple[int, bool, int]:
        calls = client_for(rest).calls
        listed = len(calls.list())
        deleted = calls(CALL_SID).delete()
        return listed, deleted, len(calls.list())

    assert await asyncio.to_thread(scenario) == (1, True, 0)


# --- faults and the record --------------------------------------------------------------------


async def test_faults_answer_the_next_requests_then_twilio_answers_again(rest: TwilioRestStandIn):
    rest.register_call(CALL_SID, "+14155550123", "+14155550100")
    path = calls_path(sid=CALL_SID)
    rest.fail_next(429, retry_after_s=2)
    rest.fail_next(503, count=2)
    rest.fail_next(400, code=21220, message="Call is not in-progress. Cannot redirect.")
    answers = [await asyncio.to_thread(raw, rest, "GET", path) for _ in range(5)]
    assert [(status, body.get("code")) for status, _, body in answers] == [
        (429, 20429),
        (503, 20503),
        (503, 20503),
        (400, 21220),
        (200, None),
    ]
    assert answers[0][1]["Retry-After"] == "2"
    assert answers[3][2]["message"] == "Call is not in-progress. Cannot redirect."
    assert [r.status for r in rest.api_requests("GET", call_sid=CALL_SID)] == [
        429,
        503,
        503,
        400,
        200,
    ]

    def failing() -> TwilioRestException:
        rest.fail_next(500)
        with pytest.raises(TwilioRestException) as failed:
            client_for(rest).calls(CALL_SID).update(status="completed")
        return failed.value

    failed = await asyncio.to_thread(failing)
    assert (failed.status, failed.code) == (500, 20500)
    assert rest.call(CALL_SID).status == "in-progress"  # a faulted request changes nothing
    with pytest.raises(ValueError):
        rest.fail_next(302)


async def test_the_simulator_endpoints_register_report_and_fault_over_http(rest: TwilioRestStandIn):
    registered = await asyncio.to_thread(
        raw, rest, "POST", "/_simulator/calls",
        {"CallSid": CALL_SID, "From": "+14155550123", "To": "+14155550100", "Status": "ringing"},
        auth=None,
    )  # fmt: skip
    assert registered[0] == 201 and registered[2]["status"] == "ringing"
    await asyncio.to_thread(
        raw, rest, "POST", f"/_simulator/calls/{CALL_SID}", {"Status": "in-progress"}, auth=None
    )
    await asyncio.to_thread(raw, rest, "POST", calls_path(sid=CALL_SID), {"Twiml": TWIML})
    view = await asyncio.to_thread(raw, rest, "GET", f"/_simulator/calls/{CALL_SID}", auth=None)
    assert view[2] == {
        "sid": CALL_SID,
        "account_sid": STANDIN_ACCOUNT_SID,
        "status": "in-progress",
        "direction": "inbound",
        "ended_by_rest": False,
        "redirects": [{"twiml": TWIML, "url": None, "method": "POST"}],
    }
    listed = await asyncio.to_thread(
        raw, rest, "GET", f"/_simulator/requests?CallSid={CALL_SID}", auth=None
    )
    assert [(r["method"], r["form"], r["status"]) for r in listed[2]["requests"]] == [
        ("POST", {"Twiml": [TWIML]}, 200)
    ]
    await asyncio.to_thread(
        raw, rest, "POST", "/_simulator/faults", {"Status": "503", "Count": "1"}, auth=None
    )
    status, _, _ = await asyncio.to_thread(raw, rest, "GET", calls_path(sid=CALL_SID))
    assert status == 503
    # Only the API is recorded: none of the simulator's own requests.
    assert all(r.path.startswith("/2010-04-01/") for r in rest.requests)
    status, _, _ = await asyncio.to_thread(raw, rest, "GET", "/_simulator/nothing", auth=None)
    assert status == 404


async def test_connections_are_kept_alive_and_closed_on_stop():
    standin = await TwilioRestStandIn().start()
    reader, writer = await asyncio.open_connection("127.0.0.1", standin.port)
    for _ in range(2):
        writer.write(b"GET /2010-04-01/Accounts/AC1/Calls.json HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        await reader.readexactly(length)
        assert head.startswith(b"HTTP/1.1 401 ")
    writer.write(b"NONSENSE\r\n\r\n")
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    # An idle keep-alive connection does not hold the stop up.
    _, idle = await asyncio.open_connection("127.0.0.1", standin.port)
    async with asyncio.timeout(3):
        await standin.stop()
    for stream in (writer, idle):
        stream.close()


@pytest.mark.slow
def test_the_command_line_runs_a_stand_in():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator.twilio.rest", "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner and "not Twilio" in banner
        client = Client(STANDIN_ACCOUNT_SID, STANDIN_AUTH_TOKEN)
        client.api.base_url = f"http://127.0.0.1:{port}"
        assert client.calls.list() == []
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


# --- the simulated caller acts on the server's REST requests ------------------------------------


def caller_with_rest(bridge: FakeBridge, standin: TwilioRestStandIn) -> SimulatedTwilioCaller:
    return SimulatedTwilioCaller(
        bridge.url,
        auth_token=AUTH_TOKEN,
        public_base_url=PUBLIC_BASE_URL,
        stream_base_url=bridge.stream_base,
        twilio_rest_url=standin.url,
        rest_poll_s=0.05,
    )


def on_start_update(standin: TwilioRestStandIn, after_s: float, **params: str):
    """The fake server, once the stream has started, asks Twilio's REST API to update the
    call, as the bridge does through the twilio client."""

    async def update(_ws: ServerConnection, start: dict[str, Any]) -> None:
        await asyncio.sleep(after_s)
        call_sid = start["start"]["callSid"]
        await asyncio.to_thread(lambda: client_for(standin).calls(call_sid).update(**params))

    return update


async def test_a_rest_hang_up_ends_the_stream_as_twilio_does(
    fake_bridge: FakeBridge, rest: TwilioRestStandIn
):
    fake_bridge.on_start = on_start_update(rest, 0.3, status="completed")
    caller = caller_with_rest(fake_bridge, rest)
    async with asyncio.timeout(15):
        report = await caller.call([Silence(10.0)])
    assert report.ended_by == "twilio" and report.ended_by_rest
    assert report.frames_sent < 200  # well before the 10 s of silence were over
    # Twilio's end of a stream: stop, then the close.
    assert fake_bridge.messages()[-1]["event"] == "stop"
    assert report.close_code == 1000
    # The call was registered with the caller's numbers and account, and is over.
    call = rest.call(caller.call_sid)
    assert (call.from_, call.to, call.account_sid) == (
        "+14155550123",
        "+14155550100",
        STANDIN_ACCOUNT_SID,
    )
    assert call.status == "completed"
    # <Connect action> is not asked for a call the API ended.
    assert [r["params"].get("CallStatus") for r in fake_bridge.webhook_requests] == ["ringing"]
    # The caller's polls are not Twilio API requests: only the server's update is recorded.
    assert [(r.method, r.value("Status")) for r in rest.requests] == [("POST", "completed")]


async def test_a_rest_redirect_leaves_connect_for_the_new_twiml_and_answers_the_whisper(
    fake_bridge: FakeBridge, rest: TwilioRestStandIn
):
    whisper_url = f"{PUBLIC_BASE_URL}/twilio/whisper?t=token.1"
    dial = (
        '<Response><Dial callerId="+14155550100"><Number url="'
        + whisper_url.replace("&", "&amp;")
        + '">+15550003333</Number></Dial></Response>'
    )
    fake_bridge.answers["/twilio/whisper"] = (
        "<Response><Say>Caller wants a refund.</Say></Response>"
    )
    fake_bridge.on_start = on_start_update(rest, 0.3, twiml=dial)
    caller = caller_with_rest(fake_bridge, rest)
    async with asyncio.timeout(15):
        report = await caller.call([Silence(10.0)])
    assert report.ended_by == "twilio"
    assert report.redirected_twiml == dial
    assert report.whisper_twiml == {
        "+15550003333": "<Response><Say>Caller wants a refund.</Say></Response>"
    }
    assert fake_bridge.messages()[-1]["event"] == "stop"
    whisper = fake_bridge.webhook_requests[-1]
    assert whisper["line"].startswith("POST /twilio/whisper?t=token.1 ")
    assert whisper["valid"]  # signed as Twilio signs, over the public URL
    params = whisper["params"]
    assert (params["ParentCallSid"], params["To"], params["From"], params["Direction"]) == (
        caller.call_sid,
        "+15550003333",
        "+14155550100",
        "outbound-dial",
    )
    assert params["CallSid"] != caller.call_sid


async def test_a_redirect_to_a_url_is_fetched_as_twilio_fetches_it(
    fake_bridge: FakeBridge, rest: TwilioRestStandIn
):
    fake_bridge.answers["/twilio/next"] = "<Response><Hangup/></Response>"
    fake_bridge.on_start = on_start_update(rest, 0.2, url=f"{PUBLIC_BASE_URL}/twilio/next")
    caller = caller_with_rest(fake_bridge, rest)
    async with asyncio.timeout(15):
        report = await caller.call([Silence(10.0)])
    assert report.ended_by == "twilio"
    assert report.redirected_twiml == "<Response><Hangup/></Response>"
    fetched = fake_bridge.webhook_requests[-1]
    assert fetched["line"].startswith("POST /twilio/next ") and fetched["valid"]
    assert fetched["params"]["CallSid"] == caller.call_sid
    assert fetched["params"]["CallStatus"] == "in-progress"


async def test_a_call_the_caller_ends_is_completed_and_cannot_be_updated(
    fake_bridge: FakeBridge, rest: TwilioRestStandIn
):
    caller = caller_with_rest(fake_bridge, rest)
    async with asyncio.timeout(10):
        report = await caller.call([Silence(0.3)])
    assert report.ended_by == "caller" and not report.ended_by_rest
    assert rest.call(caller.call_sid).status == "completed"

    def late_hang_up() -> TwilioRestException:
        with pytest.raises(TwilioRestException) as refused:
            client_for(rest).calls(caller.call_sid).update(status="completed")
        return refused.value

    assert (await asyncio.to_thread(late_hang_up)).code == 21220


async def test_a_caller_without_a_stand_in_fails_clearly(fake_bridge: FakeBridge):
    caller = SimulatedTwilioCaller(
        fake_bridge.url, twilio_rest_url=f"http://127.0.0.1:{free_port()}", auth_token=AUTH_TOKEN
    )
    with pytest.raises(RuntimeError, match="no Twilio REST stand-in"):
        async with asyncio.timeout(10):
            await caller.call([Silence(0.1)])
    with contextlib.suppress(Exception):
        await caller.hang_up()


async def test_the_status_callback_is_posted_when_the_call_is_over(fake_bridge: FakeBridge):
    caller = SimulatedTwilioCaller(
        fake_bridge.url,
        auth_token=AUTH_TOKEN,
        public_base_url=PUBLIC_BASE_URL,
        stream_base_url=fake_bridge.stream_base,
        status_callback_path="/twilio/call-status",
    )
    async with asyncio.timeout(10):
        await caller.call([Silence(1.1)])
    status = fake_bridge.webhook_requests[-1]
    assert status["line"].startswith("POST /twilio/call-status ") and status["valid"]
    params = status["params"]
    assert (params["CallSid"], params["CallStatus"]) == (caller.call_sid, "completed")
    assert (params["CallDuration"], params["Duration"]) == ("1", "1")
    assert parsedate_to_datetime(params["Timestamp"]) is not None
    assert caller.status_callback_status == 200
