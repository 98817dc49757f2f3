"""The model socket both backends share: one WebSocket at a time to an OpenAI service.

`ModelConnection` opens and configures a session with retries (full-jitter backoff), reopens
it after a drop within a retry budget that a stable session renews, writes caller frames
straight to the transport when it can, sends control events only while the session is live,
and closes at once on `close()`. What a session is told and what it is replayed differs per
protocol: `realtime.client.OpenAIRealtimeSession` (the Realtime API) and
`realtime.live.session.OpenAILiveSession` (GPT-Live) fill in the hooks.

Hot path: frames and events log nothing, serialize with orjson, and run without per-message
deflate (base64 audio barely compresses and deflate costs CPU on every frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import struct
import time
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.protocol import State

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets without its C extension
    from websockets.utils import apply_mask

from realtime.model import (
    ContextProvider,
    ModelUnavailable,
    RealtimeSettings,
    SessionFailed,
    SessionReady,
)

logger = logging.getLogger(__name__)
# websockets logs every handshake header at DEBUG, Authorization included. The sockets get a
# logger of their own pinned at INFO, so turning DEBUG on cannot put the API key in the logs.
socket_logger = logging.getLogger("realtime.socket")
socket_logger.setLevel(logging.INFO)

# Audio deltas are base64 strings of up to a few seconds of audio; the 1 MiB default is tight.
MAX_MESSAGE_BYTES = 16 * 2**20
# websockets' keepalive. Nothing else reveals a hung service while the caller is silent (the
# service may send nothing then), so a stalled socket is noticed within about 20 s, not never.
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


class AttemptFailed(Exception):
    """One connection attempt failed; str() is the reason (never contains the API key)."""


class Refused(AttemptFailed):
    """The service refused us in a way retrying cannot fix."""


def ulaw_ms_of_base64(payload_b64: str) -> float:
    """Duration of base64 mu-law 8 kHz audio (8 bytes per ms) from its length alone."""
    padding = payload_b64[-2:].count("=")
    return (len(payload_b64) * 3 // 4 - padding) / 8


class ModelConnection:
    """One call's socket to the model service, reopened after drops (see the module doc).

    Subclasses say where to connect (`_url`, `_headers`), how a session is configured
    (`_configure`: send, then wait for the service's acceptance) and what a new session is
    given before live audio resumes (`_catch_up`); `_went_live` and `_on_drop` let them keep
    their own state.
    """

    kind = "model"  # names the backend in log lines

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
        self._context = context
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._ws: ClientConnection | None = None
        self._live = False  # configured and not dropped: only then is anything sent
        self._closed = False
        self._failed = False
        self._closing = asyncio.Event()
        self._announced = False
        self._retry_streak = 0  # reconnect attempts since the last stable session
        self._ready_at = 0.0
        self._connect_replayed_ms = 0.0  # caller audio sent while the first connect was made
        self.reconnects = 0
        self.audio_dropped_frames = 0  # lost: the session had failed or was closed
        self.audio_replayed_frames = 0  # sent again to a new session after a drop

    # --- what a subclass says -----------------------------------------------------------------

    def _url(self) -> str:
        return self.settings.url

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.api_key}"}

    async def _configure(self, ws: ClientConnection, *, resumed: bool) -> None:
        """Configure a fresh session and wait until the service accepted it; AttemptFailed (or
        Refused) if it did not. `resumed`: the call's conversation so far is to be given."""
        raise NotImplementedError

    async def _catch_up(self, ws: ClientConnection, *, resumed: bool) -> float:
        """Before live audio resumes: what the session is given of the call so far; returns
        the ms of caller audio sent (the session's audio clock starts that much earlier)."""
        raise NotImplementedError

    def _went_live(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._live = True
        self._ready_at = time.monotonic()

    def _on_drop(self) -> None:
        """The session is gone; a new one starts clean."""

    # --- connecting ---------------------------------------------------------------------------

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
                ws, self._connect_replayed_ms = await self._start(resumed=False)
            except Refused as exc:
                raise ModelUnavailable(str(exc)) from None
            except AttemptFailed as exc:
                reason = str(exc)
                logger.warning("%s connect attempt %d failed: %s", self.kind, attempt + 1, reason)
                continue
            self._went_live(ws)
            return
        raise ModelUnavailable(reason)

    async def _start(self, *, resumed: bool) -> tuple[ClientConnection, float]:
        """One attempt at a live session: opened, configured, caught up."""
        ws = await self._open(resumed=resumed)
        return ws, await self._catch_up(ws, resumed=resumed)

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

    async def _open(self, *, resumed: bool) -> ClientConnection:
        """One attempt: open the socket and configure the session."""
        timeout_s = self.settings.connect_timeout_s
        ws: ClientConnection | None = None
        try:
            async with asyncio.timeout(timeout_s):
                ws = await connect(
                    self._url(),
                    additional_headers=self._headers(),
                    compression=None,
                    max_size=MAX_MESSAGE_BYTES,
                    open_timeout=None,  # the enclosing timeout covers the whole attempt
                    ping_interval=self._ping_interval_s,
                    ping_timeout=self._ping_timeout_s,
                    close_timeout=CLOSE_TIMEOUT_S,
                    logger=socket_logger,
                )
                await self._configure(ws, resumed=resumed)
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

    # --- reconnecting -------------------------------------------------------------------------

    async def _reconnect(self, reason: str) -> SessionReady | SessionFailed | None:
        """After a drop: SessionReady, SessionFailed once the budget is spent, None if closed."""
        if time.monotonic() - self._ready_at >= STABLE_SESSION_S:
            self._retry_streak = 0
        self._on_drop()
        while self._retry_streak < self.settings.max_reconnects:
            self._retry_streak += 1
            await self._pause(self._backoff_s(self._retry_streak - 1))
            if self._closed:
                return None
            try:
                ws, replayed_ms = await self._start(resumed=True)
            except Refused as exc:
                return SessionFailed(str(exc))
            except AttemptFailed as exc:
                reason = str(exc)
                logger.warning(
                    "%s reconnect attempt %d failed: %s", self.kind, self._retry_streak, reason
                )
                continue
            if self._closed:
                await ws.close()
                return None
            self._went_live(ws)
            self.reconnects += 1
            return SessionReady(reconnect_attempt=self._retry_streak, replayed_audio_ms=replayed_ms)
        return SessionFailed(f"{self._retry_streak} reconnect attempt(s) failed: {reason}")

    # --- sending ------------------------------------------------------------------------------

    async def _send_frame(self, ws: ClientConnection, frame: bytes) -> bool:
        """A caller audio frame (a serialized event); False if the socket closed under it."""
        if can_write_now(ws):
            ws.transport.write(client_text_frame(frame))
            return True
        try:
            await ws.send(frame, text=True)
        except ConnectionClosed:
            return False  # the receive loop sees the same close and reconnects
        return True

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
        and not ws.protocol.extensions  # client_text_frame knows no extension (no deflate)
    )


class MaskKeys:
    """Mask keys for the frames a client sends. RFC 6455 (5.3) asks for keys an intermediary
    cannot predict, from a strong source of entropy: these come from the OS's CSPRNG as
    websockets' own do, but 1,024 at a time instead of one getrandom call per frame."""

    __slots__ = ("_at", "_pool")
    POOL_BYTES = 4096

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def take(self) -> bytes:
        at = self._at
        if at + 4 > len(self._pool):
            self._pool = os.urandom(self.POOL_BYTES)
            at = 0
        self._at = at + 4
        return self._pool[at : at + 4]


_MASK_KEYS = MaskKeys()


def client_text_frame(payload: bytes) -> bytes:
    """One whole, masked text frame as a client sends it (RFC 6455 5.2), written straight to
    the transport: what websockets' `protocol.send_text` + `send_data` produce for an open
    socket without extensions, for a third of their cost (a frame object, its serializer, the
    protocol's write buffer, and a getrandom call per frame)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, 0x80 | size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 0xFE, size)
    else:
        header = struct.pack("!BBQ", 0x81, 0xFF, size)
    mask = _MASK_KEYS.take()
    return header + mask + apply_mask(payload, mask)


def status_failure(status: int) -> AttemptFailed:
    message = f"service answered the upgrade with HTTP {status}"
    return Refused(message) if status in FATAL_HTTP_STATUSES else AttemptFailed(message)


def close_reason(exc: ConnectionClosed) -> str:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "connection lost without a close frame"
    detail = f": {frame.reason}" if frame.reason else ""
    return f"closed with code {frame.code}{detail}"
