"""The realtime stand-in speaks the GA protocol well enough for the bridge."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time

import numpy as np
import pytest
from sim_support import RealtimeClient, caller_turn
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from audio.convert import pcm16_to_bytes
from audio.g711 import ulaw_decode
from simulator.openai.standin import DEFAULT_CALLER_LINES, DEFAULT_REPLIES, RealtimeStandIn
from simulator.speech import silence, speech

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


async def test_handshake_needs_a_bearer_key_and_a_model(standin: RealtimeStandIn):
    async with asyncio.timeout(10):
        with pytest.raises(InvalidStatus) as missing_key:
            await connect(standin.url + "?model=gpt-realtime")
        assert missing_key.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as empty_key:
            await connect(
                standin.url + "?model=gpt-realtime", additional_headers={"Authorization": "Bearer "}
            )
        assert empty_key.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as no_model:
            await connect(standin.url, additional_headers={"Authorization": "Bearer k"})
        assert no_model.value.response.status_code == 400
        assert [h.status for h in standin.handshakes] == [401, 401, 400]
        assert standin.connection_count == 0


async def test_session_update_round_trip_ga(realtime_connect):
    async with asyncio.timeout(10):
        client: RealtimeClient = await realtime_connect()
        created = await client.next_event()
        assert created["type"] == "session.created"
        assert created["session"]["type"] == "realtime"
        assert created["session"]["audio"]["input"]["format"] == {
            "type": "audio/pcm",
            "rate": 24000,
        }

        await client.send(
            "session.update",
            session={
                "type": "realtime",
                "instructions": "Be brief.",
                "audio": {
                    "input": {"format": {"type": "audio/pcmu"}},
                    "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
                },
            },
        )
        updated = (await client.next_event())["session"]
        assert updated["instructions"] == "Be brief."
        assert updated["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        assert updated["audio"]["output"]["voice"] == "marin"
        # Fields the update did not name keep their values.
        assert updated["audio"]["input"]["turn_detection"]["type"] == "server_vad"


async def test_ga_session_update_without_the_session_type_is_an_error(realtime_connect):
    async with asyncio.timeout(10):
        client = await realtime_connect()
        await client.until("session.created")
        await client.send("session.update", event_id="evt_1", session={"instructions": "x"})
        error = (await client.until("error"))["error"]
        assert error["code"] == "missing_required_parameter"
        assert error["param"] == "session.type"
        assert error["event_id"] == "evt_1"


async def test_a_caller_turn_gives_vad_events_transcript_and_a_response_in_order(
    realtime_connect, standin: RealtimeStandIn
):
    async with asyncio.timeout(15):
        client = await realtime_connect()
        await client.until("session.created")
        await client.use_pcmu()
        await client.append(caller_turn(1.5, lead_s=0.5, tail_s=1.0))
        done = await client.until("response.done")
        if not any(e["type"].endswith("transcription.completed") for e in client.events):
            await client.until("conversation.item.input_audio_transcription.completed")

    types = [e["type"] for e in client.events]
    turn = types[types.index("input_audio_buffer.speech_started") :]
    # The transcription runs beside the response (and lands after response.created, with the
    # default delays): leave its events out to check the rest of the order.
    reply = [t for t in turn if "input_audio_transcription" not in t]
    expected = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    assert reply[: len(expected)] == expected
    assert types.index("conversation.item.input_audio_transcription.completed") > types.index(
        "response.created"
    )
    assert reply[reply.index("response.done") - 5 : reply.index("response.done") + 1] == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    by_type = {e["type"]: e for e in client.events}
    started = by_type["input_audio_buffer.speech_started"]
    stopped = by_type["input_audio_buffer.speech_stopped"]
    assert abs(started["audio_start_ms"] - (500 - 300)) <= 30
    assert abs(stopped["audio_end_ms"] - (2000 + 500)) <= 30
    assert started["item_id"] == stopped["item_id"]
    transcription = by_type["conversation.item.input_audio_transcription.completed"]
    assert transcription["transcript"] == DEFAULT_CALLER_LINES[0]
    assert transcription["item_id"] == started["item_id"]

    deltas = [e for e in client.events if e["type"] == "response.output_audio.delta"]
    response_id = done["response"]["id"]
    assert {(d["response_id"], d["output_index"], d["content_index"]) for d in deltas} == {
        (response_id, 0, 0)
    }
    audio = b"".join(base64.b64decode(d["delta"]) for d in deltas)
    assert len(audio) == DEFAULT_REPLIES[0].seconds * 8000  # mu-law, one byte a sample
    sizes = [len(base64.b64decode(d["delta"])) for d in deltas]
    # About 100 ms each, but not whole milliseconds (8 bytes a ms), as the service's are not.
    assert all(793 <= size <= 807 and size % 8 for size in sizes[:-1])
    assert np.sqrt(np.mean(ulaw_decode(audio).astype(np.float64) ** 2)) > 1000  # speech
    assert by_type["response.output_audio_transcript.done"]["transcript"] == DEFAULT_REPLIES[0].text
    deltas_text = "".join(
        e["delta"] for e in client.events if e["type"] == "response.output_audio_transcript.delta"
    )
    assert deltas_text == DEFAULT_REPLIES[0].text

    response = done["response"]
    assert response["status"] == "completed"
    usage = response["usage"]
    assert usage["output_token_details"]["audio_tokens"] == 48  # 2.4 s at 20 tokens/s
    assert usage["input_token_details"]["audio_tokens"] == 25  # 2.5 s committed, at 10/s
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_token_details"]["cached_tokens"] == 0  # the first response
    assert usage["input_token_details"]["cached_tokens_details"] == {
        "text_tokens": 0,
        "audio_tokens": 0,
    }

    connection = standin.connections[0]
    assert bytes(connection.audio) == caller_turn(1.5, lead_s=0.5, tail_s=1.0)
    assert connection.input_ms == 3000
    appends = connection.received_of("input_audio_buffer.append")
    assert len(appends) == connection.appends == 150
    assert all(a.at <= b.at for a, b in itertools.pairwise(appends))


async def test_replies_stream_faster_than_real_time(realtime_connect, standin: RealtimeStandIn):
    standin.speed = 4.0
    async with asyncio.timeout(15):
        client = await realtime_connect()
        await client.use_pcmu()
        await client.append(caller_turn())
        await client.until("response.created")
        began = time.monotonic()
        await client.until("response.done")
        elapsed = time.monotonic() - began
    # 2.4 s of audio at 4x is 0.6 s; well under real time, not a single burst either.
    assert 0.4 < elapsed < 1.2


async def test_pcm_sessions_take_and_give_pcm16_at_24_khz(realtime_connect):
    async with asyncio.timeout(15):
        client = await realtime_connect()
        await client.until("session.created")  # the default session is audio/pcm already
        await client.send(
            "session.update",
            session={"type": "realtime", "audio": {"input": {"turn_detection": {
                "type": "server_vad", "silence_duration_ms": 300}}}},
        )  # fmt: skip
        await client.until("session.updated")
        pcm = np.concatenate([silence(0.3, 24000), speech(1.0, rate=24000), silence(0.6, 24000)])
        data = pcm16_to_bytes(pcm)
        await client.append(data, frame_bytes=960)  # 20 ms of 24 kHz PCM16
        stopped = await client.until("input_audio_buffer.speech_stopped")
        assert abs(stopped["audio_end_ms"] - (1300 + 300)) <= 30
        await client.until("response.done")
    deltas = [e for e in client.events if e["type"] == "response.output_audio.delta"]
    first = len(base64.b64decode(deltas[0]["delta"]))
    # About 100 ms (4800 bytes), whole samples (2 bytes each), not whole ms (48 bytes each).
    assert abs(first - 4800) <= 14 and first % 2 == 0 and first % 48
    # No transcription was configured, so none is sent (as on the real service).
    assert not [e for e in client.events if "transcription" in e["type"]]


async def test_silence_never_starts_speech(realtime_connect, standin: RealtimeStandIn):
    async with asyncio.timeout(10):
        client = await realtime_connect()
        await client.use_pcmu()
        await client.append(b"\xff" * 8000 * 3)
        await standin.wait_until(lambda: standin.connections[0].appends == 150)
        await asyncio.sleep(0.1)
    assert "input_audio_buffer.speech_started" not in standin.connections[0].sent_types()


async def test_speech_during_a_reply_cancels_it_like_the_service(
    realtime_connect, standin: RealtimeStandIn
):
    standin.speed = 1.0  # keep the reply streaming while the caller talks over it
    async with asyncio.timeout(15):
        client = await realtime_connect()
        await client.use_pcmu()
        await client.append(caller_turn(tail_s=0.6))
        await client.until("response.output_audio.delta")
        await client.append(caller_turn(1.0, lead_s=0.0, tail_s=0.0))
        done = await client.until("response.done")

    types = [e["type"] for e in client.events]
    barge_in = types.index("input_audio_buffer.speech_started", types.index("response.created"))
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert "response.output_audio.delta" not in types[barge_in:]
    assert types[barge_in:][-2:] == ["conversation.item.done", "response.done"]
    # A cut reply's transcript comes only with the item (incomplete) and response.done.
    assert "response.output_audio_transcript.done" not in types
    item = next(e for e in client.events if e["type"] == "response.output_item.done")["item"]
    assert item["status"] == "incomplete"
    heard = item["content"][0]["transcript"]
    assert DEFAULT_REPLIES[0].text.startswith(heard)
    assert heard != DEFAULT_REPLIES[0].text
    assert done["response"]["output"][0]["content"][0]["transcript"] == heard


async def test_response_cancel_stops_the_reply_and_fails_without_one(
    realtime_connect, standin: RealtimeStandIn
):
    standin.speed = 1.0
    async with asyncio.timeout(15):
        client = await realtime_connect()
        await client.use_pcmu()
        await client.send("response.cancel", event_id="evt_early")
        error = (await client.until("error"))["error"]
        assert error["code"] == "response_cancel_not_active"
        assert error["message"] == "Cancellation failed: no active response found"
        assert error["event_id"] == "evt_early"

        await client.send("response.create")
        await client.until("response.output_audio.delta")
        await client.send("response.cancel")
        done = await client.until("response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "client_cancelled"


async def test_truncation_past_the_items_audio_fails_with_the_services_words(realtime_connect):
    async with asyncio.timeout(15):
        client = await realtime_connect()
        await client.use_pcmu()
        await client.append(caller_turn())
        done = await client.until("response.done")
        item_id = done["response"]["output"][0]["id"]

        await client.send(
            "conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=9000
        )
        error = (await client.until("error"))["error"]
        assert error["message"] == "Audio content of 2400ms is already shorter than 9000ms"
        assert error["type"] == "invalid_request_error"

        await client.send(
            "conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=1100
        )
        truncated = await client.until("conversation.item.truncated")
        assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 1100)

        await client.send(
            "conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=1500
        )
        error = (await client.until("error"))["error"]
        assert error["message"] == "Audio content of 1100ms is already shorter than 1500ms"


async def test_truncations_are_recorded(realtime_connect, standin: RealtimeStandIn):
    async with asyncio.timeout(10):
        client = await realtime_connect()
        await client.send(
            "conversation.item.truncate", item_id="item_nope", content_index=0, audio_end_ms=10
        )
        assert (await client.until("error"))["error"]["code"] == "item_not_found"
    assert standin.truncations == [
        {
            "type": "conversation.item.truncate",
            "item_id": "item_nope",
            "content_index": 0,
            "audio_end_ms": 10,
        }
    ]


async def test_replayed_context_and_response_create(realtime_connect, standin: RealtimeStandIn):
    standin.speed = 1.0
    async with asyncio.timeout(15):
        client = await realtime_connect()
        await client.use_pcmu()
        for role, kind, text in (
            ("user", "input_text", "Hi."),
            ("assistant", "output_text", "Hello."),
        ):
            await client.send(
                "conversation.item.create",
                item={"type": "message", "role": role, "content": [{"type": kind, "text": text}]},
            )
            added = await client.until("conversation.item.added")
            assert added["item"]["role"] == role
            assert added["item"]["content"][0]["text"] == text
            await client.until("conversation.item.done")
        await client.send("response.create")
        await client.until("response.created")
        await client.send("response.create")
        error = (await client.until("error"))["error"]
        assert error["code"] == "conversation_already_has_active_response"
        await client.send("response.cancel")
        done = await client.until("response.done")
    assert done["response"]["usage"]["input_token_details"]["text_tokens"] > 0


async def test_beta_header_selects_the_beta_protocol(realtime_connect):
    async with asyncio.timeout(15):
        client = await realtime_connect(beta=True)
        created = await client.next_event()
        assert created["session"]["input_audio_format"] == "pcm16"
        await client.send(
            "session.update",
            session={
                "input_audio_format": "g711_ulaw",
                "output_audio_format": "g711_ulaw",
                "input_audio_transcription": {"model": "whisper-1"},
            },
        )
        await client.until("session.updated")
        await client.append(caller_turn())
        await client.until("response.done")
    types = {e["type"] for e in client.events}
    assert {
        "response.audio.delta",
        "response.audio_transcript.done",
        "conversation.item.created",
    } <= types
    assert not {"response.output_audio.delta", "conversation.item.added"} & types


async def test_bad_frames_get_errors_and_the_session_goes_on(realtime_connect):
    async with asyncio.timeout(10):
        client = await realtime_connect()
        await client.until("session.created")
        await client.ws.send("{not json")
        assert (await client.until("error"))["error"]["code"] == "invalid_json"
        await client.send("input_audio_buffer.append", audio="***")
        assert (await client.until("error"))["error"]["param"] == "audio"
        await client.send("no.such.event")
        assert (await client.until("error"))["error"]["code"] == "invalid_value"
        await client.use_pcmu()
