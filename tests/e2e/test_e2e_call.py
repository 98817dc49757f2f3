"""A whole call through the product: webhook, media stream, model, barge-in, persistence."""

from __future__ import annotations

import base64
import itertools

import pytest
import soundfile as sf
from e2e_support import call_rows, finished_call

from simulator.twilio.script import standard_call

pytestmark = pytest.mark.slow


def _model_deltas(standin) -> list[tuple[str, bytes]]:
    """Every audio delta the stand-in streamed, in order, as (item_id, audio)."""
    return [
        (event["item_id"], base64.b64decode(event["delta"]))
        for connection in standin.connections
        for event in connection.sent_of("response.output_audio.delta")
    ]


def _heard_of_item(deltas: list[tuple[str, bytes]], item_id: str, played_bytes: int) -> float:
    """Twilio plays in order: what was played past the item's first byte, in ms (8 B/ms)."""
    before = 0
    for delta_item, audio in deltas:
        if delta_item == item_id:
            break
        before += len(audio)
    item_bytes = sum(len(audio) for delta_item, audio in deltas if delta_item == item_id)
    return min(max(0, played_bytes - before), item_bytes) / 8


def _assert_marks_close_each_reply(
    marks: list[str], deltas: list[tuple[str, bytes]], cut_item: str, interval_ms: float
) -> None:
    """Marks name `item@ms sent`; they come at least interval_ms apart within an item, and every
    reply played to the end gets one for its full length (its echo confirms it was heard)."""
    item_ms: dict[str, float] = {}
    for item_id, audio in deltas:
        item_ms[item_id] = item_ms.get(item_id, 0.0) + len(audio) / 8
    for item_id, total_ms in item_ms.items():
        marked = [float(name.rpartition("@")[2]) for name in marks if name.startswith(item_id)]
        assert marked, item_id
        assert all(b - a >= interval_ms for a, b in itertools.pairwise(marked[:-1])), marked
        if item_id != cut_item:
            assert abs(marked[-1] - total_ms) <= 1, (item_id, marked, total_ms)


@pytest.mark.parametrize("mark_interval_ms", [0.0, 700.0], ids=["mark-per-media", "marks-700ms"])
def test_call_with_two_turns_and_a_barge_in(live_bridge, mark_interval_ms: float) -> None:
    live_bridge.settings.TWILIO_MARK_INTERVAL_MS = mark_interval_ms
    run = live_bridge.place_call(standard_call())
    caller, standin, report = run.caller, run.standin, run.report
    assert report.script_error is None, report
    assert report.protocol_errors == []

    # Twilio side: the model's audio reached the caller byte for byte, with marks, one clear.
    deltas = _model_deltas(standin)
    assert caller.agent_audio == b"".join(audio for _, audio in deltas)
    media_messages = [m for _, m in caller.received if m.get("event") == "media"]
    assert len(caller.clears_ms) == 1

    # Model side: the caller's audio reached the model byte for byte; one truncate.
    [connection] = standin.connections
    assert bytes(connection.audio) == bytes(caller.sent_audio)
    [truncate] = connection.received_of("conversation.item.truncate")
    _assert_marks_close_each_reply(
        caller.marks_received, deltas, truncate.payload["item_id"], mark_interval_ms
    )
    if mark_interval_ms == 0:
        assert len(caller.marks_received) == len(media_messages) > 0
    else:  # the stand-in's deltas are 100 ms: fewer marks than media messages
        assert 0 < len(caller.marks_received) < len(media_messages) / 2
    [played_at_clear] = caller.played_bytes_at_clear
    heard_ms = _heard_of_item(deltas, truncate.payload["item_id"], played_at_clear)
    assert abs(truncate.payload["audio_end_ms"] - heard_ms) <= 100, (truncate.payload, heard_ms)

    call = finished_call(report.call_id)
    rows = call_rows(call)
    # Transcripts, in spoken order, from both speakers; the cut reply is marked.
    speakers = [line.speaker for line in rows.transcripts]
    assert speakers == ["caller", "agent", "caller", "agent", "caller", "agent"]
    assert [line.interrupted for line in rows.transcripts] == [
        False,
        False,
        False,
        True,
        False,
        False,
    ]
    cut = rows.transcripts[3]
    assert abs((cut.end_ms - cut.start_ms) - heard_ms) <= 100

    # A stereo 16 kHz recording as long as the call.
    info = sf.info(rows.recording_path)
    assert (info.channels, info.samplerate, info.subtype) == (2, 16000, "PCM_16")
    stream_seconds = report.frames_sent * 0.020
    assert abs(info.duration - stream_seconds) <= 0.25, (info, stream_seconds)
    assert rows.recording.duration_s == pytest.approx(info.duration, abs=0.01)

    # Analytics: one interruption, latency measured, usage counted.
    analytics = rows.analytics
    assert analytics.interruptions == 1
    assert analytics.latency_ms_avg is not None and analytics.latency_ms_avg > 0
    assert analytics.turns >= 3
    assert analytics.output_audio_tokens > 0
    assert analytics.estimated_cost_usd > 0
    assert analytics.caller_talk_s > 2 and analytics.agent_talk_s > 1
    assert analytics.sentiment_label in ("positive", "neutral", "negative")

    assert call.status == "completed"
    assert call.stream_sid == caller.stream_sid
    assert call.end_reason == "caller hung up"


@pytest.mark.parametrize(
    ("protocol", "audio_format"),
    [("ga", "audio/pcm"), ("beta", "audio/pcmu"), ("beta", "audio/pcm")],
)
def test_other_protocols_and_formats_carry_a_call(live_bridge, protocol, audio_format) -> None:
    live_bridge.settings.REALTIME_PROTOCOL = protocol
    live_bridge.settings.REALTIME_AUDIO_FORMAT = audio_format
    run = live_bridge.place_call(standard_call(barge_in=False))
    assert run.report.script_error is None
    assert run.report.played_s > 2
    [connection] = run.standin.connections
    assert connection.protocol == protocol
    call = finished_call(run.report.call_id)
    rows = call_rows(call)
    assert [line.speaker for line in rows.transcripts] == ["caller", "agent", "caller", "agent"]
    assert sf.info(rows.recording_path).channels == 2
