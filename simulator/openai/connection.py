"""One client connection to the realtime stand-in: the Realtime protocol state machine, the
faults it can be told to commit, and everything it observed (for tests).

See `simulator.openai.standin` for what the stand-in promises, and `simulator.openai.tools` for
when it calls tools; this is how a session works.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from audio.convert import pcm16_from_bytes, pcm16_to_bytes
from audio.g711 import ulaw_decode, ulaw_encode
from simulator.openai import protocol as rt
from simulator.openai.protocol import Protocol, Reply
from simulator.openai.timing import chunk_sizes, connection_rng, delay_range, draw
from simulator.openai.tools import (
    DEFAULT_MCP_OUTPUT,
    DEFAULT_SAY_FIRST,
    PlannedCall,
    ScriptedToolCall,
    ToolPlan,
    arguments_for,
    default_choice,
    function_tools,
    mcp_allows,
    mcp_tool,
)
from simulator.openai.vad import EnergyVad, turn_settings
from simulator.speech import speech

if TYPE_CHECKING:
    from simulator.openai.standin import RealtimeStandIn


@dataclass
class Faults:
    """Misbehaviour to inject, read when a connection is attempted.

    `first_connections` limits the faults to that many handshake attempts counted from the
    stand-in's start (refused ones included), so "fail twice, then work" tests a reconnect.
    """

    refuse: Literal["handshake", "close"] | None = None
    drop_after_s: float | None = None
    drop_after_appends: int | None = None
    expire_after_s: float | None = None
    stall_after_s: float | None = None
    stall_after_appends: int | None = None
    # The first session.update is answered this late: a slow or overloaded service.
    configure_delay_s: float | None = None
    first_connections: int | None = None

    def applies_to(self, attempt: int) -> bool:
        return self.first_connections is None or attempt < self.first_connections


@dataclass(frozen=True)
class ReceivedEvent:
    """A client event as received; `at` is time.monotonic() on arrival."""

    type: str
    payload: dict[str, Any]
    at: float


@dataclass
class Item:
    """A conversation item as far as usage and truncation care."""

    item_id: str
    role: str
    audio_ms: float = 0.0
    text: str = ""


# A response's spoken part, among its parts (the others are PlannedCalls, in output order).
AUDIO = "audio"
# The fields of a function_call_output item a client may send (GA and beta item params).
FUNCTION_OUTPUT_FIELDS = frozenset({"type", "call_id", "output", "id", "object", "status"})
FUNCTION_CALL_FIELDS = frozenset({"type", "call_id", "name", "arguments", "id", "object", "status"})
# Function call arguments stream in deltas of about this many characters.
ARGUMENT_DELTA_CHARS = 24


@dataclass
class FunctionCall:
    """A function call in the conversation, made by the model or replayed by the client."""

    call_id: str
    name: str
    response_id: str | None  # None: the client created it (a replayed conversation)
    answered: bool = False


@dataclass
class ActiveResponse:
    response_id: str
    item_id: str
    reply: Reply
    # The model's latency, drawn when the response starts: until `response.created`, then
    # from there until the first audio delta.
    created_delay_s: float = 0.0
    first_audio_delay_s: float = 0.0
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sent_ms: float = 0.0
    transcript: str = ""
    audio_started: bool = False
    # time.monotonic() of the first audio delta: playback (at real time) ends reply.seconds on.
    first_audio_at: float | None = None
    previous_item_id: str | None = None
    metadata: dict[str, Any] | None = None
    # What the response holds, in output order: AUDIO (the reply) and tool calls.
    parts: list[str | PlannedCall] = field(default_factory=lambda: [AUDIO])
    message_index: int = 0  # the output index of the spoken message
    output: list[dict[str, Any]] = field(default_factory=list)  # done items, for response.done
    own_items: set[str] = field(default_factory=set)
    calls: list[PlannedCall] = field(default_factory=list)  # the function calls it made
    arguments_text: str = ""  # every call's arguments, counted as output text


class SessionSocket:
    """What every stand-in session does with its socket, whatever the protocol (Realtime here,
    GPT-Live in simulator.openai.live): keep what it received and sent for tests, run tasks
    that end with it, read client events until the socket closes, and inject the faults it was
    given. Subclasses send events (`_send` decides when nothing may go out, then `_write`),
    handle them (`_on_message`) and say how the service drops, stalls and expires."""

    def __init__(
        self, standin: RealtimeStandIn, ws: ServerConnection, *, index: int, faults: Faults | None
    ) -> None:
        self.standin = standin
        self.ws = ws
        self.index = index
        self.faults = faults
        # Observation.
        self.received: list[ReceivedEvent] = []
        self.sent: list[dict[str, Any]] = []
        self.audio = bytearray()  # every appended byte, as sent
        self.appends = 0
        self.close_code: int | None = None
        self.stalled = False
        self.dropped = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- observation helpers ------------------------------------------------------------------

    def received_types(self) -> list[str]:
        return [event.type for event in self.received]

    def received_of(self, event_type: str) -> list[ReceivedEvent]:
        return [event for event in self.received if event.type == event_type]

    def sent_types(self) -> list[str]:
        return [event["type"] for event in self.sent]

    def sent_of(self, event_type: str) -> list[dict[str, Any]]:
        return [event for event in self.sent if event["type"] == event_type]

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    # --- sending ------------------------------------------------------------------------------

    async def _write(self, event: dict[str, Any]) -> None:
        """Record the event, then send it (a socket gone meanwhile is not an error here)."""
        self.sent.append(event)
        self.standin.notify()
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(orjson.dumps(event).decode())

    # --- lifecycle and faults -----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self) -> None:
        self._schedule_faults()
        await self._opened()
        try:
            async for message in self.ws:
                if self.stalled or self.closed:
                    continue  # frames buffered before a fault was injected were never "read"
                await self._on_message(message)
                if self.stalled:
                    await self.ws.wait_closed()  # hang until the stand-in stops
        except ConnectionClosed:
            pass
        finally:
            self._shutdown()

    async def _opened(self) -> None:
        """What the service sends unasked once the socket is up (nothing, by default)."""

    async def _on_message(self, message: str | bytes) -> None:
        raise NotImplementedError

    def _shutdown(self) -> None:
        if self.close_code is None:
            self.close_code = self.ws.close_code if self.ws.close_code is not None else 1006
        self._stop_work()
        self.standin.notify()

    def _stop_work(self) -> None:
        """Cancel the session's own tasks (not the one calling: a fault's task ends itself)."""
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    def spawn_after(
        self, seconds: float, action: Callable[[], Coroutine[Any, Any, None]]
    ) -> asyncio.Task[Any]:
        """`action` in `seconds`, unless the session has ended by then."""
        return self.spawn(_after(seconds, action))

    def _schedule_faults(self) -> None:
        faults = self.faults
        if faults is None:
            return
        if faults.drop_after_s is not None:
            self.spawn_after(faults.drop_after_s, self.drop)
        if faults.expire_after_s is not None:
            self.spawn_after(faults.expire_after_s, self.expire)
        if faults.stall_after_s is not None:
            self.spawn_after(faults.stall_after_s, self.stall)

    async def _fault_after_append(self) -> None:
        """Drop or stall on the N-th audio append, when the faults say so."""
        faults = self.faults
        if faults is not None and faults.drop_after_appends == self.appends:
            await self.drop()
        elif faults is not None and faults.stall_after_appends == self.appends:
            await self.stall()

    async def drop(self) -> None:
        raise NotImplementedError

    async def expire(self) -> None:
        raise NotImplementedError

    async def stall(self) -> None:
        raise NotImplementedError


class StandInConnection(SessionSocket):
    """One client connection: the protocol state plus everything observed, for tests."""

    def __init__(
        self,
        standin: RealtimeStandIn,
        ws: ServerConnection,
        *,
        index: int,
        protocol: Protocol,
        model: str,
        faults: Faults | None,
    ) -> None:
        super().__init__(standin, ws, index=index, faults=faults)
        self.protocol: Protocol = protocol
        self.model = model
        self.session = rt.default_session(protocol, model)
        self.truncations: list[dict[str, Any]] = []
        # Protocol state.
        self.vad = EnergyVad(start_ms=standin.vad_start_ms)
        self.buffer_start_samples = 0
        self.speech_item_id: str | None = None
        self.items: dict[str, Item] = {}
        self.last_item_id: str | None = None
        self.response: ActiveResponse | None = None
        self.responses = 0  # every response, whatever it says
        self.scripted = 0  # responses that said the next scripted reply
        self.reprompts = 0  # responses to an idle timeout
        self.transcriptions = 0
        # Tools (simulator.openai.tools): the caller's turns and what the stand-in heard in the
        # latest, the calls made and answered, and what the client got wrong.
        self.caller_turns = 0
        self.heard = ""
        self.planned_turn = 0
        self.called_tools: set[str] = set()
        self.scripted_used: set[int] = set()
        self.skipped_tool_calls: list[str] = []
        self.function_calls: dict[str, FunctionCall] = {}
        self.function_outputs: list[dict[str, Any]] = []
        self.mcp_calls: list[dict[str, Any]] = []
        self.mcp_listed: set[str] = set()
        self.protocol_problems: list[str] = []
        # The calls of the latest response that made any, until the next response.create.
        self.awaiting: list[str] = []
        # Outputs have arrived since the latest calls: the next response.create answers them.
        self.tool_round_trip = False
        self.reply_after: str | None = None
        # The idle timeout counts from here (ms on the input-audio clock): where the last
        # response's audio ends playing. None until a response is done, and again once speech
        # starts, a response starts or the timeout fires.
        self.idle_from_ms: float | None = None
        self.previous_input: rt.InputTokens | None = None
        # One random stream per purpose, so e.g. a longer reply never changes which
        # transcription fails; all seeded from (the stand-in's seed, this connection's index).
        self._rng_transcription = connection_rng(standin.seed, index, "transcription")
        self._rng_response = connection_rng(standin.seed, index, "response")
        self._rng_chunks = connection_rng(standin.seed, index, "chunks")

    @property
    def input_ms(self) -> float:
        """The model's input-audio clock: milliseconds of caller audio appended so far."""
        return self.vad.samples * 1000.0 / self.input_rate

    # --- the session, whatever the protocol ---------------------------------------------------

    @property
    def input_codec(self) -> rt.Codec:
        return rt.session_codec(self.protocol, self.session, "input")

    @property
    def output_codec(self) -> rt.Codec:
        return rt.session_codec(self.protocol, self.session, "output")

    @property
    def input_rate(self) -> int:
        return rt.codec_rate(self.input_codec)

    # --- sending ------------------------------------------------------------------------------

    async def emit(self, event_type: str, **fields: Any) -> None:
        """Send a server event (GA name; renamed for beta) unless the socket is gone or stalled."""
        await self._send({"type": rt.event_name(self.protocol, event_type), **fields})

    async def emit_error(
        self, message: str, *, code: str | None, param: str | None = None, cause: dict | None = None
    ) -> None:
        event_id = cause.get("event_id") if cause else None
        await self._send(rt.error_event(message, code=code, param=param, event_id=event_id))

    async def _send(self, event: dict[str, Any]) -> None:
        if self.stalled or self.closed:
            return
        await self._write({"event_id": rt.new_id("event"), **event})

    async def _announce_item(
        self, item: dict[str, Any], previous: str | None, *, done: bool
    ) -> None:
        # GA announces an item with `added` (and `done` once complete); beta with `created`.
        if self.protocol == "beta":
            await self.emit("conversation.item.created", previous_item_id=previous, item=item)
            return
        await self.emit("conversation.item.added", previous_item_id=previous, item=item)
        if done:
            await self.emit("conversation.item.done", previous_item_id=previous, item=item)

    # --- lifecycle and faults -----------------------------------------------------------------

    async def _opened(self) -> None:
        await self.emit("session.created", session=self.session)

    def _stop_work(self) -> None:
        super()._stop_work()
        if self.response is not None and self.response.task is not None:
            self.response.task.cancel()

    async def drop(self) -> None:
        """Lose the connection as a network does: no close frame, the TCP socket just dies."""
        if self.closed:
            return
        self.dropped = True
        self.close_code = 1006
        self.ws.transport.abort()
        self.standin.notify()

    async def expire(self) -> None:
        """What the service does at the 60-minute limit: session_expired, then close 1001."""
        if self.closed or self.stalled:
            return
        await self.emit_error(rt.SESSION_EXPIRED_MESSAGE, code="session_expired")
        self.close_code = 1001
        self.standin.notify()
        await self.ws.close(1001, rt.SESSION_EXPIRED_MESSAGE)

    async def stall(self) -> None:
        """Go silent both ways with the socket open: no events, no reads, no pongs."""
        if self.closed or self.stalled:
            return
        self.stalled = True
        # With the transport paused the library cannot answer pings either: a hung server.
        self.ws.transport.pause_reading()
        if self.response is not None and self.response.task is not None:
            self.response.task.cancel()
        self.standin.notify()

    # --- client events ------------------------------------------------------------------------

    async def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            await self.emit_error("Binary frames are not supported.", code="invalid_request")
            return
        try:
            payload = orjson.loads(message)
            event_type = payload["type"]
            if not isinstance(event_type, str):
                raise TypeError(event_type)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await self.emit_error(
                "We could not parse the JSON body of your request.", code="invalid_json"
            )
            return
        self.received.append(ReceivedEvent(event_type, payload, time.monotonic()))
        self.standin.notify()
        handlers = self._handlers()
        handler = handlers.get(event_type)
        if handler is None:
            supported = ", ".join(f"'{name}'" for name in handlers)
            await self.emit_error(
                f"Invalid value: '{event_type}'. Supported values are: {supported}.",
                code="invalid_value",
                param="type",
                cause=payload,
            )
            return
        await handler(payload)

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, None]]]:
        return {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.commit": self._on_commit,
            "input_audio_buffer.clear": self._on_clear,
            "conversation.item.create": self._on_item_create,
            "conversation.item.truncate": self._on_truncate,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
        }

    async def _on_session_update(self, payload: dict[str, Any]) -> None:
        update = payload.get("session")
        if not isinstance(update, dict):
            await self.emit_error(
                "Missing required parameter: 'session'.",
                code="missing_required_parameter",
                param="session",
                cause=payload,
            )
            return
        if self.protocol == "ga" and update.get("type") != "realtime":
            # The GA endpoint insists on the session type: a beta-shaped update fails here.
            await self.emit_error(
                "Missing required parameter: 'session.type'.",
                code="missing_required_parameter",
                param="session.type",
                cause=payload,
            )
            return
        candidate = rt.deep_merge(self.session, update)
        problem = rt.format_problem(self.protocol, candidate)
        input_codec = rt.session_codec(self.protocol, candidate, "input") if not problem else None
        if self.vad.samples and input_codec is not None and input_codec != self.input_codec:
            problem = "Cannot update the input audio format after audio has been sent."
        if problem is not None:
            await self.emit_error(problem, code="invalid_value", cause=payload)
            return
        refused = rt.session_problem(self.protocol, candidate)
        if refused is not None:
            message, code, param = refused
            await self.emit_error(message, code=code, param=param, cause=payload)
            return
        self.session = rt.with_turn_detection_defaults(self.protocol, candidate)
        faults = self.faults
        if faults is not None and faults.configure_delay_s and not self.sent_of("session.updated"):
            await asyncio.sleep(faults.configure_delay_s)
        await self.emit("session.updated", session=self.session)
        await self._list_mcp_tools()

    async def _on_append(self, payload: dict[str, Any]) -> None:
        try:
            audio = binascii.a2b_base64(payload["audio"], strict_mode=True)
        except (KeyError, TypeError, ValueError, binascii.Error):
            await self.emit_error(
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                code="invalid_value",
                param="audio",
                cause=payload,
            )
            return
        self.appends += 1
        self.audio += audio
        if self.standin.echo:
            await self._echo(payload["audio"], audio)
        else:
            await self._listen(self._decode_input(audio))
        await self._fault_after_append()

    async def _echo(self, audio_b64: str, audio: bytes) -> None:
        """Echo mode: the frame comes straight back, on an item of its own per connection."""
        self.vad.samples += len(audio) // (1 if self.input_codec == "pcmu" else 2)
        await self.emit(
            "response.output_audio.delta",
            response_id=f"resp_echo{self.index}",
            item_id=f"item_echo{self.index}",
            output_index=0,
            content_index=0,
            delta=audio_b64,
        )

    def _decode_input(self, audio: bytes) -> np.ndarray:
        if self.input_codec == "pcmu":
            return ulaw_decode(audio)
        return pcm16_from_bytes(audio[: len(audio) - len(audio) % 2])

    async def _listen(self, pcm: np.ndarray) -> None:
        """Server VAD: advance the input clock and act on each speech start and stop."""
        detection = rt.session_turn_detection(self.protocol, self.session)
        if detection is None:
            self.vad.samples += pcm.size  # no turn detection: the clock still runs
            return
        settings = turn_settings(detection)
        changes = self.vad.feed(
            pcm,
            self.input_rate,
            threshold=settings.threshold,
            prefix_padding_ms=settings.prefix_padding_ms,
            silence_duration_ms=settings.silence_duration_ms,
        )
        for change in changes:
            if change.started:
                await self._speech_started(change.at_ms, detection)
            else:
                await self._speech_stopped(change.at_ms, detection)
        await self._check_idle(detection)

    # --- the idle timeout ---------------------------------------------------------------------

    def _arm_idle(self, response: ActiveResponse) -> None:
        """Start the idle timeout where `response`'s audio ends playing: the stand-in streams
        faster than real time, so that is response.done plus the audio still to play at real
        time (none for a cut reply: the client stops playing it). On the input-audio clock,
        which runs at real time as the caller's audio arrives."""
        if self.vad.speaking:
            return  # the caller's turn, not a timeout, comes next
        remaining_s = 0.0
        if response.cancel_reason is None and response.first_audio_at is not None:
            played_until = response.first_audio_at + response.reply.seconds
            remaining_s = max(0.0, played_until - time.monotonic())
        self.idle_from_ms = self.input_ms + remaining_s * 1000.0

    async def _check_idle(self, detection: dict[str, Any]) -> None:
        """Fire the idle timeout once the caller has said nothing for `idle_timeout_ms` since
        the last response's playback ended (server_vad only, as on the service)."""
        timeout_ms = detection.get("idle_timeout_ms")
        start_ms = self.idle_from_ms
        if start_ms is None or not timeout_ms or detection.get("type") != "server_vad":
            return
        if self.response is not None or self.vad.speaking or self.input_ms < start_ms + timeout_ms:
            return
        self.idle_from_ms = None
        await self._idle_timeout(int(start_ms), int(self.input_ms))

    async def _idle_timeout(self, audio_start_ms: int, audio_end_ms: int) -> None:
        """As the service does: announce the timeout, commit the silent audio as an input_audio
        item (its transcription is empty) and respond to it, here with a re-prompt line."""
        item_id = rt.new_id("item")
        await self.emit(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=audio_start_ms,
            audio_end_ms=audio_end_ms,
            item_id=item_id,
        )
        await self._commit(item_id, transcript="")
        line = self.standin.reprompt_line(self.reprompts)
        self.reprompts += 1
        self._start_response(rt.spoken_reply(line))

    async def _speech_started(self, audio_start_ms: int, detection: dict[str, Any]) -> None:
        self.speech_item_id = rt.new_id("item")
        self.idle_from_ms = None  # the caller spoke: no timeout until after the next reply
        await self.emit(
            "input_audio_buffer.speech_started",
            audio_start_ms=audio_start_ms,
            item_id=self.speech_item_id,
        )
        if detection.get("interrupt_response", True) and self.response is not None:
            await self._cancel_response("turn_detected")

    async def _speech_stopped(self, audio_end_ms: int, detection: dict[str, Any]) -> None:
        item_id = self.speech_item_id or rt.new_id("item")
        self.speech_item_id = None
        await self.emit(
            "input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id
        )
        await self._commit(item_id)
        if detection.get("create_response", True) and self.response is None:
            self._start_response()

    async def _on_commit(self, payload: dict[str, Any]) -> None:
        buffered_ms = (self.vad.samples - self.buffer_start_samples) * 1000.0 / self.input_rate
        if buffered_ms < 100:
            await self.emit_error(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"100ms of audio, but buffer only has {buffered_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
                cause=payload,
            )
            return
        # A client commit ends a turn the VAD still has open: the audio becomes the item
        # speech_started announced, and no speech_stopped will follow for it. It does not
        # create a response (the service's docs: commit "will not create a response").
        item_id = self.speech_item_id or rt.new_id("item")
        self.speech_item_id = None
        self.vad.end_turn()
        await self._commit(item_id)

    async def _on_clear(self, payload: dict[str, Any]) -> None:
        self.buffer_start_samples = self.vad.samples
        await self.emit("input_audio_buffer.cleared")

    async def _commit(self, item_id: str, *, transcript: str | None = None) -> None:
        """Turn the buffered caller audio into a user item; transcribe it if the session asks,
        asynchronously, as the service runs its ASR beside the response. The transcript is the
        next scripted caller line unless given (the silence of an idle timeout: "")."""
        audio_ms = (self.vad.samples - self.buffer_start_samples) * 1000.0 / self.input_rate
        self.buffer_start_samples = self.vad.samples
        previous, self.last_item_id = self.last_item_id, item_id
        if transcript is None:
            # A caller turn: what the caller said in it is the next scripted caller line
            # (what its transcription says, when the session transcribes).
            self.heard = self.standin.caller_line(self.caller_turns)
            self.caller_turns += 1
        model = rt.session_transcription_model(self.protocol, self.session)
        self.items[item_id] = Item(item_id, "user", audio_ms=audio_ms)
        await self.emit("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self._announce_item(item, previous, done=True)
        if model is not None:
            self._transcribe(item_id, model, audio_ms, transcript)

    def _transcribe(
        self, item_id: str, model: str, audio_ms: float, transcript: str | None = None
    ) -> None:
        """Start the transcription of a committed item: its line, delay and fate are drawn
        now, at the commit, so they do not depend on how the tasks interleave later. A given
        transcript (silence's "") takes no scripted line and never fails."""
        standin = self.standin
        scripted = transcript is None
        if transcript is None:
            transcript = standin.caller_line(self.transcriptions)
            self.transcriptions += 1
        rng = self._rng_transcription
        delay_s = draw(rng, delay_range(standin.transcription_delay_s, "transcription_delay_s"))
        # Drawn even when the rate is 0, so the delays do not depend on the failure rate.
        failed = rng.random() < standin.transcription_failure_rate and scripted
        streamed = bool(transcript) and not failed and standin.transcription_deltas
        deltas = _deltas(model, transcript) if streamed else []
        self.spawn(
            self._deliver_transcription(
                item_id, model, audio_ms, transcript, delay_s, deltas, failed
            )
        )

    async def _deliver_transcription(
        self,
        item_id: str,
        model: str,
        audio_ms: float,
        transcript: str,
        delay_s: float,
        deltas: list[str],
        failed: bool,
    ) -> None:
        # The deltas stream over the last part of the wait; `completed` (or `failed`) ends it.
        first_s = delay_s * 0.6 if deltas else delay_s
        await asyncio.sleep(first_s)
        step_s = (delay_s - first_s) / max(1, len(deltas))
        for delta in deltas:
            await self.emit(
                "conversation.item.input_audio_transcription.delta",
                item_id=item_id,
                content_index=0,
                delta=delta,
            )
            await asyncio.sleep(step_s)
        if failed:
            await self.emit(
                "conversation.item.input_audio_transcription.failed",
                item_id=item_id,
                content_index=0,
                error=rt.transcription_failed_error(),
            )
            return
        await self.emit(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=transcript,
            usage=rt.transcription_usage(model, audio_ms, transcript),
        )

    async def _on_item_create(self, payload: dict[str, Any]) -> None:
        item = payload.get("item")
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "function_call_output":
            await self._on_function_output(payload, item)
            return
        if kind == "function_call":
            await self._on_client_function_call(payload, item)
            return
        if not isinstance(item, dict) or kind != "message":
            await self.emit_error(
                "Missing required parameter: 'item.type'.",
                code="missing_required_parameter",
                param="item.type",
                cause=payload,
            )
            return
        item_id = str(item.get("id") or rt.new_id("item"))
        parts = [part for part in item.get("content") or [] if isinstance(part, dict)]
        text = " ".join(str(part.get("text") or part.get("transcript") or "") for part in parts)
        previous = payload.get("previous_item_id", self.last_item_id)
        self.items[item_id] = Item(item_id, str(item.get("role", "user")), text=text)
        self.last_item_id = item_id
        full = {"object": "realtime.item", "status": "completed", **item, "id": item_id}
        await self._announce_item(full, previous, done=True)

    async def _on_truncate(self, payload: dict[str, Any]) -> None:
        self.truncations.append(payload)
        self.standin.notify()
        item_id = payload.get("item_id")
        end_ms = payload.get("audio_end_ms")
        item = self.items.get(item_id) if isinstance(item_id, str) else None
        problem = _truncate_problem(item_id, item, end_ms)
        if problem is not None:
            message, code, param = problem
            await self.emit_error(message, code=code, param=param, cause=payload)
            return
        assert item is not None and isinstance(end_ms, int)
        item.audio_ms = float(end_ms)
        item.text = ""  # the service drops the transcript of a truncated item
        await self.emit(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=int(payload.get("content_index") or 0),
            audio_end_ms=end_ms,
        )

    async def _on_response_create(self, payload: dict[str, Any]) -> None:
        request = payload.get("response")
        problem = rt.response_problem(self.protocol, request)
        if problem is not None:
            message, code, param = problem
            await self.emit_error(message, code=code, param=param, cause=payload)
            return
        request = request or {}
        if request.get("conversation") == "none":
            # Out-of-band responses (no conversation items, several at once) are beyond the
            # stand-in: refused plainly, the session goes on.
            await self.emit_error(
                "The realtime stand-in does not support out-of-band responses "
                "(response.conversation 'none'); use 'auto'.",
                code="unsupported_value",
                param="response.conversation",
                cause=payload,
            )
            return
        if self.response is not None:
            await self.emit_error(
                "Conversation already has an active response in progress: "
                f"{self.response.response_id}. Wait until the response is finished before "
                "creating a new one.",
                code="conversation_already_has_active_response",
                cause=payload,
            )
            return
        self._check_answered(payload)
        # A reply asked for with instructions says their quoted passage, if any (the
        # convention in rt.quoted_passage); after tool outputs, the reply to them; otherwise
        # the next scripted reply (tool calls, if the turn has any: simulator.openai.tools).
        passage = rt.quoted_passage(str(request.get("instructions") or ""))
        reply = rt.spoken_reply(passage) if passage is not None else None
        if self.tool_round_trip:
            self.tool_round_trip = False
            reply = reply or rt.spoken_reply(self.reply_after or self.standin.tool_reply)
        self._start_response(reply, metadata=request.get("metadata"), overrides=request)

    async def _on_response_cancel(self, payload: dict[str, Any]) -> None:
        if self.response is None:
            await self.emit_error(
                "Cancellation failed: no active response found",
                code="response_cancel_not_active",
                cause=payload,
            )
            return
        await self._cancel_response("client_cancelled")

    # --- tools: what the model calls (simulator.openai.tools) -----------------------------------

    def _plan_tools(self, overrides: dict[str, Any]) -> ToolPlan | None:
        """The tool calls answering the caller's latest turn (once per turn), or None."""
        turn = self.caller_turns
        if turn == 0 or self.planned_turn == turn:
            return None
        self.planned_turn = turn
        offered = overrides["tools"] if "tools" in overrides else self.session.get("tools")
        choice = overrides.get("tool_choice", self.session.get("tool_choice", "auto"))
        tools = [tool for tool in offered or [] if isinstance(tool, dict)]
        if choice == "none" or not tools:
            return None
        if self.standin.tool_calls is not None:
            return self._scripted_plan(turn, tools)
        return self._default_plan(tools, choice)

    def _scripted_plan(self, turn: int, tools: list[dict[str, Any]]) -> ToolPlan | None:
        due: list[tuple[ScriptedToolCall, dict[str, Any]]] = []
        for index, scripted in enumerate(self.standin.tool_calls or ()):
            if index in self.scripted_used or not scripted.due(turn, self.heard):
                continue
            self.scripted_used.add(index)
            tool = self._offered_tool(scripted, tools)
            if tool is None:
                label = f"{scripted.server_label}." if scripted.server_label else ""
                self.skipped_tool_calls.append(
                    f"turn {turn}: {label}{scripted.name} is not offered by the session"
                )
                continue
            due.append((scripted, tool))
        if not due:
            return None
        calls = [
            self._planned(scripted.name, scripted.arguments, tool, scripted)
            for scripted, tool in due
        ]
        return ToolPlan(
            functions=[call for call in calls if call.server_label is None],
            mcp=[call for call in calls if call.server_label is not None],
            say_first=next((s.say_first for s, _ in due if s.say_first), None),
            reply_after=next((s.reply_after for s, _ in due if s.reply_after), None),
        )

    def _offered_tool(
        self, scripted: ScriptedToolCall, tools: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        if scripted.server_label is not None:
            server = mcp_tool(tools, scripted.server_label) if self.protocol == "ga" else None
            return dict(server) if server and mcp_allows(server, scripted.name) else None
        return next(
            (dict(t) for t in function_tools(tools) if t.get("name") == scripted.name), None
        )

    def _default_plan(self, tools: list[dict[str, Any]], choice: Any) -> ToolPlan | None:
        chosen = default_choice(
            tools, self.called_tools, choice, calls_per_turn=self.standin.calls_per_turn
        )
        if not chosen:
            return None
        calls = [self._planned(str(tool["name"]), None, dict(tool)) for tool in chosen]
        return ToolPlan(functions=calls, mcp=[], say_first=DEFAULT_SAY_FIRST.get(calls[0].name))

    def _planned(
        self,
        name: str,
        arguments: Any,
        tool: dict[str, Any],
        scripted: ScriptedToolCall | None = None,
    ) -> PlannedCall:
        if arguments is None:
            arguments = arguments_for(tool.get("parameters")) if tool.get("type") != "mcp" else {}
        server_label = scripted.server_label if scripted is not None else None
        output = scripted.output if scripted is not None else None
        error = scripted.error if scripted is not None else None
        if server_label is not None and output is None and error is None:
            output = DEFAULT_MCP_OUTPUT
        return PlannedCall(
            name=name,
            arguments=json.dumps(arguments, separators=(",", ":")),
            call_id=rt.new_id("call"),
            item_id=rt.new_id("item"),
            server_label=server_label,
            output=output,
            error=error,
        )

    def _tool_parts(self, plan: ToolPlan) -> tuple[Reply, list[str | PlannedCall]]:
        """A plan's response: MCP calls (the service runs them), then what the model says (the
        line before function calls, or its reply once the MCP calls are done), then the
        function calls (the client runs them)."""
        if plan.functions:
            text = plan.say_first
            self.reply_after = plan.reply_after
        else:
            text = plan.say_first or plan.reply_after or self.standin.tool_reply
        parts: list[str | PlannedCall] = [*plan.mcp]
        if text:
            parts.append(AUDIO)
        parts += plan.functions
        return (rt.spoken_reply(text) if text else Reply("", 0.0)), parts

    def _call_item(self, call: PlannedCall, *, done: bool) -> dict[str, Any]:
        if call.server_label is not None:
            item: dict[str, Any] = {
                "id": call.item_id,
                "type": "mcp_call",
                "server_label": call.server_label,
                "name": call.name,
                "arguments": call.arguments if done else "",
            }
            if done and call.error is not None:
                item["error"] = {"type": "tool_execution_error", "message": call.error}
            elif done:
                item["output"] = call.output
            return item
        return {
            "id": call.item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "completed" if done else "in_progress",
            "name": call.name,
            "call_id": call.call_id,
            "arguments": call.arguments if done else "",
        }

    async def _add_call_item(
        self, response: ActiveResponse, call: PlannedCall, index: int
    ) -> str | None:
        """Announce a call's item (in progress); the item before it, for the done event."""
        previous, self.last_item_id = self.last_item_id, call.item_id
        self.items[call.item_id] = Item(call.item_id, "assistant", text=call.arguments)
        response.own_items.add(call.item_id)
        response.arguments_text += call.arguments
        item = self._call_item(call, done=False)
        await self.emit(
            "response.output_item.added",
            response_id=response.response_id,
            output_index=index,
            item=item,
        )
        await self._announce_item(item, previous, done=False)
        return previous

    async def _call_item_done(
        self, response: ActiveResponse, call: PlannedCall, index: int, previous: str | None
    ) -> dict[str, Any]:
        done = self._call_item(call, done=True)
        await self.emit(
            "response.output_item.done",
            response_id=response.response_id,
            output_index=index,
            item=done,
        )
        if self.protocol == "ga":
            await self.emit("conversation.item.done", previous_item_id=previous, item=done)
        response.output.append(done)
        return done

    async def _function_call(self, response: ActiveResponse, call: PlannedCall, index: int) -> None:
        """A function call as the service streams it: the item, the arguments in deltas, their
        done (GA names the function there; beta only in the item), the item done."""
        previous = await self._add_call_item(response, call, index)
        ids = {
            "response_id": response.response_id,
            "item_id": call.item_id,
            "output_index": index,
            "call_id": call.call_id,
        }
        for delta in _chunks(call.arguments):
            await self.emit("response.function_call_arguments.delta", **ids, delta=delta)
        named = {"name": call.name} if self.protocol == "ga" else {}
        await self.emit(
            "response.function_call_arguments.done", **ids, **named, arguments=call.arguments
        )
        await self._call_item_done(response, call, index, previous)
        response.calls.append(call)
        self.called_tools.add(call.name)
        self.function_calls[call.call_id] = FunctionCall(
            call.call_id, call.name, response.response_id
        )

    async def _mcp_call(self, response: ActiveResponse, call: PlannedCall, index: int) -> None:
        """An MCP call the service makes itself: the item, its arguments, in progress, then
        completed (with the server's output) or failed (with its error). No client round trip:
        the reply goes on in the same response."""
        previous = await self._add_call_item(response, call, index)
        ids = {"item_id": call.item_id, "output_index": index}
        for delta in _chunks(call.arguments):
            await self.emit(
                "response.mcp_call_arguments.delta",
                response_id=response.response_id,
                **ids,
                delta=delta,
            )
        await self.emit(
            "response.mcp_call_arguments.done",
            response_id=response.response_id,
            **ids,
            arguments=call.arguments,
        )
        await self.emit("response.mcp_call.in_progress", **ids)
        # The service waits on the MCP server; a barge-in does not stop a call under way.
        await asyncio.sleep(self.standin.mcp_delay_s)
        outcome = "failed" if call.error is not None else "completed"
        await self.emit(f"response.mcp_call.{outcome}", **ids)
        self.mcp_calls.append(await self._call_item_done(response, call, index, previous))

    async def _list_mcp_tools(self) -> None:
        """As the service does when a session offers an MCP server: list its tools, once per
        server label (an mcp_list_tools item). The stand-in knows of the tools `allowed_tools`
        names and those a script calls on that server."""
        if self.protocol != "ga":
            return
        for tool in self.session.get("tools") or []:
            label = tool.get("server_label") if tool.get("type") == "mcp" else None
            if label is None or label in self.mcp_listed:
                continue
            self.mcp_listed.add(label)
            item_id = rt.new_id("item")
            item: dict[str, Any] = {"id": item_id, "type": "mcp_list_tools", "server_label": label}
            previous, self.last_item_id = self.last_item_id, item_id
            await self.emit(
                "conversation.item.added", previous_item_id=previous, item={**item, "tools": []}
            )
            await self.emit("mcp_list_tools.in_progress", item_id=item_id)
            await self.emit("mcp_list_tools.completed", item_id=item_id)
            listed = [
                {"name": name, "input_schema": {"type": "object"}} for name in self._mcp_names(tool)
            ]
            await self.emit(
                "conversation.item.done", previous_item_id=previous, item={**item, "tools": listed}
            )

    def _mcp_names(self, tool: dict[str, Any]) -> list[str]:
        allowed = tool.get("allowed_tools")
        names = list(allowed) if isinstance(allowed, list) else []
        if isinstance(allowed, dict):
            names = list(allowed.get("tool_names") or [])
        for scripted in self.standin.tool_calls or ():
            if scripted.server_label == tool.get("server_label") and scripted.name not in names:
                names.append(scripted.name)
        return names

    async def _on_function_output(self, payload: dict[str, Any], item: dict[str, Any]) -> None:
        """A tool's output from the client: kept, and announced as a conversation item. One for
        a call nobody made is refused (and flagged)."""
        problem = _item_problem(item, FUNCTION_OUTPUT_FIELDS, ("call_id", "output"))
        if problem is not None:
            await self.emit_error(problem[0], code=problem[1], param=problem[2], cause=payload)
            return
        call = self.function_calls.get(item["call_id"])
        if call is None:
            self.protocol_problems.append(
                f"function_call_output for an unknown call_id {item['call_id']!r}"
            )
            await self.emit_error(
                f"No tool call found for function call output with call_id {item['call_id']}.",
                code="invalid_value",
                param="item.call_id",
                cause=payload,
            )
            return
        self.function_outputs.append(dict(item))
        call.answered = True
        self.tool_round_trip = True
        await self._add_client_item(payload, item, text=item["output"])

    async def _on_client_function_call(self, payload: dict[str, Any], item: dict[str, Any]) -> None:
        """A function call the client puts in the conversation (a replayed one after a
        reconnect): its output may follow; the default policy counts the tool as called."""
        problem = _item_problem(item, FUNCTION_CALL_FIELDS, ("call_id", "name", "arguments"))
        if problem is not None:
            await self.emit_error(problem[0], code=problem[1], param=problem[2], cause=payload)
            return
        self.function_calls[item["call_id"]] = FunctionCall(item["call_id"], item["name"], None)
        self.called_tools.add(item["name"])
        await self._add_client_item(payload, item, text=item["arguments"])

    async def _add_client_item(
        self, payload: dict[str, Any], item: dict[str, Any], *, text: str
    ) -> None:
        item_id = str(item.get("id") or rt.new_id("item"))
        previous = payload.get("previous_item_id", self.last_item_id)
        self.items[item_id] = Item(item_id, "user", text=text)
        self.last_item_id = item_id
        full = {"object": "realtime.item", "status": "completed", **item, "id": item_id}
        await self._announce_item(full, previous, done=True)

    def _check_answered(self, payload: dict[str, Any]) -> None:
        """A response.create while a call of the previous response has no output yet is a
        client error (the model would go on without the result): flagged. The service takes
        it without an error event, so the stand-in does too."""
        unanswered = [cid for cid in self.awaiting if not self.function_calls[cid].answered]
        for call_id in unanswered:
            call = self.function_calls[call_id]
            self.protocol_problems.append(
                f"response.create ({payload.get('event_id') or 'no event_id'}) while "
                f"{call.name} ({call_id}) of {call.response_id} has no function_call_output"
            )
        self.awaiting = []

    # --- responses ----------------------------------------------------------------------------

    def _start_response(
        self,
        reply: Reply | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        """Start a response saying `reply`, by default the answer to the caller's turn: its
        tool calls if it has any, else the next scripted reply (only those move the script on:
        a greeting or a re-prompt leaves the next scripted reply as it was). `overrides`: a
        response.create's own `tools` / `tool_choice`."""
        standin = self.standin
        parts: list[str | PlannedCall] = [AUDIO]
        if reply is None:
            plan = self._plan_tools(overrides or {})
            if plan is not None:
                reply, parts = self._tool_parts(plan)
            else:
                reply = standin.reply_for(self.scripted)
                self.scripted += 1
        rng = self._rng_response
        response = ActiveResponse(
            rt.new_id("resp"),
            rt.new_id("item"),
            reply,
            created_delay_s=draw(rng, delay_range(standin.response_delay_s, "response_delay_s")),
            first_audio_delay_s=draw(
                rng, delay_range(standin.first_audio_delay_s, "first_audio_delay_s")
            ),
            metadata=metadata,
            parts=parts,
        )
        self.responses += 1
        self.idle_from_ms = None  # re-armed when this response's playback ends
        self.response = response
        response.task = asyncio.create_task(self._respond(response))

    async def _cancel_response(self, reason: str) -> None:
        """Stop the deltas, then wait until the response has reported itself cancelled."""
        response = self.response
        if response is None or response.task is None:
            return
        response.cancel_reason = reason
        response.wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(response.task)

    async def _respond(self, response: ActiveResponse) -> None:
        try:
            # The response exists (response.create meets "already active") from the start, but
            # the model takes a moment to announce it, and longer to speak. Cancelled during
            # the first wait, it is still announced, then done with no output.
            await self._pause(response, response.created_delay_s)
            await self.emit("response.created", response=self._response_body(response))
            if not await self._pause(response, response.first_audio_delay_s):
                await self._produce(response)
            await self._finish(response)
        finally:
            if self.response is response:
                self.response = None
            self.standin.notify()

    def _ids(self, response: ActiveResponse) -> dict[str, Any]:
        return {
            "response_id": response.response_id,
            "item_id": response.item_id,
            "output_index": response.message_index,
            "content_index": 0,
        }

    def _assistant_item(self, response: ActiveResponse, status: str) -> dict[str, Any]:
        content_type = "output_audio" if self.protocol == "ga" else "audio"
        content = [{"type": content_type, "transcript": response.transcript}]
        return {
            "id": response.item_id,
            "object": "realtime.item",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content if status != "in_progress" else [],
        }

    async def _produce(self, response: ActiveResponse) -> None:
        """The response's parts in output order: the spoken reply and tool calls."""
        for index, part in enumerate(response.parts):
            if response.cancel_reason is not None:
                return
            if part == AUDIO:
                response.message_index = index
                cancelled = await self._stream_audio(response)
                await self._close_audio(response)
                if cancelled:
                    return
            elif isinstance(part, PlannedCall) and part.server_label is not None:
                await self._mcp_call(response, part, index)
            elif isinstance(part, PlannedCall):
                await self._function_call(response, part, index)

    async def _stream_audio(self, response: ActiveResponse) -> bool:
        """The output item, then audio and transcript deltas, faster than real time; True if
        the response was cancelled meanwhile."""
        response.audio_started = True
        item = self._assistant_item(response, "in_progress")
        response.previous_item_id, self.last_item_id = self.last_item_id, response.item_id
        self.items[response.item_id] = Item(response.item_id, "assistant")
        response.own_items.add(response.item_id)
        await self.emit(
            "response.output_item.added",
            response_id=response.response_id,
            output_index=response.message_index,
            item=item,
        )
        await self._announce_item(item, response.previous_item_id, done=False)
        await self.emit(
            "response.content_part.added",
            **self._ids(response),
            part={"type": "audio", "transcript": ""},
        )
        codec = self.output_codec
        rate = rt.codec_rate(codec)
        samples = speech(response.reply.seconds, rate=rate, seed=self.index * 1000 + self.responses)
        rng = self._rng_chunks if self.standin.uneven_chunks else None
        sizes = chunk_sizes(samples.size, rate * self.standin.chunk_ms // 1000, rate // 1000, rng)
        words = response.reply.text.split()
        speed = self.standin.speed
        start = response.first_audio_at = time.monotonic()
        offset = 0
        for index, size in enumerate(sizes):
            piece = samples[offset : offset + size]
            offset += size
            data = ulaw_encode(piece) if codec == "pcmu" else pcm16_to_bytes(piece)
            await self.emit(
                "response.output_audio.delta",
                **self._ids(response),
                delta=base64.b64encode(data).decode("ascii"),
            )
            response.sent_ms += piece.size * 1000.0 / rate
            self.items[response.item_id].audio_ms = response.sent_ms
            await self._say_words(response, words, round(len(words) * (index + 1) / len(sizes)))
            # Absolute schedule: the next chunk leaves when the audio sent so far would have
            # played at `speed`, however uneven the chunks and however late this one was.
            due = start + response.sent_ms / 1000.0 / speed if speed > 0 else 0.0
            if await self._pause(response, due - time.monotonic()):
                return True
        return False

    async def _say_words(self, response: ActiveResponse, words: list[str], upto: int) -> None:
        said = len(response.transcript.split())
        if upto <= said:
            return
        delta = (" " if said else "") + " ".join(words[said:upto])
        response.transcript += delta
        await self.emit(
            "response.output_audio_transcript.delta", **self._ids(response), delta=delta
        )

    async def _pause(self, response: ActiveResponse, seconds: float) -> bool:
        """Sleep up to `seconds`; True if the response was cancelled meanwhile."""
        if response.cancel_reason is None and seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(response.wake.wait(), seconds)
        return response.cancel_reason is not None

    async def _close_audio(self, response: ActiveResponse) -> None:
        """The spoken message's closing events; a cancelled one closes the same way, as the
        service does."""
        cancelled = response.cancel_reason is not None
        if response.audio_started:
            ids = self._ids(response)
            self.items[response.item_id].text = response.transcript
            done = self._assistant_item(response, "incomplete" if cancelled else "completed")
            response.output.append(done)
            await self.emit("response.output_audio.done", **ids)
            if not cancelled:
                # A reply cut short (by the caller's speech or response.cancel) gets no
                # transcript.done and no content_part.done: what was said so far arrives only
                # in output_item.done (status incomplete) and response.done.
                await self.emit(
                    "response.output_audio_transcript.done", **ids, transcript=response.transcript
                )
                await self.emit(
                    "response.content_part.done",
                    **ids,
                    part={"type": "audio", "transcript": response.transcript},
                )
            await self.emit(
                "response.output_item.done",
                response_id=response.response_id,
                output_index=response.message_index,
                item=done,
            )
            if self.protocol == "ga":
                await self.emit(
                    "conversation.item.done", previous_item_id=response.previous_item_id, item=done
                )

    async def _finish(self, response: ActiveResponse) -> None:
        """response.done, with every item the response output (cancelled or not)."""
        cancelled = response.cancel_reason is not None
        body = self._response_body(response, "cancelled" if cancelled else "completed")
        body.update(output=list(response.output), usage=self._usage(response))
        if cancelled:
            body["status_details"] = {"type": "cancelled", "reason": response.cancel_reason}
        await self.emit("response.done", response=body)
        if response.calls:
            # The client owes these calls an output before it asks for the next response.
            self.awaiting = [call.call_id for call in response.calls]
            self.tool_round_trip = False
        self._arm_idle(response)

    def _response_body(self, response: ActiveResponse, status: str = "in_progress") -> dict:
        body: dict[str, Any] = {
            "object": "realtime.response",
            "id": response.response_id,
            "status": status,
            "status_details": None,
            "output": [],
            "usage": None,
            "metadata": response.metadata,
        }
        if self.protocol == "beta":
            body["modalities"] = ["audio", "text"]
            return body
        output = self.session["audio"]["output"]
        body.update(
            conversation_id=rt.CONVERSATION_ID,
            output_modalities=["audio"],
            max_output_tokens="inf",
            audio={"output": {"format": output["format"], "voice": output.get("voice")}},
        )
        return body

    def _usage(self, response: ActiveResponse) -> dict[str, Any]:
        """The whole conversation is input; what the last response saw as input, a prefix of
        this one's context, is cached (kind by kind, as `cached_tokens_details` splits it)."""
        items = [item for item in self.items.values() if item.item_id not in response.own_items]
        audio_in = sum(round(item.audio_ms / 1000 * rt.INPUT_AUDIO_TOKENS_PER_S) for item in items)
        text_in = rt.text_tokens(str(self.session.get("instructions") or "")) + sum(
            rt.text_tokens(item.text) for item in items if not item.audio_ms
        )
        input_tokens = rt.InputTokens(text_in, audio_in).cached_from(self.previous_input)
        self.previous_input = input_tokens
        return rt.usage(
            self.protocol,
            input_tokens=input_tokens,
            output_ms=response.sent_ms,
            transcript=response.transcript + response.arguments_text,
        )


def _deltas(model: str, transcript: str) -> list[str]:
    """The `...input_audio_transcription.delta`s of a transcript, joining back to it whole."""
    if model == "whisper-1":
        return [transcript]  # whisper-1 is not incremental: one delta, the whole turn
    words = transcript.split(" ")
    return [word if not n else " " + word for n, word in enumerate(words)]


def _truncate_problem(
    item_id: object, item: Item | None, end_ms: object
) -> tuple[str, str, str | None] | None:
    """Why the service would refuse this truncation: (message, code, param), or None."""
    if item is None:
        return f"Conversation item '{item_id}' not found.", "item_not_found", "item_id"
    if item.role != "assistant" or not item.audio_ms:
        return "Only model output audio messages can be truncated", "unsupported_content_type", None
    if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
        message = "Invalid 'audio_end_ms': expected a non-negative integer."
        return message, "invalid_value", "audio_end_ms"
    if end_ms > item.audio_ms:
        # The service's own words, numbers glued to "ms".
        message = f"Audio content of {int(item.audio_ms)}ms is already shorter than {end_ms}ms"
        return message, "invalid_value", "audio_end_ms"
    return None


def _chunks(text: str, size: int = ARGUMENT_DELTA_CHARS) -> list[str]:
    """Argument deltas: the JSON text in pieces that join back to it."""
    return [text[start : start + size] for start in range(0, len(text), size)] or [""]


def _item_problem(
    item: dict[str, Any], fields: frozenset[str], required: tuple[str, ...]
) -> rt.Problem | None:
    """Why the service would refuse a conversation item of this kind, or None."""
    for key in item:
        if key not in fields:
            return rt.unknown_parameter(f"item.{key}")
    for key in required:
        if key not in item:
            return rt.missing(f"item.{key}")
        if not isinstance(item[key], str):
            return rt.invalid_type(f"item.{key}", "a string", item[key])
    return None


async def _after(seconds: float, action: Callable[[], Coroutine[Any, Any, None]]) -> None:
    await asyncio.sleep(seconds)
    await action()
