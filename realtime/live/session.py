"""OpenAILiveSession: the bridge's ModelSession over OpenAI's GPT-Live WebSocket.

One object per call. It starts the session with the agent's whole configuration
(`session.start`), streams the caller's mu-law frames as they came from Twilio and yields the
model's continuous output track untouched, as `AudioDelta`s of one item per session. GPT-Live
has no turn events: lines are assembled from the timed transcript fragments
(`realtime.live.timeline`) and handed to the bridge as `TimedLine`s, with interruptions found
from their timing. Tools go through Responses delegation: a function call arrives nested in
`response.event`, the bridge answers it with `tool_result` and asks for the backend's next
response with `request_response`, as it does with the Realtime API.

A dropped socket cannot be resumed: a new session starts with the conversation so far as its
`input` history, and the caller audio no transcript covers yet (the turn the drop cut) is sent
to it first. The same happens, on purpose and at a quiet moment, shortly before the session's
`expires_at`, so a long call never meets the limit mid-sentence.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import itertools
import logging
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from audio.g711 import ulaw_is_audible
from realtime.connection import (
    CONNECT_BACKLOG_S,
    FRAMES_PER_S,
    PING_INTERVAL_S,
    PING_TIMEOUT_S,
    AttemptFailed,
    ModelConnection,
    Refused,
    close_reason,
    ulaw_ms_of_base64,
)
from realtime.live import protocol
from realtime.live.timeline import TranscriptTimeline
from realtime.model import (
    AudioDelta,
    ContextProvider,
    Disconnected,
    ModelError,
    ModelEvent,
    RealtimeSettings,
    ResponseDone,
    SessionFailed,
    SessionReady,
    ToolCallRequested,
)
from realtime.track import ULAW_BYTES_PER_MS

logger = logging.getLogger(__name__)

# Start-up errors another attempt cannot fix (the configuration is refused as it is).
FATAL_START_CODES = frozenset(
    {"model_not_found", "invalid_value", "unknown_parameter", "missing_required_parameter"}
)
# Renewal waits for both sides to be quiet this long, but no later than half the margin
# before expiry.
QUIET_FOR_RENEWAL_MS = 1000.0
QUIET_FOR_RENEWAL_FRAMES = round(QUIET_FOR_RENEWAL_MS / 1000 * FRAMES_PER_S)
# How often (on the session timeline) finished lines are looked for while nothing arrives.
LINE_CHECK_MS = 250.0
# session.close at the call's end: how long the final usage (session.closed) is waited for.
FINAL_USAGE_WAIT_S = 1.0


class _Renew(Exception):
    """The session is being replaced before it expires (not a failure)."""


class OpenAILiveSession(ModelConnection):
    """A ModelSession over one GPT-Live WebSocket at a time (see realtime.model)."""

    kind = "live"
    continuous_track = True

    def __init__(
        self,
        settings: RealtimeSettings,
        context: ContextProvider,
        *,
        backend_model: str,
        renew_before_s: float = 30.0,
        rng: random.Random | None = None,
        ping_interval_s: float = PING_INTERVAL_S,
        ping_timeout_s: float = PING_TIMEOUT_S,
    ) -> None:
        super().__init__(
            settings,
            context,
            rng=rng,
            ping_interval_s=ping_interval_s,
            ping_timeout_s=ping_timeout_s,
        )
        self._backend_model = backend_model
        self._renew_before_s = renew_before_s
        # This session: its timeline (ms of caller audio appended), its track, its lines.
        self.sessions = 0
        self._track_id = ""
        self._input_ms = 0.0
        self._next_line_check_ms = 0.0
        self._timeline = TranscriptTimeline()
        self._renew_at: float | None = None  # time.monotonic() to look for a quiet moment
        self._renew_by: float | None = None  # ... and to renew, quiet or not
        # Caller frames no transcript covers yet: [end on this session's timeline, payload].
        self._backlog: deque[list[Any]] = deque(maxlen=round(CONNECT_BACKLOG_S * FRAMES_PER_S))
        # Responses delegation: each delegation's response under way, each response's calls.
        self._responses: dict[str, str] = {}
        self._calls: dict[str, list[ToolCallRequested]] = {}
        # Billing: whole sessions closed, and the session under way.
        self._billed_closed_s = 0.0
        self._usage_s = 0.0
        self._started_at: float | None = None
        self.renewals = 0

    # --- billing ------------------------------------------------------------------------------

    @property
    def billed_seconds(self) -> float:
        """The service's usage of the sessions so far; for the session under way, its last
        usage update or the time it has run (whole seconds), whichever is more."""
        current = self._usage_s
        if self._started_at is not None:
            current = max(current, float(math.ceil(time.monotonic() - self._started_at)))
        return self._billed_closed_s + current

    def _session_ended(self, final_usage_s: float | None) -> None:
        if self._started_at is None:
            return
        if final_usage_s is not None:
            self._usage_s = final_usage_s
        self._billed_closed_s = self.billed_seconds
        self._usage_s = 0.0
        self._started_at = None

    # --- connecting ---------------------------------------------------------------------------

    async def _configure(self, ws: ClientConnection, *, resumed: bool) -> None:
        """session.start (with the conversation so far when `resumed`), then wait for
        session.started: nothing else may be sent before it."""
        history = self._context() if resumed else []
        start = protocol.session_start(self.settings, history, backend_model=self._backend_model)
        await ws.send(orjson.dumps(start), text=True)
        while True:
            event = protocol.parse_server_message(await ws.recv(decode=False), {})
            if type(event) is protocol.Started:
                self._on_started(event)
                return
            if type(event) is ModelError:
                message = f"session.start refused: {event.code}: {event.message}"
                if event.code in FATAL_START_CODES:
                    raise Refused(message)
                raise AttemptFailed(message)
            if type(event) is protocol.Closed:
                raise AttemptFailed(f"session closed at start: {event.reason}")

    async def _catch_up(self, ws: ClientConnection, *, resumed: bool) -> float:
        return await self._replay_caller_audio(ws, from_sound=resumed)

    def _on_started(self, started: protocol.Started) -> None:
        """A new session: its own timeline, track and lines; its renewal planned."""
        self.sessions += 1
        self._track_id = f"track-{self.sessions}"
        self._input_ms = 0.0
        self._next_line_check_ms = 0.0
        self._timeline = TranscriptTimeline()
        self._responses.clear()
        self._calls.clear()
        self._started_at = time.monotonic()
        self._usage_s = 0.0
        life_s = started.expires_at - time.time()
        self._renew_at = self._renew_by = None
        margin_s = min(self._renew_before_s, life_s / 4)
        if self._renew_before_s > 0 and life_s > 0:
            self._renew_at = time.monotonic() + life_s - margin_s
            self._renew_by = time.monotonic() + life_s - margin_s / 2

    def _went_live(self, ws: ClientConnection) -> None:
        super()._went_live(ws)
        kept = max(1, round(self.settings.replay_audio_s * FRAMES_PER_S))
        self._backlog = deque(self._backlog, maxlen=kept)

    async def _replay_caller_audio(self, ws: ClientConnection, *, from_sound: bool) -> float:
        """Send the caller audio no transcript covers (and what arrives meanwhile) before live
        audio resumes. After a first session, from its first sound: replayed silence would
        only run the new session's timeline ahead of its track. (At the first connect it is
        what the caller's line carried while it was made, all of it.) The new session's
        timeline starts at its first frame."""
        while from_sound and self._backlog and not _audible(self._backlog[0][1]):
            self._backlog.popleft()
        replayed_ms = 0.0
        sent = 0
        try:
            while sent < len(self._backlog):
                frame = self._backlog[sent]
                replayed_ms += ulaw_ms_of_base64(frame[1])
                self._input_ms = replayed_ms
                frame[0] = replayed_ms
                await ws.send(protocol.input_audio_append(frame[1]), text=True)
                sent += 1
        except ConnectionClosed as exc:
            raise AttemptFailed(f"dropped while replaying caller audio: {exc}") from None
        self.audio_replayed_frames += sent
        return replayed_ms

    # --- receiving ----------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[ModelEvent]:
        if self._ws is None:
            raise RuntimeError("connect() must succeed before events() is iterated")
        if not self._announced:
            self._announced = True
            yield SessionReady(reconnect_attempt=0, replayed_audio_ms=self._connect_replayed_ms)
        while not self._closed:
            ws = self._ws
            reason = ""
            renewing = False
            try:
                async for event in self._session_events(ws):
                    yield event
            except _Renew:
                renewing = True
            except ConnectionClosed as exc:
                reason = close_reason(exc)
            except _SessionClosed as exc:
                reason = f"the service closed the session: {exc.reason}"
                if exc.reason == "content":
                    self._live = False
                    for line in self.finish_lines():
                        yield line
                    self._failed = True
                    yield SessionFailed("the service ended the session (content filter)")
                    return
            self._live = False
            if self._closed:
                return
            for line in self.finish_lines():
                yield line  # the new session's history must hold everything said so far
            if renewing:
                outcome = await self._renew(ws)
                if outcome is not None:
                    yield outcome
                    continue
                reason = "the renewed session could not be started"
            self._session_ended(None)
            logger.warning("live socket dropped: %s", reason)
            yield Disconnected(reason=reason)
            result = await self._reconnect(reason)
            if result is None:
                return
            if type(result) is SessionFailed:
                self._failed = True
                self._backlog.clear()
            yield result
            if self._failed:
                return

    async def _session_events(self, ws: ClientConnection) -> AsyncIterator[ModelEvent]:
        """One session's events, until its socket closes (ConnectionClosed), it ends
        (_SessionClosed) or it is due for renewal (_Renew)."""
        while True:
            event = protocol.parse_server_message(await ws.recv(decode=False), self._responses)
            kind = type(event)
            if kind is protocol.OutputAudio:
                audio_b64: str = event.audio_b64  # type: ignore[union-attr]
                try:
                    audio = binascii.a2b_base64(audio_b64)
                except binascii.Error:
                    yield AudioDelta(self._track_id, "", audio_b64)  # the bridge counts it
                    continue
                audible = ulaw_is_audible(audio)
                if audible:
                    self._on_track_sound(len(audio) / ULAW_BYTES_PER_MS)
                yield AudioDelta(self._track_id, "", audio_b64, audio=audio, audible=audible)
            elif kind is protocol.TranscriptDelta:
                self._on_transcript(event)  # type: ignore[arg-type]
            elif kind is ToolCallRequested:
                self._calls.setdefault(event.response_id, []).append(event)  # type: ignore[union-attr]
                yield event  # type: ignore[misc]
            elif kind is protocol.BackendResponseDone:
                yield self._response_done(event)  # type: ignore[arg-type]
            elif kind is protocol.UsageUpdated:
                self._usage_s = event.seconds  # type: ignore[union-attr]
            elif kind is protocol.Closed:
                self._session_ended(event.seconds)  # type: ignore[union-attr]
                raise _SessionClosed(event.reason)  # type: ignore[union-attr]
            elif event is not None and kind is not protocol.Started:
                yield event  # type: ignore[misc]
            if self._input_ms >= self._next_line_check_ms:
                self._next_line_check_ms = self._input_ms + LINE_CHECK_MS
                for line in self._timeline.finished(self._input_ms):
                    yield line
                if self._renewal_due():
                    raise _Renew

    def _on_track_sound(self, duration_ms: float) -> None:
        """The track's sound (not its silence) is where the agent is speaking: the audio
        arriving now is the timeline's now (the service streams the track in real time)."""
        now = self._input_ms
        self._timeline.agent_sound(now, now + duration_ms)

    def _on_transcript(self, delta: protocol.TranscriptDelta) -> None:
        """Keep the fragment for its line; caller audio it covers (or that the agent has begun
        to answer) need not be replayed to a next session."""
        self._timeline.add(delta)
        covered = delta.end_ms if delta.role == "user" else delta.start_ms
        while self._backlog and self._backlog[0][0] <= covered:
            self._backlog.popleft()

    def _response_done(self, done: protocol.BackendResponseDone) -> ResponseDone:
        calls = tuple(self._calls.pop(done.response_id, ()))
        return ResponseDone(done.response_id, done.status, usage=done.usage, tool_calls=calls)

    def _renewal_due(self) -> bool:
        if self._renew_at is None:
            return False
        now = time.monotonic()
        if now < self._renew_at:
            return False
        if self._renew_by is not None and now >= self._renew_by:
            return True
        heard = self._timeline.heard_through
        quiet_agent = self._input_ms - heard("assistant") >= QUIET_FOR_RENEWAL_MS
        quiet_caller = self._input_ms - heard("user") >= QUIET_FOR_RENEWAL_MS
        if not (quiet_agent and quiet_caller) or self._calls:
            return False
        # The caller's transcript lags their voice: their last second of audio must be quiet.
        recent = itertools.islice(reversed(self._backlog), QUIET_FOR_RENEWAL_FRAMES)
        return not any(_audible(frame[1]) for frame in recent)

    async def _renew(self, old: ClientConnection) -> SessionReady | None:
        """Replace the session before it expires: close it (its final usage counted), start a
        new one with the conversation so far; None if the new one could not be started."""
        self._renew_at = self._renew_by = None
        await self._close_session(old)
        try:
            ws, replayed_ms = await self._start(resumed=True)
        except AttemptFailed as exc:
            logger.warning("live session renewal failed: %s", exc)
            return None
        if self._closed:
            await ws.close()
            return None
        self._went_live(ws)
        self.renewals += 1
        logger.info("live session renewed before it expired")
        return SessionReady(replayed_audio_ms=replayed_ms, renewal=True)

    def finish_lines(self) -> list[ModelEvent]:
        return list(self._timeline.finish_all())

    # --- sending ------------------------------------------------------------------------------

    async def send_audio(self, payload_b64: str) -> None:
        """Caller audio as Twilio sent it, silence included (the timeline advances with it)."""
        ws = self._ws
        if self._closed or self._failed:
            self.audio_dropped_frames += 1
            return
        if not self._live or ws is None:
            self._backlog.append([0.0, payload_b64])
            return
        self._input_ms += ulaw_ms_of_base64(payload_b64)
        self._backlog.append([self._input_ms, payload_b64])
        # A drop: the frame waits in the backlog for the next session.
        await self._send_frame(ws, protocol.input_audio_append(payload_b64))

    async def send_text(self, text: str) -> None:
        """Something that happened on the call (a key pressed) for the model to act on."""
        await self._send(protocol.commentary(text))

    async def commit_audio(self) -> None:
        """The caller hung up: the line carries silence from here, so the model's turn
        detection ends their last turn and it is transcribed."""
        silence = protocol.silence_frame_b64()
        for _ in range(protocol.HANG_UP_SILENCE_FRAMES):
            await self.send_audio(silence)

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Nothing to do: the model stops by itself when talked over."""

    async def cancel_response(self) -> None:
        """Nothing to do: GPT-Live has no cancel (the model stops when talked over)."""

    async def request_response(self) -> None:
        """The backend's next response (after tool outputs)."""
        await self._send(protocol.response_create())

    async def instruct(self, instructions: str) -> None:
        await self._send(protocol.commentary(instructions))

    async def tool_result(self, call_id: str, output: str) -> None:
        await self._send(protocol.function_call_output(call_id, output))

    async def _close_session(self, ws: ClientConnection) -> None:
        """session.close, the final usage if it comes soon, then the socket."""
        with contextlib.suppress(Exception):
            await ws.send(orjson.dumps(protocol.session_close()), text=True)
            async with asyncio.timeout(FINAL_USAGE_WAIT_S):
                while True:
                    event = protocol.parse_server_message(await ws.recv(decode=False), {})
                    if type(event) is protocol.Closed:
                        self._session_ended(event.seconds)
                        break
        self._session_ended(None)
        with contextlib.suppress(Exception):
            await ws.close()

    async def close(self) -> None:
        """End the session for good (its final usage counted); idempotent."""
        if self._closed:
            return
        self._closed = True
        live = self._live
        self._live = False
        self._closing.set()
        if self._ws is not None:
            if live:
                await self._close_session(self._ws)
            else:
                self._session_ended(None)
                await self._ws.close()


def _audible(payload_b64: str) -> bool:
    try:
        return ulaw_is_audible(binascii.a2b_base64(payload_b64))
    except binascii.Error:
        return False


class _SessionClosed(Exception):
    """The service ended the session (session.closed) with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
