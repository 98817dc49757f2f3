"""Fixtures for the simulator's tests (helpers in tests/sim_support.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sim_support import FakeBridge, RealtimeClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import serve

from simulator.openai.standin import RealtimeStandIn


@pytest.fixture
async def standin() -> AsyncIterator[RealtimeStandIn]:
    async with RealtimeStandIn(speed=8.0, first_audio_delay_s=0.05) as server:
        yield server


RealtimeConnect = Callable[..., Awaitable[RealtimeClient]]


@pytest.fixture
async def realtime_connect(standin: RealtimeStandIn) -> AsyncIterator[RealtimeConnect]:
    """connect(beta=False, headers=None, query="?model=gpt-realtime") -> RealtimeClient."""
    sockets: list[ClientConnection] = []

    async def open_client(
        *,
        beta: bool = False,
        headers: dict[str, str] | None = None,
        query: str = "?model=gpt-realtime",
    ) -> RealtimeClient:
        chosen = {"Authorization": "Bearer test-key"} if headers is None else dict(headers)
        if beta:
            chosen["OpenAI-Beta"] = "realtime=v1"
        # A short close timeout: a stalled stand-in never answers the closing handshake.
        ws = await connect(
            standin.url + query, additional_headers=chosen, open_timeout=5, close_timeout=0.5
        )
        sockets.append(ws)
        return RealtimeClient(ws)

    yield open_client
    for ws in sockets:
        await ws.close()


@pytest.fixture
async def fake_bridge() -> AsyncIterator[FakeBridge]:
    bridge = FakeBridge()
    http_server = await asyncio.start_server(bridge.handle_http, "127.0.0.1", 0)
    ws_server = await serve(bridge.handle_stream, "127.0.0.1", 0)
    bridge.http_port = http_server.sockets[0].getsockname()[1]
    bridge.ws_port = ws_server.sockets[0].getsockname()[1]
    async with http_server:
        yield bridge
    ws_server.close()
    await ws_server.wait_closed()
