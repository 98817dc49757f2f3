"""The far end of an outbound call: what Twilio does after `POST .../Calls.json` when the REST
stand-in (simulator.twilio.rest) is told where the server is (`DialOut`).

Per call, in a background task, as Twilio's documentation has it:

1. Status callbacks to `StatusCallback` (`StatusCallbackMethod`, default POST) for the events
   of `StatusCallbackEvent` (only `completed` when none are listed): `initiated`, `ringing`,
   `answered` (CallStatus `in-progress`), `completed` (the final status: completed, busy,
   no-answer, failed, canceled). Twilio's form fields, `SequenceNumber` 0, 1, 2... per call,
   signed with `X-Twilio-Signature` over the URL as given with the account's auth token.
2. Ringing for the plan's `ring_s`, then the callee plan's outcome (`CalleePlan.answered_by`):
   busy / no-answer / failed end the call there; human / machine answer it.
3. Answered: the call's TwiML (inline `Twiml`, or `Url` fetched signed with `Method`), whose
   `<Connect><Stream>` is opened against the server's real address by a SimulatedTwilioCaller
   (its stream, playback, marks and clears, scripts) with this call's CallSid; no incoming-call
   webhook. The server closing the stream with the call up: `<Connect action>` is requested.
4. Answering machine detection (`MachineDetection` Enable / DetectMessageEnd): with
   `AsyncAmd=true` the decision is POSTed to `AsyncAmdStatusCallback` (AccountSid, CallSid,
   AnsweredBy, MachineDetectionDuration: ms from answer to decision); without it (synchronous
   AMD) Twilio waits for the decision and sends `AnsweredBy` with the TwiML request. Timing as
   documented: speech shorter than `MachineDetectionSpeechThreshold` (2400 ms) followed by
   `MachineDetectionSpeechEndThreshold` (1200 ms) of silence is a `human`; longer speech is a
   machine: `machine_start` at once with Enable, `machine_end_beep` after the beep with
   DetectMessageEnd. No decision within `MachineDetectionTimeout` (30 s): `unknown`.
5. A human says "Hello?" then runs the plan's script (default `callee_conversation()`) and
   hangs up. A machine plays its greeting, a beep (0.5 s of 1 kHz), then records: it sends
   silence and keeps the agent audio received after the beep (`OutboundLeg.message`) until the
   call is hung up through the REST API or `max_recording_s` passes (then it hangs up itself).
6. A REST hang-up (`Status=completed`) ends the stream as Twilio does (stop, close), then the
   `completed` callback; a REST redirect leaves <Connect> for the new TwiML, as for inbound calls.

Tests read the outcome from `standin.legs[call_sid]` (an `OutboundLeg`), or over HTTP from
`GET /_simulator/calls/{CallSid}` ("outbound").
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from audio.g711 import ulaw_encode
from simulator.twilio.caller import (
    BYTES_PER_MS,
    FRAME_BYTES,
    SILENT_FRAME,
    CallEnded,
    SimulatedTwilioCaller,
    TwimlStream,
    WebhookRejected,
    parse_twiml,
)
from simulator.twilio.script import (
    AwaitAgentPlayed,
    ScriptTimeout,
    Silence,
    Speak,
    Step,
)

if TYPE_CHECKING:
    from simulator.twilio.rest import StandInCall, TwilioRestStandIn

API_VERSION = "2010-04-01"
OUTCOMES = ("human", "machine", "busy", "no-answer", "failed")
ANSWERED = ("human", "machine")
# Twilio's AMD defaults (documented on the Calls resource).
DEFAULT_AMD_TIMEOUT_S = 30
DEFAULT_SPEECH_THRESHOLD_MS = 2400
DEFAULT_SPEECH_END_THRESHOLD_MS = 1200
BEEP_HZ = 1000.0
BEEP_DBFS = -10.0
# Longest a leg may run at all, whatever the plan says: every leg ends by itself.
MAX_LEG_S = 600.0


def callee_conversation() -> list[Step]:
    """What a human callee does after "Hello?": hears the agent out, answers, hears the reply,
    and hangs up (simulate_call's standard conversation, from the callee's side)."""
    return [
        AwaitAgentPlayed(),
        Speak(1.5, seed=2),
        AwaitAgentPlayed(),
        Silence(0.5),
    ]


@dataclass(frozen=True)
class DialOut:
    """Where the server is, for the calls the stand-in dials out.

    `server_url` is its real address (http://127.0.0.1:PORT); `public_base_url` the
    PUBLIC_BASE_URL it believes it has (every URL in its TwiML and callbacks starts with it,
    mapped here onto `server_url`); `stream_base_url` the media stream's real ws:// origin when
    it is not the server's own. `auth_token` signs callbacks instead of the account's token.
    """

    server_url: str
    public_base_url: str | None = None
    stream_base_url: str | None = None
    auth_token: str | None = None
    http_timeout_s: float = 10.0


@dataclass(frozen=True)
class CalleePlan:
    """How the dialled party behaves. Times in seconds."""

    answered_by: str = "human"
    ring_s: float = 1.0
    # A human: "Hello?" lasts `greeting_s`, then the script (None: callee_conversation()).
    greeting_s: float = 0.6
    script: Sequence[Step] | None = None
    # A machine: its greeting, the beep, then it records until hung up or for this long.
    machine_greeting_s: float = 3.5
    beep_s: float = 0.5
    max_recording_s: float = 60.0

    def __post_init__(self) -> None:
        if self.answered_by not in OUTCOMES:
            raise ValueError(f"answered_by must be one of {', '.join(OUTCOMES)}")
        if self.ring_s < 0 or self.max_recording_s <= 0:
            raise ValueError("ring_s must be >= 0 and max_recording_s > 0")

    def to_json(self) -> dict[str, Any]:
        return {
            "answered_by": self.answered_by,
            "ring_s": self.ring_s,
            "max_recording_s": self.max_recording_s,
        }


@dataclass(frozen=True)
class SentCallback:
    """One request the stand-in made to the server for the call, and what it answered."""

    kind: str  # "status", "amd", "twiml", "action"
    url: str
    method: str
    params: dict[str, str]
    status: int | None  # None: no answer (the error says why)
    body: str = ""
    error: str | None = None
    at: float = 0.0

    @property
    def call_status(self) -> str | None:
        return self.params.get("CallStatus")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "method": self.method,
            "params": self.params,
            "status": self.status,
            "error": self.error,
        }


@dataclass
class OutboundLeg:
    """An outbound call as the callee side lived it: what tests assert on."""

    call_sid: str
    plan: CalleePlan
    callbacks: list[SentCallback] = field(default_factory=list)
    answered_by: str | None = None  # the AMD decision (None: no AMD, or none yet)
    amd_duration_ms: int | None = None
    twiml: str | None = None
    stream: TwimlStream | None = None
    caller: SimulatedTwilioCaller | None = None
    message: bytearray = field(default_factory=bytearray)  # what the agent left the machine
    action_twiml: str | None = None  # <Connect action>'s answer, if requested
    # callee (hung up / busy...), server (closed the stream), twilio (REST hang-up or redirect),
    # twiml (no stream in it), time limit; None while running.
    ended_by: str | None = None
    errors: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def message_ms(self) -> int:
        return len(self.message) // BYTES_PER_MS

    def status_callbacks(self) -> list[SentCallback]:
        return [c for c in self.callbacks if c.kind == "status"]

    def amd_callbacks(self) -> list[SentCallback]:
        return [c for c in self.callbacks if c.kind == "amd"]

    def view(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_json(),
            "callbacks": [c.to_json() for c in self.callbacks],
            "answered_by": self.answered_by,
            "machine_detection_duration_ms": self.amd_duration_ms,
            "stream_opened": self.caller is not None and self.caller.ws is not None,
            "message_ms": self.message_ms,
            "action_twiml": self.action_twiml,
            "ended_by": self.ended_by,
            "done": self.done.is_set(),
            "errors": list(self.errors),
        }


def beep(seconds: float, *, hz: float = BEEP_HZ, rate: int = 8000) -> bytes:
    """An answering machine's beep: a pure tone, mu-law."""
    t = np.arange(round(seconds * rate)) / rate
    amplitude = 32768.0 * 10.0 ** (BEEP_DBFS / 20.0)
    return ulaw_encode((amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16))


def _first(form: Mapping[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _int(form: Mapping[str, list[str]], name: str, default: int) -> int:
    value = _first(form, name)
    return int(value) if value is not None and value.strip().lstrip("-").isdigit() else default


def callback_events(form: Mapping[str, list[str]]) -> set[str]:
    """StatusCallbackEvent, repeated or space-separated; Twilio sends `completed` alone when
    none are listed."""
    events = {event for value in form.get("StatusCallbackEvent", []) for event in value.split()}
    return events or {"completed"}


class Callee:
    """Plays Twilio and the dialled party for one outbound call (`await callee.run()`)."""

    def __init__(
        self, standin: TwilioRestStandIn, call: StandInCall, plan: CalleePlan, dial_out: DialOut
    ) -> None:
        self.standin = standin
        self.call = call
        self.plan = plan
        self.form = call.params
        self.leg = OutboundLeg(call.sid, plan)
        token = dial_out.auth_token or standin.accounts.get(call.account_sid, ("",))[0]
        # One caller for the whole leg: its request signing and public -> real URL mapping
        # serve the callbacks too, before any stream exists.
        self.caller = SimulatedTwilioCaller(
            dial_out.server_url,
            auth_token=token or None,
            public_base_url=dial_out.public_base_url,
            stream_base_url=dial_out.stream_base_url,
            from_number=call.from_,
            to_number=call.to,
            account_sid=call.account_sid,
            call_sid=call.sid,
            http_timeout_s=dial_out.http_timeout_s,
            answer_whisper=True,
        )
        self.caller.webhook_params = self.call_params("in-progress")
        self.events = callback_events(self.form)
        self._sequence = 0
        self._answered_at: float | None = None
        self._amd_task: asyncio.Task[None] | None = None
        # When the callee's speech and beep ended, on the event loop's clock (the stream's: the
        # last frame sent plays for 20 ms more), once they have.
        self._speech_ended_at: float | None = None
        self._beep_ended_at: float | None = None
        # Synchronous AMD decided before the stream opened: the greeting (and, for a message
        # end, the beep) were heard then, so the stream starts after them.
        self._sync_decision: str | None = None

    # --- what Twilio sends ------------------------------------------------------------------------

    def call_params(self, status: str) -> dict[str, str]:
        """The fields of every request Twilio makes about an outbound-api call."""
        call = self.call
        return {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": status,
            "Direction": "outbound-api",
            "From": call.from_,
            "To": call.to,
            "Called": call.to,
            "Caller": call.from_,
        }

    async def request(
        self, kind: str, url: str, method: str, params: Mapping[str, str]
    ) -> SentCallback:
        """One signed request to `url` (mapped onto the server's real address), recorded."""
        target, signed = self.caller._target(url)
        method = method.upper()
        try:
            status, body = await asyncio.to_thread(
                self.caller._request, target, signed, params, method
            )
            sent = SentCallback(kind, url, method, dict(params), status, body, at=time.monotonic())
        except OSError as exc:
            sent = SentCallback(
                kind, url, method, dict(params), None, error=str(exc), at=time.monotonic()
            )
            self.leg.errors.append(f"{kind} {url}: {exc}")
        self.leg.callbacks.append(sent)
        self.standin.notify()
        return sent

    async def status_callback(self, event: str, status: str) -> None:
        """The `event` callback (if asked for) carrying CallStatus `status`."""
        url = _first(self.form, "StatusCallback")
        if url is None or event not in self.events:
            return
        params = {
            **self.call_params(status),
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(self._sequence),
            "Timestamp": email.utils.formatdate(usegmt=False),
        }
        self._sequence += 1
        if event == "completed":
            seconds = int(self.call.duration() or 0)
            params["CallDuration"] = str(seconds)
            params["Duration"] = str(-(-seconds // 60))  # billed minutes, rounded up
        if self.leg.answered_by is not None:
            params["AnsweredBy"] = self.leg.answered_by
        method = _first(self.form, "StatusCallbackMethod") or "POST"
        await self.request("status", url, method, params)

    def set_status(self, status: str) -> None:
        """The stand-in's record of the call, kept in step with the callbacks."""
        if not self.call.final:
            self.standin.set_status(self.call.sid, status)

    # --- the call ---------------------------------------------------------------------------------

    async def run(self) -> OutboundLeg:
        try:
            async with asyncio.timeout(MAX_LEG_S):
                await self._run()
        except TimeoutError:
            self.leg.ended_by = self.leg.ended_by or "time limit"
            await self.caller.hang_up("stop")
        except Exception as exc:  # a stand-in bug must not pass silently, nor kill the server
            self.leg.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if self._amd_task is not None:
                self._amd_task.cancel()
            # Cancelled (the stand-in stopping) or failed mid-call: the stream goes down as
            # a call going down takes it (stop, close).
            with contextlib.suppress(Exception):
                await self.caller.hang_up("stop")
            if not self.call.final:
                self.set_status("completed" if self.call.status == "in-progress" else "canceled")
            if not any(c.kind == "status" and c.call_status in _FINAL for c in self.leg.callbacks):
                with contextlib.suppress(Exception):
                    await self.status_callback("completed", self.call.status)
            self.leg.done.set()
            self.standin.notify()
        return self.leg

    async def _run(self) -> None:
        await self.status_callback("initiated", "initiated")
        self.set_status("ringing")
        await self.status_callback("ringing", "ringing")
        if await self._hung_up_within(self.plan.ring_s):
            return  # canceled while ringing: the finally sends the final callback
        outcome = self.plan.answered_by
        if outcome not in ANSWERED:
            self.set_status(outcome)
            self.leg.ended_by = "callee"
            await self.status_callback("completed", outcome)
            return
        self.set_status("in-progress")
        self._answered_at = self._now()
        await self.status_callback("answered", "in-progress")
        await self._answer(outcome)
        self.set_status("completed")
        await self.status_callback("completed", "completed")

    async def _hung_up_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await self.standin.wait_until(lambda: self.call.final, seconds)
        return self.call.final

    async def _answer(self, outcome: str) -> None:
        params = self.call_params("in-progress")
        detection = _first(self.form, "MachineDetection")
        if detection is not None and _first(self.form, "AsyncAmd") != "true":
            # Synchronous AMD: Twilio decides before it asks for the TwiML.
            answered_by, after_ms = self._decision(outcome, detection)
            await asyncio.sleep(min(after_ms, self._amd_timeout_ms()) / 1000)
            if after_ms > self._amd_timeout_ms():
                answered_by = "unknown"
            self._decided(answered_by)
            self._sync_decision = answered_by
            params["AnsweredBy"] = answered_by
        twiml = await self._twiml(params)
        if self.call.final:
            self.leg.ended_by = "twilio"  # hung up through the REST API meanwhile
            return
        if twiml is None:
            self.leg.ended_by = "twiml"  # no instructions: Twilio ends the call (error 11200)
            return
        try:
            self.leg.stream = self.caller.stream = parse_twiml(twiml)
        except WebhookRejected as exc:
            # TwiML without a stream (a <Say>, a <Hangup>): Twilio plays it and the call ends.
            self.leg.errors.append(str(exc))
            self.leg.ended_by = "twiml"
            return
        await self._stream(outcome, detection)

    async def _twiml(self, params: dict[str, str]) -> str | None:
        url = _first(self.form, "Url")
        if url is None:
            self.leg.twiml = _first(self.form, "Twiml")
            return self.leg.twiml
        method = _first(self.form, "Method") or "POST"
        sent = await self.request("twiml", url, method, params)
        if sent.status != 200:
            self.leg.errors.append(f"TwiML request answered {sent.status}: {sent.body[:200]}")
            return None
        self.leg.twiml = sent.body
        return sent.body

    async def _stream(self, outcome: str, detection: str | None) -> None:
        caller = self.leg.caller = self.caller
        caller.twiml = self.leg.twiml or ""
        try:
            await caller.connect_stream()
        except OSError as exc:
            self.leg.errors.append(f"media stream: {exc}")
            self.leg.ended_by = "callee"
            return
        self.standin.notify()
        if detection is not None and _first(self.form, "AsyncAmd") == "true":
            self._amd_task = asyncio.create_task(self._async_amd(outcome, detection))
        watcher = asyncio.create_task(self._watch_rest())
        ended_by = "callee"
        try:
            if outcome == "human":
                await self._human()
            else:
                await self._machine()
        except CallEnded:
            ended_by = "server"
        except ScriptTimeout as exc:
            caller.script_error = str(exc)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if caller.ended_by_rest or self.call.ended_by_rest:
            ended_by = "twilio"
        await caller.hang_up("stop")
        self.leg.ended_by = ended_by
        if ended_by == "server" and caller.stream is not None and caller.stream.action:
            await self._connect_action(caller.stream.action)

    async def _watch_rest(self) -> None:
        """Act on the server's REST requests as Twilio does: a hang-up ends the stream (stop,
        close); a redirect leaves <Connect> for the new TwiML (the caller's own handling)."""
        seen = len(self.call.redirects)
        caller = self.caller
        while not caller._closed.is_set():
            with contextlib.suppress(TimeoutError):
                await self.standin.wait_until(
                    lambda: (
                        len(self.call.redirects) > seen
                        or self.call.final
                        or caller._closed.is_set()
                    ),
                    MAX_LEG_S,
                )
            if len(self.call.redirects) > seen:
                await caller._redirected(self.call.redirects[-1].to_json())
                return
            if self.call.final:
                await caller._end_as_twilio()
                return

    async def _connect_action(self, action: str) -> None:
        """The server closed the stream with the call up: Twilio requests <Connect action>."""
        sent = await self.request("action", action, "POST", self.call_params("in-progress"))
        self.leg.action_twiml = sent.body if sent.status == 200 else f"HTTP {sent.status}"

    # --- the two kinds of answer ------------------------------------------------------------------

    async def _human(self) -> None:
        if self._sync_decision is None:
            await self.caller.run([Speak(self.plan.greeting_s, seed=11)])
        self._speech_ended_at = self._stream_now()
        self.standin.notify()
        script = self.plan.script if self.plan.script is not None else callee_conversation()
        await self.caller.run(script)

    async def _machine(self) -> None:
        caller = self.caller
        if self._sync_decision not in ("machine_end_beep", "unknown"):
            await caller.run([Speak(self.plan.machine_greeting_s, seed=21)])
            # A greeting short enough for a human's reads as one (AMD hears only audio).
            self._speech_ended_at = self._stream_now()
            self.standin.notify()
            tone = beep(self.plan.beep_s)
            for offset in range(0, len(tone), FRAME_BYTES):
                frame = tone[offset : offset + FRAME_BYTES]
                await caller._send_frame(frame.ljust(FRAME_BYTES, SILENT_FRAME[:1]))
        self._beep_ended_at = self._stream_now()
        self.standin.notify()
        # The recording: every byte of agent audio from here on is the message left.
        start = len(caller.agent_audio)
        deadline = caller._clock_ms + self.plan.max_recording_s * 1000
        try:
            while caller._clock_ms < deadline:
                await caller._send_frame(SILENT_FRAME)
                self.leg.message[:] = caller.agent_audio[start:]
        finally:
            self.leg.message[:] = caller.agent_audio[start:]

    # --- answering machine detection ------------------------------------------------------------

    def _amd_timeout_ms(self) -> int:
        return _int(self.form, "MachineDetectionTimeout", DEFAULT_AMD_TIMEOUT_S) * 1000

    def _decision(self, outcome: str, detection: str) -> tuple[str, float]:
        """What AMD decides for this callee, and when (ms after answer), as documented: speech
        shorter than the speech threshold then silence is a human; longer speech a machine
        (at once with Enable; after the beep with DetectMessageEnd)."""
        speech_threshold = _int(
            self.form, "MachineDetectionSpeechThreshold", DEFAULT_SPEECH_THRESHOLD_MS
        )
        end_threshold = _int(
            self.form, "MachineDetectionSpeechEndThreshold", DEFAULT_SPEECH_END_THRESHOLD_MS
        )
        speech_ms = 1000 * (
            self.plan.greeting_s if outcome == "human" else self.plan.machine_greeting_s
        )
        if speech_ms < speech_threshold:
            return "human", speech_ms + end_threshold
        if detection == "Enable":
            return "machine_start", float(speech_threshold)
        return "machine_end_beep", speech_ms + 1000 * self.plan.beep_s

    def _decided(self, answered_by: str) -> None:
        assert self._answered_at is not None
        self.leg.answered_by = self.call.answered_by = answered_by
        self.leg.amd_duration_ms = round((self._now() - self._answered_at) * 1000)
        self.standin.notify()

    async def _async_amd(self, outcome: str, detection: str) -> None:
        """Post the decision when the audio makes it, or `unknown` at the timeout."""
        answered_by, _ = self._decision(outcome, detection)
        assert self._answered_at is not None
        remaining_s = self._amd_timeout_ms() / 1000 - (self._now() - self._answered_at)
        try:
            async with asyncio.timeout(max(0.0, remaining_s)):
                await self._decision_heard(answered_by)
        except TimeoutError:
            answered_by = "unknown"
        self._decided(answered_by)
        url = _first(self.form, "AsyncAmdStatusCallback")
        if url is None:
            return
        params = {
            "AccountSid": self.call.account_sid,
            "CallSid": self.call.sid,
            "AnsweredBy": answered_by,
            "MachineDetectionDuration": str(self.leg.amd_duration_ms),
        }
        method = _first(self.form, "AsyncAmdStatusCallbackMethod") or "POST"
        await self.request("amd", url, method, params)

    async def _decision_heard(self, answered_by: str) -> None:
        """Wait for the moment the audio sent on the stream makes the decision."""
        end_threshold = _int(
            self.form, "MachineDetectionSpeechEndThreshold", DEFAULT_SPEECH_END_THRESHOLD_MS
        )
        speech_threshold = _int(
            self.form, "MachineDetectionSpeechThreshold", DEFAULT_SPEECH_THRESHOLD_MS
        )
        if answered_by == "human":
            await self._until(lambda: self._speech_ended_at is not None)
            assert self._speech_ended_at is not None
            await self._sleep_until(self._speech_ended_at + end_threshold / 1000)
        elif answered_by == "machine_start":
            # Speech has gone on past the speech threshold: a machine's greeting.
            await self._until(lambda: self.caller.frames_sent > 0)
            await self._sleep_until(self.caller._t0 + speech_threshold / 1000)
        else:
            await self._until(lambda: self._beep_ended_at is not None)
            assert self._beep_ended_at is not None
            await self._sleep_until(self._beep_ended_at)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _stream_now(self) -> float:
        """When the audio sent so far has played out (the stream's schedule)."""
        return self.caller._t0 + self.caller._clock_ms / 1000

    async def _sleep_until(self, moment: float) -> None:
        await asyncio.sleep(max(0.0, moment - self._now()))

    async def _until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self.standin.wait_until(predicate, MAX_LEG_S)


_FINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
