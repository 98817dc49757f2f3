"""OpenAIRealtimeSession: the bridge's ModelSession over the OpenAI Realtime WebSocket.

One object per call. It opens the socket, configures the session and turns server events into
`realtime.model` events; when the socket drops (network, service restart, or the 60-minute
session limit) it reconnects on its own, configures the new session the same way and replays
the conversation so far, so the bridge sees only `Disconnected` then `SessionReady`.

Hot path: `send_audio` and the receive loop in `events` run 50 times a second per direction per
call, for 100-200 calls in one process. They log nothing per frame, serialize with orjson, send
bytes as text frames and receive text frames as bytes (no str round trip), and run without
per-message deflate (base64 audio barely compresses and deflate costs CPU on every frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.protocol import State

from audio.convert import OpenAIPcmToTwilio, TwilioToOpenAIPcm
from audio.errors import AudioFormatError
from realtime import protocol
from realtime.model import (
    AudioDelta,
    CallerTranscriptDone,
    CallerTranscriptFailed,
    ContextProvider,
    Disconnected,
    ModelError,
    ModelEvent,
    ModelUnavailable,
    RealtimeSettings,
    SessionFailed,
    SessionReady,
    SpeechStopped,
)

logger = logging.getLogger(__name__)
# websockets logs every handshake header at DEBUG, Authorization included. The sockets get a
# logger of their own pinned at INFO, so turning DEBUG on cannot put the API key in the logs.
socket_logger = logging.getLogger(f"{__name__}.socket")
socket_logger.setLevel(logging.INFO)

# Audio deltas are base64 strings of up to a few seconds of audio; the 1 MiB default is tight.
MAX_MESSAGE_BYTES = 16 * 2**20
# websockets' keepalive. Nothing else reveals a hung service while the caller is silent (the
# service sends nothing then), so a stalled socket is noticed within about 20 s, not never.
PING_INTERVAL_S = 10.0
PING_TIMEOUT_S = 10.0
# close() is awaited when a call ends; do not let a slow peer hold the bridge's teardown.
CLOSE_TIMEOUT_S = 2.0
# A session restored this long ago counts as healthy: its next drop starts a fresh retry budget.
# A shorter-lived one keeps counting, so a service that accepts then drops at once cannot keep
# a call in a reconnect loop forever.
STABLE_SESSION_S = 30.0
# Caller audio kept while the first connect is under way (the caller talks meanwhile: the
# bridge keeps reading their frames); once live the backlog shrinks to replay_audio_s.
CONNECT_BACKLOG_S = 30.0
FRAMES_PER_S = 50  # Twilio sends 20 ms frames
# Upgrade answers that another attempt cannot change (bad key, no access, wrong URL).
FATAL_HTTP_STATUSES = frozenset({400, 401, 403, 404})


class CallerAudioBacklog:
    """The caller's recent audio that is not yet in the conversation as text.

    Audio appended to a session that then drops dies with it: a turn the caller was speaking,
    or had finished but was not transcribed yet, would never be answered (the replayed context
    holds only transcribed turns). The session keeps this backlog and sends it to the next
    session before live audio resumes, so that session's VAD hears the turn again; audio sent
    while disconnected is kept the same way instead of being lost. Frames leave once the turn
    they belong to is transcribed; at most `max_frames` are kept (the newest).
    """

    def __init__(self, max_frames: int) -> None:
        self.enabled = max_frames > 0
        self._frames: deque[str] = deque(maxlen=max(1, max_frames))
        self._appended = 0  # frames ever added: an absolute index that eviction cannot shift
        self._turn_ends: dict[str, int] = {}  # caller item id -> frames added when it ended

    def limit(self, max_frames: int) -> None:
        """Keep at most `max_frames` from now on (the newest); 0 turns the backlog off."""
        self.enabled = max_frames > 0
        self._frames = deque(self._frames if self.enabled else (), maxlen=max(1, max_frames))

    def add(self, payload_b64: str) -> None:
        if self.enabled:
            self._frames.append(payload_b64)
            self._appended += 1

    def turn_ended(self, item_id: str) -> None:
        self._turn_ends[item_id] = self._appended

    def turn_transcribed(self, item_id: str) -> None:
        """Forget the audio up to the end of this turn (and of earlier turns: turns end in
        order, and a turn whose transcription died with a dropped socket never reports)."""
        end = self._turn_ends.pop(item_id, None)
        if end is None:
            return
        for other in [key for key, other_end in self._turn_ends.items() if other_end <= end]:
            del self._turn_ends[other]
        for _ in range(min(len(self._frames), end - self.first_index)):
            self._frames.popleft()

    @property
    def first_index(self) -> int:
        return self._appended - len(self._frames)

    def frames_from(self, index: int) -> tuple[list[str], int]:
        """The frames from absolute index on (or from the oldest kept), and the next index."""
        skip = max(0, index - self.first_index)
        return list(self._frames)[skip:], self._appended

    def clear(self) -> None:
        self._frames.clear()
        self._turn_ends.clear()


def ulaw_ms_of_base64(payload_b64: str) -> float:
    """Duration of base64 mu-law 8 kHz audio (8 bytes per ms) from its length alone."""
    padding = payload_b64[-2:].count("=")
    return (len(payload_b64) * 3 // 4 - padding) / 8


class AttemptFailed(Exception):
    """One connection attempt failed; str() is the reason (never contains the API key)."""


class Refused(AttemptFailed):
    """The service refused us in a way retrying cannot fix."""


def session_url(settings: RealtimeSettings) -> str:
    separator = "&" if "?" in settings.url else "?"
    return f"{settings.url}{separator}{urlencode({'model': settings.agent.model})}"


def session_headers(settings: RealtimeSettings) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {settings.api_key}"}
    if settings.protocol == "beta":
        headers["OpenAI-Beta"] = "realtime=v1"
    return headers


class OpenAIRealtimeSession:
    """A ModelSession over one OpenAI Realtime WebSocket at a time (see realtime.model)."""

    continuous_track = False  # items per reply, truncated and cancelled by the bridge
    billed_seconds = 0.0  # billed by tokens (ResponseDone's usage)

    def __init__(
        self,
        settings: RealtimeSettings,
        context: ContextProvider,
        *,
        rng: random.Random | None = None,
        ping_interval_s: float = PING_INTERVAL_S,
        ping_timeout_s: float = PING_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._context = context
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._ws: ClientConnection | None = None
        self._live = False  # configured and not dropped: only then is anything sent
        self._closed = False
        self._failed = False
        self._closing = asyncio.Event()
        self._announced = False
        self._retry_streak = 0  # reconnect attempts since the last stable session
        self._ready_at = 0.0
        self._connect_replayed_ms = 0.0  # caller audio sent while the first connect was made
        self._closing_silence_ms = protocol.closing_silence_ms(settings.agent)
        self.reconnects = 0
        self.audio_dropped_frames = 0  # lost: the session had failed or was closed
        self.audio_replayed_frames = 0  # sent again to a new session after a drop
        self._backlog = CallerAudioBacklog(round(CONNECT_BACKLOG_S * FRAMES_PER_S))
        self.audio_invalid_frames = 0
        pcm = settings.audio_format == "audio/pcm"
        self._to_model = TwilioToOpenAIPcm() if pcm else None
        self._to_caller = OpenAIPcmToTwilio() if pcm else None

    # --- connecting -------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open and configure the session, retrying with backoff; ModelUnavailable if all fail.

        The caller talks while this runs (the bridge keeps reading their frames): what they
        said meanwhile waits in the backlog and goes to the session before live audio does.
        """
        reason = "closed before connecting"
        for attempt in range(self.settings.max_reconnects + 1):
            if attempt:
                await self._pause(self._backoff_s(attempt - 1))
            if self._closed:
                break
            try:
                ws = await self._open()
                self._connect_replayed_ms = await self._replay_caller_audio(ws)
            except Refused as exc:
                raise ModelUnavailable(str(exc)) from None
            except AttemptFailed as exc:
                reason = str(exc)
                logger.warning("realtime connect attempt %d failed: %s", attempt + 1, reason)
                continue
            self._went_live(ws)
            return
        raise ModelUnavailable(reason)

    def _backoff_s(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**retry)], so calls that dropped together
        (a service restart drops them all) do not all come back in the same instant."""
        ceiling = self.settings.backoff_base_s * 2 ** min(retry, 32)
        return self._rng.uniform(0.0, min(self.settings.backoff_max_s, ceiling))

    async def _pause(self, delay_s: float) -> None:
        """Sleep, but wake at once when close() is called."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._closing.wait()

    async def _open(self) -> ClientConnection:
        """One attempt: open the socket, send session.update, wait for session.updated."""
        timeout_s = self.settings.connect_timeout_s
        ws: ClientConnection | None = None
        try:
            async with asyncio.timeout(timeout_s):
                ws = await connect(
                    session_url(self.settings),
                    additional_headers=session_headers(self.settings),
                    compression=None,
                    max_size=MAX_MESSAGE_BYTES,
                    open_timeout=None,  # the enclosing timeout covers the whole attempt
                    ping_interval=self._ping_interval_s,
                    ping_timeout=self._ping_timeout_s,
                    close_timeout=CLOSE_TIMEOUT_S,
                    logger=socket_logger,
                )
                await ws.send(orjson.dumps(protocol.session_update(self.settings)), text=True)
                await self._await_configured(ws)
                return ws
        except TimeoutError:
            failure: AttemptFailed = AttemptFailed(f"not configured within {timeout_s:g} s")
        except InvalidStatus as exc:
            failure = status_failure(exc.response.status_code)
        except AttemptFailed as exc:
            failure = exc
        except (OSError, WebSocketException) as exc:
            failure = AttemptFailed(f"{type(exc).__name__}: {exc}")
        except asyncio.CancelledError:
            if ws is not None:
                ws.transport.abort()  # no close handshake: the task is being torn down
            raise
        if ws is not None:
            await ws.close()
        raise failure

    async def _await_configured(self, ws: ClientConnection) -> None:
        while True:
            event = protocol.parse_server_message(
                await ws.recv(decode=False), self.settings.protocol
            )
            if type(event) is protocol.SessionUpdated:
                return
            if type(event) is ModelError:
                raise AttemptFailed(f"session.update refused: {event.code}: {event.message}")

    def _went_live(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._live = True
        self._ready_at = time.monotonic()
        self._backlog.limit(round(self.settings.replay_audio_s * FRAMES_PER_S))

    # --- reconnecting -----------------------------------------------------------------------------

    async def _reconnect(self, reason: str) -> SessionReady | SessionFailed | None:
        """After a drop: SessionReady, SessionFailed once the budget is spent, None if closed."""
        if time.monotonic() - self._ready_at >= STABLE_SESSION_S:
            self._retry_streak = 0
        self._reset_converters()
        while self._retry_streak < self.settings.max_reconnects:
            self._retry_streak += 1
            await self._pause(self._backoff_s(self._retry_streak - 1))
            if self._closed:
                return None
            try:
                ws = await self._open()
                await self._replay(ws)
                replayed_ms = await self._replay_caller_audio(ws)
            except Refused as exc:
                return SessionFailed(str(exc))
            except AttemptFailed as exc:
                reason = str(exc)
                logger.warning(
                    "realtime reconnect attempt %d failed: %s", self._retry_streak, reason
                )
                continue
            if self._closed:
                await ws.close()
                return None
            self._went_live(ws)
            self.reconnects += 1
            return SessionReady(reconnect_attempt=self._retry_streak, replayed_audio_ms=replayed_ms)
        return SessionFailed(f"{self._retry_streak} reconnect attempt(s) failed: {reason}")

    async def _replay(self, ws: ClientConnection) -> None:
        """Give the fresh session the conversation so far, in order, without asking for a reply."""
        try:
            for item in self._context():
                event = protocol.context_item(item, self.settings.protocol)
                await ws.send(orjson.dumps(event), text=True)
        except ConnectionClosed as exc:
            raise AttemptFailed(f"dropped while replaying the conversation: {exc}") from None

    async def _replay_caller_audio(self, ws: ClientConnection) -> float:
        """Send the backlog (see CallerAudioBacklog), including frames the caller sends
        meanwhile, until it is caught up; the new session's audio clock starts at its first
        frame. Returns how many ms of caller audio went before live audio resumes."""
        next_index = self._backlog.first_index
        replayed_ms = 0.0
        try:
            while True:
                frames, next_index = self._backlog.frames_from(next_index)
                if not frames:
                    return replayed_ms
                for payload_b64 in frames:
                    replayed_ms += ulaw_ms_of_base64(payload_b64)
                    frame = self._model_audio_frame(payload_b64)
                    if frame is not None:
                        await ws.send(frame, text=True)
                self.audio_replayed_frames += len(frames)
        except ConnectionClosed as exc:
            raise AttemptFailed(f"dropped while replaying caller audio: {exc}") from None

    def _model_audio_frame(self, payload_b64: str) -> bytes | None:
        """input_audio_buffer.append for a Twilio payload (converted in pcm mode); None while
        the resampler fills or when the payload is not audio."""
        if self._to_model is not None:
            try:
                payload_b64 = self._to_model.convert(payload_b64)
            except AudioFormatError:
                self.audio_invalid_frames += 1
                return None
            if not payload_b64:
                return None
        return protocol.input_audio_append(payload_b64)

    def _reset_converters(self) -> None:
        # Buffered samples belong to the old session's audio; the new one starts clean.
        if self._to_model is not None:
            self._to_model.reset()
        if self._to_caller is not None:
            self._to_caller.reset()

    # --- receiving (hot path) ---------------------------------------------------------------------

    async def events(self) -> AsyncIterator[ModelEvent]:
        """Model events until close() or SessionFailed; reconnects happen in here."""
        if self._ws is None:
            raise RuntimeError("connect() must succeed before events() is iterated")
        if not self._announced:
            self._announced = True
            yield SessionReady(reconnect_attempt=0, replayed_audio_ms=self._connect_replayed_ms)
        wire = self.settings.protocol
        while not self._closed:
            ws = self._ws
            expired = False
            try:
                while True:
                    event = protocol.parse_server_message(await ws.recv(decode=False), wire)
                    # Most frames are audio deltas: test for them first.
                    if isinstance(event, AudioDelta):
                        if self._to_caller is not None:
                            event = self._for_caller(event)
                    elif isinstance(event, protocol.AudioDone):
                        event = self._flush_caller_audio(event)
                    elif isinstance(event, protocol.SessionCreated | protocol.SessionUpdated):
                        event = None
                    elif type(event) is SpeechStopped:
                        self._backlog.turn_ended(event.item_id)
                        event = self._without_closing_silence(event)
                    elif isinstance(event, CallerTranscriptDone | CallerTranscriptFailed):
                        # A failed transcription will not be retried either: the turn is over.
                        self._backlog.turn_transcribed(event.item_id)
                    elif isinstance(event, ModelError) and event.code == protocol.SESSION_EXPIRED:
                        # The service closes (1001) right after this: stop sending now and close
                        # our side so the reconnect does not wait on theirs.
                        expired = True
                        self._live = False
                        await ws.close()
                        event = None
                    if event is not None:
                        yield event
            except ConnectionClosed as exc:
                reason = "session expired" if expired else close_reason(exc)
            self._live = False
            if self._closed:
                return
            logger.warning("realtime socket dropped: %s", reason)
            yield Disconnected(reason=reason)
            outcome = await self._reconnect(reason)
            if outcome is None:
                return
            if type(outcome) is SessionFailed:
                self._failed = True  # no more sessions: caller audio has nowhere to go
                self._backlog.clear()
            yield outcome
            if self._failed:
                return

    def _without_closing_silence(self, event: SpeechStopped) -> SpeechStopped:
        """The caller's voice ended before the silence that made the service close the turn."""
        end = max(0, event.audio_end_ms - self._closing_silence_ms)
        return SpeechStopped(event.item_id, event.audio_end_ms, speech_end_ms=end)

    def _for_caller(self, event: AudioDelta) -> AudioDelta | ModelError | None:
        """pcm mode: PCM16 24 kHz delta -> mu-law 8 kHz (None while the resampler fills)."""
        assert self._to_caller is not None
        try:
            audio = self._to_caller.convert(event.audio_b64)
        except AudioFormatError as exc:
            return ModelError(code="invalid_audio", message=str(exc)[:300])
        if not audio:
            return None
        return AudioDelta(item_id=event.item_id, response_id=event.response_id, audio_b64=audio)

    def _flush_caller_audio(self, done: protocol.AudioDone) -> AudioDelta | None:
        """End of an item's audio: in pcm mode, the resampler's tail belongs to that item."""
        if self._to_caller is None:
            return None
        audio = self._to_caller.flush()
        if not audio:
            return None
        return AudioDelta(item_id=done.item_id, response_id=done.response_id, audio_b64=audio)

    # --- sending ----------------------------------------------------------------------------------

    async def send_audio(self, payload_b64: str) -> None:
        """Caller audio (Twilio's base64 mu-law 8 kHz). While reconnecting it waits in the
        backlog; after the session failed or closed it is dropped and counted."""
        ws = self._ws
        if self._closed or self._failed:
            self.audio_dropped_frames += 1
            return
        self._backlog.add(payload_b64)
        if not self._live or ws is None:
            if not self._backlog.enabled:
                self.audio_dropped_frames += 1
            return
        frame = self._model_audio_frame(payload_b64)
        if frame is None:
            return
        if can_write_now(ws):
            ws.protocol.send_text(frame)
            ws.send_data()
            return
        try:
            await ws.send(frame, text=True)
        except ConnectionClosed:
            # The receive loop sees the same close and starts the reconnect; the frame waits
            # in the backlog for the next session.
            if not self._backlog.enabled:
                self.audio_dropped_frames += 1

    async def send_text(self, text: str) -> None:
        """A user text turn followed by a response request."""
        if await self._send(protocol.user_text_item(text)):
            await self._send(protocol.response_create())

    async def commit_audio(self) -> None:
        await self._send(protocol.input_audio_commit())

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        if self._to_caller is not None:
            # The rest of that item's audio must not leak into the next item's first delta.
            self._to_caller.reset()
        await self._send(protocol.item_truncate(item_id, audio_end_ms))

    async def cancel_response(self) -> None:
        await self._send(protocol.response_cancel())

    async def request_response(self) -> None:
        await self._send(protocol.response_create())

    async def instruct(self, instructions: str) -> None:
        await self._send(protocol.response_create(instructions))

    async def tool_result(self, call_id: str, output: str) -> None:
        await self._send(protocol.function_call_output(call_id, output))

    async def _send(self, event: dict[str, Any]) -> bool:
        """Send one control event; False (dropped) while disconnected."""
        ws = self._ws
        if not self._live or ws is None:
            return False
        try:
            await ws.send(orjson.dumps(event), text=True)
        except ConnectionClosed:
            return False
        return True

    def finish_lines(self) -> list[ModelEvent]:
        return []  # every line arrives whole, as its item's transcript

    async def close(self) -> None:
        """End the session for good: events() stops without a Disconnected; idempotent."""
        self._closed = True
        self._live = False
        self._closing.set()
        if self._ws is not None:
            await self._ws.close()


def can_write_now(ws: ClientConnection) -> bool:
    """True when a text frame can go straight to the transport, as `send` would put it there.

    `Connection.send` wraps each frame in an async context manager (state check, write, drain,
    close handling): about a tenth of the process's CPU at 100 calls, for audio frames that
    almost always find the socket open and unpaused. This takes the same checks up front and
    leaves every other case (closing, write buffer full, fragmented send) to `send`.
    """
    return (
        ws.protocol.state is State.OPEN
        and ws.send_in_progress is None
        and not ws.paused
        and not ws.transport.is_closing()
    )


def status_failure(status: int) -> AttemptFailed:
    message = f"service answered the upgrade with HTTP {status}"
    return Refused(message) if status in FATAL_HTTP_STATUSES else AttemptFailed(message)


def close_reason(exc: ConnectionClosed) -> str:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "connection lost without a close frame"
    detail = f": {frame.reason}" if frame.reason else ""
    return f"closed with code {frame.code}{detail}"
