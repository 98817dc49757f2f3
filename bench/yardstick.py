"""The yardstick: a minimal Twilio <-> OpenAI Realtime forwarder, in the shape of Twilio's own
Python sample (FastAPI, one `websockets` client socket per call, two forwarding tasks, stdlib
json). No persistence, no recording, no signature checks: what a bridge costs at the least
when written plainly. `make bench` measures it under the same load as the product.

    YARDSTICK_REALTIME_URL=ws://127.0.0.1:8765/v1/realtime \
        .venv/bin/uvicorn bench.yardstick:app --port 8001
"""

from __future__ import annotations

import asyncio
import json
import os

import websockets
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response

REALTIME_URL = os.environ.get("YARDSTICK_REALTIME_URL", "ws://127.0.0.1:8765/v1/realtime")
API_KEY = os.environ.get("OPENAI_API_KEY", "sk-yardstick")
MODEL = "gpt-realtime"
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

app = FastAPI()


@app.post("/twilio/incoming-call")
async def incoming_call(request: Request) -> Response:
    """TwiML that connects the call's media stream to /streams (the caller's own host)."""
    host = request.url.hostname
    port = request.url.port
    twiml = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        f'<Stream url="wss://{host}:{port}/streams" /></Connect></Response>'
    )
    return Response(content=twiml, media_type="application/xml")


@app.websocket("/streams")
async def media_stream(websocket: WebSocket) -> None:
    await websocket.accept()
    async with websockets.connect(
        f"{REALTIME_URL}?model={MODEL}",
        additional_headers={"Authorization": f"Bearer {API_KEY}"},
        compression=None,
    ) as openai_ws:
        await openai_ws.send(json.dumps(SESSION))
        stream_sid: str | None = None
        mark_count = 0

        async def receive_from_twilio() -> None:
            nonlocal stream_sid
            try:
                async for message in websocket.iter_text():
                    data = json.loads(message)
                    if data["event"] == "media":
                        audio_append = {
                            "type": "input_audio_buffer.append",
                            "audio": data["media"]["payload"],
                        }
                        await openai_ws.send(json.dumps(audio_append))
                    elif data["event"] == "start":
                        stream_sid = data["start"]["streamSid"]
                    elif data["event"] == "stop":
                        break
            except WebSocketDisconnect:
                pass
            await openai_ws.close()

        async def send_to_twilio() -> None:
            nonlocal mark_count
            async for openai_message in openai_ws:
                response = json.loads(openai_message)
                if response.get("type") == "response.output_audio.delta" and "delta" in response:
                    await websocket.send_json(
                        {
                            "event": "media",
                            "streamSid": stream_sid,
                            "media": {"payload": response["delta"]},
                        }
                    )
                    mark_count += 1
                    await websocket.send_json(
                        {
                            "event": "mark",
                            "streamSid": stream_sid,
                            "mark": {"name": f"m{mark_count}"},
                        }
                    )

        await asyncio.gather(receive_from_twilio(), send_to_twilio(), return_exceptions=True)
    await websocket.close()
