"""The Twilio REST stand-in dials out (issue 23, part 6): a created call rings, is answered by a
planned callee (human, machine, busy, no-answer, failed), runs its TwiML's media stream with
this CallSid, sends Twilio's status and async AMD callbacks signed, and follows REST hang-ups
and redirects. Driven by the `twilio` package's client; "the server" is a small loopback HTTP +
WebSocket server in this file that checks every signature. Loopback only, bounded."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
import pytest
from sim_support import answer_http
from support import REPO_ROOT, free_port
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from websockets.asyncio.server import ServerConnection, serve

from bridge_project.config import STANDIN_ACCOUNT_SID, STANDIN_AUTH_TOKEN
from simulator.twilio.callee import CalleePlan, DialOut, OutboundLeg, beep
from simulator.twilio.caller import simulator_request
from simulator.twilio.rest import TwilioRestStandIn
from simulator.twilio.script import AwaitAgentPlayed, Silence, Speak

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

PUBLIC = "https://bridge.example.test"
CALLEE = "+15550009999"
OUR_NUMBER = "+15550002222"
CALL_ID = "6f1c2d3e-0000-4000-8000-0000000000aa"
EVENTS = ["initiated", "ringing", "answered", "completed"]
FRAME = 160


def stream_twiml(action: bool = True) -> str:
    connect = f' action="{PUBLIC}/twilio/stream-ended"' if action else ""
    return (
        f'<Response><Connect{connect}><Stream url="wss://bridge.example.test/streams">'
        f'<Parameter name="callId" value="{CALL_ID}"/><Parameter name="token" value="t.9"/>'
        "</Stream></Connect></Response>"
    )


@dataclass
class Received:
    method: str
    path: str  # with the query
    form: dict[str, str]
    valid: bool
    at: float


@dataclass
class FakeServer:
    """Plays the bridge: answers callbacks (TwiML on the TwiML paths), checks signatures, takes
    the media stream. `agent_audio` is streamed back once the AMD answer has arrived (or at
    once without AMD); `close_after_s` closes the stream from the server's side."""

    http_port: int = 0
    ws_port: int = 0
    received: list[Received] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)
    frames: list[dict[str, Any]] = field(default_factory=list)
    upgrade_signature_valid: bool | None = None
    agent_audio: bytes = b""
    wait_for_amd: bool = True
    close_after_s: float | None = None
    stream_closed: asyncio.Event = field(default_factory=asyncio.Event)
    amd: asyncio.Event = field(default_factory=asyncio.Event)
    status_callback: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def stream_base(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if urllib.parse.urlsplit(r.path).path == path]

    def events(self) -> list[str]:
        return [frame["event"] for frame in self.frames]

    async def handle_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (h.partition(":") for h in header_lines if h)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        method, target, _ = line.split(" ")
        form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        if method == "GET":
            form = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query))
        valid = RequestValidator(STANDIN_AUTH_TOKEN).validate(
            PUBLIC + target, {} if method == "GET" else form, headers.get("x-twilio-signature", "")
        )
        self.received.append(Received(method, target, form, valid, time.monotonic()))
        path = urllib.parse.urlsplit(target).path
        if path == "/amd":
            self.amd.set()
        if path == "/twilio/call-status":
            self.status_callback.set()
        answer = self.answers.get(path, "")
        await answer_http(writer, "200 OK" if valid else "403 Forbidden", answer)

    async def handle_stream(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        signature = ws.request.headers.get("X-Twilio-Signature", "")
        self.upgrade_signature_valid = RequestValidator(STANDIN_AUTH_TOKEN).validate(
            "wss://bridge.example.test/streams", {}, signature
        )
        talker: asyncio.Task[None] | None = None
        try:
            async for text in ws:
                message = orjson.loads(text)
                self.frames.append(message)
                if message["event"] == "start":
                    talker = asyncio.create_task(self._talk(ws, message["streamSid"]))
        finally:
            if talker is not None:
                talker.cancel()
            self.stream_closed.set()

    async def _talk(self, ws: ServerConnection, stream_sid: str) -> None:
        if self.wait_for_amd and self.agent_audio:
            await asyncio.wait_for(self.amd.wait(), 15)
        for offset in range(0, len(self.agent_audio), FRAME):
            payload = base64.b64encode(self.agent_audio[offset : offset + FRAME]).decode()
            await ws.send(
                orjson.dumps(
                    {"event": "media", "streamSid": stream_sid, "media": {"payload": payload}}
                ).decode()
            )
        if self.agent_audio:
            mark = {"event": "mark", "streamSid": stream_sid, "mark": {"name": "reply-1"}}
            await ws.send(orjson.dumps(mark).decode())
        if self.close_after_s is not None:
            await asyncio.sleep(self.close_after_s)
            await ws.close()


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer(answers={"/twilio/stream-ended": "<Response><Hangup/></Response>"})
    http = await asyncio.start_server(fake.handle_http, "127.0.0.1", 0)
    ws = await serve(fake.handle_stream, "127.0.0.1", 0)
    fake.http_port = http.sockets[0].getsockname()[1]
    fake.ws_port = ws.sockets[0].getsockname()[1]
    async with http:
        yield fake
        ws.close()
        await ws.wait_closed()


@pytest.fixture
async def standin(server: FakeServer) -> AsyncIterator[TwilioRestStandIn]:
    dial_out = DialOut(
        server_url=server.url, public_base_url=PUBLIC, stream_base_url=server.stream_base
    )
    async with TwilioRestStandIn(dial_out=dial_out) as rest:
        yield rest


def client_for(standin: TwilioRestStandIn) -> Client:
    client = Client(STANDIN_ACCOUNT_SID, STANDIN_AUTH_TOKEN)
    client.api.base_url = standin.url
    return client


async def dial(standin: TwilioRestStandIn, **overrides: Any) -> str:
    """Create the call with the parameters the product sends (the twilio client's names)."""
    params: dict[str, Any] = {
        "to": CALLEE,
        "from_": OUR_NUMBER,
        "twiml": stream_twiml(),
        "status_callback": f"{PUBLIC}/twilio/call-status?leg=out",
        "status_callback_event": EVENTS,
        "status_callback_method": "POST",
        "machine_detection": "DetectMessageEnd",
        "async_amd": "true",
        "async_amd_status_callback": f"{PUBLIC}/amd",
        "async_amd_status_callback_method": "POST",
    }
    params.update(overrides)
    params = {name: value for name, value in params.items() if value is not None}
    call = await asyncio.to_thread(lambda: client_for(standin).calls.create(**params))
    return str(call.sid)


def human(**changes: Any) -> CalleePlan:
    script = [AwaitAgentPlayed(quiet_s=0.2, timeout_s=10), Speak(0.4, seed=5), Silence(0.2)]
    return CalleePlan(**{"answered_by": "human", "ring_s": 0.1, "script": script, **changes})


async def test_a_human_answers_and_the_callbacks_follow_twilios_order(
    standin: TwilioRestStandIn, server: FakeServer
):
    standin.plan_callee(CALLEE, human())
    server.agent_audio = b"\x55" * 8000  # a second of the agent, once AMD said human
    async with asyncio.timeout(20):
        sid = await dial(standin)
        leg = await standin.wait_leg(sid, 20)
    assert not leg.errors and not standin.problems
    assert leg.ended_by == "callee"
    statuses = leg.status_callbacks()
    assert [c.call_status for c in statuses] == ["initiated", "ringing", "in-progress", "completed"]
    assert [c.status for c in leg.callbacks] == [200] * len(leg.callbacks)
    # What the server received: Twilio's fields, signed over the URL with its query.
    got = server.on("/twilio/call-status")
    assert [r.form["SequenceNumber"] for r in got] == ["0", "1", "2", "3"]
    assert all(r.valid and r.path.endswith("?leg=out") for r in got)
    first, last = got[0].form, got[-1].form
    assert first["CallSid"] == sid and first["AccountSid"] == STANDIN_ACCOUNT_SID
    assert first["Direction"] == "outbound-api" and first["ApiVersion"] == "2010-04-01"
    assert (first["From"], first["To"], first["Caller"], first["Called"]) == (
        OUR_NUMBER, CALLEE, OUR_NUMBER, CALLEE,
    )  # fmt: skip
    assert first["CallbackSource"] == "call-progress-events"
    parsedate_to_datetime(first["Timestamp"])
    assert int(last["CallDuration"]) >= 1 and last["Duration"] == "1"
    # The AMD answer: a human, after "Hello?" (0.6 s) and the 1.2 s speech-end threshold.
    (amd,) = server.on("/amd")
    assert amd.valid and amd.form["AnsweredBy"] == "human" and amd.form["CallSid"] == sid
    assert set(amd.form) == {"AccountSid", "CallSid", "AnsweredBy", "MachineDetectionDuration"}
    assert 1800 <= int(amd.form["MachineDetectionDuration"]) < 3500
    assert leg.answered_by == "human" and standin.call(sid).answered_by == "human"
    # The stream: signed upgrade, this CallSid, the TwiML's parameters; the human heard the
    # agent, answered, and hung up (stop, then close).
    assert server.upgrade_signature_valid
    start = next(f for f in server.frames if f["event"] == "start")["start"]
    assert start["callSid"] == sid and start["accountSid"] == STANDIN_ACCOUNT_SID
    assert start["customParameters"] == {"callId": CALL_ID, "token": "t.9"}
    assert server.events()[-1] == "stop" and "mark" in server.events()
    assert leg.caller is not None and len(leg.caller.played) == 8000
    assert standin.call(sid).status == "completed"
    assert standin.call(sid).resource()["duration"] == last["CallDuration"]


async def test_a_machine_takes_the_message_until_the_rest_hang_up(
    standin: TwilioRestStandIn, server: FakeServer
):
    standin.plan_callee(
        CALLEE, CalleePlan("machine", ring_s=0.1, machine_greeting_s=1.0, beep_s=0.5)
    )
    message = bytes(range(256)) * 25  # 6400 bytes: 0.8 s
    server.agent_audio = message
    async with asyncio.timeout(20):
        # A greeting longer than the speech threshold is a machine's (2.4 s by default).
        sid = await dial(standin, machine_detection_speech_threshold=800)
        await server.amd.wait()
        leg = standin.leg(sid)
        await standin.wait_until(lambda: leg.message_ms >= 800, 10)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(lambda: client_for(standin).calls(sid).update(status="completed"))
        leg = await standin.wait_leg(sid, 10)
    (amd,) = server.on("/amd")
    assert amd.form["AnsweredBy"] == "machine_end_beep"
    # Right after the greeting (1.0 s) and the beep (0.5 s).
    assert 1500 <= int(amd.form["MachineDetectionDuration"]) < 2800
    assert bytes(leg.message) == message and leg.message_ms == 800
    assert leg.ended_by == "twilio"
    # Twilio's end of a stream, then the completed callback.
    assert server.events()[-1] == "stop"
    await asyncio.wait_for(server.stream_closed.wait(), 5)
    statuses = [c.call_status for c in leg.status_callbacks()]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
    assert standin.call(sid).status == "completed" and standin.call(sid).ended_by_rest
    # The machine's audio: a speech-like greeting, then the beep, then silence.
    assert leg.caller is not None
    sent = bytes(leg.caller.sent_audio)
    assert beep(0.5) in sent
    after_beep = sent[sent.index(beep(0.5)) + len(beep(0.5)) :]
    assert after_beep and set(after_beep) == {0xFF}


async def test_a_machine_hangs_up_after_its_longest_message(
    standin: TwilioRestStandIn, server: FakeServer
):
    standin.plan_callee(
        CALLEE,
        CalleePlan("machine", ring_s=0.0, machine_greeting_s=0.5, max_recording_s=1.5),
    )
    async with asyncio.timeout(15):
        sid = await dial(standin, machine_detection="Enable")
        leg = await standin.wait_leg(sid, 15)
    assert leg.ended_by == "callee" and leg.message_ms == 0
    # With Enable, a greeting shorter than the speech threshold reads as a human: as Twilio
    # decides, on the length of the speech, not on what the callee "is".
    assert leg.answered_by == "human"
    assert standin.call(sid).status == "completed"


async def test_enable_posts_machine_start_once_the_speech_is_too_long_for_a_human(
    standin: TwilioRestStandIn, server: FakeServer
):
    standin.plan_callee(
        CALLEE, CalleePlan("machine", ring_s=0.0, machine_greeting_s=1.0, max_recording_s=0.2)
    )
    async with asyncio.timeout(15):
        sid = await dial(
            standin, machine_detection="Enable", machine_detection_speech_threshold=600
        )
        leg = await standin.wait_leg(sid, 15)
    (amd,) = server.on("/amd")
    assert amd.form["AnsweredBy"] == "machine_start"
    assert 550 <= int(amd.form["MachineDetectionDuration"]) < 1500
    assert leg.answered_by == "machine_start"


@pytest.mark.slow
async def test_no_decision_within_the_timeout_is_unknown(
    standin: TwilioRestStandIn, server: FakeServer
):
    standin.plan_callee(
        CALLEE, CalleePlan("machine", ring_s=0.0, machine_greeting_s=4.0, max_recording_s=0.2)
    )
    async with asyncio.timeout(20):
        sid = await dial(standin, machine_detection_timeout=3)
        await server.amd.wait()
        leg = standin.leg(sid)
        (amd,) = server.on("/amd")
        assert amd.form["AnsweredBy"] == "unknown"
        assert 2900 <= int(amd.form["MachineDetectionDuration"]) < 3800
        await standin.wait_leg(sid, 10)
    assert leg.answered_by == "unknown"


@pytest.mark.parametrize("outcome", ["busy", "no-answer", "failed"])
async def test_an_unanswered_call_ends_with_its_status_and_no_stream(
    standin: TwilioRestStandIn, server: FakeServer, outcome: str
):
    standin.plan_callee(CALLEE, CalleePlan(outcome, ring_s=0.05))
    async with asyncio.timeout(10):
        sid = await dial(standin)
        leg = await standin.wait_leg(sid, 10)
    statuses = [r.form["CallStatus"] for r in server.on("/twilio/call-status")]
    assert statuses == ["initiated", "ringing", outcome]
    final = server.on("/twilio/call-status")[-1].form
    assert final["CallDuration"] == "0" and final["Duration"] == "0"
    assert not server.frames and not server.on("/amd") and leg.caller is None
    assert standin.call(sid).status == outcome


async def test_only_completed_is_sent_when_no_events_are_listed(
    standin: TwilioRestStandIn, server: FakeServer
):
    standin.plan_callee(CALLEE, CalleePlan("busy", ring_s=0.0))
    async with asyncio.timeout(10):
        sid = await dial(standin, status_callback_event=None, status_callback_method="GET")
        await standin.wait_leg(sid, 10)
    (only,) = server.on("/twilio/call-status")
    # GET: the fields in the query (after the URL's own), signed over the whole URL.
    assert only.method == "GET" and only.valid and only.form["CallStatus"] == "busy"
    assert only.path.startswith("/twilio/call-status?leg=out&")


async def test_a_hang_up_while_ringing_cancels_the_call(
    standin: TwilioRestStandIn, server: FakeServer
):
    standin.plan_callee(CALLEE, human(ring_s=5.0))
    async with asyncio.timeout(10):
        sid = await dial(standin)
        await standin.wait_until(lambda: standin.call(sid).status == "ringing", 5)
        await asyncio.to_thread(lambda: client_for(standin).calls(sid).update(status="completed"))
        leg = await standin.wait_leg(sid, 5)
    assert [c.call_status for c in leg.status_callbacks()] == ["initiated", "ringing", "canceled"]
    assert not server.frames and standin.call(sid).status == "canceled"


async def test_the_server_closing_the_stream_requests_the_connect_action(
    standin: TwilioRestStandIn, server: FakeServer
):
    standin.plan_callee(CALLEE, human(script=[Silence(10.0)]))
    server.close_after_s = 0.3
    async with asyncio.timeout(15):
        sid = await dial(standin, machine_detection=None, async_amd=None)
        leg = await standin.wait_leg(sid, 15)
    assert leg.ended_by == "server"
    (action,) = server.on("/twilio/stream-ended")
    assert action.valid and action.form["CallSid"] == sid
    assert action.form["CallStatus"] == "in-progress"
    assert leg.action_twiml == "<Response><Hangup/></Response>"
    assert leg.answered_by is None and not server.on("/amd")


async def test_a_url_is_fetched_for_the_twiml_and_a_redirect_leaves_the_stream(
    standin: TwilioRestStandIn, server: FakeServer
):
    server.answers["/twilio/outbound-twiml"] = stream_twiml(action=False)
    standin.plan_callee(CALLEE, human(script=[Silence(10.0)]))
    dial_twiml = "<Response><Dial><Number>+15550003333</Number></Dial></Response>"
    async with asyncio.timeout(15):
        sid = await dial(
            standin,
            twiml=None,
            url=f"{PUBLIC}/twilio/outbound-twiml",
            machine_detection=None,
            async_amd=None,
        )
        await standin.wait_until(lambda: any(f["event"] == "start" for f in server.frames), 10)
        await asyncio.to_thread(lambda: client_for(standin).calls(sid).update(twiml=dial_twiml))
        leg = await standin.wait_leg(sid, 10)
    (fetch,) = server.on("/twilio/outbound-twiml")
    assert fetch.valid and fetch.method == "POST" and fetch.form["Direction"] == "outbound-api"
    assert leg.ended_by == "twilio" and server.events()[-1] == "stop"
    assert leg.caller is not None and leg.caller.redirected_twiml == dial_twiml
    assert standin.call(sid).status == "completed"


async def test_synchronous_amd_sends_answered_by_with_the_twiml_request(
    standin: TwilioRestStandIn, server: FakeServer
):
    server.answers["/twilio/outbound-twiml"] = stream_twiml(action=False)
    standin.plan_callee(CALLEE, human(greeting_s=0.3, script=[Silence(0.2)]))
    async with asyncio.timeout(15):
        sid = await dial(
            standin,
            twiml=None,
            url=f"{PUBLIC}/twilio/outbound-twiml",
            machine_detection="Enable",
            async_amd=None,
            machine_detection_speech_end_threshold=500,
        )
        leg = await standin.wait_leg(sid, 15)
    (fetch,) = server.on("/twilio/outbound-twiml")
    assert fetch.form["AnsweredBy"] == "human"
    assert leg.amd_duration_ms is not None and 750 <= leg.amd_duration_ms < 1800
    assert not server.on("/amd")


def sim(standin: TwilioRestStandIn, method: str, path: str, form: dict[str, str] | None = None):
    return simulator_request(standin.url, method, path, form)


async def test_another_process_plans_the_callee_and_reads_the_leg(
    standin: TwilioRestStandIn, server: FakeServer
):
    status, plan = await asyncio.to_thread(
        sim, standin, "POST", "callees", {"To": CALLEE, "AnsweredBy": "busy", "RingSeconds": "0"}
    )
    assert status == 201 and plan["answered_by"] == "busy"
    async with asyncio.timeout(10):
        sid = await dial(standin)
        await standin.wait_leg(sid, 10)
    status, view = await asyncio.to_thread(sim, standin, "GET", f"calls/{sid}")
    assert status == 200 and view["status"] == "busy"
    outbound = view["outbound"]
    assert outbound["ended_by"] == "callee" and outbound["done"]
    assert [c["params"]["CallStatus"] for c in outbound["callbacks"]][-1] == "busy"
    assert all(c["status"] == 200 for c in outbound["callbacks"])
    # Nothing under /_simulator/ is recorded as an API request.
    assert all("/_simulator/" not in r.path for r in standin.requests)


async def test_a_bad_plan_is_refused(standin: TwilioRestStandIn):
    status, answer = await asyncio.to_thread(
        sim, standin, "POST", "callees", {"To": CALLEE, "AnsweredBy": "fax"}
    )
    assert status == 400, answer


async def test_without_dial_out_nothing_is_dialled():
    async with TwilioRestStandIn() as rest:
        rest.plan_callee(CALLEE, CalleePlan("human"))
        sid = await dial(rest)
        await asyncio.sleep(0.2)
        assert rest.call(sid).status == "queued" and sid not in rest.legs


async def test_stopping_the_stand_in_ends_live_legs(server: FakeServer):
    dial_out = DialOut(server.url, public_base_url=PUBLIC, stream_base_url=server.stream_base)
    async with asyncio.timeout(15):
        async with TwilioRestStandIn(dial_out=dial_out) as rest:
            rest.plan_callee(CALLEE, human(script=[Silence(30.0)]))
            sid = await dial(rest, machine_detection=None, async_amd=None)
            await rest.wait_until(lambda: any(f["event"] == "start" for f in server.frames), 10)
        leg: OutboundLeg = rest.legs[sid]
        assert leg.done.is_set()
        await asyncio.wait_for(server.stream_closed.wait(), 5)


@pytest.mark.slow
async def test_the_command_line_dials_out(server: FakeServer):
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator.twilio.rest", "--port", str(port),
        "--server-url", server.url, "--public-base-url", PUBLIC,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = await asyncio.wait_for(process.stdout.readline(), 15)
        assert b"dialled to" in banner
        url = f"http://127.0.0.1:{port}"
        form = urllib.parse.urlencode({"To": CALLEE, "AnsweredBy": "no-answer", "RingSeconds": "0"})
        request = urllib.request.Request(f"{url}/_simulator/callees", data=form.encode())
        await asyncio.to_thread(urllib.request.urlopen, request, None, 5)
        client = Client(STANDIN_ACCOUNT_SID, STANDIN_AUTH_TOKEN)
        client.api.base_url = url
        await asyncio.to_thread(
            lambda: client.calls.create(
                to=CALLEE,
                from_=OUR_NUMBER,
                twiml=stream_twiml(),
                status_callback=f"{PUBLIC}/twilio/call-status",
            )
        )
        await asyncio.wait_for(server.status_callback.wait(), 10)
        (final,) = server.on("/twilio/call-status")
        assert final.valid and final.form["CallStatus"] == "no-answer"
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await asyncio.wait_for(process.wait(), 5)
