"""OpenAIRealtimeSession against a scripted Realtime service on a real loopback socket.

The scripted service answers the handshake, confirms session.update, records every client event
per connection and lets each test drop, expire, stall or refuse connections. Every test runs
under a timeout and stops by itself.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import math
import random
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from support import free_port
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from audio.convert import OpenAIPcmToTwilio, TwilioToOpenAIPcm
from realtime.client import OpenAIRealtimeSession
from realtime.model import (
    AgentConfig,
    AgentTranscriptDone,
    AudioDelta,
    CallerTranscriptDone,
    CallerTranscriptFailed,
    ContextItem,
    Disconnected,
    ModelEvent,
    ModelUnavailable,
    RealtimeSettings,
    ResponseDone,
    ResponseStarted,
    SessionFailed,
    SessionReady,
    SpeechStarted,
    SpeechStopped,
)

# Shaped so the project's log redaction (sk-..., Bearer <16+ token chars>) does not recognise it:
# the no-key-in-logs test must hold because of the client, not because of that filter.
API_KEY = "test:key:do:not:log"
TEST_TIMEOUT_S = 10.0
# The scripted service logs what it receives (the key too, at DEBUG); it is not under test.
SERVICE_LOGGER = logging.getLogger("tests.scripted_realtime")
# 20 ms of Twilio audio: 160 mu-law bytes.
FRAME = base64.b64encode(bytes((i * 37) % 256 for i in range(160))).decode()


# --- the scripted service -----------------------------------------------------------------------


@dataclass
class Peer:
    """One client connection as the service sees it."""

    ws: ServerConnection
    inbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    binary_frames: int = 0

    @property
    def request(self) -> Request:
        assert self.ws.request is not None
        return self.ws.request

    async def next(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(event).decode())


class ScriptedRealtime:
    """Enough of the Realtime service to exercise the client: handshake, session.update, faults."""

    def __init__(self, *, reject_status: int | None = None, hang_up_when_configured: bool = False):
        self.reject_status = reject_status
        self.hang_up_when_configured = hang_up_when_configured
        self.handshakes: list[Request] = []
        self.peers: asyncio.Queue[Peer] = asyncio.Queue()
        self._server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    async def __aenter__(self) -> ScriptedRealtime:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._check,
            close_timeout=0.5,
            logger=SERVICE_LOGGER,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes.append(request)
        if self.reject_status is not None:
            return connection.respond(self.reject_status, "scripted refusal\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        peer = Peer(ws)
        self.peers.put_nowait(peer)
        try:
            await peer.send({"type": "session.created", "event_id": "ev_c", "session": {}})
            async for message in ws:
                if isinstance(message, bytes):
                    peer.binary_frames += 1
                event = orjson.loads(message)
                peer.inbox.put_nowait(event)
                if event["type"] == "session.update":
                    await peer.send(
                        {"type": "session.updated", "event_id": "ev_u", "session": event["session"]}
                    )
                    if self.hang_up_when_configured:
                        await ws.close(1011, "scripted hang-up")
                        return
        except ConnectionClosed:
            pass


# --- helpers ------------------------------------------------------------------------------------


def make_settings(url: str, **overrides: Any) -> RealtimeSettings:
    """Deployment settings for the scripted service; agent fields go to its AgentConfig."""
    agent_fields = {f.name for f in dataclasses.fields(AgentConfig)}
    fields: dict[str, Any] = {
        "url": url,
        "api_key": API_KEY,
        "max_reconnects": 3,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.02,
        "connect_timeout_s": 2.0,
    }
    fields.update({k: v for k, v in overrides.items() if k not in agent_fields})
    agent = AgentConfig(**{k: v for k, v in overrides.items() if k in agent_fields})
    return RealtimeSettings(agent=agent, **fields)


def no_context() -> list[ContextItem]:
    return []


class RecordingRandom(random.Random):
    """Seeded jitter that remembers each backoff ceiling it was asked for."""

    def __init__(self) -> None:
        super().__init__(7)
        self.ceilings: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        self.ceilings.append(b)
        return super().uniform(a, b)


async def expect_types(peer: Peer, *types: str) -> list[dict[str, Any]]:
    events = [await peer.next() for _ in types]
    assert [event["type"] for event in events] == list(types)
    return events


async def events_until(events: AsyncIterator[ModelEvent], last: type) -> list[ModelEvent]:
    seen: list[ModelEvent] = []
    async for event in events:
        seen.append(event)
        if type(event) is last:
            return seen
    raise AssertionError(f"events ended before {last.__name__}: {seen}")


def output_ids(item_id: str = "item_A") -> dict[str, Any]:
    return {
        "event_id": "ev",
        "item_id": item_id,
        "response_id": "resp_1",
        "output_index": 0,
        "content_index": 0,
    }


def pcm16_tone_b64(samples: int, start: int) -> str:
    """A 440 Hz tone at 24 kHz as base64 PCM16, continuing from sample `start`."""
    values = (int(8000 * math.sin(2 * math.pi * 440 * (start + n) / 24000)) for n in range(samples))
    return base64.b64encode(struct.pack(f"<{samples}h", *values)).decode()


# --- connecting ---------------------------------------------------------------------------------


async def test_connect_authenticates_and_configures_the_session() -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime() as service:
        session = OpenAIRealtimeSession(make_settings(service.url), no_context)
        await session.connect()
        peer = await service.peers.get()
        assert peer.request.path == "/v1/realtime?model=gpt-realtime"
        assert peer.request.headers["Authorization"] == f"Bearer {API_KEY}"
        assert "OpenAI-Beta" not in peer.request.headers
        (update,) = await expect_types(peer, "session.update")
        assert update["session"]["type"] == "realtime"
        assert update["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        events = session.events()
        assert await anext(events) == SessionReady(reconnect_attempt=0)
        await session.close()
        assert [event async for event in events] == []


async def test_debug_logging_does_not_reveal_the_api_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime() as service:
        session = OpenAIRealtimeSession(make_settings(service.url), no_context)
        await session.connect()
        await session.close()
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime(reject_status=503) as service:
        session = OpenAIRealtimeSession(make_settings(service.url, max_reconnects=1), no_context)
        with pytest.raises(ModelUnavailable) as failure:
            await session.connect()
    leaks = {r.name for r in caplog.records if API_KEY in r.getMessage()}
    # The service side logs the header it received: proof that a leak would be captured here.
    assert leaks == {SERVICE_LOGGER.name}
    assert API_KEY not in str(failure.value)


async def test_nothing_listening_is_unavailable_after_every_retry() -> None:
    rng = RecordingRandom()
    url = f"ws://127.0.0.1:{free_port()}/v1/realtime"
    session = OpenAIRealtimeSession(make_settings(url, max_reconnects=3), no_context, rng=rng)
    async with asyncio.timeout(TEST_TIMEOUT_S):
        with pytest.raises(ModelUnavailable) as failure:
            await session.connect()
    # One first try plus three retries, after full-jitter pauses capped at backoff_max_s.
    assert rng.ceilings == [0.01, 0.02, 0.02]
    assert str(failure.value)


async def test_overloaded_service_is_retried_then_unavailable() -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime(reject_status=503) as service:
        session = OpenAIRealtimeSession(make_settings(service.url, max_reconnects=2), no_context)
        with pytest.raises(ModelUnavailable, match="HTTP 503"):
            await session.connect()
        assert len(service.handshakes) == 3


async def test_rejected_key_is_not_retried() -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime(reject_status=401) as service:
        session = OpenAIRealtimeSession(make_settings(service.url), no_context)
        with pytest.raises(ModelUnavailable, match="HTTP 401"):
            await session.connect()
        assert len(service.handshakes) == 1


# --- audio and events ---------------------------------------------------------------------------


async def test_pcmu_audio_passes_through_untouched_both_ways() -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime() as service:
        session = OpenAIRealtimeSession(make_settings(service.url), no_context)
        await session.connect()
        peer = await service.peers.get()
        await expect_types(peer, "session.update")
        events = session.events()
        assert await anext(events) == SessionReady()

        await session.send_audio(FRAME)
        (append,) = await expect_types(peer, "input_audio_buffer.append")
        assert append == {"type": "input_audio_buffer.append", "audio": FRAME}
        assert peer.binary_frames == 0  # the service wants JSON in text frames

        agent_audio = base64.b64encode(bytes(range(256)) * 3).decode()
        await peer.send(
            {
                "type": "response.created",
                "event_id": "ev",
                "response": {"id": "resp_1", "status": "in_progress"},
            }
        )
        await peer.send(
            {"type": "response.output_audio.delta", "delta": agent_audio, **output_ids()}
        )
        await peer.send({"type": "response.output_audio.done", **output_ids()})
        await peer.send({"type": "rate_limits.updated", "event_id": "ev", "rate_limits": []})
        await peer.send(
            {"type": "response.output_audio_transcript.done", "transcript": "Hi!", **output_ids()}
        )
        await peer.send(
            {
                "type": "input_audio_buffer.speech_started",
                "event_id": "ev",
                "item_id": "item_U",
                "audio_start_ms": 640,
            }
        )
        await peer.send(
            {
                "type": "response.done",
                "event_id": "ev",
                "response": {"id": "resp_1", "status": "completed", "usage": None},
            }
        )
        assert await events_until(events, ResponseDone) == [
            ResponseStarted(response_id="resp_1"),
            AudioDelta(item_id="item_A", response_id="resp_1", audio_b64=agent_audio),
            AgentTranscriptDone(item_id="item_A", response_id="resp_1", text="Hi!"),
            SpeechStarted(item_id="item_U", audio_start_ms=640),
            ResponseDone(response_id="resp_1", status="completed"),
        ]
        await session.close()


async def test_commands_reach_the_service() -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime() as service:
        session = OpenAIRealtimeSession(make_settings(service.url), no_context)
        await session.connect()
        peer = await service.peers.get()
        await expect_types(peer, "session.update")

        await session.send_text("The caller pressed 5 on the keypad.")
        await session.truncate("item_A", 1840)
        await session.cancel_response()
        item, _, truncate, _ = await expect_types(
            peer,
            "conversation.item.create",
            "response.create",
            "conversation.item.truncate",
            "response.cancel",
        )
        assert item["item"]["role"] == "user"
        assert item["item"]["content"] == [
            {"type": "input_text", "text": "The caller pressed 5 on the keypad."}
        ]
        assert truncate == {
            "type": "conversation.item.truncate",
            "item_id": "item_A",
            "content_index": 0,
            "audio_end_ms": 1840,
        }
        await session.close()


async def test_caller_audio_sent_while_connecting_reaches_the_session_first() -> None:
    """The bridge sends caller audio before connect() returns (it keeps reading the media
    stream while the model connects): the session gets that audio before any live frame, and
    says how much, so the bridge can place the session's audio clock."""
    early, late, live = _frame(4), _frame(5), _frame(6)
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime() as service:
        session = OpenAIRealtimeSession(make_settings(service.url), no_context)
        await session.send_audio(early)
        connecting = asyncio.create_task(session.connect())
        await session.send_audio(late)
        await connecting
        await session.send_audio(live)
        peer = await service.peers.get()
        _, *appends = await expect_types(
            peer,
            "session.update",
            "input_audio_buffer.append",
            "input_audio_buffer.append",
            "input_audio_buffer.append",
        )
        assert [event["audio"] for event in appends] == [early, late, live]
        assert await anext(session.events()) == SessionReady(replayed_audio_ms=40.0)
        assert session.audio_dropped_frames == 0
        await session.close()


async def test_end_of_turn_takes_off_the_closing_silence_and_failures_are_events() -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime() as service:
        settings = make_settings(service.url, vad_silence_duration_ms=650)
        session = OpenAIRealtimeSession(settings, no_context)
        await session.connect()
        peer = await service.peers.get()
        await expect_types(peer, "session.update")
        events = session.events()
        await anext(events)
        await session.commit_audio()
        await expect_types(peer, "input_audio_buffer.commit")
        await peer.send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 2650, "item_id": "it_1"}
        )
        await peer.send(
            {
                "type": "conversation.item.input_audio_transcription.failed",
                "item_id": "it_1",
                "content_index": 0,
                "error": {"type": "transcription_error", "message": "Could not transcribe."},
            }
        )
        assert await events_until(events, CallerTranscriptFailed) == [
            SpeechStopped(item_id="it_1", audio_end_ms=2650, speech_end_ms=2000),
            CallerTranscriptFailed(item_id="it_1", message="Could not transcribe."),
        ]
        await session.close()


async def test_pcm_mode_converts_caller_and_agent_audio() -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime() as service:
        settings = make_settings(service.url, audio_format="audio/pcm")
        session = OpenAIRealtimeSession(settings, no_context)
        await session.connect()
        peer = await service.peers.get()
        (update,) = await expect_types(peer, "session.update")
        pcm = {"type": "audio/pcm", "rate": 24000}
        assert update["session"]["audio"]["input"]["format"] == pcm
        assert update["session"]["audio"]["output"]["format"] == pcm

        # Caller side: what reaches the service is exactly the streaming conversion, and every
        # 160-byte mu-law frame is 480 PCM16 samples (960 bytes) at 24 kHz once the filter drains.
        frames = [
            base64.b64encode(bytes((i * 11 + n * 37) % 256 for n in range(160))).decode()
            for i in range(25)
        ]
        for frame in frames:
            await session.send_audio(frame)
        reference = TwilioToOpenAIPcm()
        expected = b"".join(base64.b64decode(reference.convert(frame)) for frame in frames)
        received = b""
        while len(received) < len(expected):
            event = await peer.next()
            assert event["type"] == "input_audio_buffer.append"
            received += base64.b64decode(event["audio"])
        assert received == expected
        assert len(expected) + len(base64.b64decode(reference.flush())) == 25 * 960

        # Agent side: 24 kHz PCM16 deltas come out as mu-law 8 kHz, the tail flushed at done.
        deltas = [pcm16_tone_b64(480, 480 * i) for i in range(5)]
        events = session.events()
        assert await anext(events) == SessionReady()
        for delta in deltas:
            await peer.send({"type": "response.output_audio.delta", "delta": delta, **output_ids()})
        await peer.send({"type": "response.output_audio.done", **output_ids()})
        await peer.send({"type": "response.done", "event_id": "ev", "response": {"id": "resp_1"}})
        seen = await events_until(events, ResponseDone)
        audio = [event for event in seen if isinstance(event, AudioDelta)]
        assert {(event.item_id, event.response_id) for event in audio} == {("item_A", "resp_1")}
        to_twilio = OpenAIPcmToTwilio()
        want = b"".join(base64.b64decode(to_twilio.convert(delta)) for delta in deltas)
        want += base64.b64decode(to_twilio.flush())
        got = b"".join(base64.b64decode(event.audio_b64) for event in audio)
        assert got == want
        assert len(got) == 5 * 160
        await session.close()


async def test_beta_mode_speaks_the_beta_protocol() -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime() as service:
        session = OpenAIRealtimeSession(make_settings(service.url, protocol="beta"), no_context)
        await session.connect()
        peer = await service.peers.get()
        assert peer.request.headers["OpenAI-Beta"] == "realtime=v1"
        assert peer.request.headers["Authorization"] == f"Bearer {API_KEY}"
        (update,) = await expect_types(peer, "session.update")
        assert update["session"]["input_audio_format"] == "g711_ulaw"
        assert update["session"]["output_audio_format"] == "g711_ulaw"
        assert "type" not in update["session"]

        events = session.events()
        assert await anext(events) == SessionReady()
        await peer.send({"type": "response.audio.delta", "delta": FRAME, **output_ids()})
        # The GA name means nothing on a beta session.
        await peer.send({"type": "response.output_audio.delta", "delta": "AAAA", **output_ids()})
        await peer.send(
            {"type": "response.audio_transcript.done", "transcript": "Hello.", **output_ids()}
        )
        await peer.send({"type": "response.done", "event_id": "ev", "response": {"id": "resp_1"}})
        assert await events_until(events, ResponseDone) == [
            AudioDelta(item_id="item_A", response_id="resp_1", audio_b64=FRAME),
            AgentTranscriptDone(item_id="item_A", response_id="resp_1", text="Hello."),
            ResponseDone(response_id="resp_1", status="unknown"),
        ]
        await session.close()


# --- drops and reconnects -----------------------------------------------------------------------


async def test_drop_reconnects_reconfigures_and_replays_the_conversation() -> None:
    conversation = [
        ContextItem(role="user", text="Where is my order?"),
        ContextItem(role="assistant", text="It ships on Friday."),
        ContextItem(role="user", text="Thanks."),
    ]
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime() as service:
        # Without the caller-audio backlog (tested below), audio sent while down is lost.
        settings = make_settings(service.url, replay_audio_s=0)
        session = OpenAIRealtimeSession(settings, lambda: list(conversation))
        await session.connect()
        first = await service.peers.get()
        await expect_types(first, "session.update")
        events = session.events()
        assert await anext(events) == SessionReady()

        first.ws.transport.abort()  # a network drop: no close frame
        dropped = await anext(events)
        assert isinstance(dropped, Disconnected)
        assert dropped.reason
        # The session is down until the consumer asks for the next event.
        await session.send_audio(FRAME)
        await session.send_text("lost")
        assert session.audio_dropped_frames == 1

        assert await anext(events) == SessionReady(reconnect_attempt=1)
        assert session.reconnects == 1
        second = await service.peers.get()
        update, *replayed = await expect_types(
            second,
            "session.update",
            "conversation.item.create",
            "conversation.item.create",
            "conversation.item.create",
        )
        assert update["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        assert [event["item"]["role"] for event in replayed] == ["user", "assistant", "user"]
        assert [event["item"]["content"] for event in replayed] == [
            [{"type": "input_text", "text": "Where is my order?"}],
            [{"type": "output_text", "text": "It ships on Friday."}],
            [{"type": "input_text", "text": "Thanks."}],
        ]
        # No response.create after the replay: the next thing the service sees is caller audio.
        await session.send_audio(FRAME)
        await expect_types(second, "input_audio_buffer.append")
        await session.close()


def _frame(fill: int) -> str:
    return base64.b64encode(bytes([fill]) * 160).decode()


async def test_untranscribed_caller_audio_is_replayed_into_the_new_session() -> None:
    heard, unheard, while_down = _frame(1), _frame(2), _frame(3)
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime() as service:
        session = OpenAIRealtimeSession(make_settings(service.url), no_context)
        await session.connect()
        first = await service.peers.get()
        await expect_types(first, "session.update")
        events = session.events()
        assert await anext(events) == SessionReady()

        # A turn the service heard and transcribed: it leaves the backlog.
        await session.send_audio(heard)
        await expect_types(first, "input_audio_buffer.append")
        await first.send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 20, "item_id": "it_1"}
        )
        await first.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": "it_1",
                "content_index": 0,
                "transcript": "Hello.",
            }
        )
        await events_until(events, CallerTranscriptDone)
        # Then the caller goes on speaking, and the socket drops mid-turn.
        await session.send_audio(unheard)
        await expect_types(first, "input_audio_buffer.append")
        first.ws.transport.abort()
        assert isinstance(await anext(events), Disconnected)
        await session.send_audio(while_down)

        # The new session hears the cut turn again, then what was said while it was down,
        # before any live audio; its audio clock starts 40 ms before the next live frame.
        assert await anext(events) == SessionReady(reconnect_attempt=1, replayed_audio_ms=40.0)
        second = await service.peers.get()
        _, *appends = await expect_types(
            second, "session.update", "input_audio_buffer.append", "input_audio_buffer.append"
        )
        assert [event["audio"] for event in appends] == [unheard, while_down]
        assert (session.audio_replayed_frames, session.audio_dropped_frames) == (2, 0)
        await session.close()


async def test_session_expiry_reconnects_without_surfacing_an_error() -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime() as service:
        session = OpenAIRealtimeSession(make_settings(service.url), no_context)
        await session.connect()
        first = await service.peers.get()
        events = session.events()
        assert await anext(events) == SessionReady()
        await first.send(
            {
                "type": "error",
                "event_id": "ev",
                "error": {
                    "type": "invalid_request_error",
                    "code": "session_expired",
                    "message": "Your session hit the maximum duration of 60 minutes.",
                },
            }
        )
        await first.ws.close(1001, "session expired")
        assert await anext(events) == Disconnected(reason="session expired")
        assert await anext(events) == SessionReady(reconnect_attempt=1)
        second = await service.peers.get()
        await expect_types(second, "session.update")
        await session.close()


async def test_stalled_service_is_noticed_by_keepalive() -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime() as service:
        session = OpenAIRealtimeSession(
            make_settings(service.url), no_context, ping_interval_s=0.1, ping_timeout_s=0.2
        )
        await session.connect()
        first = await service.peers.get()
        events = session.events()
        assert await anext(events) == SessionReady()
        first.ws.transport.pause_reading()  # a hung service: reads nothing, answers no ping
        try:
            dropped = await anext(events)
            assert isinstance(dropped, Disconnected)
            assert "keepalive" in dropped.reason
            assert await anext(events) == SessionReady(reconnect_attempt=1)
        finally:
            first.ws.transport.abort()
        await session.close()


async def test_repeated_drops_exhaust_the_retries() -> None:
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        ScriptedRealtime(hang_up_when_configured=True) as service,
    ):
        session = OpenAIRealtimeSession(make_settings(service.url, max_reconnects=2), no_context)
        await session.connect()
        seen = [event async for event in session.events()]
        kinds = [type(event) for event in seen]
        assert kinds == [
            SessionReady,
            Disconnected,
            SessionReady,
            Disconnected,
            SessionReady,
            Disconnected,
            SessionFailed,
        ]
        assert [e.reconnect_attempt for e in seen if isinstance(e, SessionReady)] == [0, 1, 2]
        assert "1011" in seen[1].reason
        assert len(service.handshakes) == 3
        assert session.reconnects == 2


async def test_service_gone_after_a_drop_fails_the_session() -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime() as service:
        session = OpenAIRealtimeSession(make_settings(service.url, max_reconnects=2), no_context)
        await session.connect()
        events = session.events()
        assert await anext(events) == SessionReady()
        await service.stop()  # closes the socket (1001) and stops listening
        dropped = await anext(events)
        assert isinstance(dropped, Disconnected)
        failed = await anext(events)
        assert isinstance(failed, SessionFailed)
        assert "2 reconnect attempt(s) failed" in failed.reason
        assert [event async for event in events] == []
        assert len(service.handshakes) == 1
        await session.send_audio(FRAME)
        assert session.audio_dropped_frames == 1


async def test_close_ends_events_without_a_disconnect() -> None:
    async with asyncio.timeout(TEST_TIMEOUT_S), ScriptedRealtime() as service:
        session = OpenAIRealtimeSession(make_settings(service.url), no_context)
        await session.connect()
        seen: list[ModelEvent] = []
        first_event = asyncio.Event()

        async def consume() -> None:
            async for event in session.events():
                seen.append(event)
                first_event.set()

        consumer = asyncio.create_task(consume())
        await first_event.wait()
        await session.close()
        await consumer
        assert seen == [SessionReady()]
        # After close everything is dropped quietly, and closing again is harmless.
        await session.send_audio(FRAME)
        await session.send_text("ignored")
        await session.truncate("item_A", 10)
        await session.cancel_response()
        await session.close()
        assert session.audio_dropped_frames == 1
