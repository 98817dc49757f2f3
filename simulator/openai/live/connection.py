"""One GPT-Live session on the stand-in: the protocol state machine, the continuous output
track, and everything it observed (for tests).

What the stand-in promises, as the service behaves wherever the bridge can tell:

* the first client event must be `session.start` (its configuration checked against the SDK's
  types, unknown fields refused, as the service's strict configuration does); anything else
  before `session.started`, or a second session.start, is an `error`. `session.started` carries
  the resolved session (id, `expires_at`, the default voice and format filled in);
* **the session timeline** is the caller's audio: milliseconds of `session.input_audio.append`
  audio so far. The caller's turns are found in it by the energy VAD (`simulator.openai.vad`):
  speech, then `turn_silence_ms` of quiet, ends a turn. Its transcript is the next scripted
  caller line, as `session.input_transcript.delta`s timed over the speech (`start_ms`/`end_ms`
  on the timeline), delivered `transcript_delay_s` after the turn ended (asynchronously, as the
  service transcribes: often after the reply has begun);
* **the output track** is one continuous `session.output_audio.delta` stream from
  session.started to the end, `chunk_ms` a delta, paced at real time on an absolute schedule
  (the audio sent is always the time elapsed, to within a chunk): silence, or speech
  (`simulator.speech`) while the model talks. The track is not the timeline: a client that
  sends a burst of audio (a backlog after a reconnect) moves the timeline ahead of it;
* a reply starts `reply_delay_s` after a caller turn ends (never while the caller is speaking),
  its words as `session.output_transcript.delta`s, each sent once its audio has gone out,
  timed on the session timeline from where it stood when the reply began. No VAD events, no
  truncate or cancel: when the caller talks over a reply, the model stops by itself at the
  next chunk, and its transcript stops with the last whole word;
* `session.commentary.append` ("Greet the caller now with: ...") is said like a reply after
  the same delay. As the Realtime stand-in does with response instructions, **a quoted passage
  in it ("..." or curly quotes) is said word for word**; without one, the next scripted reply;
* tools go through Responses delegation (`delegation.type` "responses"): at a caller turn, the
  scripted calls (`ScriptedToolCall`) or the default policy (`simulator.openai.tools`) pick
  function tools from `delegation.responses.tools`. The model says the call's `say_first` (if
  any) as its acknowledgement, `session.delegation.created` names the delegation, and after
  `backend_delay_s` the backend's Responses stream arrives in `response.event`s (see
  `backend`): a `response.output_item.done` with each `function_call`. The client answers
  every call with `response.item.create` (a `function_call_output`) and then `response.create`;
  the backend answers in text (`tool_reply`, or the call's `reply_after`) and the model says
  it. A response.create while a call has no output, or an output for an unknown call, is an
  `error` and is listed in `protocol_problems`;
* `session.usage.updated` every `usage_interval_s` (cumulative whole seconds); the backend's
  tokens in each nested `response.completed`;
* `session.close` ends with `session.closed` (reason `close_requested`, the final usage) and a
  normal close; at `session_limit_s`, `session.closed` with reason `expired`, then the close;
* echo mode (load runs): each appended frame comes straight back as output audio, with no
  VAD, no replies and no paced track.

Every client event, every appended byte, the whole output track, the caller's turns and the
model's utterances are kept per connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from websockets.asyncio.server import ServerConnection

from audio.convert import pcm16_from_bytes, pcm16_to_bytes
from audio.g711 import ulaw_decode, ulaw_encode
from simulator.openai import protocol as rt
from simulator.openai.connection import Faults, ReceivedEvent, SessionSocket
from simulator.openai.live import backend
from simulator.openai.live import protocol as lp
from simulator.openai.protocol import Problem
from simulator.openai.timing import Delay, connection_rng, delay_range, draw
from simulator.openai.tools import (
    DEFAULT_SAY_FIRST,
    PlannedCall,
    ScriptedToolCall,
    default_choice,
    function_tools,
)
from simulator.openai.tools import arguments_for as schema_arguments
from simulator.openai.vad import EnergyVad, TurnSettings
from simulator.speech import speech

if TYPE_CHECKING:
    from simulator.openai.standin import RealtimeStandIn

# The Realtime stand-in's defaults, speech_stopped -> response.created -> first audio, summed:
# GPT-Live has no response events, only the reply's audio on the track.
DEFAULT_REPLY_DELAY_S = (0.3, 0.75)
DEFAULT_TRANSCRIPT_DELAY_S = (0.3, 1.5)  # as the Realtime stand-in's transcription delay
DEFAULT_BACKEND_DELAY_S = (0.2, 0.6)  # the Responses model's time to its first event
# The Live session limit is not in the SDK; the Realtime one (60 minutes) stands in for it.
DEFAULT_SESSION_LIMIT_S = 3600.0
DEFAULT_USAGE_INTERVAL_S = 15.0
CLOSE_NORMAL = 1000


@dataclass(frozen=True)
class LiveOptions:
    """The GPT-Live session's timing (seconds, fixed or (low, high) drawn uniformly)."""

    chunk_ms: int = 20
    reply_delay_s: Delay = DEFAULT_REPLY_DELAY_S
    transcript_delay_s: Delay = DEFAULT_TRANSCRIPT_DELAY_S
    backend_delay_s: Delay = DEFAULT_BACKEND_DELAY_S
    session_limit_s: float = DEFAULT_SESSION_LIMIT_S
    usage_interval_s: float = DEFAULT_USAGE_INTERVAL_S
    turn_silence_ms: int = 500

    def __post_init__(self) -> None:
        delay_range(self.reply_delay_s, "reply_delay_s")
        delay_range(self.transcript_delay_s, "transcript_delay_s")
        delay_range(self.backend_delay_s, "backend_delay_s")
        if self.chunk_ms <= 0 or self.session_limit_s <= 0 or self.usage_interval_s <= 0:
            raise ValueError("chunk_ms, session_limit_s and usage_interval_s must be positive")


@dataclass
class CallerTurn:
    """A caller turn the VAD found, on the session timeline, and what the caller said."""

    start_ms: int
    end_ms: int
    text: str


@dataclass
class Utterance:
    """Something the model says on the output track."""

    text: str
    samples: np.ndarray
    rate: int
    start_ms: float = 0.0  # where it began on the session timeline (the input audio's clock)
    track_ms: float = 0.0  # where it began on the output track
    position: int = 0  # samples played so far
    words_said: int = 0
    interrupted: bool = False

    @property
    def seconds(self) -> float:
        return self.samples.size / self.rate

    @property
    def played_ms(self) -> float:
        return self.position * 1000.0 / self.rate

    @property
    def said(self) -> str:
        return " ".join(self.text.split()[: self.words_said])

    def word_span(self, index: int, count: int) -> tuple[int, int]:
        step = self.seconds * 1000.0 / count
        return round(self.start_ms + index * step), round(self.start_ms + (index + 1) * step)


@dataclass
class PendingReply:
    """A reply the model has decided on, to start once `due` (time.monotonic()) has come and
    nothing else is being said. `text` None: the next scripted reply, chosen when it starts.
    A reply to a caller turn is dropped if the caller speaks again before it starts."""

    due: float
    text: str | None
    to_caller_turn: bool


@dataclass
class OpenCall:
    """A function call the backend made; the client owes it an output."""

    call: PlannedCall
    delegation_id: str
    answered: bool = False


@dataclass
class Delegation:
    delegation_id: str
    calls: list[OpenCall] = field(default_factory=list)
    reply_after: str | None = None
    outputs_since_create: int = 0


Handler = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


class LiveConnection(SessionSocket):
    """One GPT-Live client connection: the session plus everything observed, for tests."""

    def __init__(
        self,
        standin: RealtimeStandIn,
        ws: ServerConnection,
        *,
        index: int,
        faults: Faults | None,
    ) -> None:
        super().__init__(standin, ws, index=index, faults=faults)
        self.options: LiveOptions = standin.live
        self.output_audio = bytearray()  # the whole output track, as sent
        self.caller_turns: list[CallerTurn] = []
        self.utterances: list[Utterance] = []
        self.function_outputs: list[dict[str, Any]] = []
        self.protocol_problems: list[str] = []
        self.skipped_tool_calls: list[str] = []
        self.closed_reason: lp.CloseReason | None = None
        # The session.
        self.session: dict[str, Any] | None = None  # the resolved session, once started
        self.format = lp.AudioFormat("pcm", 24000)
        self.started_at: float | None = None  # time.monotonic() of session.started
        self.muted = False
        self.vad = EnergyVad(start_ms=standin.vad_start_ms)
        self.speech_start_ms: int | None = None
        self.output_samples = 0
        self.speaking: Utterance | None = None
        self.pending: list[PendingReply] = []
        self.scripted = 0  # scripted replies said
        self.heard = ""
        self.called_tools: set[str] = set()
        self.scripted_used: set[int] = set()
        self.delegations: dict[str, Delegation] = {}
        self.calls: dict[str, OpenCall] = {}
        self.previous_backend_input = 0
        self._input_words = 0
        self._output_words = 0
        self._last_transcript: asyncio.Task[None] | None = None
        self._rng_reply = connection_rng(standin.seed, index, "live-reply")
        self._rng_transcript = connection_rng(standin.seed, index, "live-transcript")
        self._rng_backend = connection_rng(standin.seed, index, "live-backend")

    # --- observation helpers ------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """session.closed was sent (or the socket is gone): nothing more goes out."""
        return self.closed_reason is not None or self.closed or self.stalled

    @property
    def input_ms(self) -> float:
        """The session timeline: milliseconds of caller audio appended so far."""
        return self.vad.samples * 1000.0 / self.format.rate

    @property
    def output_ms(self) -> float:
        return self.output_samples * 1000.0 / self.format.rate

    def elapsed_s(self) -> float:
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at

    # --- sending ------------------------------------------------------------------------------

    async def emit(self, event_type: str, **fields: Any) -> None:
        await self._send({"type": event_type, "event_id": rt.new_id("event"), **fields})

    async def emit_error(self, problem: Problem, cause: dict[str, Any] | None = None) -> None:
        message, code, param = problem
        client_event_id = cause.get("event_id") if cause else None
        event = lp.error_event(
            message,
            code=code,
            param=param,
            client_event_id=client_event_id if isinstance(client_event_id, str) else None,
        )
        await self._send({**event, "event_id": rt.new_id("event")})

    async def _send(self, event: dict[str, Any]) -> None:
        if self.finished:
            return
        await self._write(event)

    # --- lifecycle and faults -----------------------------------------------------------------

    async def drop(self) -> None:
        """Lose the connection as a network does: no session.closed, no close frame."""
        if self.closed:
            return
        self.dropped = True
        self.close_code = 1006
        self._stop_work()
        self.ws.transport.abort()
        self.standin.notify()

    async def stall(self) -> None:
        """Go silent both ways with the socket open: no events (the track stops), no reads."""
        if self.closed or self.stalled:
            return
        self.stalled = True
        self._stop_work()
        self.ws.transport.pause_reading()
        self.standin.notify()

    async def expire(self) -> None:
        """The session limit: session.closed (reason expired), then the close."""
        await self.finish("expired")

    async def finish(self, reason: lp.CloseReason, cause: dict[str, Any] | None = None) -> None:
        """End the session as the service does: session.closed with the reason, the final
        snapshot and usage; then a normal close. Nothing is sent after it."""
        if self.finished or self.session is None:
            return
        fields: dict[str, Any] = {
            "reason": reason,
            "session": self.session,
            "usage": self._usage(),
        }
        if cause is not None and isinstance(cause.get("event_id"), str):
            fields["client_event_id"] = cause["event_id"]
        await self.emit("session.closed", **fields)
        self.closed_reason = reason
        self._stop_work()
        self.standin.notify()
        self.close_code = CLOSE_NORMAL
        await self.ws.close(CLOSE_NORMAL)

    # --- client events ------------------------------------------------------------------------

    async def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            await self.emit_error(("Binary frames are not supported.", "invalid_request", None))
            return
        try:
            payload = orjson.loads(message)
            if not isinstance(payload, dict):
                raise TypeError(payload)
        except (orjson.JSONDecodeError, TypeError):
            problem = ("We could not parse the JSON body of your request.", "invalid_json", None)
            await self.emit_error(problem)
            return
        self.received.append(ReceivedEvent(str(payload.get("type")), payload, time.monotonic()))
        self.standin.notify()
        _, problem = lp.parse_client_event(payload)
        if problem is None:
            problem = self._order_problem(payload)
        if problem is not None:
            await self.emit_error(problem, payload)
            return
        await self._handlers()[payload["type"]](payload)

    def _order_problem(self, payload: dict[str, Any]) -> Problem | None:
        """Nothing but session.start before session.started; session.start only once."""
        starting = payload["type"] == "session.start"
        if self.session is None and not starting:
            message = "Send session.start first, and wait for session.started before other events."
            return message, "session_not_started", None
        if self.session is not None and starting:
            return "The session has already started.", "session_already_started", None
        return None

    def _handlers(self) -> dict[str, Handler]:
        unsupported = self._on_unsupported
        return {
            "session.start": self._on_start,
            "session.update": self._on_update,
            "session.input_audio.append": self._on_append,
            "session.input_audio.mute": self._on_mute,
            "session.input_audio.unmute": self._on_mute,
            "session.commentary.append": self._on_commentary,
            "session.instructions.append": self._on_context,
            "session.thinking.append": self._on_context,
            "response.item.create": self._on_item_create,
            "response.create": self._on_response_create,
            "session.close": self._on_close,
            "session.output_audio.fixture.play": unsupported,
            "decision.create": unsupported,
            "decision.item.create": unsupported,
            "decision.item.delete": unsupported,
        }

    async def _on_unsupported(self, payload: dict[str, Any]) -> None:
        # Audio fixtures and Decisions are beyond the stand-in: refused plainly, the session
        # goes on.
        message = f"The GPT-Live stand-in does not support '{payload['type']}'."
        await self.emit_error((message, "unsupported_value", "type"), payload)

    async def _on_start(self, payload: dict[str, Any]) -> None:
        config = payload["session"]
        problem = lp.session_problem(config)
        if problem is not None:
            await self.emit_error(problem, payload)
            return
        faults = self.faults
        if faults is not None and faults.configure_delay_s:
            await asyncio.sleep(faults.configure_delay_s)
        limit_s = self.options.session_limit_s
        self.session = lp.resolved_session(
            config, session_id=rt.new_id("sess"), expires_at=lp.expires_at(limit_s)
        )
        self.format = lp.audio_format(self.session)
        self.started_at = time.monotonic()
        started: dict[str, Any] = {"session": self.session}
        if isinstance(payload.get("event_id"), str):
            started["client_event_id"] = payload["event_id"]
        await self.emit("session.started", **started)
        self.spawn_after(limit_s, self.expire)
        self.spawn(self._usage_updates())
        if not self.standin.echo:
            self.spawn(self._track())

    async def _on_update(self, payload: dict[str, Any]) -> None:
        assert self.session is not None
        merged, problem = lp.merge_update(self.session, payload["session"])
        if problem is not None or merged is None:
            await self.emit_error(problem or rt.missing("session"), payload)
            return
        self.session = merged
        fields: dict[str, Any] = {"session": self.session}
        if isinstance(payload.get("event_id"), str):
            fields["client_event_id"] = payload["event_id"]
        await self.emit("session.updated", **fields)

    async def _on_append(self, payload: dict[str, Any]) -> None:
        try:
            audio = binascii.a2b_base64(payload["audio"], strict_mode=True)
        except (ValueError, binascii.Error):
            problem = ("Invalid 'audio'. Expected base64-encoded audio bytes.", "invalid_value")
            await self.emit_error((*problem, "audio"), payload)
            return
        self.appends += 1
        self.audio += audio
        if self.standin.echo:
            await self._echo(payload["audio"], audio)
        else:
            await self._listen(audio)
        await self._fault_after_append()

    async def _echo(self, audio_b64: str, audio: bytes) -> None:
        """Echo mode: the frame comes straight back as the output track."""
        self.vad.samples += len(audio) // self.format.sample_bytes
        self.output_samples += len(audio) // self.format.sample_bytes
        self.output_audio += audio
        await self._send({"type": "session.output_audio.delta", "delta": audio_b64})

    async def _on_mute(self, payload: dict[str, Any]) -> None:
        # Muted, the model hears silence; the timeline still advances with the audio.
        self.muted = payload["type"] == "session.input_audio.mute"
        acknowledged = "muted" if self.muted else "unmuted"
        await self.emit(f"session.input_audio.{acknowledged}", **_client_id(payload))

    async def _on_commentary(self, payload: dict[str, Any]) -> None:
        problem = self._delegation_id_problem(payload)
        if problem is not None:
            await self.emit_error(problem, payload)
            return
        now = int(self.input_ms)
        await self.emit(
            "session.commentary.appended", start_ms=now, end_ms=now, **_client_id(payload)
        )
        passage = rt.quoted_passage(payload["content"])
        self._decide(passage, to_caller_turn=False)

    async def _on_context(self, payload: dict[str, Any]) -> None:
        """Instructions and thinking: kept as context (a stand-in cannot follow them), and
        acknowledged on the timeline."""
        problem = self._delegation_id_problem(payload)
        if problem is not None:
            await self.emit_error(problem, payload)
            return
        now = int(self.input_ms)
        acknowledged = payload["type"].removesuffix(".append") + ".appended"
        await self.emit(acknowledged, start_ms=now, end_ms=now, **_client_id(payload))

    def _delegation_id_problem(self, payload: dict[str, Any]) -> Problem | None:
        # "Required, nullable": present, null for general context. Non-null names a client
        # delegation, which the stand-in never creates (and Responses delegation refuses).
        if "delegation_id" not in payload:
            return rt.missing("delegation_id")
        delegation_id = payload["delegation_id"]
        if delegation_id is None:
            return None
        if _delegation_type(self.session) == "responses":
            message = "Non-null delegation_id values are not accepted with Responses delegation."
            return message, "invalid_value", "delegation_id"
        return f"Delegation '{delegation_id}' not found.", "invalid_value", "delegation_id"

    async def _on_close(self, payload: dict[str, Any]) -> None:
        await self.finish("close_requested", payload)

    # --- the caller: turns and their transcript -----------------------------------------------

    def _decode(self, audio: bytes) -> np.ndarray:
        if self.format.codec == "pcmu":
            return ulaw_decode(audio)
        return pcm16_from_bytes(audio[: len(audio) - len(audio) % 2])

    async def _listen(self, audio: bytes) -> None:
        """Advance the timeline by the audio and act on each speech start and turn end."""
        pcm = self._decode(audio)
        if self.muted:
            pcm = np.zeros_like(pcm)
        settings = TurnSettings(
            prefix_padding_ms=0, silence_duration_ms=self.options.turn_silence_ms
        )
        changes = self.vad.feed(
            pcm,
            self.format.rate,
            threshold=settings.threshold,
            prefix_padding_ms=settings.prefix_padding_ms,
            silence_duration_ms=settings.silence_duration_ms,
        )
        for change in changes:
            if change.started:
                self._caller_started(change.at_ms)
            else:
                self._caller_stopped(change.at_ms - settings.silence_duration_ms)

    def _caller_started(self, at_ms: int) -> None:
        """The caller speaks: a reply being said stops (the model yields when talked over),
        and replies to the caller's last turn not yet begun are dropped (it keeps listening)."""
        self.speech_start_ms = at_ms
        if self.speaking is not None:
            self.speaking.interrupted = True
        self.pending = [reply for reply in self.pending if not reply.to_caller_turn]

    def _caller_stopped(self, end_ms: int) -> None:
        start_ms = self.speech_start_ms if self.speech_start_ms is not None else end_ms
        self.speech_start_ms = None
        text = self.standin.caller_line(len(self.caller_turns))
        self.heard = text
        turn = CallerTurn(start_ms, end_ms, text)
        self.caller_turns.append(turn)
        self.standin.notify()
        self._last_transcript = self.spawn(self._transcribe(turn, self._last_transcript))
        calls = self._plan_tools(len(self.caller_turns))
        if calls is not None:
            self.spawn(self._delegate(*calls))
        else:
            self._decide(None, to_caller_turn=True)

    async def _transcribe(self, turn: CallerTurn, previous: asyncio.Task[None] | None) -> None:
        """The turn's transcript, after the service's transcription delay: its words timed
        evenly over the speech on the timeline."""
        delay_s = draw(self._rng_transcript, delay_range(self.options.transcript_delay_s, ""))
        words = turn.text.split()
        await asyncio.sleep(delay_s * 0.6)
        step_s = delay_s * 0.4 / max(1, len(words))
        span = (turn.end_ms - turn.start_ms) / max(1, len(words))
        # Turns in order: deltas are joined in delivery order, so a short turn transcribed
        # faster must not land before (or inside) the previous one.
        if previous is not None:
            await asyncio.wait([previous])
        for index, word in enumerate(words):
            delta = word if not self._input_words else " " + word
            self._input_words += 1
            await self.emit(
                "session.input_transcript.delta",
                delta=delta,
                start_ms=round(turn.start_ms + index * span),
                end_ms=round(turn.start_ms + (index + 1) * span),
            )
            await asyncio.sleep(step_s)

    # --- the model: what it says, on the output track ------------------------------------------

    def _decide(self, text: str | None, *, to_caller_turn: bool) -> None:
        """Say `text` (None: the next scripted reply) after the model's delay."""
        delay_s = draw(self._rng_reply, delay_range(self.options.reply_delay_s, ""))
        self.pending.append(PendingReply(time.monotonic() + delay_s, text, to_caller_turn))

    def _next_utterance(self) -> Utterance | None:
        """The reply to start now, if one is due and the caller is not speaking."""
        now = time.monotonic()
        if self.vad.speaking or not self.pending or self.pending[0].due > now:
            return None
        pending = self.pending.pop(0)
        if pending.text is None:
            reply = self.standin.reply_for(self.scripted)
            self.scripted += 1
        else:
            reply = rt.spoken_reply(pending.text)
        seconds, text = reply.seconds, reply.text
        seed = self.index * 1000 + len(self.utterances)
        samples = speech(seconds, rate=self.format.rate, seed=seed)
        utterance = Utterance(
            text, samples, self.format.rate, start_ms=self.input_ms, track_ms=self.output_ms
        )
        self.utterances.append(utterance)
        return utterance

    async def _track(self) -> None:
        """The continuous output track: a chunk whenever the audio sent falls behind the time
        elapsed, on an absolute schedule, so the track is as long as the session."""
        assert self.started_at is not None
        while not self.finished:
            elapsed_ms = self.elapsed_s() * 1000.0
            while self.output_ms <= elapsed_ms and not self.finished:
                await self._send_chunk()
            next_s = self.started_at + self.output_ms / 1000.0 - time.monotonic()
            await asyncio.sleep(max(0.0, next_s))

    async def _send_chunk(self) -> None:
        size = self.format.rate * self.options.chunk_ms // 1000
        utterance = self._current_utterance()
        piece = np.zeros(size, dtype=np.int16)
        if utterance is not None:
            part = utterance.samples[utterance.position : utterance.position + size]
            piece[: part.size] = part
            utterance.position += part.size
        data = ulaw_encode(piece) if self.format.codec == "pcmu" else pcm16_to_bytes(piece)
        self.output_audio += data
        self.output_samples += size
        await self._send(
            {"type": "session.output_audio.delta", "delta": base64.b64encode(data).decode()}
        )
        if utterance is not None:
            await self._say_words(utterance)
            if utterance.position >= utterance.samples.size:
                self.speaking = None

    def _current_utterance(self) -> Utterance | None:
        """What the model is saying in this chunk: the reply under way unless the caller
        talked over it (it stops here), else the next reply that is due."""
        if self.speaking is not None and self.speaking.interrupted:
            self.speaking = None
            self.standin.notify()
        if self.speaking is None:
            self.speaking = self._next_utterance()
        return self.speaking

    async def _say_words(self, utterance: Utterance) -> None:
        """Each word's transcript once its audio has gone out, timed on the session timeline."""
        words = utterance.text.split()
        while utterance.words_said < len(words):
            start_ms, end_ms = utterance.word_span(utterance.words_said, len(words))
            if end_ms > utterance.start_ms + utterance.played_ms + 0.5:
                return
            word = words[utterance.words_said]
            utterance.words_said += 1
            delta = word if not self._output_words else " " + word
            self._output_words += 1
            await self.emit(
                "session.output_transcript.delta", delta=delta, start_ms=start_ms, end_ms=end_ms
            )

    # --- usage --------------------------------------------------------------------------------

    def _usage(self) -> dict[str, Any]:
        return {"seconds": round(self.elapsed_s())}

    async def _usage_updates(self) -> None:
        interval_s = self.options.usage_interval_s
        assert self.started_at is not None
        beat = 1
        while not self.finished:
            await asyncio.sleep(max(0.0, self.started_at + beat * interval_s - time.monotonic()))
            beat += 1
            await self.emit("session.usage.updated", usage=self._usage())

    # --- tools: delegation to the Responses backend -------------------------------------------

    def _plan_tools(self, turn: int) -> tuple[list[PlannedCall], str | None, str | None] | None:
        """The function calls answering caller turn `turn`, what the model says first, and
        what after the outputs; None: no tool this turn."""
        assert self.session is not None
        tools, choice = lp.delegation_tools(self.session)
        functions = [dict(tool) for tool in function_tools(tools)]
        if choice == "none" or not functions:
            return None
        if self.standin.tool_calls is not None:
            return self._scripted_plan(turn, functions)
        chosen = default_choice(
            functions, self.called_tools, choice, calls_per_turn=self.standin.calls_per_turn
        )
        if not chosen:
            return None
        calls = [_planned(str(tool["name"]), None, tool) for tool in chosen]
        return calls, DEFAULT_SAY_FIRST.get(calls[0].name), None

    def _scripted_plan(
        self, turn: int, functions: list[dict[str, Any]]
    ) -> tuple[list[PlannedCall], str | None, str | None] | None:
        due: list[tuple[ScriptedToolCall, dict[str, Any]]] = []
        for index, scripted in enumerate(self.standin.tool_calls or ()):
            if index in self.scripted_used or not scripted.due(turn, self.heard):
                continue
            self.scripted_used.add(index)
            tool = next((t for t in functions if t.get("name") == scripted.name), None)
            if tool is None or scripted.server_label is not None:
                self.skipped_tool_calls.append(
                    f"turn {turn}: {scripted.name} is not a function tool of the delegation"
                )
                continue
            due.append((scripted, tool))
        if not due:
            return None
        calls = [_planned(s.name, s.arguments, tool) for s, tool in due]
        say_first = next((s.say_first for s, _ in due if s.say_first), None)
        reply_after = next((s.reply_after for s, _ in due if s.reply_after), None)
        return calls, say_first, reply_after

    async def _delegate(
        self, calls: list[PlannedCall], say_first: str | None, reply_after: str | None
    ) -> None:
        """The model hands the turn to the backend: after its delay, the delegation (and its
        spoken acknowledgement, if any), then the backend's function calls."""
        assert self.session is not None
        await asyncio.sleep(draw(self._rng_reply, delay_range(self.options.reply_delay_s, "")))
        delegation = Delegation(rt.new_id("dlg"), reply_after=reply_after)
        self.delegations[delegation.delegation_id] = delegation
        response = backend.BackendResponse(
            delegation.delegation_id, rt.new_id("resp"), lp.backend_model(self.session)
        )
        await self.emit(
            "session.delegation.created",
            delegation={
                "id": delegation.delegation_id,
                "target": "responses",
                "type": "delegation",
                "response_id": response.response_id,
            },
            offset_ms=int(self.input_ms),
        )
        if say_first:
            self.pending.append(PendingReply(time.monotonic(), say_first, False))
        await asyncio.sleep(draw(self._rng_backend, delay_range(self.options.backend_delay_s, "")))
        arguments = "".join(call.arguments for call in calls)
        for event in backend.function_call_events(response, calls, self._tokens(arguments)):
            await self._nested(delegation.delegation_id, event)
        for call in calls:
            open_call = OpenCall(call, delegation.delegation_id)
            delegation.calls.append(open_call)
            self.calls[call.call_id] = open_call
            self.called_tools.add(call.name)
        self.standin.notify()

    async def _nested(self, delegation_id: str, event: dict[str, Any]) -> None:
        await self.emit("response.event", event=event, delegation_id=delegation_id)

    def _tokens(self, output_text: str) -> backend.Tokens:
        """The backend's tokens: its instructions, tools and the conversation so far are
        input, what it saw last time cached; what it wrote is output."""
        assert self.session is not None
        tools, _ = lp.delegation_tools(self.session)
        context = [lp.backend_instructions(self.session), json.dumps(tools)]
        context += [turn.text for turn in self.caller_turns]
        context += [str(output.get("output")) for output in self.function_outputs]
        input_tokens = sum(rt.text_tokens(text) for text in context)
        cached = min(self.previous_backend_input, input_tokens)
        self.previous_backend_input = input_tokens
        return backend.Tokens(input_tokens, cached, rt.text_tokens(output_text))

    async def _on_item_create(self, payload: dict[str, Any]) -> None:
        """An input item for the backend: a function_call_output answers an open call."""
        if not await self._require_responses(payload):
            return
        item = payload["item"]
        if item.get("type") != "function_call_output":
            return  # other items join the backend's conversation; nothing to answer
        call = self.calls.get(str(item.get("call_id")))
        if call is None:
            self.protocol_problems.append(
                f"function_call_output for an unknown call_id {item.get('call_id')!r}"
            )
            message = (
                f"No tool call found for function call output with call_id {item.get('call_id')}."
            )
            await self.emit_error((message, "invalid_value", "item.call_id"), payload)
            return
        call.answered = True
        self.delegations[call.delegation_id].outputs_since_create += 1
        self.function_outputs.append(dict(item))
        self.standin.notify()

    async def _on_response_create(self, payload: dict[str, Any]) -> None:
        """The backend's next response: refused while a call has no output (as the Responses
        API refuses it); after outputs, the answer the model then says."""
        if not await self._require_responses(payload):
            return
        unanswered = [c for c in self.calls.values() if not c.answered]
        if unanswered:
            for open_call in unanswered:
                self.protocol_problems.append(
                    f"response.create ({payload.get('event_id') or 'no event_id'}) while "
                    f"{open_call.call.name} ({open_call.call.call_id}) has no function_call_output"
                )
            message = f"No tool output found for function call {unanswered[0].call.call_id}."
            await self.emit_error((message, "invalid_value", "input"), payload)
            return
        answered = [d for d in self.delegations.values() if d.outputs_since_create]
        delegation = answered[-1] if answered else Delegation(rt.new_id("dlg"))
        for each in answered:
            each.outputs_since_create = 0
        self.spawn(self._answer(delegation, tool_round_trip=bool(answered)))

    async def _answer(self, delegation: Delegation, *, tool_round_trip: bool) -> None:
        """The backend answers in text after its delay, and the model says the answer."""
        assert self.session is not None
        await asyncio.sleep(draw(self._rng_backend, delay_range(self.options.backend_delay_s, "")))
        if tool_round_trip:
            text = delegation.reply_after or self.standin.tool_reply
        else:
            text = self.standin.reply_for(self.scripted).text
            self.scripted += 1
        self.delegations.setdefault(delegation.delegation_id, delegation)
        response = backend.BackendResponse(
            delegation.delegation_id, rt.new_id("resp"), lp.backend_model(self.session)
        )
        for event in backend.message_events(response, text, self._tokens(text)):
            await self._nested(delegation.delegation_id, event)
        self.pending.append(PendingReply(time.monotonic(), text, False))

    async def _require_responses(self, payload: dict[str, Any]) -> bool:
        if _delegation_type(self.session) == "responses":
            return True
        message = (
            f"'{payload['type']}' requires Responses delegation (delegation.type 'responses')."
        )
        await self.emit_error((message, "invalid_request", "type"), payload)
        return False


def _planned(name: str, arguments: Any, tool: dict[str, Any]) -> PlannedCall:
    if arguments is None:
        arguments = schema_arguments(tool.get("parameters"))
    return PlannedCall(
        name=name,
        arguments=json.dumps(arguments, separators=(",", ":")),
        call_id=rt.new_id("call"),
        item_id=rt.new_id("fc"),
    )


def _delegation_type(session: dict[str, Any] | None) -> str | None:
    delegation = (session or {}).get("delegation")
    return delegation.get("type") if isinstance(delegation, dict) else None


def _client_id(payload: dict[str, Any]) -> dict[str, Any]:
    event_id = payload.get("event_id")
    return {"client_event_id": event_id} if isinstance(event_id, str) else {}
