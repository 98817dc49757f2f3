"""Helpers for the simulator's tests: a bare realtime client for the stand-in, and a fake bridge
server (webhook + media stream) for the simulated caller. Real loopback sockets throughout."""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from openai.types.beta import realtime as beta
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter
from support import unknown_keys
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection

from audio.g711 import ulaw_encode
from simulator.openai.connection import StandInConnection
from simulator.speech import silence, speech

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC_BASE_URL = "https://voice.example.com"
TWIML_STREAM_URL = "wss://voice.example.com/streams"

GA_SERVER = TypeAdapter(RealtimeServerEvent)
BETA_SERVER = TypeAdapter(beta.RealtimeServerEvent)
# The service's session objects carry these; the SDK's session.created/updated types (built on
# the session *request*) do not declare them. Everything else must be declared.
SESSION_EXTRAS = {".session.id", ".session.object", ".session.expires_at"}


def assert_all_sdk_valid(connection: StandInConnection) -> None:
    """Every event the connection sent parses as the SDK's server event of its type, with no
    undeclared key and nothing coerced or dropped."""
    adapter = GA_SERVER if connection.protocol == "ga" else BETA_SERVER
    assert connection.sent
    for event in connection.sent:
        model = adapter.validate_python(event)
        assert model.type == event["type"]
        assert set(unknown_keys(model)) <= SESSION_EXTRAS, event["type"]
        assert model.model_dump(exclude_unset=True) == event, event["type"]


# --- the stand-in and a raw client for it ---------------------------------------------------


class RealtimeClient:
    """A bare Realtime client: JSON events over one socket, nothing hidden."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def send(self, event_type: str, **fields: Any) -> None:
        await self.ws.send(orjson.dumps({"type": event_type, **fields}).decode())

    async def next_event(self) -> dict[str, Any]:
        event = orjson.loads(await self.ws.recv())
        self.events.append(event)
        return event

    async def until(self, event_type: str) -> dict[str, Any]:
        """Read events up to and including the first of `event_type`."""
        while True:
            event = await self.next_event()
            if event["type"] == event_type:
                return event

    async def append(self, ulaw: bytes, *, frame_bytes: int = 160) -> None:
        for offset in range(0, len(ulaw), frame_bytes):
            chunk = base64.b64encode(ulaw[offset : offset + frame_bytes]).decode()
            await self.send("input_audio_buffer.append", audio=chunk)

    async def use_pcmu(self, *, transcription: bool = True) -> dict[str, Any]:
        pcmu = {"type": "audio/pcmu"}
        audio_input: dict[str, Any] = {"format": pcmu}
        if transcription:
            audio_input["transcription"] = {"model": "gpt-4o-mini-transcribe"}
        await self.send(
            "session.update",
            session={
                "type": "realtime",
                "audio": {"input": audio_input, "output": {"format": pcmu}},
            },
        )
        return await self.until("session.updated")


async def until_all(client: RealtimeClient, *event_types: str) -> None:
    """Read events until one of each type has arrived (in any order)."""
    while not all(of_type(client, event_type) for event_type in event_types):
        await client.next_event()


def of_type(client: RealtimeClient, event_type: str) -> list[dict[str, Any]]:
    return [e for e in client.events if e["type"] == event_type]


def caller_turn(speech_s: float = 1.5, *, lead_s: float = 0.5, tail_s: float = 1.0) -> bytes:
    """Silence, one utterance, silence: mu-law 8 kHz, as Twilio would stream it."""
    pcm = [silence(lead_s), speech(speech_s, seed=7), silence(tail_s)]
    return b"".join(ulaw_encode(part) for part in pcm)


# --- a fake bridge server for the simulated caller ------------------------------------------


@dataclass
class StreamFrame:
    at: float  # time.monotonic() on arrival
    text: str | bytes

    @property
    def message(self) -> dict[str, Any]:
        return orjson.loads(self.text)


async def answer_http(writer: asyncio.StreamWriter, status: str, text: str) -> None:
    """One HTTP/1.1 answer (TwiML or text), then the connection closes: a fake server's reply
    to a webhook or callback."""
    payload = text.encode()
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + payload
    )
    await writer.drain()
    writer.close()


@dataclass
class FakeBridge:
    """Answers the webhook like the real server and records the media stream.

    `on_start(ws, start_message)` runs in its own task once `start` arrives, to play agent
    audio, marks and clears at the caller.
    """

    http_port: int = 0
    ws_port: int = 0
    webhook_requests: list[dict[str, Any]] = field(default_factory=list)
    upgrade_headers: dict[str, str] = field(default_factory=dict)
    frames: list[StreamFrame] = field(default_factory=list)
    on_start: Callable[[ServerConnection, dict[str, Any]], Awaitable[None]] | None = None
    parameters: dict[str, str] = field(
        default_factory=lambda: {"callId": "6f1c2d3e-0000-4000-8000-000000000001", "token": "t.1"}
    )
    # TwiML answered for other paths (a whisper URL...): path without query -> body.
    answers: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def stream_base(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def messages(self, event: str | None = None) -> list[dict[str, Any]]:
        parsed = [f.message for f in self.frames if isinstance(f.text, str) and _is_json(f.text)]
        return [m for m in parsed if event is None or m.get("event") == event]

    def twiml(self) -> str:
        params = "".join(
            f'<Parameter name="{name}" value="{value}"/>' for name, value in self.parameters.items()
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url="{TWIML_STREAM_URL}">{params}</Stream></Connect>'
            "<Say>Sorry, our assistant is not available right now.</Say></Response>"
        )

    async def handle_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        params = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        path = request_line.split()[1]
        valid = RequestValidator(AUTH_TOKEN).validate(
            PUBLIC_BASE_URL + path, params, headers.get("x-twilio-signature", "")
        )
        self.webhook_requests.append(
            {"line": request_line, "headers": headers, "params": params, "valid": valid}
        )
        answer = self.answers.get(urllib.parse.urlsplit(path).path, self.twiml())
        status, text = ("200 OK", answer) if valid else ("403 Forbidden", "bad signature")
        await answer_http(writer, status, text)

    async def handle_stream(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.upgrade_headers = {k.lower(): v for k, v in ws.request.headers.raw_items()}
        tasks = []
        async for text in ws:
            self.frames.append(StreamFrame(time.monotonic(), text))
            if self.on_start is not None and isinstance(text, str) and '"start"' in text[:40]:
                tasks.append(asyncio.create_task(self.on_start(ws, orjson.loads(text))))
        for task in tasks:
            task.cancel()


def _is_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True
