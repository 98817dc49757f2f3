"""Fault injection: the stand-in fails the ways the real service and networks do."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
from sim_support import caller_turn
from support import REPO_ROOT
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.protocol import State

from simulator.openai.standin import Faults

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


async def _read_until_closed(client) -> ConnectionClosed:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await client.next_event()
    return closed.value


async def test_refused_handshakes_then_a_working_connection(realtime_connect, standin):
    standin.faults = Faults(refuse="handshake", first_connections=2)
    async with asyncio.timeout(10):
        for _ in range(2):
            with pytest.raises(InvalidStatus) as refused:
                await realtime_connect()
            assert refused.value.response.status_code == 503
        client = await realtime_connect()
        assert (await client.next_event())["type"] == "session.created"
    assert [h.status for h in standin.handshakes] == [503, 503, 101]
    assert standin.connection_count == 1


async def test_refuse_by_closing_at_once(realtime_connect, standin):
    standin.faults = Faults(refuse="close")
    async with asyncio.timeout(10):
        client = await realtime_connect()
        closed = await _read_until_closed(client)
    assert closed.rcvd is not None and closed.rcvd.code == 1011
    assert client.events == []  # not even session.created
    assert standin.connections[0].close_code == 1011


async def test_drop_after_appends_kills_the_socket_without_a_close_frame(realtime_connect, standin):
    standin.faults = Faults(drop_after_appends=5)
    async with asyncio.timeout(10):
        client = await realtime_connect()
        await client.until("session.created")
        with pytest.raises(ConnectionClosedError) as dropped:
            await client.append(caller_turn())
            while True:
                await client.next_event()
    assert dropped.value.rcvd is None  # no close frame: a network drop
    connection = standin.connections[0]
    assert connection.dropped and connection.appends == 5
    assert len(connection.audio) == 5 * 160


async def test_drop_after_seconds(realtime_connect, standin):
    standin.faults = Faults(drop_after_s=0.2)
    async with asyncio.timeout(10):
        client = await realtime_connect()
        began = time.monotonic()
        closed = await _read_until_closed(client)
    assert isinstance(closed, ConnectionClosedError) and closed.rcvd is None
    assert 0.15 < time.monotonic() - began < 2.0


async def test_session_expiry_sends_the_error_then_closes_1001(realtime_connect, standin):
    standin.faults = Faults(expire_after_s=0.2)
    async with asyncio.timeout(10):
        client = await realtime_connect()
        closed = await _read_until_closed(client)
    error = client.events[-1]
    assert error["type"] == "error"
    assert error["error"]["code"] == "session_expired"
    assert error["error"]["message"] == "Your session hit the maximum duration of 60 minutes."
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1001, error["error"]["message"])


async def test_expire_sessions_now(realtime_connect, standin):
    async with asyncio.timeout(10):
        client = await realtime_connect()
        await client.until("session.created")
        await standin.expire_sessions()
        closed = await _read_until_closed(client)
    assert closed.rcvd is not None and closed.rcvd.code == 1001


async def test_a_stall_goes_silent_both_ways_with_the_socket_open(realtime_connect, standin):
    standin.faults = Faults(stall_after_appends=3)
    async with asyncio.timeout(10):
        client = await realtime_connect()
        await client.use_pcmu()
        await client.append(caller_turn())  # speech that would normally get a reply
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.8):
                await client.next_event()
        pong = await client.ws.ping()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await pong  # a hung server answers no pings either
        assert client.ws.state is State.OPEN
    connection = standin.connections[0]
    assert connection.stalled and not connection.closed
    assert connection.appends == 3
    began = time.monotonic()
    await standin.stop()  # a stalled connection must not hold up shutdown
    assert time.monotonic() - began < 2.0


async def test_stall_after_seconds_and_new_connections_still_work(realtime_connect, standin):
    standin.faults = Faults(stall_after_s=0.1, first_connections=1)
    async with asyncio.timeout(10):
        stalled = await realtime_connect()
        await stalled.until("session.created")
        await standin.wait_until(lambda: standin.connections[0].stalled)
        fresh = await realtime_connect()
        await fresh.use_pcmu()
        await fresh.append(caller_turn())
        await fresh.until("response.done")
    assert standin.connection_count == 2


async def test_live_drop_reaches_every_open_connection(realtime_connect, standin):
    async with asyncio.timeout(10):
        clients = [await realtime_connect() for _ in range(2)]
        await standin.wait_for_connection(2)
        await standin.drop_connections()
        for client in clients:
            closed = await _read_until_closed(client)
            assert closed.rcvd is None
    assert all(c.dropped for c in standin.connections)


TIMING_OPTIONS = [
    "--seed", "7",
    "--transcription-delay", "0.1", "0.2",
    "--transcription-failure-rate", "0",
    "--response-delay", "0", "0",
    "--first-audio-delay", "0.1", "0.1",
    "--even-chunks",
]  # fmt: skip


@pytest.mark.parametrize("options", [[], TIMING_OPTIONS], ids=["defaults", "timing-options"])
async def test_the_standin_runs_standalone(options: list[str]):
    # Port 0: any free port; the banner says which. SIGTERM (what `make run` sends) stops it.
    command = [sys.executable, "-m", "simulator.openai.standin", "--port", "0", *options]
    async with asyncio.timeout(20):
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            assert process.stdout is not None
            line = (await process.stdout.readline()).decode()
            assert "realtime stand-in listening on ws://127.0.0.1:" in line
        finally:
            process.terminate()
        assert await process.wait() == 0
