"""Load generator: many simulated Twilio calls against a running bridge, timed frame by frame.

`manage.py loadtest` and `make bench` drive this. One process holds both ends the server talks
to, so every timestamp is on one clock:

* `LoadStandIn`, a lean model stand-in speaking both protocols on one port, by request path:
  Realtime (`/v1/realtime`): the handshake, `session.created`/`session.updated`, and, with
  `echo`, each `input_audio_buffer.append` sent straight back as a `response.output_audio.delta`
  carrying the same base64 audio; GPT-Live (`/v1/live/sessions`): `session.start` answered with
  `session.started`, each `session.input_audio.append` back as a `session.output_audio.delta`
  (with `echo`), and `session.close` with `session.closed` and a normal close. Without `echo`
  it only listens (a quiet Realtime agent: appends taken, nothing sent back). A quiet GPT-Live
  agent is never quiet on the wire (its track streams silence at the caller's pace), which is
  what the echo costs; listen-only is for the Realtime path.
* `LoadCall`s: the signed incoming-call webhook (through `SimulatedTwilioCaller`), then the
  media stream: `connected`, `start`, one 20 ms mu-law frame every 20 ms on an absolute
  schedule, marks echoed once their audio has played, `stop` at the end.

Why not the full `RealtimeStandIn`, nor `websockets`: both do per-message work that tests want
(every event kept, VAD, a future and a queue hop per message in websockets' asyncio connections)
and that at 200 calls, 10,000 frames a second each way, would make the generator the
bottleneck. Both ends here are raw asyncio protocols framing RFC 6455 by hand (`ws_frame`,
`FrameReader`, the handshakes): pre-built headers, and the callers' mask key all zeros (valid,
and no XOR to do). websockets' sans-I/O `ClientProtocol`/`ServerProtocol` on these same raw
protocols were tried in its place and cost too much: a Frame object, a generator-based parser
and per client frame a random mask key (`secrets`) and its XOR make its framing about three
times the hand framing's cost, and one echo round (the caller's frame out, the bridge's append
in and the delta out at the stand-in, the bridge's media in at the caller) 181-185 k
instructions against 104-113 k (callgrind, +63-77 %); `max_size=None` saved under 1 %.

Tagging. The first 6 bytes of each caller frame are the call index (2 bytes) and the frame
number (4 bytes); any byte is a valid mu-law sample, so the frame stays valid audio. Six bytes
are exactly 8 base64 characters, so the tag is read from the first 8 characters of the payload
without decoding the rest, and the untagged remainder's base64 is built once. The bridge passes
mu-law through (`audio/pcmu`), so the stand-in sees the tag (inbound time) and, echoed, the
caller sees it again (outbound time).

Generator lag is how late each frame leaves against its schedule; a run whose lag p99 exceeds
`MAX_VALID_LAG_MS` measured the generator, not the server, and is marked invalid.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import os
import secrets
import struct
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from twilio.request_validator import RequestValidator
from websockets.speedups import apply_mask

from simulator.openai.live import protocol as lp
from simulator.twilio.caller import SimulatedTwilioCaller

FRAME_S = 0.020
FRAME_BYTES = 160
TAG = struct.Struct(">HI")  # call index, frame number: 6 bytes = 8 base64 characters
TAG_B64_CHARS = 8
MAX_VALID_LAG_MS = 5.0
RSS_SERIES_S = 5.0
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# A quiet, not silent, body: a low-level pattern of mu-law codes (the tag precedes it).
BODY = bytes(0xF0 + (i % 8) for i in range(FRAME_BYTES - TAG.size))
BODY_B64 = base64.b64encode(BODY)
MEDIA_PREFIX = b'{"event":"media","sequenceNumber":"'
MARK_PREFIX = b'{"event":"mark",'
PAYLOAD_KEY = b'"payload":'
APPEND_TYPE = b'"input_audio_buffer.append"'
LIVE_APPEND_TYPE = b'"session.input_audio.append"'
AUDIO_KEY = b'"audio":'
# How far the fast path looks for an append's type: `{"type": "..."` with or without spaces.
TYPE_SPAN = 48
LIVE_DELTA_HEAD = b'{"type":"session.output_audio.delta","delta":"'
MODEL_CLOSE_WAIT_S = 5.0  # after the hang-ups, for the server to close its model sockets
LIVE_SESSION_LIMIT_S = 3600.0  # the `expires_at` given: far beyond any load run


# --- WebSocket framing (RFC 6455), the few parts these two ends need ---------------------------


def ws_frame(payload: bytes, opcode: int = 1, *, masked: bool) -> bytes:
    """One unfragmented frame. A client must mask; an all-zero mask key is valid and costs no
    XOR, so the caller's frames are built without touching the payload."""
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        header = bytes((0x80 | opcode, mask_bit | size))
    elif size < 65536:
        header = bytes((0x80 | opcode, mask_bit | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, mask_bit | 127)) + size.to_bytes(8, "big")
    return header + (b"\0\0\0\0" if masked else b"") + payload


def ws_accept(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())  # noqa: S324 - RFC 6455


class FrameReader:
    """Splits a byte stream into (opcode, payload) frames, unmasking client frames."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buffer
        buf += data
        frames: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            opcode = buf[pos] & 0x0F
            masked = buf[pos + 1] & 0x80
            size = buf[pos + 1] & 0x7F
            head = pos + 2
            if size == 126:
                if end - head < 2:
                    break
                size = int.from_bytes(buf[head : head + 2], "big")
                head += 2
            elif size == 127:
                if end - head < 8:
                    break
                size = int.from_bytes(buf[head : head + 8], "big")
                head += 8
            mask_end = head + (4 if masked else 0)
            if end - mask_end < size:
                break
            payload = bytes(buf[mask_end : mask_end + size])
            if masked:
                payload = apply_mask(payload, bytes(buf[head:mask_end]))
            frames.append((opcode, payload))
            pos = mask_end + size
        if pos:
            del buf[:pos]
        return frames


# --- measurements --------------------------------------------------------------------------------


@dataclass
class CallTimes:
    """One call's frame times; `sent[n]` is when frame n left the caller."""

    sent: list[float] = field(default_factory=list)
    at_standin: dict[int, float] = field(default_factory=dict)
    at_caller: dict[int, float] = field(default_factory=dict)
    last_in: int = -1
    last_out: int = -1
    reordered_in: int = 0
    reordered_out: int = 0
    foreign: int = 0  # frames of another call: cross-talk, a serious bug


@dataclass
class Stats:
    """Everything measured in one run, shared by both ends."""

    calls: list[CallTimes] = field(default_factory=list)
    inbound_ms: list[float] = field(default_factory=list)
    outbound_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    window: tuple[float, float] = (float("inf"), float("inf"))
    # With `end_half`: the other calls' frames while half the calls end.
    ending_inbound_ms: list[float] = field(default_factory=list)
    ending_outbound_ms: list[float] = field(default_factory=list)
    ending_window: tuple[float, float] = (float("inf"), float("inf"))

    def in_window(self, t: float) -> bool:
        return self.window[0] <= t < self.window[1]

    def in_ending(self, t: float) -> bool:
        return self.ending_window[0] <= t < self.ending_window[1]


def read_tag(b64: bytes | bytearray, start: int) -> tuple[int, int] | None:
    try:
        return TAG.unpack(binascii.a2b_base64(b64[start : start + TAG_B64_CHARS]))
    except (binascii.Error, struct.error):
        return None


# --- the stand-in ---------------------------------------------------------------------------------


class FramedPeer(asyncio.Protocol):
    """The WebSocket framing both ends of the load share: text frames go to `on_text`, pings
    are answered, a close frame is echoed and the connection closed. Clients mask what they
    send; servers do not."""

    masked: bool

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.close_sent = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def write(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def on_text(self, message: bytes) -> None:
        raise NotImplementedError

    def send_close(self, code: int = 1000) -> None:
        """Start the closing handshake; the peer's close frame then closes the connection."""
        if not self.close_sent:
            self.close_sent = True
            self.write(ws_frame(code.to_bytes(2, "big"), 8, masked=self.masked))

    def on_close_frame(self) -> None:
        """The peer sent a close frame (before ours goes back)."""

    def receive_frames(self, data: bytes) -> None:
        for opcode, payload in self.reader.feed(data):
            if opcode == 1:
                self.on_text(payload)
            elif opcode == 9:
                self.write(ws_frame(payload, 10, masked=self.masked))
            elif opcode == 8:
                self.on_close_frame()
                if not self.close_sent:  # an answer to ours needs none back
                    self.close_sent = True
                    self.write(ws_frame(payload[:2], 8, masked=self.masked))
                if self.transport is not None:
                    self.transport.close()
                return


class StandInProtocol(FramedPeer):
    """One model socket from the bridge, as far as the bridge needs it: the Realtime GA session,
    or a GPT-Live session when the request's path is `/v1/live/sessions`. Both share the
    append path: the tag read from the first base64 characters, the audio echoed untouched
    behind a prefix built once per connection."""

    masked = False

    def __init__(self, server: LoadStandIn) -> None:
        super().__init__()
        self.server = server
        self.handshake = bytearray()
        self.open = False
        self.live = False
        self.append_type = APPEND_TYPE
        self.append_name = "input_audio_buffer.append"
        item = f"item_load{secrets.token_hex(6)}".encode()
        self.delta_head = (
            b'{"type":"response.output_audio.delta","event_id":"event_load",'
            b'"response_id":"resp_load","item_id":"' + item + b'",'
            b'"output_index":0,"content_index":0,"delta":"'
        )
        self.session: dict[str, Any] | None = None  # GPT-Live: the resource session.started gave
        self.started_at = 0.0

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self._handshake(data)
            return
        self.receive_frames(data)

    def _handshake(self, data: bytes) -> None:
        self.handshake += data
        head, sep, rest = bytes(self.handshake).partition(b"\r\n\r\n")
        if not sep:
            return
        lines = head.split(b"\r\n")
        headers = dict(line.split(b":", 1) for line in lines[1:] if b":" in line)
        lowered = {k.strip().lower(): v.strip() for k, v in headers.items()}
        key = lowered.get(b"sec-websocket-key", b"")
        self.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + ws_accept(key) + b"\r\n\r\n"
        )
        self.open = True
        self.server.socket_opened()
        target = lines[0].split(b" ")[1] if lines[0].count(b" ") >= 2 else b""
        self.live = target.partition(b"?")[0].decode(errors="replace") == lp.LIVE_PATH
        if self.live:
            # GPT-Live speaks only once session.start has come.
            self.append_type = LIVE_APPEND_TYPE
            self.append_name = "session.input_audio.append"
            self.delta_head = LIVE_DELTA_HEAD
            self.server.sessions["live"] += 1
        else:
            self.server.sessions["realtime"] += 1
            self._send_event({"type": "session.created", "session": {"type": "realtime"}})
        if rest:
            self.data_received(rest)

    def _send_event(self, event: dict[str, Any]) -> None:
        event = {"event_id": f"event_{secrets.token_hex(6)}", **event}
        self.write(ws_frame(orjson.dumps(event), masked=False))

    def on_text(self, message: bytes) -> None:
        # The bridge builds appends with orjson: the type is the first field. Everything else
        # (session.update, session.start, truncate, cancel, close) is rare and decoded properly.
        if self.append_type in message[:TYPE_SPAN]:
            self._on_append(message)
            return
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            event = orjson.loads(message)
            kind = event.get("type")
            if kind == self.append_name:  # an append whose type is not its first field
                self._on_append(message)
            elif self.live:
                self._on_live_event(kind, event)
            elif kind == "session.update":
                self._send_event({"type": "session.updated", "session": event.get("session")})

    def _on_live_event(self, kind: str, event: dict[str, Any]) -> None:
        if kind == "session.start" and self.session is None:
            self.session = lp.resolved_session(
                event.get("session") or {},
                session_id=f"sess_load{secrets.token_hex(6)}",
                expires_at=lp.expires_at(LIVE_SESSION_LIMIT_S),
            )
            self.started_at = time.monotonic()
            self._send_event(
                {"type": "session.started", "session": self.session, **_answering(event)}
            )
        elif kind == "session.close" and self.session is not None and not self.close_sent:
            seconds = int(time.monotonic() - self.started_at)
            self._send_event(
                {
                    "type": "session.closed",
                    "reason": "close_requested",
                    "session": self.session,
                    "usage": {"seconds": seconds},
                    **_answering(event),
                }
            )
            self.send_close(1000)

    def _on_append(self, message: bytes) -> None:
        now = time.monotonic()
        # Compact JSON (orjson) or not (json.dumps, as the yardstick sends it).
        start = message.index(b'"', message.index(AUDIO_KEY) + len(AUDIO_KEY)) + 1
        tag = read_tag(message, start)
        if tag is not None:
            self.server.stats_arrival(tag, now)
        if self.server.echo and not self.close_sent:
            audio = message[start : message.index(b'"', start)]
            self.write(ws_frame(self.delta_head + audio + b'"}', masked=False))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.open:
            self.server.socket_closed()


def _answering(event: dict[str, Any]) -> dict[str, str]:
    """GPT-Live names the client event a server event answers, when the client gave an id."""
    event_id = event.get("event_id")
    return {"client_event_id": event_id} if isinstance(event_id, str) else {}


class LoadStandIn:
    """The lean stand-in server. `echo`: every appended frame comes straight back; without it,
    appends are taken and nothing is sent back (listen-only)."""

    def __init__(self, stats: Stats, *, echo: bool, host: str = "127.0.0.1", port: int = 0):
        self.stats = stats
        self.echo = echo
        self.host = host
        self.requested_port = port
        self.sessions = {"realtime": 0, "live": 0}  # model sockets opened, by protocol
        self.open_sockets = 0
        self._none_open = asyncio.Event()
        self._none_open.set()
        self._server: asyncio.AbstractServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/v1/realtime"

    @property
    def live_url(self) -> str:
        return f"ws://{self.host}:{self.port}{lp.LIVE_PATH}"

    def stats_arrival(self, tag: tuple[int, int], now: float) -> None:
        index, number = tag
        stats = self.stats
        if index >= len(stats.calls):
            return
        call = stats.calls[index]
        call.at_standin[number] = now
        if number < call.last_in:
            call.reordered_in += 1
        call.last_in = max(call.last_in, number)
        if number < len(call.sent) and stats.in_window(call.sent[number]):
            stats.inbound_ms.append((now - call.sent[number]) * 1000.0)
            if stats.in_ending(call.sent[number]):
                stats.ending_inbound_ms.append((now - call.sent[number]) * 1000.0)

    async def start(self) -> LoadStandIn:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: StandInProtocol(self), self.host, self.requested_port, backlog=1024
        )
        return self

    async def sockets_closed(self, timeout_s: float) -> bool:
        """Wait (bounded) for the server to close its model sockets, as it does once a call
        has ended (GPT-Live: session.close first); True if it did."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_open.wait(), timeout_s)
        return self._none_open.is_set()

    def socket_opened(self) -> None:
        self.open_sockets += 1
        self._none_open.clear()

    def socket_closed(self) -> None:
        self.open_sockets -= 1
        if self.open_sockets <= 0:
            self._none_open.set()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


# --- the callers ---------------------------------------------------------------------------------


class CallProtocol(FramedPeer):
    """The media stream of one call, as Twilio's side of it."""

    masked = True

    def __init__(self, call: LoadCall) -> None:
        super().__init__()
        self.call = call
        self.upgraded: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.head = bytearray()

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done():
            self.head += data
            head, sep, rest = bytes(self.head).partition(b"\r\n\r\n")
            if not sep:
                return
            self.upgraded.set_result(head.startswith(b"HTTP/1.1 101"))
            data = rest
        self.receive_frames(data)

    def on_text(self, message: bytes) -> None:
        self.call.on_text(message)

    def on_close_frame(self) -> None:
        self.call.server_closed = not self.call.hanging_up

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.upgraded.done():
            self.upgraded.set_result(False)
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.call.hanging_up:
            self.call.server_closed = True


class LoadCall:
    """One simulated call: webhook, stream, paced frames, echoed marks, hang-up."""

    def __init__(self, index: int, stats: Stats, config: LoadConfig) -> None:
        self.index = index
        self.stats = stats
        self.times = stats.calls[index]
        self.config = config
        self.caller = SimulatedTwilioCaller(
            config.url,
            auth_token=config.auth_token,
            public_base_url=config.public_base_url,
            account_sid=config.account_sid,
        )
        self.stream_sid = self.caller.stream_sid.encode()
        self.protocol: CallProtocol | None = None
        self.error: str | None = None
        self.server_closed = False
        self.hanging_up = False
        self.ended_early = False
        self.sending = False
        self.sequence = 0
        self.timer: asyncio.TimerHandle | None = None
        self.next_at = 0.0
        self.t0 = 0.0
        self.play_end = 0.0
        # (when it has played, the mark JSON after its "event" key), in playback order
        self.marks: list[tuple[float, bytes]] = []
        self.media_in = 0

    # --- setting up ---------------------------------------------------------------------------

    async def connect(self) -> None:
        stream = await self.caller.place_call()
        parts = urllib.parse.urlsplit(self.caller.stream_connect_url())
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: CallProtocol(self), parts.hostname, parts.port or 80
        )
        self.protocol = protocol
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = [
            f"GET {path} HTTP/1.1",
            f"Host: {parts.hostname}:{parts.port or 80}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
            "User-Agent: Twilio.TmeWs/1.0",
        ]
        if self.config.auth_token:
            signature = RequestValidator(self.config.auth_token).compute_signature(stream.url, {})
            headers.append(f"X-Twilio-Signature: {signature}")
        protocol.write(("\r\n".join(headers) + "\r\n\r\n").encode())
        async with asyncio.timeout(10):
            if not await protocol.upgraded:
                raise ConnectionError("the media stream upgrade was refused")
        self._send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self.t0 = loop.time()
        self._send_json(
            {
                "event": "start",
                "sequenceNumber": "1",
                "start": {
                    "accountSid": self.caller.account_sid,
                    "streamSid": self.caller.stream_sid,
                    "callSid": self.caller.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": dict(stream.parameters),
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
                "streamSid": self.caller.stream_sid,
            }
        )
        self.sequence = 1

    def _send_json(self, message: dict[str, Any]) -> None:
        assert self.protocol is not None
        self.protocol.write(ws_frame(orjson.dumps(message), masked=True))

    @property
    def call_id(self) -> str | None:
        return self.caller.call_id

    # --- sending, on an absolute 20 ms schedule ------------------------------------------------

    def start_sending(self, first_at: float) -> None:
        self.sending = True
        self.next_at = first_at
        loop = asyncio.get_running_loop()
        self.timer = loop.call_at(first_at, self._tick)

    def _tick(self) -> None:
        if not self.sending or self.protocol is None or self.protocol.transport is None:
            return
        loop_now = asyncio.get_running_loop().time()
        now = time.monotonic()
        if self.stats.in_window(now):
            self.stats.lag_ms.append((loop_now - self.next_at) * 1000.0)
        # One write per tick: the frame plus the marks whose audio has played meanwhile.
        assert self.protocol is not None
        self.protocol.write(b"".join((self._media_frame(now), *self._due_marks(now))))
        self.next_at += FRAME_S
        self.timer = asyncio.get_running_loop().call_at(self.next_at, self._tick)

    def _media_frame(self, now: float) -> bytes:
        number = len(self.times.sent)
        self.sequence += 1
        tag = base64.b64encode(TAG.pack(self.index, number))
        text = b"".join(
            (
                MEDIA_PREFIX,
                str(self.sequence).encode(),
                b'","media":{"track":"inbound","chunk":"',
                str(number + 1).encode(),
                b'","timestamp":"',
                str(number * 20).encode(),
                b'","payload":"',
                tag,
                BODY_B64,
                b'"},"streamSid":"',
                self.stream_sid,
                b'"}',
            )
        )
        self.times.sent.append(now)
        return ws_frame(text, masked=True)

    # --- receiving ------------------------------------------------------------------------------

    def on_text(self, message: bytes) -> None:
        now = time.monotonic()
        if message.startswith(b'{"event":"media"'):
            self._on_media(message, now)
        elif message.startswith(MARK_PREFIX):
            # Played in order behind the audio before it: due when playback reaches it.
            self.marks.append((max(now, self.play_end), message[len(MARK_PREFIX) :]))
        elif message.startswith(b'{"event":"clear"'):
            # Twilio echoes the pending marks at once when it clears its buffer.
            self.play_end = now
            if self.protocol is not None:
                self.protocol.write(b"".join(self._due_marks(float("inf"))))

    def _on_media(self, message: bytes, now: float) -> None:
        self.media_in += 1
        start = message.index(b'"', message.index(PAYLOAD_KEY) + len(PAYLOAD_KEY)) + 1
        end = message.index(b'"', start)
        # 4 base64 characters are 3 bytes of mu-law, 3 bytes are 0.375 ms.
        self.play_end = max(now, self.play_end) + (end - start) * 3 / 4 / 8000
        tag = read_tag(message, start)
        if tag is None:
            return
        index, number = tag
        times = self.times
        if index != self.index:
            times.foreign += 1
            return
        times.at_caller[number] = now
        if number < times.last_out:
            times.reordered_out += 1
        times.last_out = max(times.last_out, number)
        sent_by_standin = times.at_standin.get(number)
        if sent_by_standin is not None and self.stats.in_window(times.sent[number]):
            self.stats.outbound_ms.append((now - sent_by_standin) * 1000.0)
            if self.stats.in_ending(times.sent[number]):
                self.stats.ending_outbound_ms.append((now - sent_by_standin) * 1000.0)

    def _due_marks(self, now: float) -> list[bytes]:
        """Frames echoing, as Twilio does, each mark whose audio has played by `now`."""
        marks = self.marks
        frames = []
        for due, rest in marks:
            if due > now:
                break
            self.sequence += 1
            echo = b'{"event":"mark","sequenceNumber":"%d",%s' % (self.sequence, rest)
            frames.append(ws_frame(echo, masked=True))
        if frames:
            del marks[: len(frames)]
        return frames

    # --- ending ---------------------------------------------------------------------------------

    def stop_sending(self) -> None:
        self.sending = False
        if self.timer is not None:
            self.timer.cancel()

    async def hang_up(self) -> None:
        self.stop_sending()
        self.hanging_up = True
        protocol = self.protocol
        if protocol is None or protocol.transport is None:
            return
        self.sequence += 1
        self._send_json(
            {
                "event": "stop",
                "sequenceNumber": str(self.sequence),
                "streamSid": self.caller.stream_sid,
                "stop": {"accountSid": self.caller.account_sid, "callSid": self.caller.call_sid},
            }
        )
        protocol.send_close(1000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(protocol.closed), 5.0)
        if protocol.transport is not None:
            protocol.transport.close()


# --- the run -------------------------------------------------------------------------------------


@dataclass
class LoadConfig:
    url: str
    calls: int
    seconds: float
    ramp_s: float
    echo: bool
    auth_token: str | None
    public_base_url: str
    standin_port: int = 0
    account_sid: str | None = None  # the server's TWILIO_ACCOUNT_SID, if it checks one
    server_pid: int | None = None
    drain_s: float = 1.0
    end_half: bool = False  # half the calls hang up mid-window; the rest are timed meanwhile


@dataclass
class LoadResult:
    config: dict[str, Any]
    valid: bool
    calls_ok: int
    calls_failed: int
    failures: list[str]
    frames_sent: int
    frames_lost_in: int
    frames_lost_out: int
    reordered_in: int
    reordered_out: int
    foreign_frames: int
    inbound_ms: dict[str, float]
    outbound_ms: dict[str, float]
    generator_lag_ms: dict[str, float]
    generator_cpu_pct: float
    ending_inbound_ms: dict[str, float]
    ending_outbound_ms: dict[str, float]
    server_rss_mb_series: list[tuple[float, float]]
    server_cpu_pct: float | None
    server_cpu_pct_per_call: float | None
    server_rss_mb_before: float | None
    server_rss_mb_peak: float | None
    server_rss_kb_per_call: float | None
    window_s: float
    # Model sockets the server opened to the stand-in, by protocol ("realtime", "live").
    model_sessions: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> bytes:
        return orjson.dumps(self.__dict__, option=orjson.OPT_INDENT_2)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(values)
    last = len(ordered) - 1

    def at(q: float) -> float:
        return round(ordered[min(last, round(q * last))], 3)

    return {"count": len(ordered), "p50": at(0.5), "p95": at(0.95), "p99": at(0.99),
            "max": round(ordered[-1], 3)}  # fmt: skip


# --- the server process, from /proc -------------------------------------------------------------


def listening_pid(port: int) -> int | None:
    """The process that listens on a TCP port of this machine (found through /proc). When
    several hold the socket (uvicorn's supervisor and its workers), the one whose parent does
    not: the root of the server's process tree."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    holders: dict[int, int] = {}  # pid -> parent pid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                stat = (entry / "stat").read_text()
                holders[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    roots = [pid for pid, parent in holders.items() if parent not in holders]
    return min(roots or holders, default=None)


def _proc_files(pids: int | list[int], name: str) -> Iterator[str]:
    """/proc/<pid>/<name> of a process and its descendants, or of the listed processes. A
    listed process that has gone is skipped; a lone pid that has raises OSError."""
    members = ServerProbe.tree(pids) if isinstance(pids, int) else pids
    for pid in members:
        try:
            yield Path(f"/proc/{pid}/{name}").read_text()
        except OSError:
            if isinstance(pids, int) and pid == pids:
                raise


def cpu_seconds(pids: int | list[int]) -> float:
    """User + system CPU so far of a process (all its threads) and its descendants, or summed
    over the listed processes (ServerProbe passes the tree it took once: finding it reads all
    of /proc). A descendant that exited and was reaped takes its CPU with it."""
    ticks = 0
    for stat in _proc_files(pids, "stat"):
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mb(pids: int | list[int]) -> float:
    """Resident memory of a process and its descendants, or summed over the listed processes
    (as cpu_seconds). Pages the processes share count once per process: an upper bound."""
    total_kb = 0
    for status in _proc_files(pids, "status"):
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
                break
    return total_kb / 1024


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


class ServerProbe:
    """CPU over the measured window and peak RSS of the server, if it is local: the process and
    its descendants (a server with workers is a supervisor and its worker processes)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        # The process tree, taken here and again as the window opens (workers may still have
        # been starting): finding it reads all of /proc, too slow for every RSS sample.
        self.pids: list[int] = self.tree(pid) if pid else []
        self.rss_before: float | None = rss_mb(self.pids) if pid else None
        self.rss_peak = self.rss_before
        self._cpu0 = 0.0
        self._t0 = 0.0
        self.cpu_pct: float | None = None
        self.own_cpu_pct = 0.0
        self._born = time.monotonic()
        self.rss_series: list[tuple[float, float]] = []  # (seconds since start, MB)
        self._own0 = 0.0

    @staticmethod
    def tree(pid: int) -> list[int]:
        """`pid` and its descendants, from every process's parent in /proc (this kernel may
        have no /proc/<pid>/task/<tid>/children). ProcessLookupError if `pid` is gone."""
        if not os.path.exists(f"/proc/{pid}"):
            raise ProcessLookupError(f"no process {pid}")
        children: dict[int, list[int]] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as stat_file:
                    stat = stat_file.read()
            except OSError:
                continue  # exited meanwhile
            parent = int(stat[stat.rindex(b")") + 2 :].split(None, 2)[1])
            children.setdefault(parent, []).append(int(name))
        members, todo = [], [pid]
        while todo:
            current = todo.pop()
            members.append(current)
            todo.extend(children.get(current, ()))
        return members

    def sample_rss(self) -> None:
        if self.pid:
            with contextlib.suppress(OSError):
                now_mb = rss_mb(self.pids)
                self.rss_peak = max(self.rss_peak or 0.0, now_mb)
                elapsed = time.monotonic() - self._born
                if not self.rss_series or elapsed - self.rss_series[-1][0] >= RSS_SERIES_S:
                    self.rss_series.append((elapsed, now_mb))

    def window_start(self) -> None:
        self._own0 = _own_cpu_s()
        self._t0 = time.monotonic()
        if self.pid:
            self.pids = self.tree(self.pid)
            self._cpu0, self._t0 = cpu_seconds(self.pids), time.monotonic()

    def window_end(self) -> None:
        elapsed = time.monotonic() - self._t0
        self.own_cpu_pct = (_own_cpu_s() - self._own0) / elapsed * 100.0
        if self.pid:
            # The same processes as at the start: the window's CPU is theirs.
            self.cpu_pct = (cpu_seconds(self.pids) - self._cpu0) / elapsed * 100.0


async def run_load(
    config: LoadConfig, progress: Callable[[str], None] = lambda _: None
) -> LoadResult:
    """Run one load test against `config.url`; the server must use the stand-in started here."""
    stats = Stats(calls=[CallTimes() for _ in range(config.calls)])
    standin = await LoadStandIn(stats, echo=config.echo, port=config.standin_port).start()
    try:
        result = await _drive(config, stats, progress)
        # Calls end after the hang-up (the bridge's settling, then the model socket's close):
        # leaving before that would drop sockets the server was about to close.
        await standin.sockets_closed(MODEL_CLOSE_WAIT_S)
    finally:
        await standin.stop()
    result.model_sessions = dict(standin.sessions)
    return result


async def _drive(config: LoadConfig, stats: Stats, progress: Callable[[str], None]) -> LoadResult:
    port = urllib.parse.urlsplit(config.url).port or 80
    probe = ServerProbe(config.server_pid or listening_pid(port))
    calls = [LoadCall(i, stats, config) for i in range(config.calls)]
    loop = asyncio.get_running_loop()
    base = loop.time() + 0.5
    failures: list[str] = []
    sampler = asyncio.create_task(_sample_rss(probe))

    async def open_call(call: LoadCall) -> None:
        # Starts spread over the ramp; frame phases spread evenly over the 20 ms period so
        # the calls do not all send in the same millisecond.
        await asyncio.sleep(
            max(0.0, base + config.ramp_s * call.index / config.calls - loop.time())
        )
        phase = FRAME_S * call.index / config.calls
        try:
            await call.connect()
        except Exception as exc:  # a failed call is a finding, not the end of the run
            call.error = f"{type(exc).__name__}: {exc}"[:200]
            return
        periods = max(0, int((loop.time() - base - phase) / FRAME_S) + 1)
        call.start_sending(base + phase + periods * FRAME_S)

    progress(f"opening {config.calls} calls over {config.ramp_s:g} s")
    await asyncio.gather(*(open_call(call) for call in calls))
    await asyncio.sleep(1.0)  # every call past its first frames before the window opens
    start = time.monotonic()
    stats.window = (start, start + config.seconds)
    probe.window_start()
    progress(f"measuring for {config.seconds:g} s")
    if config.end_half:
        await _end_half_midway(config, stats, calls)
    else:
        await asyncio.sleep(config.seconds)
    probe.window_end()
    for call in calls:
        call.stop_sending()
    await asyncio.sleep(config.drain_s)  # the last frames' round trips
    sampler.cancel()
    progress("hanging up")
    await asyncio.gather(*(call.hang_up() for call in calls))
    for call in calls:
        if call.error is None and call.server_closed:
            call.error = "the server closed the media stream during the call"
        if call.error is not None:
            failures.append(f"call {call.index}: {call.error}")
    return _result(config, stats, calls, probe, failures)


async def _end_half_midway(config: LoadConfig, stats: Stats, calls: list[LoadCall]) -> None:
    """Hang up every other call at the window's midpoint, all within about a second, and time
    the remaining calls' frames from then to the end: the cost of ending calls to the others
    (recording finalization, the last database writes)."""
    half = config.seconds / 2
    await asyncio.sleep(half)
    now = time.monotonic()
    stats.ending_window = (now, now + half)
    ending = [call for call in calls if call.index % 2 and call.error is None]
    for call in ending:
        call.ended_early = True

    async def hang_up(call: LoadCall) -> None:
        await asyncio.sleep(call.index / len(calls))  # spread over about a second
        await call.hang_up()

    await asyncio.gather(asyncio.sleep(half), *(hang_up(call) for call in ending))


async def _sample_rss(probe: ServerProbe) -> None:
    while True:
        probe.sample_rss()
        await asyncio.sleep(0.5)


def _result(
    config: LoadConfig, stats: Stats, calls: list[LoadCall], probe: ServerProbe, failures: list[str]
) -> LoadResult:
    ok = [call for call in calls if call.error is None]
    times = [call.times for call in ok]
    sent = sum(len(t.sent) for t in times)
    lost_in = sum(len(t.sent) - len(t.at_standin) for t in times)
    # A call that hung up early may not get the echo of its last frames: inbound only.
    whole = [call.times for call in ok if not call.ended_early]
    lost_out = sum(len(t.at_standin) - len(t.at_caller) for t in whole) if config.echo else 0
    lag = percentiles(stats.lag_ms)
    rss_per_call = (
        (probe.rss_peak - probe.rss_before) * 1024 / config.calls
        if probe.rss_peak is not None and probe.rss_before is not None and config.calls
        else None
    )
    cpu = probe.cpu_pct
    return LoadResult(
        config={k: v for k, v in config.__dict__.items() if k != "auth_token"},
        valid=lag["p99"] <= MAX_VALID_LAG_MS,
        calls_ok=len(ok),
        calls_failed=len(calls) - len(ok),
        failures=failures[:20],
        frames_sent=sent,
        frames_lost_in=lost_in,
        frames_lost_out=lost_out,
        reordered_in=sum(t.reordered_in for t in times),
        reordered_out=sum(t.reordered_out for t in times),
        foreign_frames=sum(t.foreign for t in times),
        inbound_ms=percentiles(stats.inbound_ms),
        outbound_ms=percentiles(stats.outbound_ms),
        generator_lag_ms=lag,
        generator_cpu_pct=round(probe.own_cpu_pct, 1),
        ending_inbound_ms=percentiles(stats.ending_inbound_ms),
        ending_outbound_ms=percentiles(stats.ending_outbound_ms),
        server_rss_mb_series=[(round(t, 1), round(mb, 1)) for t, mb in probe.rss_series],
        server_cpu_pct=round(cpu, 1) if cpu is not None else None,
        server_cpu_pct_per_call=round(cpu / config.calls, 3) if cpu is not None else None,
        server_rss_mb_before=_round(probe.rss_before),
        server_rss_mb_peak=_round(probe.rss_peak),
        server_rss_kb_per_call=_round(rss_per_call),
        window_s=config.seconds,
    )


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def summary(result: LoadResult) -> list[str]:
    """The human-readable report (the command prints it; `--json` prints the dataclass)."""

    def row(name: str, p: dict[str, float]) -> str:
        return (
            f"  {name:<22} p50 {p['p50']:7.2f}  p95 {p['p95']:7.2f}  p99 {p['p99']:7.2f}  "
            f"max {p['max']:8.2f} ms  ({p['count']} frames)"
        )

    c = result.config
    lines = [
        f"{c['calls']} calls, {c['seconds']:g} s measured, "
        f"{'echo' if c['echo'] else 'listen-only (no echo)'} against {c['url']}",
        "  model sessions: "
        + ", ".join(f"{name} {count}" for name, count in result.model_sessions.items()),
        f"  calls ok {result.calls_ok}, failed {result.calls_failed}",
        f"  frames sent {result.frames_sent}, lost inbound {result.frames_lost_in}, lost outbound "
        f"{result.frames_lost_out}, reordered {result.reordered_in}/{result.reordered_out}, "
        f"foreign {result.foreign_frames}",
        row("inbound (caller->model)", result.inbound_ms),
        row("outbound (model->caller)", result.outbound_ms),
        row("generator lag", result.generator_lag_ms),
        *(
            [
                row("in, while half end", result.ending_inbound_ms),
                row("out, while half end", result.ending_outbound_ms),
            ]
            if result.ending_inbound_ms["count"]
            else []
        ),
        f"  generator CPU {result.generator_cpu_pct:.1f}% of one core",
    ]
    if result.server_cpu_pct is not None:
        lines.append(
            f"  server CPU {result.server_cpu_pct:.1f}% of one core "
            f"({result.server_cpu_pct_per_call:.3f}% per call), RSS {result.server_rss_mb_before}"
            f" -> peak {result.server_rss_mb_peak} MB ({result.server_rss_kb_per_call} KB per call)"
        )
    else:
        lines.append("  server CPU/RSS: not measured (the server process is not on this machine)")
    if not result.valid:
        lines.append(
            f"  INVALID RUN: generator lag p99 {result.generator_lag_ms['p99']:.2f} ms > "
            f"{MAX_VALID_LAG_MS:g} ms; the generator, not the server, was the limit"
        )
    lines.extend(f"  failure: {failure}" for failure in result.failures[:5])
    return lines
