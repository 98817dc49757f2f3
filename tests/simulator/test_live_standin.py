"""The stand-in speaks GPT-Live on its own path: every event valid against the SDK's
`openai.types.live`, the session timeline, the continuous track, turns, barge-in, delegation,
usage, expiry and close. Real loopback sockets, bounded in time."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from openai.types.live import ClientEvent, ServerEvent
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter
from sim_support import RealtimeClient, caller_turn
from support import unknown_keys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from audio.g711 import ulaw_encode
from simulator.openai.live.connection import LiveConnection
from simulator.openai.standin import (
    DEFAULT_CALLER_LINES,
    DEFAULT_REPLIES,
    LiveOptions,
    RealtimeStandIn,
    ScriptedToolCall,
)
from simulator.openai.tools import DEFAULT_TOOL_REPLY
from simulator.speech import silence, speech

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

SERVER = TypeAdapter(ServerEvent)
CLIENT = TypeAdapter(ClientEvent)
RESPONSES = TypeAdapter(ResponseStreamEvent)
PCMU = {"type": "audio/pcmu", "rate": 8000}
FAST = LiveOptions(reply_delay_s=0.2, transcript_delay_s=0.2, backend_delay_s=0.1)
LOOKUP = {
    "type": "function",
    "name": "lookup_order",
    "description": "Find an order.",
    "parameters": {
        "type": "object",
        "properties": {"order": {"type": "string"}},
        "required": ["order"],
    },
}


def session_config(**extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-live-1",
        "instructions": "Be brief.",
        "audio": {"format": PCMU, "output": {"voice": "marin"}},
        **extra,
    }


def responses_delegation(*tools: dict[str, Any]) -> dict[str, Any]:
    return {"type": "responses", "responses": {"model": "gpt-5.5", "tools": list(tools)}}


class LiveClient(RealtimeClient):
    """A bare GPT-Live client: every event it sends is checked against the SDK's ClientEvent
    first, so the tests cannot pass on events the service would not take."""

    async def send(self, event_type: str, *, check: bool = True, **fields: Any) -> None:
        event = {"type": event_type, **fields}
        if check:
            model = CLIENT.validate_python(event)
            assert not unknown_keys(model), event_type
        await self.ws.send(orjson.dumps(event).decode())

    async def start(self, **config: Any) -> dict[str, Any]:
        await self.send("session.start", event_id="evt_start", session=session_config(**config))
        return await self.until("session.started")

    async def stream(self, ulaw: bytes) -> None:
        """Caller audio at real time, 20 ms a frame, reading whatever arrives meanwhile."""
        begin = time.monotonic()
        for frame, offset in enumerate(range(0, len(ulaw), 160)):
            audio = base64.b64encode(ulaw[offset : offset + 160]).decode()
            await self.send("session.input_audio.append", check=False, audio=audio)
            await self.drain_until(begin + (frame + 1) * 0.02)

    async def drain_until(self, deadline: float) -> None:
        while (left := deadline - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(self.next_event(), left)
            except TimeoutError:
                return

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == event_type]

    def text(self, event_type: str) -> str:
        return "".join(e["delta"] for e in self.of_type(event_type))

    def output_ms(self) -> float:
        deltas = self.of_type("session.output_audio.delta")
        return sum(len(base64.b64decode(e["delta"])) for e in deltas) / 8.0


def assert_all_sdk_valid(connection: LiveConnection) -> None:
    """Every event the connection sent parses as the SDK's server event of its type, with no
    undeclared key and nothing coerced or dropped; the Responses events nested in
    response.event parse as Responses stream events likewise."""
    assert connection.sent
    for event in connection.sent:
        model = SERVER.validate_python(event)
        assert model.type == event["type"]
        assert not unknown_keys(model), event["type"]
        assert model.model_dump(exclude_unset=True) == event, event["type"]
        if event["type"] == "response.event":
            nested = RESPONSES.validate_python(event["event"])
            assert not unknown_keys(nested), event["event"]["type"]
            assert nested.model_dump(exclude_unset=True) == event["event"]


@pytest.fixture
async def live_standin() -> AsyncIterator[RealtimeStandIn]:
    async with RealtimeStandIn(live=FAST, seed=3) as server:
        yield server


@pytest.fixture
async def live_client(live_standin: RealtimeStandIn) -> AsyncIterator[LiveClient]:
    ws = await connect(
        live_standin.live_url,
        additional_headers={"Authorization": "Bearer test-key"},
        open_timeout=5,
        close_timeout=1,
    )
    yield LiveClient(ws)
    await ws.close()


async def test_handshake_needs_a_bearer_key_and_no_query(live_standin: RealtimeStandIn):
    async with asyncio.timeout(10):
        with pytest.raises(InvalidStatus) as missing_key:
            await connect(live_standin.live_url)
        assert missing_key.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as query:
            await connect(
                live_standin.live_url + "?model=gpt-live-1",
                additional_headers={"Authorization": "Bearer k"},
            )
        assert query.value.response.status_code == 400
        assert live_standin.live_connections == []
        assert live_standin.connections == []


async def test_only_session_start_is_taken_before_session_started(
    live_client: LiveClient, live_standin: RealtimeStandIn
):
    async with asyncio.timeout(10):
        audio = base64.b64encode(b"\xff" * 160).decode()
        await live_client.send("session.input_audio.append", event_id="evt_a", audio=audio)
        error = await live_client.until("error")
        assert error["error"]["code"] == "session_not_started"
        assert error["client_event_id"] == "evt_a"
        # An unknown field is refused, as the service's strict configuration does.
        await live_client.send(
            "session.start", check=False, session={**session_config(), "voices": "x"}
        )
        assert (await live_client.until("error"))["error"]["param"] == "session.voices"
        await live_client.send("session.start", check=False, session={"instructions": "x"})
        missing = (await live_client.until("error"))["error"]
        assert (missing["code"], missing["param"]) == (
            "missing_required_parameter",
            "session.model",
        )
        bad_rate = session_config(audio={"format": {"type": "audio/pcmu", "rate": 16000}})
        await live_client.send("session.start", session=bad_rate)
        assert (await live_client.until("error"))["error"]["param"] == "session.audio.format.rate"

        started = await live_client.start()
        session = started["session"]
        assert started["client_event_id"] == "evt_start"
        assert session["audio"]["format"] == PCMU
        assert session["audio"]["output"]["voice"] == "marin"
        assert session["status"] == "active"
        assert session["expires_at"] >= time.time() + 3500
        await live_client.send("session.start", session=session_config())
        assert (await live_client.until("error"))["error"]["code"] == "session_already_started"
        # session.update takes delegation settings only: the voice is fixed for the session.
        await live_client.send(
            "session.update", check=False, session={"audio": {"output": {"voice": "cedar"}}}
        )
        assert (await live_client.until("error"))["error"]["code"] == "unknown_parameter"

    connection = live_standin.live_connections[0]
    assert connection.received_types()[0] == "session.input_audio.append"
    assert_all_sdk_valid(connection)


async def test_the_greeting_is_said_word_for_word_on_a_continuous_real_time_track(
    live_client: LiveClient, live_standin: RealtimeStandIn
):
    greeting = "Hello, thanks for calling Acme. How can I help?"
    async with asyncio.timeout(15):
        await live_client.start()
        began = time.monotonic()
        await live_client.send(
            "session.commentary.append",
            event_id="evt_greet",
            content=f'Greet the caller now with: "{greeting}"',
            delegation_id=None,
        )
        # The caller's line is open and quiet (Twilio sends its silence too) for 4 s.
        await live_client.stream(ulaw_encode(silence(4.0)))
        elapsed_ms = (time.monotonic() - began) * 1000

    appended = live_client.of_type("session.commentary.appended")
    assert appended[0]["client_event_id"] == "evt_greet"
    assert live_client.text("session.output_transcript.delta") == greeting
    # One track, paced at real time: as much audio as time went by (to within a few chunks).
    assert abs(live_client.output_ms() - elapsed_ms) < 200
    assert all(
        "event_id" not in e and "start_ms" not in e
        for e in live_client.of_type("session.output_audio.delta")
    )
    connection = live_standin.live_connections[0]
    [utterance] = connection.utterances
    assert utterance.text == greeting and utterance.words_said == len(greeting.split())
    # Speech within the track, silence around it.
    track = bytes(connection.output_audio)
    assert track[:80] == b"\xff" * 80
    start = round(utterance.track_ms * 8)
    assert track[start : start + 8000] != b"\xff" * 8000
    deltas = live_client.of_type("session.output_transcript.delta")
    assert deltas[0]["start_ms"] == round(utterance.start_ms)
    assert deltas[-1]["end_ms"] <= connection.output_ms
    assert_all_sdk_valid(connection)


async def test_a_caller_turn_gets_a_timed_transcript_then_a_reply_after_the_pause(
    live_client: LiveClient, live_standin: RealtimeStandIn
):
    async with asyncio.timeout(20):
        await live_client.start()
        await live_client.stream(caller_turn(1.5, lead_s=0.5, tail_s=0.5))
        await live_client.stream(ulaw_encode(silence(4.5)))

    caller = live_client.of_type("session.input_transcript.delta")
    assert "".join(e["delta"] for e in caller) == DEFAULT_CALLER_LINES[0]
    # Timed on the session timeline: the speech ran from about 0.5 s to 2.0 s of input.
    assert 400 <= caller[0]["start_ms"] <= 600
    assert 1900 <= caller[-1]["end_ms"] <= 2100
    assert [e["start_ms"] for e in caller] == sorted(e["start_ms"] for e in caller)
    agent = live_client.of_type("session.output_transcript.delta")
    assert "".join(e["delta"] for e in agent) == DEFAULT_REPLIES[0].text
    # The reply comes after the caller's pause: the turn ends 500 ms into the silence, then
    # the model's delay (200 ms here).
    assert agent[0]["start_ms"] >= caller[-1]["end_ms"] + 500 + 150
    connection = live_standin.live_connections[0]
    assert [t.text for t in connection.caller_turns] == [DEFAULT_CALLER_LINES[0]]
    assert_all_sdk_valid(connection)


async def test_talking_over_a_reply_stops_it_and_its_transcript(
    live_client: LiveClient, live_standin: RealtimeStandIn
):
    async with asyncio.timeout(20):
        await live_client.start()
        await live_client.stream(caller_turn(1.0, lead_s=0.3, tail_s=0.5))
        # The reply (2.4 s) starts about 0.2 s into this silence; the caller cuts in at 1.0 s.
        await live_client.stream(ulaw_encode(silence(1.0)))
        await live_client.stream(b"".join(ulaw_encode(p) for p in (speech(1.0, seed=9),)))
        await live_client.stream(ulaw_encode(silence(4.0)))

    connection = live_standin.live_connections[0]
    first, second = connection.utterances[:2]
    assert first.interrupted
    assert first.played_ms < first.seconds * 1000 - 500
    assert 0 < first.words_said < len(first.text.split())
    said = live_client.text("session.output_transcript.delta")
    assert said.startswith(first.said) and DEFAULT_REPLIES[0].text not in said
    # What the transcript says was played: its last word ends within the audio sent.
    first_words = live_client.of_type("session.output_transcript.delta")[: first.words_said]
    assert first_words[-1]["end_ms"] <= first.start_ms + first.played_ms + 1
    # The caller's second turn got the next scripted reply, whole.
    assert second.text == DEFAULT_REPLIES[1].text and not second.interrupted
    assert len(connection.caller_turns) == 2
    assert_all_sdk_valid(connection)


async def test_a_tool_call_goes_through_delegation_and_is_answered(live_standin: RealtimeStandIn):
    live_standin.tool_calls = (
        ScriptedToolCall("lookup_order", {"order": "427"}, at_turn=1, say_first="One moment."),
    )
    async with (
        asyncio.timeout(20),
        connect(live_standin.live_url, additional_headers={"Authorization": "Bearer k"}) as ws,
    ):
        client = LiveClient(ws)
        await client.start(delegation=responses_delegation(LOOKUP))
        await client.stream(caller_turn(1.0, lead_s=0.3, tail_s=0.5))
        await client.stream(ulaw_encode(silence(1.0)))
        created = client.of_type("session.delegation.created")
        assert len(created) == 1 and created[0]["delegation"]["target"] == "responses"
        nested = [e["event"] for e in client.of_type("response.event")]
        [call] = [
            e["item"]
            for e in nested
            if e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"
        ]
        assert call["name"] == "lookup_order" and call["arguments"] == '{"order":"427"}'
        # The response must wait for every open call's output.
        await client.send("response.create", event_id="evt_early")
        early = await client.until("error")
        assert early["client_event_id"] == "evt_early"
        await client.send(
            "response.item.create",
            item={"type": "function_call_output", "call_id": call["call_id"], "output": "Friday"},
        )
        await client.send("response.create")
        await client.stream(ulaw_encode(silence(3.5)))

    connection = live_standin.live_connections[0]
    assert [o["output"] for o in connection.function_outputs] == ["Friday"]
    assert len(connection.protocol_problems) == 1 and "evt_early" in connection.protocol_problems[0]
    assert [u.text for u in connection.utterances] == ["One moment.", DEFAULT_TOOL_REPLY]
    nested = [e["event"] for e in client.of_type("response.event")]
    completed = [e for e in nested if e["type"] == "response.completed"]
    assert len(completed) == 2 and all(e["response"]["usage"]["total_tokens"] for e in completed)
    texts = [e["text"] for e in nested if e["type"] == "response.output_text.done"]
    assert texts == [DEFAULT_TOOL_REPLY]
    assert client.text("session.output_transcript.delta") == f"One moment. {DEFAULT_TOOL_REPLY}"
    assert all(
        e["delegation_id"] == created[0]["delegation"]["id"]
        for e in client.of_type("response.event")
    )
    assert_all_sdk_valid(connection)


async def test_usage_updates_then_expiry_closes_the_session():
    options = LiveOptions(usage_interval_s=0.5, session_limit_s=1.6)
    async with (
        asyncio.timeout(10),
        RealtimeStandIn(live=options) as standin,
        connect(standin.live_url, additional_headers={"Authorization": "Bearer k"}) as ws,
    ):
        client = LiveClient(ws)
        began = time.monotonic()
        started = await client.start()
        with pytest.raises(ConnectionClosed):
            while True:
                await client.next_event()
        elapsed = time.monotonic() - began

    assert started["session"]["expires_at"] <= time.time() + 2
    usage = [e["usage"]["seconds"] for e in client.of_type("session.usage.updated")]
    assert len(usage) == 3 and usage == sorted(usage)
    closed = client.events[-1]
    assert closed["type"] == "session.closed" and closed["reason"] == "expired"
    assert closed["usage"]["seconds"] == 2
    assert 1.5 <= elapsed < 3
    connection = standin.live_connections[0]
    assert (connection.closed_reason, connection.close_code) == ("expired", 1000)
    assert_all_sdk_valid(connection)


async def test_session_close_ends_with_session_closed(
    live_client: LiveClient, live_standin: RealtimeStandIn
):
    async with asyncio.timeout(10):
        await live_client.start()
        await live_client.send("session.close", event_id="evt_bye")
        closed = await live_client.until("session.closed")
        with pytest.raises(ConnectionClosed):
            await live_client.next_event()

    assert closed["reason"] == "close_requested" and closed["client_event_id"] == "evt_bye"
    connection = live_standin.live_connections[0]
    assert connection.closed_reason == "close_requested"
    assert live_client.ws.close_code == 1000
    assert_all_sdk_valid(connection)


async def test_echo_mode_sends_each_frame_straight_back():
    async with (
        asyncio.timeout(10),
        RealtimeStandIn(echo=True) as standin,
        connect(standin.live_url, additional_headers={"Authorization": "Bearer k"}) as ws,
    ):
        client = LiveClient(ws)
        await client.start()
        frames = [bytes([n]) * 160 for n in range(5)]
        for frame in frames:
            await client.send("session.input_audio.append", audio=base64.b64encode(frame).decode())
        echoed = [await client.until("session.output_audio.delta") for _ in frames]

    assert [base64.b64decode(e["delta"]) for e in echoed] == frames
    assert bytes(standin.live_connections[0].output_audio) == b"".join(frames)
