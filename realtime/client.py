"""OpenAIRealtimeSession: the bridge's ModelSession over the OpenAI Realtime WebSocket.

One object per call. It opens the socket, configures the session and turns server events into
`realtime.model` events; when the socket drops (network, service restart, or the 60-minute
session limit) it reconnects on its own (realtime.connection), configures the new session the
same way and replays the conversation so far, so the bridge sees only `Disconnected` then
`SessionReady`.

Hot path: `send_audio` and the receive loop in `events` run 50 times a second per direction per
call, for 100-200 calls in one process. They log nothing per frame, serialize with orjson, send
bytes as text frames and receive text frames as bytes (no str round trip), and run without
per-message deflate (base64 audio barely compresses and deflate costs CPU on every frame).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from audio.convert import OpenAIPcmToTwilio, TwilioToOpenAIPcm
from audio.errors import AudioFormatError
from realtime import protocol
from realtime.connection import (
    CONNECT_BACKLOG_S,
    FRAMES_PER_S,
    PING_INTERVAL_S,
    PING_TIMEOUT_S,
    AttemptFailed,
    ModelConnection,
    close_reason,
    ulaw_ms_of_base64,
)
from realtime.model import (
    AudioDelta,
    CallerTranscriptDone,
    CallerTranscriptFailed,
    ContextProvider,
    Disconnected,
    ModelError,
    ModelEvent,
    RealtimeSettings,
    SessionFailed,
    SessionReady,
    SpeechStopped,
)

logger = logging.getLogger(__name__)


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


def session_url(settings: RealtimeSettings) -> str:
    separator = "&" if "?" in settings.url else "?"
    return f"{settings.url}{separator}{urlencode({'model': settings.agent.model})}"


def session_headers(settings: RealtimeSettings) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {settings.api_key}"}
    if settings.protocol == "beta":
        headers["OpenAI-Beta"] = "realtime=v1"
    return headers


class OpenAIRealtimeSession(ModelConnection):
    """A ModelSession over one OpenAI Realtime WebSocket at a time (see realtime.model)."""

    kind = "realtime"
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
        super().__init__(
            settings,
            context,
            rng=rng,
            ping_interval_s=ping_interval_s,
            ping_timeout_s=ping_timeout_s,
        )
        self._closing_silence_ms = protocol.closing_silence_ms(settings.agent)
        self._backlog = CallerAudioBacklog(round(CONNECT_BACKLOG_S * FRAMES_PER_S))
        self.audio_invalid_frames = 0
        pcm = settings.audio_format == "audio/pcm"
        self._to_model = TwilioToOpenAIPcm() if pcm else None
        self._to_caller = OpenAIPcmToTwilio() if pcm else None

    # --- connecting -------------------------------------------------------------------------------

    def _url(self) -> str:
        return session_url(self.settings)

    def _headers(self) -> dict[str, str]:
        return session_headers(self.settings)

    async def _configure(self, ws: ClientConnection, *, resumed: bool) -> None:
        """session.update, then wait for session.updated."""
        await ws.send(orjson.dumps(protocol.session_update(self.settings)), text=True)
        while True:
            event = protocol.parse_server_message(
                await ws.recv(decode=False), self.settings.protocol
            )
            if type(event) is protocol.SessionUpdated:
                return
            if type(event) is ModelError:
                raise AttemptFailed(f"session.update refused: {event.code}: {event.message}")

    async def _catch_up(self, ws: ClientConnection, *, resumed: bool) -> float:
        """After a drop, the conversation so far; then the caller audio in the backlog."""
        if resumed:
            await self._replay(ws)
        return await self._replay_caller_audio(ws)

    def _went_live(self, ws: ClientConnection) -> None:
        super()._went_live(ws)
        self._backlog.limit(round(self.settings.replay_audio_s * FRAMES_PER_S))

    def _on_drop(self) -> None:
        self._reset_converters()

    # --- catching a new session up -------------------------------------------------------------

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
        if not await self._send_frame(ws, frame) and not self._backlog.enabled:
            # The frame would have waited in the backlog for the next session.
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

    def finish_lines(self) -> list[ModelEvent]:
        return []  # every line arrives whole, as its item's transcript
