"""The stand-in keeps the service's timing and shapes (issue 20): transcription beside the
response, the model's delays, audio deltas that are not whole milliseconds, cut replies without
transcript.done, cached tokens split text/audio, and a client commit ending an open turn.

Every event it sends here is checked against the `openai` SDK's server event types. Loopback
only; every test is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from sim_support import (
    RealtimeClient,
    assert_all_sdk_valid,
    caller_turn,
    of_type,
    until_all,
)
from websockets.asyncio.client import connect

from audio.convert import pcm16_to_bytes
from audio.g711 import ulaw_encode
from simulator.openai import protocol as rt
from simulator.openai.standin import DEFAULT_CALLER_LINES, DEFAULT_REPLIES, RealtimeStandIn
from simulator.openai.timing import chunk_sizes, connection_rng, delay_range
from simulator.speech import silence, speech

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

TRANSCRIPTION = "conversation.item.input_audio_transcription"


@pytest.fixture
async def standin() -> AsyncIterator[RealtimeStandIn]:
    """The service's timing as shipped (only the replies stream faster, to keep tests short)."""
    async with RealtimeStandIn(speed=8.0) as server:
        yield server


# --- helpers --------------------------------------------------------------------------------


class Timed:
    """Reads a client's events, noting when each arrived (from those it reads itself on)."""

    def __init__(self, client: RealtimeClient) -> None:
        self.client = client
        self.start = len(client.events)
        self.at: list[float] = []

    async def until(self, event_type: str) -> dict[str, Any]:
        while True:
            event = await self.client.next_event()
            self.at.append(time.monotonic())
            if event["type"] == event_type:
                return event

    def when(self, event_type: str, item_id: str | None = None) -> float:
        for event, at in zip(self.client.events[self.start :], self.at, strict=True):
            if event["type"] == event_type and item_id in (None, event.get("item_id")):
                return at
        raise AssertionError(f"no {event_type}")


def delta_sizes(client: RealtimeClient, event_type: str) -> list[int]:
    return [len(base64.b64decode(e["delta"])) for e in of_type(client, event_type)]


async def beta_pcmu(client: RealtimeClient, model: str = "whisper-1") -> None:
    await client.send(
        "session.update",
        session={
            "input_audio_format": "g711_ulaw",
            "output_audio_format": "g711_ulaw",
            "input_audio_transcription": {"model": model},
        },
    )
    await client.until("session.updated")


# --- a whole turn, GA and beta --------------------------------------------------------------


async def test_a_ga_turn_is_sdk_valid_and_timed_like_the_service(
    realtime_connect, standin: RealtimeStandIn
):
    async with asyncio.timeout(20):
        client = await realtime_connect()
        await client.use_pcmu()
        timed = Timed(client)
        await client.append(caller_turn(1.5, lead_s=0.5, tail_s=1.0))
        await timed.until("response.done")
        if not of_type(client, f"{TRANSCRIPTION}.completed"):
            await timed.until(f"{TRANSCRIPTION}.completed")
    done = of_type(client, "response.done")[0]

    assert_all_sdk_valid(standin.connections[0])
    types = [e["type"] for e in client.events]
    stopped = of_type(client, "input_audio_buffer.speech_stopped")[0]
    item_id = stopped["item_id"]
    # audio_end_ms counts the 500 ms of silence that closed the turn (speech ended at 2.0 s).
    assert abs(stopped["audio_end_ms"] - 2500) <= 30

    # The model's delays: created 50-150 ms after speech_stopped, audio 250-600 ms later.
    # Lower bounds are exact (a sleep is never short); upper ones leave room for a busy box.
    created_after = timed.when("response.created") - timed.when("input_audio_buffer.speech_stopped")
    audio_after = timed.when("response.output_audio.delta") - timed.when("response.created")
    assert 0.045 <= created_after < 0.15 + 0.25
    assert 0.245 <= audio_after < 0.6 + 0.25

    # The transcription runs beside the response: 0.3-1.5 s after the commit, after
    # response.created, its deltas adding up to the transcript.
    completed = of_type(client, f"{TRANSCRIPTION}.completed")[0]
    assert completed["item_id"] == item_id
    assert completed["transcript"] == DEFAULT_CALLER_LINES[0]
    transcribed_after = timed.when(f"{TRANSCRIPTION}.completed") - timed.when(
        "input_audio_buffer.committed"
    )
    assert 0.295 <= transcribed_after < 1.5 + 0.5
    assert types.index(f"{TRANSCRIPTION}.completed") > types.index("response.created")
    deltas = of_type(client, f"{TRANSCRIPTION}.delta")
    assert deltas and all(d["item_id"] == item_id for d in deltas)
    assert "".join(d["delta"] for d in deltas) == completed["transcript"]
    assert types.index(f"{TRANSCRIPTION}.delta") < types.index(f"{TRANSCRIPTION}.completed")
    # gpt-4o-mini-transcribe bills by tokens (whisper-1 by duration, below).
    assert completed["usage"]["type"] == "tokens"
    assert completed["usage"]["input_token_details"]["audio_tokens"] == 25  # 2.5 s

    # Audio deltas near 100 ms (800 bytes of mu-law) but never whole ms (8 bytes), and the
    # reply as long as ever.
    sizes = delta_sizes(client, "response.output_audio.delta")
    assert sum(sizes) == DEFAULT_REPLIES[0].seconds * 8000
    assert all(size % 8 for size in sizes[:-1])
    assert all(abs(size - 800) <= 7 for size in sizes[:-1])

    # A reply that ran to its end keeps transcript.done and content_part.done.
    assert of_type(client, "response.output_audio_transcript.done")[0]["transcript"] == (
        DEFAULT_REPLIES[0].text
    )
    assert of_type(client, "response.content_part.done")
    assert done["response"]["status"] == "completed"
    assert done["response"]["output"][0]["status"] == "completed"


async def test_a_beta_turn_in_pcm16_is_sdk_valid(realtime_connect, standin: RealtimeStandIn):
    async with asyncio.timeout(20):
        client = await realtime_connect(beta=True)
        await client.until("session.created")
        await client.send(
            "session.update", session={"input_audio_transcription": {"model": "whisper-1"}}
        )
        await client.until("session.updated")
        pcm = np.concatenate([silence(0.3, 24000), speech(1.0, rate=24000), silence(0.6, 24000)])
        await client.append(pcm16_to_bytes(pcm), frame_bytes=960)
        await until_all(client, "response.done", f"{TRANSCRIPTION}.completed")
    done = of_type(client, "response.done")[0]

    assert_all_sdk_valid(standin.connections[0])
    # PCM16 at 24 kHz: whole samples (even byte counts), but not whole ms (48 bytes).
    sizes = delta_sizes(client, "response.audio.delta")
    assert sum(sizes) == DEFAULT_REPLIES[0].seconds * 24000 * 2
    assert all(size % 2 == 0 for size in sizes)
    assert all(size % 48 for size in sizes[:-1])
    # whisper-1: one delta with the whole turn, billed by duration.
    deltas = of_type(client, f"{TRANSCRIPTION}.delta")
    completed = of_type(client, f"{TRANSCRIPTION}.completed")[0]
    assert [d["delta"] for d in deltas] == [completed["transcript"]]
    assert completed["usage"]["type"] == "duration"
    # Beta's usage type has no cached_tokens_details, so beta sends cached_tokens alone.
    assert done["response"]["usage"]["input_token_details"]["cached_tokens"] == 0
    assert "cached_tokens_details" not in done["response"]["usage"]["input_token_details"]


# --- transcription failures -----------------------------------------------------------------


async def test_a_failed_transcription_replaces_the_completed_one(realtime_connect, standin):
    standin.transcription_failure_rate = 1.0
    async with asyncio.timeout(20):
        client = await realtime_connect()
        await client.use_pcmu()
        await client.append(caller_turn())
        await until_all(client, "response.done", f"{TRANSCRIPTION}.failed")
    failed = of_type(client, f"{TRANSCRIPTION}.failed")[0]

    assert_all_sdk_valid(standin.connections[0])
    committed = of_type(client, "input_audio_buffer.committed")[0]
    assert failed["item_id"] == committed["item_id"]
    assert failed["content_index"] == 0
    assert failed["error"]["type"] == "transcription_error"
    assert failed["error"]["message"]
    assert not of_type(client, f"{TRANSCRIPTION}.completed")
    assert not of_type(client, f"{TRANSCRIPTION}.delta")


def test_the_default_failure_rate_is_small_and_seeded():
    standin = RealtimeStandIn()
    assert 0 < standin.transcription_failure_rate <= 0.1
    assert standin.seed == 0
    # The draws repeat for the same (seed, connection, purpose) and differ otherwise.
    first = [connection_rng(0, 0, "transcription").random() for _ in range(3)]
    assert first == [connection_rng(0, 0, "transcription").random() for _ in range(3)]
    assert connection_rng(0, 1, "transcription").random() != first[0]
    assert connection_rng(1, 0, "transcription").random() != first[0]
    with pytest.raises(ValueError):
        RealtimeStandIn(transcription_failure_rate=1.5)


# --- delays as options -----------------------------------------------------------------------


def test_delays_take_seconds_or_a_range():
    assert delay_range(0.05, "d") == (0.05, 0.05)
    assert delay_range((0.25, 0.6), "d") == (0.25, 0.6)
    assert delay_range([0, 1], "d") == (0.0, 1.0)
    for bad in ((0.6, 0.25), (-0.1, 0.2), (1.0,), (0.1, 0.2, 0.3)):
        with pytest.raises(ValueError):
            delay_range(bad, "d")
    with pytest.raises(ValueError):
        RealtimeStandIn(first_audio_delay_s=(0.5, 0.1))
    # The old float form still works (tests/simulator/conftest.py passes one).
    assert RealtimeStandIn(first_audio_delay_s=0.05).first_audio_delay_s == 0.05


async def test_fixed_delays_are_kept(realtime_connect, standin: RealtimeStandIn):
    standin.response_delay_s = 0.3
    standin.first_audio_delay_s = 0.0
    standin.transcription_delay_s = 0.0
    async with asyncio.timeout(20):
        client = await realtime_connect()
        await client.use_pcmu()
        timed = Timed(client)
        await client.append(caller_turn())
        await timed.until("response.output_audio.delta")
    created_after = timed.when("response.created") - timed.when("input_audio_buffer.speech_stopped")
    assert 0.295 <= created_after < 0.6
    # With no transcription delay it now comes first: the order is timing, not a rule.
    types = [e["type"] for e in client.events]
    assert types.index(f"{TRANSCRIPTION}.completed") < types.index("response.created")


# --- uneven audio chunks ----------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "total_s"), [(8000, 2.4), (24000, 3.6), (8000, 0.05)])
def test_chunks_add_up_and_are_never_whole_milliseconds(rate: int, total_s: float):
    total = round(rate * total_s)
    unit = rate // 1000
    sizes = chunk_sizes(total, rate // 10, unit, connection_rng(0, 0, "chunks"))
    assert sum(sizes) == total
    assert all(size > 0 for size in sizes)
    assert all(size % unit and abs(size - rate // 10) <= 7 for size in sizes[:-1])
    # Without a generator: exact chunks, as before.
    even = chunk_sizes(total, rate // 10, unit, None)
    assert sum(even) == total and all(size == rate // 10 for size in even[:-1])


async def test_the_same_seed_gives_the_same_chunks():
    async def one_reply(seed: int) -> list[int]:
        async with (
            RealtimeStandIn(speed=0, seed=seed, first_audio_delay_s=0) as server,
            connect(
                server.url + "?model=gpt-realtime", additional_headers={"Authorization": "Bearer k"}
            ) as ws,
        ):
            client = RealtimeClient(ws)
            await client.use_pcmu(transcription=False)
            await client.send("response.create")
            await client.until("response.done")
            return delta_sizes(client, "response.output_audio.delta")

    async with asyncio.timeout(20):
        first, again, other = await one_reply(0), await one_reply(0), await one_reply(1)
    assert first == again
    assert first != other
    assert sum(first) == sum(other) == DEFAULT_REPLIES[0].seconds * 8000


# --- cut replies --------------------------------------------------------------------------


@pytest.mark.parametrize("cut_by", ["response.cancel", "speech"])
async def test_a_cut_reply_has_its_transcript_only_in_the_item_and_response_done(
    realtime_connect, standin: RealtimeStandIn, cut_by: str
):
    standin.speed = 1.0  # keep the reply streaming until it is cut
    async with asyncio.timeout(20):
        client = await realtime_connect()
        await client.use_pcmu()
        await client.append(caller_turn(tail_s=0.6))
        await client.until("response.output_audio_transcript.delta")
        if cut_by == "speech":
            await client.append(caller_turn(1.0, lead_s=0.0, tail_s=0.0))
        else:
            await client.send("response.cancel")
        done = await client.until("response.done")

    assert_all_sdk_valid(standin.connections[0])
    said = "".join(e["delta"] for e in of_type(client, "response.output_audio_transcript.delta"))
    assert said and DEFAULT_REPLIES[0].text.startswith(said) and said != DEFAULT_REPLIES[0].text
    assert not of_type(client, "response.output_audio_transcript.done")
    assert not of_type(client, "response.content_part.done")
    item = of_type(client, "response.output_item.done")[0]["item"]
    assert item["status"] == "incomplete"
    assert item["content"] == [{"type": "output_audio", "transcript": said}]
    response = done["response"]
    assert response["status"] == "cancelled"
    reason = "client_cancelled" if cut_by == "response.cancel" else "turn_detected"
    assert response["status_details"] == {"type": "cancelled", "reason": reason}
    assert response["output"][0]["status"] == "incomplete"
    assert response["output"][0]["content"][0]["transcript"] == said


async def test_a_reply_cancelled_before_it_is_announced_is_announced_then_done(
    realtime_connect, standin: RealtimeStandIn
):
    standin.response_delay_s = 0.5
    async with asyncio.timeout(10):
        client = await realtime_connect()
        await client.use_pcmu()
        await client.send("response.create")
        await client.send("response.cancel")
        done = await client.until("response.done")
    assert_all_sdk_valid(standin.connections[0])
    types = [e["type"] for e in client.events]
    assert types[-2:] == ["response.created", "response.done"]
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["output"] == []


# --- cached tokens ------------------------------------------------------------------------


def test_cached_tokens_are_a_subset_of_each_kind():
    first = rt.InputTokens(text=20, audio=25).cached_from(None)
    assert (first.cached_text, first.cached_audio) == (0, 0)
    later = rt.InputTokens(text=30, audio=60).cached_from(first)
    assert (later.cached_text, later.cached_audio, later.cached) == (20, 25, 45)
    # A context that shrank (a truncation) caches no more than there is now.
    shrunk = rt.InputTokens(text=30, audio=10).cached_from(later)
    assert (shrunk.cached_text, shrunk.cached_audio) == (30, 10)
    with pytest.raises(ValueError):
        rt.InputTokens(text=1, audio=1, cached_text=2)
    usage = rt.usage("ga", input_tokens=later, output_ms=1000, transcript="Hello there.")
    details = usage["input_token_details"]
    assert details["cached_tokens"] == 45
    assert details["cached_tokens_details"] == {"text_tokens": 20, "audio_tokens": 25}
    assert usage["input_tokens"] == 90


async def test_later_responses_report_the_previous_input_as_cached(
    realtime_connect, standin: RealtimeStandIn
):
    async with asyncio.timeout(30):
        client = await realtime_connect()
        await client.use_pcmu()
        await client.append(caller_turn())
        await client.until("response.done")
        await client.send(
            "conversation.item.create",
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "And what about the invoice?"}],
            },
        )
        await client.send("response.create")
        await client.until("response.done")
        await client.append(caller_turn())
        await client.until("response.done")

    assert_all_sdk_valid(standin.connections[0])
    usages = [e["response"]["usage"] for e in of_type(client, "response.done")]
    details = [u["input_token_details"] for u in usages]
    assert details[0]["cached_tokens"] == 0
    assert details[0]["cached_tokens_details"] == {"text_tokens": 0, "audio_tokens": 0}
    for previous, now, usage in zip(details, details[1:], usages[1:], strict=False):
        cached = now["cached_tokens_details"]
        assert cached["text_tokens"] <= now["text_tokens"]
        assert cached["audio_tokens"] <= now["audio_tokens"]
        assert now["cached_tokens"] == cached["text_tokens"] + cached["audio_tokens"]
        assert now["cached_tokens"] <= usage["input_tokens"]
        # The previous response's input is the cached prefix.
        assert cached == {
            "text_tokens": previous["text_tokens"],
            "audio_tokens": previous["audio_tokens"],
        }
        assert now["cached_tokens"] > 0
    assert details[1]["text_tokens"] > details[0]["text_tokens"]  # the typed item
    assert details[2]["audio_tokens"] > details[1]["audio_tokens"]  # both replies, a turn


# --- a client commit ---------------------------------------------------------------------


async def test_a_client_commit_ends_the_open_turn_without_a_response(
    realtime_connect, standin: RealtimeStandIn
):
    async with asyncio.timeout(20):
        client = await realtime_connect()
        await client.use_pcmu()
        # Speech with no closing silence: the VAD has the turn open when the client commits.
        await client.append(ulaw_encode(np.concatenate([silence(0.3), speech(1.0, seed=7)])))
        started = await client.until("input_audio_buffer.speech_started")
        await client.send("input_audio_buffer.commit")
        committed = await client.until("input_audio_buffer.committed")
        # A commit of almost nothing (50 ms since) is still refused...
        await client.append(ulaw_encode(silence(0.05)))
        await client.send("input_audio_buffer.commit", event_id="evt_small")
        error = (await client.until("error"))["error"]
        # ...and silence must not stop a turn that is already committed.
        await client.append(ulaw_encode(silence(1.0)))
        completed = await client.until(f"{TRANSCRIPTION}.completed")
        await standin.wait_until(lambda: standin.connections[0].input_ms >= 2350)
        # Speech after that opens (and closes) a new turn, with its own item.
        await client.append(caller_turn(1.0, lead_s=0.0, tail_s=0.8))
        stopped = await client.until("input_audio_buffer.speech_stopped")
        await client.until("response.done")

    assert_all_sdk_valid(standin.connections[0])
    assert committed["item_id"] == started["item_id"] == completed["item_id"]
    assert completed["transcript"] == DEFAULT_CALLER_LINES[0]
    assert error["code"] == "input_audio_buffer_commit_empty"
    assert error["event_id"] == "evt_small"
    assert "50.00ms" in error["message"]
    stops = of_type(client, "input_audio_buffer.speech_stopped")
    assert [s["item_id"] for s in stops] == [stopped["item_id"]]
    assert stopped["item_id"] != started["item_id"]
    commits = [c["item_id"] for c in of_type(client, "input_audio_buffer.committed")]
    assert commits == [started["item_id"], stopped["item_id"]]  # each item committed once
    # Only the VAD's turn made a response: the client's commit did not.
    types = [e["type"] for e in client.events]
    assert types.count("response.created") == 1
    assert types.index("response.created") > types.index("input_audio_buffer.speech_stopped")


# --- echo mode and the command line --------------------------------------------------------


async def test_echo_mode_answers_each_frame_at_once():
    async with (
        asyncio.timeout(10),
        RealtimeStandIn(echo=True) as server,
        connect(
            server.url + "?model=gpt-realtime", additional_headers={"Authorization": "Bearer k"}
        ) as ws,
    ):
        client = RealtimeClient(ws)
        await client.use_pcmu(transcription=True)
        frame = ulaw_encode(speech(0.02, seed=3))
        began = time.monotonic()
        for _ in range(5):
            await client.append(frame)
            echoed = await client.until("response.output_audio.delta")
            assert base64.b64decode(echoed["delta"]) == frame
        elapsed = time.monotonic() - began
    assert elapsed < 1.0  # no model delays in echo mode
    assert not [e for e in client.events if TRANSCRIPTION in e["type"]]
