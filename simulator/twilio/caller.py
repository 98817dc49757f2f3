"""A simulated Twilio caller: places a call against a running server the way Twilio does.

1. POST the incoming-call webhook, form-encoded with Twilio's parameters and signed with
   `X-Twilio-Signature` over the public URL (the server rebuilds it from PUBLIC_BASE_URL).
2. Read the TwiML answer: `<Connect><Stream url="wss://.../streams">` and its `<Parameter>`s.
3. Open the media stream at the server's real address, the upgrade signed over the TwiML's
   `wss://` URL; send `connected`, `start` (customParameters = the Parameters), then `media`
   every 20 ms on an absolute schedule, numbers as strings, from a script of caller steps.
4. Like Twilio, play the agent's audio in real time from a buffer: a `mark` is echoed when
   playback reaches it; `clear` drops the unplayed audio and echoes the pending marks at once.
5. With a Twilio REST stand-in (`twilio_rest_url`, simulator.twilio.rest), act on what the
   server asks of Twilio's REST API, as Twilio does: the call is registered there (so the server
   can update it) and polled every `rest_poll_s` (its `/_simulator/calls/{CallSid}` view) while
   the stream is open. Updated with `Status=completed` (or canceled while still ringing), the
   caller ends the media stream as Twilio ends it when a call ends (`stop`, then close:
   `ended_by_rest`). Redirected with `Twiml` or `Url`, it keeps the new TwiML
   (`redirected_twiml`; a `Url` is fetched as Twilio fetches it, signed), then ends the stream
   the same way: the call leaves `<Connect>` for the new TwiML. A `<Dial><Number url=...>` in it
   is answered by the simulated callee: the whisper URL is fetched as Twilio fetches it for the
   called party (`whisper_twiml`, by number). A call ended so reports `ended_by` "twilio", and
   its `<Connect action>` is not requested (Twilio does not, for a call modified by the API).
6. With `status_callback_path` (a number configured with a status callback), POST the call's
   final status there once it is over (`completed`, its duration), signed, as Twilio does: for
   a transferred call that is what closes the record.

Everything received, played, cleared and echoed is recorded for tests and for the summary of
`manage.py simulate_call`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import email.utils
import secrets
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from audio.g711 import ulaw_encode, ulaw_is_audible
from bridge_project.config import STANDIN_ACCOUNT_SID
from simulator.speech import speech
from simulator.twilio.script import (
    AwaitAgentAudio,
    AwaitAgentPlayed,
    Dtmf,
    Raw,
    ScriptTimeout,
    Silence,
    Speak,
    Step,
    Until,
)

FRAME_MS = 20
FRAME_BYTES = 160  # 20 ms of mu-law at 8 kHz
BYTES_PER_MS = 8
ULAW_SILENCE = 0xFF  # mu-law code of 0
SILENT_FRAME = bytes([ULAW_SILENCE]) * FRAME_BYTES
WEBHOOK_PATH = "/twilio/incoming-call"
MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}

HangUp = Literal["stop", "close", "abort"]
# Polling the REST stand-in stops after this many failures in a row (it went away).
REST_POLL_MAX_FAILURES = 25


class WebhookRejected(Exception):
    """The incoming-call webhook did not answer 200 with TwiML that connects a stream."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"webhook answered {status}: {body[:300]}")
        self.status = status
        self.body = body


class CallEnded(Exception):
    """The server closed the media stream while the caller was still talking."""


def twilio_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True)
class TwimlStream:
    """The `<Connect><Stream>` of the webhook's answer."""

    url: str
    parameters: dict[str, str]
    action: str = ""  # <Connect action>: asked how to go on when the server closes the stream


def parse_twiml(body: str) -> TwimlStream:
    """The Stream url and its Parameters, or WebhookRejected if the TwiML has no stream."""
    try:
        root = ET.fromstring(body)  # noqa: S314 - TwiML from the server under test
    except ET.ParseError as exc:
        raise WebhookRejected(200, f"not XML ({exc}): {body}") from None
    stream = root.find("./Connect/Stream")
    if root.tag != "Response" or stream is None or not stream.get("url"):
        raise WebhookRejected(200, f"no <Connect><Stream url=...> in TwiML: {body}")
    parameters = {
        p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter") if p.get("name")
    }
    connect = root.find("./Connect")
    action = connect.get("action", "") if connect is not None else ""
    return TwimlStream(url=str(stream.get("url")), parameters=parameters, action=action)


@dataclass
class PendingMark:
    name: str
    position: int  # total agent bytes played when playback reaches it


@dataclass
class CallReport:
    """What the caller saw of the call (the server's transcript is not visible to it)."""

    call_sid: str
    call_id: str | None
    frames_sent: int
    agent_audio_s: float
    played_s: float
    marks_received: int
    marks_echoed: int
    clears_ms: list[float]
    latencies_ms: list[float]
    close_code: int | None
    ended_by: str
    script_error: str | None = None
    protocol_errors: list[str] = field(default_factory=list)
    # What the server asked of Twilio's REST API (with a REST stand-in), as the caller lived it.
    ended_by_rest: bool = False
    redirected_twiml: str | None = None
    whisper_twiml: dict[str, str] = field(default_factory=dict)


def simulator_request(
    rest_url: str,
    method: str,
    path: str,
    form: Mapping[str, str] | None = None,
    *,
    timeout_s: float = 5.0,
) -> tuple[int, dict[str, Any]]:
    """One request to the REST stand-in's own /_simulator/ endpoints (not Twilio's API), as its
    clients in another process make it (this caller, simulate_call): (status, JSON answer);
    OSError when the stand-in cannot be reached."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(  # noqa: S310 - the local stand-in, http only
        f"{rest_url}/_simulator/{path}", data=data, method=method
    )
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {"error": error.read().decode("utf-8", "replace")}


class SimulatedTwilioCaller:
    """One call. `await caller.call(script)` does everything; the steps are public too."""

    def __init__(
        self,
        server_url: str,
        *,
        auth_token: str | None = None,
        public_base_url: str | None = None,
        stream_base_url: str | None = None,
        from_number: str = "+14155550123",
        to_number: str = "+14155550100",
        account_sid: str | None = None,
        call_sid: str | None = None,
        extra_params: Mapping[str, str] | None = None,
        http_timeout_s: float = 10.0,
        twilio_rest_url: str | None = None,
        rest_poll_s: float = 0.2,
        answer_whisper: bool = True,
        status_callback_path: str | None = None,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.auth_token = auth_token or None
        self.public_base_url = (public_base_url or self.server_url).rstrip("/")
        self.stream_base_url = stream_base_url or _ws_base(self.server_url)
        self.http_timeout_s = http_timeout_s
        self.twilio_rest_url = twilio_rest_url.rstrip("/") if twilio_rest_url else None
        self.rest_poll_s = rest_poll_s
        self.answer_whisper = answer_whisper
        self.status_callback_path = status_callback_path
        self.status_callback_status: int | None = None  # what the status callback answered
        # The call belongs to the account the server's REST requests authenticate as: with a
        # REST stand-in and no account given, the stand-in's (what the product then uses).
        self.account_sid = account_sid or (
            STANDIN_ACCOUNT_SID if self.twilio_rest_url else twilio_sid("AC")
        )
        self.call_sid = call_sid or twilio_sid("CA")
        self.stream_sid = twilio_sid("MZ")
        self.webhook_params = self._webhook_params(from_number, to_number, extra_params or {})
        # What the webhook answered.
        self.webhook_status: int | None = None
        self.twiml = ""
        self.stream: TwimlStream | None = None
        self.after_stream_twiml: str | None = None  # <Connect action>'s answer, if asked
        # The media stream.
        self.ws: ClientConnection | None = None
        self.upgrade_signature: str | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.frames_sent = 0
        self.speech_spans_ms: list[tuple[float, float]] = []
        # What came back, on the stream clock (ms since `start`).
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.received_raw: list[str | bytes] = []
        self.protocol_errors: list[str] = []  # what Twilio would reject or not understand
        self.script_error: str | None = None
        self.agent_audio = bytearray()  # every media payload, cleared or not
        self.agent_arrivals: list[tuple[float, int]] = []  # (ms, bytes) per audible media message
        self.played = bytearray()  # what actually reached the caller's ear
        self.clears_ms: list[float] = []
        self.played_bytes_at_clear: list[int] = []  # len(played) when each clear arrived
        self.sent_audio = bytearray()  # every caller media payload, in order
        self.marks_received: list[str] = []
        self.marks_echoed: list[tuple[str, float]] = []
        self._playback = bytearray()
        self._drained_at_ms = 0.0  # when the last audible agent audio finished playing
        # Where (in bytes played, counting what is queued) the last audible agent audio ends:
        # a person hears speech, not packets, so silence the agent streams (GPT-Live's
        # continuous track) is played but neither starts nor prolongs a reply.
        self._audible_end = 0
        self._pending_marks: list[PendingMark] = []
        self._sequence = 0
        self._t0 = 0.0
        self._receiver: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        # Twilio's REST API as this call met it (with a REST stand-in).
        self.ended_by_rest = False
        self.rest_status: str | None = None  # the call's status there, as last polled
        self.redirected_twiml: str | None = None
        self.redirected_url: str | None = None
        self.whisper_twiml: dict[str, str] = {}
        self.rest_errors: list[str] = []
        self._rest_poller: asyncio.Task[None] | None = None
        self._rest_stop = asyncio.Event()
        self._rest_redirects_seen = 0

    # --- the whole call -----------------------------------------------------------------------

    async def call(
        self, script: Sequence[Step], *, hang_up: HangUp = "stop", max_seconds: float | None = None
    ) -> CallReport:
        """Place the call, run the script (at most `max_seconds`), hang up, report."""
        if self.twilio_rest_url:
            await self.register_with_rest()
        try:
            await self.place_call()
            await self.connect_stream()
        except BaseException:
            await self._set_rest_status("completed")
            raise
        self.start_rest_polling()
        ended_by = "caller"
        try:
            async with asyncio.timeout(max_seconds):
                await self.run(script)
        except CallEnded:
            ended_by = "server"
        except ScriptTimeout as exc:
            self.script_error = str(exc)
        except TimeoutError:
            ended_by = "caller (time limit)"
        finally:
            await self.stop_rest_polling()
            await self.hang_up(hang_up)
        if ended_by == "server" and self.twilio_rest_url and not self.ended_by_rest:
            # The server may have closed the stream right after its REST request, before the
            # next poll: Twilio would have ended the call for the request.
            with contextlib.suppress(OSError):
                await self._poll_rest_once()
        if self.ended_by_rest:
            ended_by = "twilio"
        elif ended_by == "server":
            await self.follow_connect_action()
        await self._set_rest_status("completed")
        await self.post_status_callback()
        return self.report(ended_by)

    async def post_status_callback(self) -> None:
        """The number's status callback for the ended call, as Twilio posts it."""
        if self.status_callback_path is None:
            return
        seconds = int(self.now_ms() / 1000) if self._t0 else 0
        params = {
            **self.webhook_params,
            "CallStatus": "completed",
            "CallDuration": str(seconds),
            "Duration": str(-(-seconds // 60)),  # billed minutes, rounded up
            "CallbackSource": "call-progress-events",
            "SequenceNumber": "0",
            "Timestamp": email.utils.formatdate(usegmt=False),
        }
        try:
            status, _ = await asyncio.to_thread(self._post, self.status_callback_path, params)
        except OSError as exc:
            self.rest_errors.append(f"status callback: {exc}")
            return
        self.status_callback_status = status

    def report(self, ended_by: str = "caller") -> CallReport:
        return CallReport(
            call_sid=self.call_sid,
            call_id=self.call_id,
            frames_sent=self.frames_sent,
            agent_audio_s=len(self.agent_audio) / BYTES_PER_MS / 1000,
            played_s=len(self.played) / BYTES_PER_MS / 1000,
            marks_received=len(self.marks_received),
            marks_echoed=len(self.marks_echoed),
            clears_ms=list(self.clears_ms),
            latencies_ms=self.latencies_ms(),
            close_code=self.close_code,
            ended_by=ended_by,
            script_error=self.script_error,
            protocol_errors=list(self.protocol_errors),
            ended_by_rest=self.ended_by_rest,
            redirected_twiml=self.redirected_twiml,
            whisper_twiml=dict(self.whisper_twiml),
        )

    @property
    def call_id(self) -> str | None:
        return self.stream.parameters.get("callId") if self.stream else None

    def latencies_ms(self) -> list[float]:
        """For each caller turn: end of its speech to the first agent audio after it."""
        latencies = []
        for index, (_, end) in enumerate(self.speech_spans_ms):
            limit = (
                self.speech_spans_ms[index + 1][0]
                if index + 1 < len(self.speech_spans_ms)
                else float("inf")
            )
            arrival = next((t for t, _ in self.agent_arrivals if end <= t < limit), None)
            if arrival is not None:
                latencies.append(arrival - end)
        return latencies

    # --- 1-2: the webhook ---------------------------------------------------------------------

    def _webhook_params(
        self, from_number: str, to_number: str, extra: Mapping[str, str]
    ) -> dict[str, str]:
        """The form Twilio posts for an inbound call (the geographic fields are Twilio's)."""
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": "ringing",
            "CallToken": secrets.token_urlsafe(24),
            "Called": to_number,
            "CalledCity": "SAN FRANCISCO",
            "CalledCountry": "US",
            "CalledState": "CA",
            "CalledZip": "94105",
            "Caller": from_number,
            "CallerCity": "OAKLAND",
            "CallerCountry": "US",
            "CallerName": "SIMULATED CALLER",
            "CallerState": "CA",
            "CallerZip": "94612",
            "Direction": "inbound",
            "From": from_number,
            "FromCity": "OAKLAND",
            "FromCountry": "US",
            "FromState": "CA",
            "FromZip": "94612",
            "StirVerstat": "TN-Validation-Passed-A",
            "To": to_number,
            "ToCity": "SAN FRANCISCO",
            "ToCountry": "US",
            "ToState": "CA",
            "ToZip": "94105",
        }
        params.update(extra)
        return params

    def signature(self, path: str, params: Mapping[str, str]) -> str | None:
        """X-Twilio-Signature: HMAC-SHA1 of the public URL plus the sorted form fields."""
        if self.auth_token is None:
            return None
        return RequestValidator(self.auth_token).compute_signature(
            self.public_base_url + path, dict(params)
        )

    async def place_call(self) -> TwimlStream:
        """POST the incoming-call webhook and keep the stream it answers with."""
        status, body = await asyncio.to_thread(self._post, WEBHOOK_PATH, self.webhook_params)
        self.webhook_status, self.twiml = status, body
        if status != 200:
            raise WebhookRejected(status, body)
        self.stream = parse_twiml(body)
        return self.stream

    async def follow_connect_action(self) -> str | None:
        """What Twilio does when the server closes the stream with the call still up: POST
        <Connect action> and run the TwiML it answers (kept in `after_stream_twiml`)."""
        if self.stream is None or not self.stream.action:
            return None
        path = urllib.parse.urlsplit(self.stream.action).path
        params = {**self.webhook_params, "CallStatus": "in-progress"}
        status, body = await asyncio.to_thread(self._post, path, params)
        self.after_stream_twiml = body if status == 200 else f"HTTP {status}: {body}"
        return self.after_stream_twiml

    def _post(self, path: str, params: Mapping[str, str]) -> tuple[int, str]:
        return self._request(self.server_url + path, self.public_base_url + path, params)

    def _request(
        self, url: str, signed_url: str, params: Mapping[str, str], method: str = "POST"
    ) -> tuple[int, str]:
        """A webhook request as Twilio makes it: POSTed form (or GET query), signed over
        `signed_url` (the public URL) when there is an auth token."""
        headers = {
            "User-Agent": "TwilioProxy/1.1",
            "Accept": "*/*",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }
        data: bytes | None = None
        if method == "GET":
            query = urllib.parse.urlencode(params)
            separator = "&" if urllib.parse.urlsplit(url).query else "?"
            url, signed_url = f"{url}{separator}{query}", f"{signed_url}{separator}{query}"
            signed_params: dict[str, str] = {}
        else:
            headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
            data = urllib.parse.urlencode(params).encode()
            signed_params = dict(params)
        if self.auth_token is not None:
            validator = RequestValidator(self.auth_token)
            headers["X-Twilio-Signature"] = validator.compute_signature(signed_url, signed_params)
        request = urllib.request.Request(  # noqa: S310 - the server under test, http(s) only
            url, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=self.http_timeout_s) as response:  # noqa: S310
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode("utf-8", "replace")

    # --- 3: the media stream ------------------------------------------------------------------

    def stream_connect_url(self) -> str:
        """The server's real address with the TwiML stream URL's path (and query)."""
        if self.stream is None:
            raise RuntimeError("place_call() first")
        parts = urllib.parse.urlsplit(self.stream.url)
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.stream_base_url.rstrip('/')}{parts.path}{query}"

    async def connect_stream(self) -> None:
        """Open the stream (upgrade signed over the TwiML URL), send connected and start."""
        if self.stream is None:
            raise RuntimeError("place_call() first")
        headers = {"User-Agent": "Twilio.TmeWs/1.0"}
        if self.auth_token is not None:
            validator = RequestValidator(self.auth_token)
            self.upgrade_signature = validator.compute_signature(self.stream.url, {})
            headers["X-Twilio-Signature"] = self.upgrade_signature
        self.ws = await connect(
            self.stream_connect_url(),
            additional_headers=headers,
            open_timeout=self.http_timeout_s,
            compression=None,
        )
        self._receiver = asyncio.create_task(self._receive())
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self._t0 = asyncio.get_running_loop().time()
        await self._send(
            {
                "event": "start",
                "sequenceNumber": self._next_sequence(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": dict(self.stream.parameters),
                    "mediaFormat": dict(MEDIA_FORMAT),
                },
                "streamSid": self.stream_sid,
            }
        )

    def now_ms(self) -> float:
        """The stream clock: ms since `start` was sent (Twilio's media timestamps count so)."""
        return (asyncio.get_running_loop().time() - self._t0) * 1000.0

    def _next_sequence(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    async def _send(self, message: dict[str, Any]) -> None:
        if self.ws is None or self._closed.is_set():
            raise CallEnded(f"stream closed ({self.close_code})")
        try:
            await self.ws.send(orjson.dumps(message).decode())
        except ConnectionClosed as exc:
            raise CallEnded(f"stream closed ({exc})") from None

    async def send_raw(self, data: str | bytes) -> None:
        """Send a frame exactly as given (malformed JSON, binary...) for robustness tests."""
        if self.ws is None:
            raise RuntimeError("connect_stream() first")
        try:
            await self.ws.send(data)
        except ConnectionClosed as exc:
            raise CallEnded(f"stream closed ({exc})") from None

    async def send_dtmf(self, digit: str) -> None:
        await self._send(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next_sequence(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def hang_up(self, how: HangUp = "stop") -> None:
        """End the call: `stop` then close (Twilio's way), close only, or drop the TCP socket."""
        ws = self.ws
        if ws is None:
            return
        if how == "stop" and not self._closed.is_set():
            stop = {"accountSid": self.account_sid, "callSid": self.call_sid}
            with contextlib.suppress(CallEnded):
                await self._send(
                    {
                        "event": "stop",
                        "sequenceNumber": self._next_sequence(),
                        "streamSid": self.stream_sid,
                        "stop": stop,
                    }
                )
        if how == "abort":
            ws.transport.abort()
        else:
            await ws.close(1000)
        if self._receiver is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._receiver, 5.0)

    # --- 5: Twilio's REST API, through the REST stand-in -------------------------------------

    def _rest_json(
        self, method: str, path: str, params: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        assert self.twilio_rest_url is not None
        return simulator_request(self.twilio_rest_url, method, path, params, timeout_s=2.0)

    async def register_with_rest(self) -> None:
        """Tell the REST stand-in about this call, as Twilio knows of every call it carries, so
        the server can update it. Ringing until the webhook has answered."""
        params = {
            "CallSid": self.call_sid,
            "From": self.webhook_params["From"],
            "To": self.webhook_params["To"],
            "AccountSid": self.account_sid,
            "Status": "ringing",
            "Direction": "inbound",
        }
        try:
            status, body = await asyncio.to_thread(self._rest_json, "POST", "calls", params)
        except OSError as exc:
            raise RuntimeError(
                f"no Twilio REST stand-in at {self.twilio_rest_url}: {exc}"
            ) from None
        if status != 201:
            raise RuntimeError(f"the REST stand-in refused the call ({status}): {body}")
        self.rest_status = "ringing"

    async def _set_rest_status(self, status: str) -> None:
        if not self.twilio_rest_url or self.rest_status in (None, "completed", "canceled"):
            return
        try:
            code, body = await asyncio.to_thread(
                self._rest_json, "POST", f"calls/{self.call_sid}", {"Status": status}
            )
        except OSError as exc:
            self.rest_errors.append(f"status {status}: {exc}")
            return
        if code == 200:
            self.rest_status = body.get("status", status)

    def start_rest_polling(self) -> None:
        if self.twilio_rest_url and self._rest_poller is None:
            self._rest_poller = asyncio.create_task(self._poll_rest())

    async def stop_rest_polling(self) -> None:
        """Stop polling and wait for the poller (it may be ending the call right now)."""
        poller, self._rest_poller = self._rest_poller, None
        self._rest_stop.set()
        if poller is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(poller, 10.0)

    async def _poll_rest(self) -> None:
        """Poll the call's state while the stream is open; act as Twilio does on an update."""
        await self._set_rest_status("in-progress")
        failures = 0
        while not self._rest_stop.is_set() and not self._closed.is_set():
            try:
                if await self._poll_rest_once():
                    return
                failures = 0
            except OSError as exc:
                failures += 1
                if failures == 1:
                    self.rest_errors.append(f"poll: {exc}")
                if failures >= REST_POLL_MAX_FAILURES:
                    self.rest_errors.append("poll: the REST stand-in went away; stopped")
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rest_stop.wait(), self.rest_poll_s)

    async def _poll_rest_once(self) -> bool:
        """Read the call's state once and act on it; True if the call was ended by it."""
        status, view = await asyncio.to_thread(self._rest_json, "GET", f"calls/{self.call_sid}")
        if status != 200:
            raise OSError(f"the REST stand-in answered {status} for the call: {view}")
        self.rest_status = view["status"]
        redirects = view.get("redirects") or []
        if len(redirects) > self._rest_redirects_seen:
            self._rest_redirects_seen = len(redirects)
            await self._redirected(redirects[-1])
        elif view["status"] in ("completed", "canceled") and view.get("ended_by_rest"):
            await self._end_as_twilio()
        else:
            return False
        return True

    async def _redirected(self, redirect: Mapping[str, Any]) -> None:
        """New instructions for the call: leave <Connect> (the stream ends), then take the new
        TwiML (inline, or fetched from the Url) and answer any whisper in it."""
        await self._end_as_twilio()
        self.redirected_url = redirect.get("url")
        if self.redirected_url:
            method = str(redirect.get("method") or "POST")
            self.redirected_twiml = await self._fetch_twiml(self.redirected_url, method)
        else:
            self.redirected_twiml = redirect.get("twiml")
        if self.answer_whisper and self.redirected_twiml:
            await self._answer_whispers(self.redirected_twiml)

    async def _end_as_twilio(self) -> None:
        """End the media stream as Twilio does when the call leaves <Connect>: stop, close."""
        self.ended_by_rest = True
        await self.hang_up("stop")

    def _target(self, url: str) -> tuple[str, str]:
        """Where to send a request for `url`, and the URL to sign: a URL on the server's
        public origin goes to the server's real address, signed over the public one."""
        parts = urllib.parse.urlsplit(url)
        public = urllib.parse.urlsplit(self.public_base_url)
        if (parts.scheme, parts.netloc) != (public.scheme, public.netloc):
            return url, url
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.server_url + path, url

    async def _fetch_twiml(
        self, url: str, method: str, params: Mapping[str, str] | None = None
    ) -> str:
        target, signed = self._target(url)
        form = dict(
            params if params is not None else {**self.webhook_params, "CallStatus": "in-progress"}
        )
        try:
            status, body = await asyncio.to_thread(
                self._request, target, signed, form, method.upper()
            )
        except OSError as exc:
            return f"(not fetched: {exc})"
        return body if status == 200 else f"HTTP {status}: {body}"

    async def _answer_whispers(self, twiml: str) -> None:
        """The called party answers each <Dial><Number url=...>: Twilio fetches that URL for
        the new call leg (its own CallSid, ParentCallSid = this call) and plays it to them."""
        try:
            root = ET.fromstring(twiml)  # noqa: S314 - TwiML from the server under test
        except ET.ParseError:
            return
        for dial in root.iter("Dial"):
            caller_id = dial.get("callerId") or self.webhook_params["To"]
            for number in dial.iter("Number"):
                url, called = number.get("url"), (number.text or "").strip()
                if not url:
                    continue
                leg = {
                    "AccountSid": self.account_sid,
                    "ApiVersion": "2010-04-01",
                    "CallSid": twilio_sid("CA"),
                    "ParentCallSid": self.call_sid,
                    "CallStatus": "in-progress",
                    "Direction": "outbound-dial",
                    "From": caller_id,
                    "Caller": caller_id,
                    "To": called,
                    "Called": called,
                }
                method = number.get("method") or "POST"
                self.whisper_twiml[called] = await self._fetch_twiml(url, method, leg)

    # --- the script ---------------------------------------------------------------------------

    async def run(self, script: Sequence[Step]) -> None:
        for step in script:
            await self._run_step(step)

    async def _run_step(self, step: Step) -> None:
        if isinstance(step, Speak):
            await self._speak(step)
        elif isinstance(step, Silence):
            await self._silence(until_ms=self._clock_ms + step.seconds * 1000)
        elif isinstance(step, Until):
            await self._silence(until_ms=step.seconds * 1000)
        elif isinstance(step, AwaitAgentAudio):
            await self._await_agent_audio(step)
        elif isinstance(step, AwaitAgentPlayed):
            await self._await_agent_played(step)
        elif isinstance(step, Dtmf):
            await self.send_dtmf(step.digit)
        elif isinstance(step, Raw):
            await self.send_raw(step.data)

    @property
    def _clock_ms(self) -> float:
        """Stream time in frames sent: frame n goes out at n * 20 ms after `start`."""
        return float(self.frames_sent * FRAME_MS)

    async def _speak(self, step: Speak) -> None:
        audio = ulaw_encode(speech(step.seconds, seed=step.seed, level_dbfs=step.level_dbfs))
        start = self._clock_ms
        for offset in range(0, len(audio), FRAME_BYTES):
            frame = audio[offset : offset + FRAME_BYTES]
            await self._send_frame(frame.ljust(FRAME_BYTES, bytes([ULAW_SILENCE])))
        self.speech_spans_ms.append((start, self._clock_ms))

    async def _silence(self, *, until_ms: float, done: Callable[[], bool] = lambda: False) -> bool:
        """Silent frames until `done()` or the stream clock reaches `until_ms`; True if done."""
        while self._clock_ms < until_ms:
            if done():
                return True
            await self._send_frame(SILENT_FRAME)
        return done()

    async def _await_agent_audio(self, step: AwaitAgentAudio) -> None:
        since = self.now_ms()
        deadline = self._clock_ms + step.timeout_s * 1000
        if not await self._silence(until_ms=deadline, done=lambda: self._arrival_after(since)):
            raise ScriptTimeout(f"no agent audio within {step.timeout_s:.0f} s")
        first = next(t for t, _ in self.agent_arrivals if t >= since)
        await self._silence(until_ms=first + step.then_s * 1000)

    def _arrival_after(self, since_ms: float) -> bool:
        return bool(self.agent_arrivals) and self.agent_arrivals[-1][0] >= since_ms

    async def _await_agent_played(self, step: AwaitAgentPlayed) -> None:
        # The reply to the caller's latest turn: audio that arrived after that turn ended, or
        # audio still playing now (the agent talked on while the caller spoke). Audio that
        # arrived during the turn belongs to the reply it interrupted.
        since = self.speech_spans_ms[-1][1] if self.speech_spans_ms else 0.0
        still_playing = self._audible_queued()

        def heard_all() -> bool:
            if not (still_playing or self._arrival_after(since)) or self._audible_queued():
                return False
            return self.now_ms() - self._drained_at_ms >= step.quiet_s * 1000

        deadline = self._clock_ms + step.timeout_s * 1000
        if not await self._silence(until_ms=deadline, done=heard_all):
            raise ScriptTimeout(f"the agent's reply was not heard within {step.timeout_s:.0f} s")

    async def _send_frame(self, frame: bytes) -> None:
        """One 20 ms media frame at its slot on the absolute schedule, and 20 ms of playback."""
        number = self.frames_sent
        loop = asyncio.get_running_loop()
        delay = self._t0 + number * FRAME_MS / 1000 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await self._play(FRAME_BYTES)
        self.sent_audio += frame
        await self._send(
            {
                "event": "media",
                "sequenceNumber": self._next_sequence(),
                "media": {
                    "track": "inbound",
                    "chunk": str(number + 1),
                    "timestamp": str(number * FRAME_MS),
                    "payload": base64.b64encode(frame).decode("ascii"),
                },
                "streamSid": self.stream_sid,
            }
        )
        self.frames_sent += 1

    # --- playback, Twilio-style ---------------------------------------------------------------

    @property
    def _played_total(self) -> int:
        return len(self.played)

    def _audible_queued(self) -> bool:
        return self._played_total < self._audible_end

    async def _play(self, nbytes: int) -> None:
        """Play up to `nbytes` of buffered agent audio and echo the marks it reaches."""
        chunk = self._playback[:nbytes]
        del self._playback[:nbytes]
        self.played += chunk
        if chunk and self._played_total - len(chunk) < self._audible_end <= self._played_total:
            self._drained_at_ms = self.now_ms()
        while self._pending_marks and self._pending_marks[0].position <= self._played_total:
            await self._echo_mark(self._pending_marks.pop(0).name)

    async def _echo_mark(self, name: str) -> None:
        self.marks_echoed.append((name, self.now_ms()))
        with contextlib.suppress(CallEnded):
            await self._send(
                {
                    "event": "mark",
                    "sequenceNumber": self._next_sequence(),
                    "streamSid": self.stream_sid,
                    "mark": {"name": name},
                }
            )

    async def _receive(self) -> None:
        ws = self.ws
        assert ws is not None
        try:
            async for raw in ws:
                await self._on_server_message(raw)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason or ""
            self._closed.set()

    async def _on_server_message(self, raw: str | bytes) -> None:
        self.received_raw.append(raw)
        if isinstance(raw, bytes):
            # Twilio rejects binary frames (error 31950).
            self.protocol_errors.append("binary frame received")
            return
        try:
            message = orjson.loads(raw)
            event = message["event"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.protocol_errors.append(f"not a Twilio message: {raw[:120]}")
            return
        self.received.append((self.now_ms(), message))
        if message.get("streamSid") != self.stream_sid:
            self.protocol_errors.append(f"{event}: wrong or missing streamSid")
            return
        if event == "media":
            self._on_media(message)
        elif event == "mark":
            self._on_mark(message)
        elif event == "clear":
            await self._on_clear()
        else:
            self.protocol_errors.append(f"unknown event {event!r}")

    def _on_media(self, message: dict[str, Any]) -> None:
        try:
            audio = binascii.a2b_base64(message["media"]["payload"], strict_mode=True)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            self.protocol_errors.append(f"media: bad payload ({exc})")
            return
        self.agent_audio += audio
        self._playback += audio
        if ulaw_is_audible(audio):
            self.agent_arrivals.append((self.now_ms(), len(audio)))
            self._audible_end = self._played_total + len(self._playback)

    def _on_mark(self, message: dict[str, Any]) -> None:
        name = (message.get("mark") or {}).get("name")
        if not isinstance(name, str):
            self.protocol_errors.append("mark: no name")
            return
        self.marks_received.append(name)
        # The mark plays once everything queued before it has played.
        self._pending_marks.append(PendingMark(name, self._played_total + len(self._playback)))

    async def _on_clear(self) -> None:
        """Drop the unplayed audio; the pending marks come back at once (Twilio does so)."""
        self.clears_ms.append(self.now_ms())
        self.played_bytes_at_clear.append(len(self.played))
        self._playback.clear()
        self._audible_end = min(self._audible_end, self._played_total)
        self._drained_at_ms = self.now_ms()
        pending, self._pending_marks = self._pending_marks, []
        for mark in pending:
            await self._echo_mark(mark.name)


def _ws_base(server_url: str) -> str:
    parts = urllib.parse.urlsplit(server_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}"
