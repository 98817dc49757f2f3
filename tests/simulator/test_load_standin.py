"""The load generator's lean stand-in (simulator/load.py): GPT-Live on /v1/live/sessions beside
the Realtime path on the same port, every Live event valid against the SDK's types, appends
echoed byte for byte with their timing tag, the close; and listen-only (no echo), whose missing
echoes the generator does not count as lost. Loopback sockets, bounded in time."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from openai.types.live import ClientEvent, ServerEvent, SessionClosedEvent, SessionStartedEvent
from pydantic import TypeAdapter
from support import unknown_keys
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK

from simulator.load import (
    BODY,
    TAG,
    CallTimes,
    LoadConfig,
    LoadStandIn,
    ServerProbe,
    Stats,
    _result,
)

SERVER = TypeAdapter(ServerEvent)
CLIENT = TypeAdapter(ClientEvent)
PCMU = {"type": "audio/pcmu", "rate": 8000}
LIVE_SESSION = {
    "model": "gpt-live-1.1",
    "instructions": "Be brief.",
    "audio": {"format": PCMU, "output": {"voice": "marin"}},
}


def tagged(call: int, number: int) -> str:
    """A 20 ms mu-law frame tagged as the generator tags it, in base64."""
    return base64.b64encode(TAG.pack(call, number) + BODY).decode()


def server_event(message: str | bytes) -> tuple[dict[str, Any], Any]:
    """The event, and the SDK's model of it: declared keys only, nothing coerced or dropped."""
    event = orjson.loads(message)
    model = SERVER.validate_python(event)
    assert model.type == event["type"]
    assert not unknown_keys(model), event["type"]
    assert model.model_dump(exclude_unset=True) == event, event["type"]
    return event, model


async def send(ws: ClientConnection, event: dict[str, Any], *, check: bool = True) -> None:
    if check:
        CLIENT.validate_python(event)
    await ws.send(orjson.dumps(event).decode())


async def nothing_within(ws: ClientConnection, seconds: float) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    return False


@pytest.fixture
def stats() -> Stats:
    return Stats(calls=[CallTimes() for _ in range(2)])


@pytest.fixture
async def echo_standin(stats: Stats) -> AsyncIterator[LoadStandIn]:
    standin = await LoadStandIn(stats, echo=True).start()
    yield standin
    await standin.stop()


@pytest.fixture
async def listening_standin(stats: Stats) -> AsyncIterator[LoadStandIn]:
    standin = await LoadStandIn(stats, echo=False).start()
    yield standin
    await standin.stop()


async def live_session(standin: LoadStandIn) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(
        standin.live_url, additional_headers={"Authorization": "Bearer k"}, close_timeout=1
    )
    await send(ws, {"type": "session.start", "event_id": "evt_start", "session": LIVE_SESSION})
    started, model = server_event(await ws.recv())
    assert isinstance(model, SessionStartedEvent)
    return ws, started


async def test_live_session_starts_with_a_valid_session_started(echo_standin: LoadStandIn):
    async with asyncio.timeout(5):
        ws, started = await live_session(echo_standin)
        TypeAdapter(SessionStartedEvent).validate_python(started)
        session = started["session"]
        assert started["client_event_id"] == "evt_start"
        assert session["id"].startswith("sess_")
        assert session["status"] == "active"
        assert (session["model"], session["audio"]["format"]) == ("gpt-live-1.1", PCMU)
        assert session["audio"]["output"]["voice"] == "marin"
        await ws.close()
    # GPT-Live says nothing before session.start: session.started was the first event.
    assert echo_standin.sessions == {"realtime": 0, "live": 1}


async def test_live_appends_come_back_byte_for_byte_with_their_tag(
    echo_standin: LoadStandIn, stats: Stats
):
    async with asyncio.timeout(5):
        ws, _ = await live_session(echo_standin)
        sent = [tagged(1, n) for n in range(3)]
        for audio in sent[:2]:
            await send(ws, {"type": "session.input_audio.append", "audio": audio})
        # An append whose type is not the first key takes the decoding path, same answer.
        await ws.send(
            orjson.dumps({"audio": sent[2], "type": "session.input_audio.append"}).decode()
        )
        echoed = [server_event(await ws.recv())[0] for _ in sent]
        await ws.close()
    assert [e["type"] for e in echoed] == ["session.output_audio.delta"] * 3
    assert [e["delta"] for e in echoed] == sent
    assert sorted(stats.calls[1].at_standin) == [0, 1, 2]  # each arrival timed by its tag


async def test_live_close_answers_session_closed_then_closes_normally(
    echo_standin: LoadStandIn,
):
    async with asyncio.timeout(5):
        ws, started = await live_session(echo_standin)
        await send(ws, {"type": "session.input_audio.append", "audio": tagged(0, 0)})
        await ws.recv()
        await send(ws, {"type": "session.close", "event_id": "evt_close"})
        closed, model = server_event(await ws.recv())
        assert isinstance(model, SessionClosedEvent)
        assert closed["reason"] == "close_requested"
        assert closed["client_event_id"] == "evt_close"
        assert closed["session"] == started["session"]
        assert closed["usage"] == {"seconds": 0}
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        assert ws.close_code == 1000
        # The run waits for this before it stops the stand-in.
        assert await echo_standin.sockets_closed(1.0)
        assert echo_standin.open_sockets == 0


async def test_realtime_and_live_share_the_port(echo_standin: LoadStandIn):
    async with asyncio.timeout(5):
        realtime = await connect(echo_standin.url + "?model=gpt-realtime", close_timeout=1)
        assert orjson.loads(await realtime.recv())["type"] == "session.created"
        await realtime.send(orjson.dumps({"type": "session.update", "session": {}}).decode())
        assert orjson.loads(await realtime.recv())["type"] == "session.updated"
        audio = tagged(0, 7)
        await realtime.send(
            orjson.dumps({"type": "input_audio_buffer.append", "audio": audio}).decode()
        )
        delta = orjson.loads(await realtime.recv())
        assert (delta["type"], delta["delta"]) == ("response.output_audio.delta", audio)
        live, _ = await live_session(echo_standin)
        await realtime.close()
        await live.close()
    assert echo_standin.sessions == {"realtime": 1, "live": 1}


async def test_listen_only_takes_appends_and_sends_nothing_back(
    listening_standin: LoadStandIn, stats: Stats
):
    async with asyncio.timeout(5):
        ws = await connect(listening_standin.url + "?model=gpt-realtime", close_timeout=1)
        assert orjson.loads(await ws.recv())["type"] == "session.created"
        for number in range(5):
            await ws.send(
                orjson.dumps(
                    {"type": "input_audio_buffer.append", "audio": tagged(0, number)}
                ).decode()
            )
        assert await nothing_within(ws, 0.3)
        await ws.close()
    assert sorted(stats.calls[0].at_standin) == list(range(5))


def one_call(echo: bool) -> LoadConfig:
    """A one-call run's configuration, for the accounting tests (no socket is opened)."""
    return LoadConfig(
        url="http://127.0.0.1:1",
        calls=1,
        seconds=1.0,
        ramp_s=0.0,
        echo=echo,
        auth_token=None,
        public_base_url="http://127.0.0.1:1",
    )


@pytest.mark.parametrize("echo", [True, False])
def test_missing_echoes_are_lost_only_when_echo_was_asked(echo: bool):
    """Every frame reached the stand-in, none came back to the caller: with echo that is 10
    frames lost outbound; listen-only, nothing is lost."""
    times = CallTimes(sent=[0.0] * 10, at_standin=dict.fromkeys(range(10), 0.0))
    call = SimpleNamespace(error=None, ended_early=False, times=times)
    stats = Stats(calls=[times])
    result = _result(one_call(echo), stats, [call], ServerProbe(None), [])  # type: ignore[list-item]
    assert (result.frames_lost_in, result.frames_lost_out) == (0, 10 if echo else 0)
