"""The floor: the thinnest Channels forwarder, a Twilio <-> OpenAI Realtime bridge that is only
Channels' routing, one consumer and one `websockets` client socket per call. `make bench`
serves it with the product's own uvicorn command (the app path swapped, lifespan off) and
loads it the same way, so "vs floor" is what the product does above forwarding, with the
server, the framework and the protocol held equal.

What it is: `ProtocolTypeRouter`/`URLRouter`; `AsyncWebsocketConsumer` on /streams (no
channel layer) that, per Twilio media stream, opens one model socket the way bench/yardstick.py
does (same URL, headers and `session.update`), sends each `media` payload on as
`input_audio_buffer.append`, each `response.output_audio.delta` back as a `media` message with
the streamSid, takes `start` (the streamSid) and `stop` (closes the model socket), and closes
both sockets when either side ends. `AsyncHttpConsumer` on POST /twilio/incoming-call answers
the TwiML that connects to /streams. orjson, as the product uses (stdlib json would cost about
11 points of a core more at 100 calls and flatter the product); the model socket's standard
`send` (the product writes audio frames straight to the transport: part of what it saves).
No database, recording or signature checks.

Marks: one every 100 ms of agent audio, counted in bytes like the product
(`TWILIO_MARK_INTERVAL_MS`, default 100; 0 sends one after every delta, the yardstick's way).
The echoed marks are read and dropped, as the yardstick does.

The consumer keeps the two shortcuts the product's consumer takes (telephony/consumer.py): a
plain receive loop instead of Channels' `await_many_dispatch`, and no `aclose_old_connections()`
thread-pool hop per message (there is no database). Without them the floor would sit above the
product and be no floor. `FLOOR_STOCK_CHANNELS=1` serves the stock Channels dispatch instead
(bench/run.py's `floor-stock` kind) to show what those two cost.

Django needs settings before Channels' consumers import: this module configures a few of its
own, so it never loads the product's settings or apps.

    FLOOR_REALTIME_URL=ws://127.0.0.1:8765/v1/realtime \
        .venv/bin/uvicorn bench.floor:application --port 8001 --lifespan off
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from typing import Any

import django
import orjson
import websockets
from django.conf import settings
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

if not settings.configured:
    # The least Channels needs. (Under pytest the product's settings may already be loaded;
    # the consumers below use no channel layer and no database either way.)
    settings.configure(
        DEBUG=False,
        INSTALLED_APPS=[],
        DATABASES={},
        CHANNEL_LAYERS={},
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()

# Channels' consumers need the settings above.
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

REALTIME_URL = os.environ.get("FLOOR_REALTIME_URL", "ws://127.0.0.1:8765/v1/realtime")
API_KEY = os.environ.get("OPENAI_API_KEY", "sk-floor")
MODEL = "gpt-realtime"
# The yardstick's session.update, word for word: both ends see the same conversation.
SESSION = {
    "type": "session.update",
    "session": {
        "type": "realtime",
        "model": MODEL,
        "output_modalities": ["audio"],
        "audio": {
            "input": {"format": {"type": "audio/pcmu"}, "turn_detection": {"type": "server_vad"}},
            "output": {"format": {"type": "audio/pcmu"}, "voice": "alloy"},
        },
        "instructions": "You are a helpful assistant.",
    },
}
ULAW_BYTES_PER_MS = 8
MARK_BYTES = int(float(os.environ.get("TWILIO_MARK_INTERVAL_MS") or 100) * ULAW_BYTES_PER_MS)
# An alias with no configuration: Channels gives these consumers no layer, whatever settings.
NO_LAYER = "floor-has-no-layer"
MODEL_ENDED = 1011  # the model socket went away mid-call: end the call


def dumps(message: dict[str, Any]) -> str:
    """Compact JSON, as Twilio and Starlette's send_json write it (the load generator matches
    `{"event":"media"` at the start of a frame)."""
    return orjson.dumps(message).decode()


class IncomingCall(AsyncHttpConsumer):
    """POST /twilio/incoming-call: TwiML that connects the call's media stream to /streams."""

    channel_layer_alias = NO_LAYER

    async def handle(self, body: bytes) -> None:
        headers = dict(self.scope.get("headers", []))
        host = headers.get(b"host", b"127.0.0.1").decode("latin-1")
        twiml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url="wss://{host}/streams" /></Connect></Response>'
        )
        await self.send_response(
            200, twiml.encode(), headers=[(b"Content-Type", b"application/xml")]
        )


class StockFloorStream(AsyncWebsocketConsumer):
    """One Twilio media stream and its model socket, on Channels' stock dispatch."""

    channel_layer_alias = NO_LAYER
    model: ClientConnection | None = None
    pump: asyncio.Task[None] | None = None
    stream_sid: str | None = None
    stopping = False
    unmarked_bytes = 0
    marks = 0

    async def connect(self) -> None:
        await self.accept()
        try:
            self.model = await websockets.connect(
                f"{REALTIME_URL}?model={MODEL}",
                additional_headers={"Authorization": f"Bearer {API_KEY}"},
                compression=None,
            )
            await self.model.send(orjson.dumps(SESSION), text=True)
        except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed):
            await self.close(MODEL_ENDED)
            return
        self.pump = asyncio.create_task(self.from_model(self.model))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None or self.model is None:
            return
        data = orjson.loads(text_data)
        event = data.get("event")
        if event == "media":
            append = {"type": "input_audio_buffer.append", "audio": data["media"]["payload"]}
            # A closed model socket is the pump's to notice: it ends the call.
            with contextlib.suppress(ConnectionClosed):
                await self.model.send(orjson.dumps(append), text=True)
        elif event == "start":
            self.stream_sid = data["start"]["streamSid"]
        elif event == "stop":
            self.stopping = True
            await self.model.close()

    async def disconnect(self, code: int) -> None:
        self.stopping = True
        if self.model is not None:
            await self.model.close()
        if self.pump is not None:
            await self.pump

    async def from_model(self, model: ClientConnection) -> None:
        """Model -> Twilio until the model socket closes; a close we did not ask for (no stop,
        no hang-up) ends the call."""
        try:
            while True:
                message = await model.recv(decode=False)
                event = orjson.loads(message)
                if event.get("type") == "response.output_audio.delta" and "delta" in event:
                    await self.forward_audio(event["delta"])
        except ConnectionClosed:
            pass
        except OSError:
            return  # the caller's side is gone (uvicorn's ClientDisconnected): nothing to send
        if not self.stopping:
            await self.close(MODEL_ENDED)

    async def forward_audio(self, delta: str) -> None:
        await self.send(
            text_data=dumps(
                {"event": "media", "streamSid": self.stream_sid, "media": {"payload": delta}}
            )
        )
        # 4 base64 characters carry 3 bytes of mu-law; the padding is too little to matter.
        self.unmarked_bytes += len(delta) * 3 // 4
        if self.unmarked_bytes >= MARK_BYTES:
            self.unmarked_bytes = 0
            self.marks += 1
            mark = {
                "event": "mark",
                "streamSid": self.stream_sid,
                "mark": {"name": f"m{self.marks}"},
            }
            await self.send(text_data=dumps(mark))


class FloorStream(StockFloorStream):
    """The same, on the product's plain receive loop (see the module docstring)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # AsyncConsumer.__call__ without await_many_dispatch's Task per receive(): with no
        # layer there is only one source of messages.
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            while True:
                await self.dispatch(await receive())

    async def dispatch(self, message: dict[str, Any]) -> None:
        # No aclose_old_connections(): there is no database to close connections of.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
            return
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for {message['type']}")
        await handler(message)


STOCK = os.environ.get("FLOOR_STOCK_CHANNELS", "") not in ("", "0")
application = ProtocolTypeRouter(
    {
        "http": URLRouter([path("twilio/incoming-call", IncomingCall.as_asgi())]),
        "websocket": URLRouter(
            [path("streams", (StockFloorStream if STOCK else FloorStream).as_asgi())]
        ),
    }
)

# As the product does (bridge_project/asgi.py): import-time objects out of full collections.
gc.freeze()
