"""The call record is exact under the real service's timing (issue 20).

Each test places real calls through the product (uvicorn on loopback, the realtime stand-in
with its service-like timing, the simulated Twilio caller) and checks what the back-office
keeps: the last words before a hang-up, the lines of cut-off replies, the latency the caller
lived, the cost of the usage the service reported, and a call that survives frames it cannot
use.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import statistics

import pytest
import soundfile as sf
from e2e_support import call_rows, finished_call

from realtime.bridge import ACTIVE_BRIDGES, USAGE_KEYS, estimated_cost_usd
from simulator.openai.standin import RealtimeStandIn, Reply
from simulator.twilio.caller import SILENT_FRAME, SimulatedTwilioCaller
from simulator.twilio.script import AwaitAgentPlayed, Silence, Speak, standard_call

pytestmark = pytest.mark.slow


def _stand_in_usage(standin: RealtimeStandIn) -> dict[str, int]:
    """The usage the service reported over the call, summed per kind as the bridge bills it."""
    totals = dict.fromkeys(USAGE_KEYS, 0)
    for connection in standin.connections:
        for done in connection.sent_of("response.done"):
            usage = done["response"]["usage"] or {}
            given = usage.get("input_token_details") or {}
            cached = given.get("cached_tokens_details") or {}
            produced = usage.get("output_token_details") or {}
            totals["input_audio_tokens"] += given.get("audio_tokens") or 0
            totals["input_text_tokens"] += given.get("text_tokens") or 0
            totals["cached_audio_tokens"] += cached.get("audio_tokens") or 0
            totals["cached_text_tokens"] += cached.get("text_tokens") or 0
            totals["output_audio_tokens"] += produced.get("audio_tokens") or 0
            totals["output_text_tokens"] += produced.get("text_tokens") or 0
    return totals


# --- the last words before a hang-up ---------------------------------------------------------


@pytest.mark.parametrize("hang_up", ["stop", "close"])
def test_last_words_before_a_hang_up_are_on_the_record(live_bridge, hang_up: str) -> None:
    """ "Thanks, bye" and the phone goes down 300 ms later, before the VAD's 500 ms of silence
    could close the turn: the bridge commits the turn and waits for its transcription."""
    script = [
        Silence(0.5),
        Speak(1.5, seed=1),
        AwaitAgentPlayed(),
        Speak(1.2, seed=4),
        Silence(0.3),
    ]
    run = live_bridge.place_call(script, hang_up=hang_up)
    assert run.report.script_error is None
    [connection] = run.standin.connections
    assert "input_audio_buffer.commit" in connection.received_types()

    lines = call_rows(finished_call(run.report.call_id)).transcripts
    callers = [line for line in lines if line.speaker == "caller"]
    assert len(callers) == 2, [(line.speaker, line.text) for line in lines]
    last_words_start_ms = run.caller.speech_spans_ms[-1][0]
    # The VAD places a turn's start up to its prefix padding (300 ms) before the voice.
    assert 0 <= last_words_start_ms - callers[-1].start_ms <= 400, callers[-1]
    assert callers[-1].end_ms >= run.caller.speech_spans_ms[-1][1] - 100


def test_a_caller_who_hangs_up_in_silence_is_not_kept_waiting(live_bridge) -> None:
    """Nothing pending at the hang-up: the call is finished at once, nothing is committed."""
    script = [Silence(0.5), Speak(1.5, seed=1), AwaitAgentPlayed(quiet_s=2.0)]
    run = live_bridge.place_call(script)
    call = finished_call(run.report.call_id, timeout_s=5.0)
    [connection] = run.standin.connections
    assert "input_audio_buffer.commit" not in connection.received_types()
    assert [line.speaker for line in call_rows(call).transcripts] == ["caller", "agent"]


# --- frames the bridge cannot use ------------------------------------------------------------


async def _media(caller: SimulatedTwilioCaller, *, timestamp_ms: int, chunk: int) -> None:
    await caller._send(
        {
            "event": "media",
            "sequenceNumber": caller._next_sequence(),
            "streamSid": caller.stream_sid,
            "media": {
                "track": "inbound",
                "chunk": str(chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(SILENT_FRAME).decode(),
            },
        }
    )


def test_frames_after_the_stop_are_ignored_and_the_bridge_is_released(
    live_bridge, error_log
) -> None:
    """Twilio may still send after `stop` while the recording is being finalized."""

    async def scenario(standin: RealtimeStandIn, caller: SimulatedTwilioCaller) -> str | None:
        await caller.place_call()
        await caller.connect_stream()
        await caller.run([Silence(0.5), Speak(1.0, seed=1), AwaitAgentPlayed()])
        await caller._send({"event": "stop", "sequenceNumber": caller._next_sequence(),
                            "streamSid": caller.stream_sid, "stop": {}})  # fmt: skip
        await asyncio.sleep(0.3)  # the finalization is under way
        for number in range(5):
            await _media(caller, timestamp_ms=caller.frames_sent * 20, chunk=10_000 + number)
            await caller._send({"event": "mark", "streamSid": caller.stream_sid,
                                "mark": {"name": "late@1.000"}})  # fmt: skip
        await caller.hang_up("close")
        return caller.call_id

    call_id = live_bridge.run(scenario)
    call = finished_call(call_id)
    assert call.end_reason == "caller hung up"
    assert call_rows(call).recording is not None
    assert call_id not in ACTIVE_BRIDGES
    assert error_log.records == []


def test_a_media_timestamp_far_ahead_is_malformed_not_hours_of_silence(live_bridge) -> None:
    async def scenario(standin: RealtimeStandIn, caller: SimulatedTwilioCaller) -> str | None:
        await caller.place_call()
        await caller.connect_stream()
        await caller.run([Silence(0.5)])
        ten_minutes_ahead = caller.frames_sent * 20 + 600_000
        await _media(caller, timestamp_ms=ten_minutes_ahead, chunk=caller.frames_sent + 1)
        await caller.run([Speak(1.0, seed=1), AwaitAgentPlayed(), Silence(0.3)])
        await caller.hang_up("stop")
        return caller.call_id

    call = finished_call(live_bridge.run(scenario))
    rows = call_rows(call)
    assert rows.analytics.frames_malformed == 1
    assert sf.info(rows.recording_path).duration < 30  # the call's few seconds, not 10 minutes
    assert [line.speaker for line in rows.transcripts][:2] == ["caller", "agent"]


# --- marks, latency, cost ---------------------------------------------------------------------


def test_a_reply_of_odd_length_is_heard_out_when_its_last_mark_comes_back(live_bridge) -> None:
    """19,203 bytes of agent audio is 2,400.375 ms: the echo of the reply's last mark must
    count as "heard to the end", so its line is written then, not when the call ends."""
    odd = Reply("Hello, thanks for calling. How can I help you today?", 19_203 / 8000)
    script = [Silence(0.5), Speak(1.5, seed=1), AwaitAgentPlayed(quiet_s=3.0)]
    run = live_bridge.place_call(script, standin={"replies": [odd]})
    deltas = run.standin.connections[0].sent_of("response.output_audio.delta")
    assert sum(len(base64.b64decode(d["delta"])) for d in deltas) == 19_203
    call = finished_call(run.report.call_id)
    [agent] = [line for line in call_rows(call).transcripts if line.speaker == "agent"]
    assert not agent.interrupted
    # Written about when the reply ended, seconds before the hang-up forced it out.
    assert (call.ended_at - agent.created_at).total_seconds() > 1.5, (
        agent.created_at,
        call.ended_at,
    )


def test_latency_is_what_the_caller_lived_and_cost_is_the_usage_at_list_price(
    live_bridge,
) -> None:
    run = live_bridge.place_call(standard_call(barge_in=False))
    assert run.report.script_error is None
    caller_latencies = run.report.latencies_ms
    assert len(caller_latencies) == 2
    analytics = call_rows(finished_call(run.report.call_id)).analytics
    # The caller measured from the end of its speech to the first agent audio it received;
    # the bridge from the end of the speech its VAD reported to the reply's playback start.
    # Both include the VAD's closing silence and the model's delay: they agree within the
    # VAD's frame and the loopback's few ms.
    assert analytics.latency_ms_avg == pytest.approx(statistics.fmean(caller_latencies), abs=60)
    assert analytics.latency_ms_max == pytest.approx(max(caller_latencies), abs=60)
    assert min(caller_latencies) > 500  # at least the silence that closed the turn

    usage = _stand_in_usage(run.standin)
    for key, value in usage.items():
        assert getattr(analytics, key) == value, key
    assert (
        analytics.cached_input_tokens == usage["cached_audio_tokens"] + usage["cached_text_tokens"]
    )
    assert usage["cached_audio_tokens"] > 0 and usage["cached_text_tokens"] > 0
    expected = estimated_cost_usd(usage, live_bridge.settings.REALTIME_PRICES_PER_M)
    assert float(analytics.estimated_cost_usd) == pytest.approx(expected, abs=1e-6)


# --- a scorer that fails ----------------------------------------------------------------------


def failing_scorer(text: str) -> tuple[str, float]:
    raise RuntimeError("the sentiment service is down")


def test_a_failing_sentiment_scorer_does_not_keep_the_call_open(live_bridge) -> None:
    live_bridge.settings.SENTIMENT_ANALYZER = f"{__name__}.failing_scorer"
    run = live_bridge.place_call([Silence(0.5), Speak(1.5, seed=1), AwaitAgentPlayed()])
    call = finished_call(run.report.call_id)
    rows = call_rows(call)
    assert call.status == "completed"
    assert rows.recording is not None
    assert rows.analytics.sentiment_label == ""
    assert rows.analytics.turns >= 1


# --- the service's order of events ------------------------------------------------------------


def test_the_replayed_conversation_is_in_spoken_order_though_lines_arrive_out_of_it(
    live_bridge,
) -> None:
    """Transcriptions land after the reply they prompted: after a drop, the new session must
    still hear caller, agent, caller, agent, as they were spoken."""

    async def drop_after_two_turns(standin: RealtimeStandIn, caller: SimulatedTwilioCaller):
        first = await standin.wait_for_connection(1)
        await standin.wait_until(
            lambda: (
                len(first.sent_of("conversation.item.input_audio_transcription.completed")) == 2
            ),
            deadline_s=30,
        )
        await first.drop()

    script = [Silence(0.5), Speak(1.5, seed=1), AwaitAgentPlayed(), Speak(1.5, seed=2),
              AwaitAgentPlayed(quiet_s=2.5)]  # fmt: skip
    run = live_bridge.place_call(
        script,
        # Each transcription lands after the reply's own text (it streams in well under 1.5 s).
        standin={"transcription_delay_s": 1.8, "transcription_failure_rate": 0.0},
        during=drop_after_two_turns,
    )
    first, second = run.standin.connections[:2]
    texts = first.sent_of("response.output_audio_transcript.done")
    heard = first.sent_of("conversation.item.input_audio_transcription.completed")
    assert first.sent.index(texts[0]) < first.sent.index(heard[0])  # out of spoken order
    replayed = [event.payload["item"] for event in second.received_of("conversation.item.create")]
    assert [item["role"] for item in replayed] == ["user", "assistant", "user", "assistant"]
    assert replayed[0]["content"][0]["text"] == heard[0]["transcript"]
    assert replayed[1]["content"][0]["text"] == texts[0]["transcript"]


def test_a_turn_the_service_could_not_transcribe_keeps_its_place(live_bridge) -> None:
    script = [Silence(0.5), Speak(1.5, seed=1), AwaitAgentPlayed(), Silence(0.3)]
    run = live_bridge.place_call(script, standin={"transcription_failure_rate": 1.0})
    [connection] = run.standin.connections
    assert connection.sent_of("conversation.item.input_audio_transcription.failed")
    lines = call_rows(finished_call(run.report.call_id)).transcripts
    assert [(line.speaker, line.text, line.inaudible) for line in lines][:2] == [
        ("caller", "[inaudible]", True),
        ("agent", "Hello, thanks for calling. How can I help you today?", False),
    ]
    spoken_from = run.caller.speech_spans_ms[0][0]
    assert 0 <= spoken_from - lines[0].start_ms <= 400


def test_a_reply_cut_by_the_caller_gets_its_line_from_the_response_output(live_bridge) -> None:
    # The service generating at real time (as it may under load), so the caller's barge-in
    # 0.8 s into the reply always lands while the response is still in progress: at the
    # stand-in's default 4x, a short reply can be complete by then, and it is then truncated,
    # not cancelled (another path, tested in test_e2e_call).
    run = live_bridge.place_call(standard_call(), standin={"speed": 1.0})
    [connection] = run.standin.connections
    cut = [d for d in connection.sent_of("response.done") if d["response"]["status"] == "cancelled"]
    assert len(cut) == 1
    cut_item = cut[0]["response"]["output"][0]["id"]
    transcript_items = {
        e["item_id"] for e in connection.sent_of("response.output_audio_transcript.done")
    }
    assert cut_item not in transcript_items  # the service sent no transcript event for it
    lines = call_rows(finished_call(run.report.call_id)).transcripts
    [interrupted] = [line for line in lines if line.interrupted]
    assert interrupted.item_id == cut_item
    assert interrupted.text == cut[0]["response"]["output"][0]["content"][0]["transcript"]
    [truncate] = connection.received_of("conversation.item.truncate")
    heard_ms = truncate.payload["audio_end_ms"]
    assert abs((interrupted.end_ms - interrupted.start_ms) - heard_ms) <= 2


# --- the edges of a call ----------------------------------------------------------------------


def test_a_slow_model_connect_loses_none_of_what_the_caller_said_meanwhile(live_bridge) -> None:
    """The service takes 12 s to configure the session: the caller's frames are read all the
    while (no burst past the frame budget afterwards) and reach the model once it is up."""
    from simulator.openai.standin import Faults

    live_bridge.settings.REALTIME_CONNECT_TIMEOUT_S = 20.0
    script = [Silence(0.5), Speak(1.5, seed=1), Silence(10.0), AwaitAgentPlayed(timeout_s=20),
              Silence(0.3)]  # fmt: skip
    run = live_bridge.place_call(
        script,
        standin={"faults": Faults(configure_delay_s=12.0, first_connections=2)},
        max_seconds=45,
    )
    assert run.report.script_error is None
    assert run.report.ended_by == "caller"
    connection = run.standin.connections[-1]
    assert bytes(connection.audio) == bytes(run.caller.sent_audio)
    assert run.standin.connection_count == 1  # the first attempt was given its time
    rows = call_rows(finished_call(run.report.call_id))
    assert rows.analytics.frames_malformed == 0
    assert [line.speaker for line in rows.transcripts][:2] == ["caller", "agent"]
    # The turn spoken while the session was connecting sits where it was spoken.
    assert abs(rows.transcripts[0].start_ms - run.caller.speech_spans_ms[0][0]) <= 400


@pytest.mark.parametrize("forgotten_by_this_process", [False, True])
def test_a_call_is_bridged_once_however_often_its_stream_token_is_replayed(
    live_bridge, forgotten_by_this_process: bool
) -> None:
    from e2e_support import AUTH_TOKEN, PUBLIC_BASE_URL

    from telephony.consumer import BRIDGED_CALLS

    async def scenario(standin: RealtimeStandIn, caller: SimulatedTwilioCaller) -> int | None:
        await caller.call([Silence(0.5), Speak(1.0, seed=1), AwaitAgentPlayed()])
        await asyncio.to_thread(finished_call, caller.call_id)  # over, its recording stored
        if forgotten_by_this_process:  # as if the replay reached a sibling process
            BRIDGED_CALLS.clear()
        replay = SimulatedTwilioCaller(
            live_bridge.url,
            auth_token=AUTH_TOKEN,
            public_base_url=PUBLIC_BASE_URL,
            call_sid=caller.call_sid,
            account_sid=caller.account_sid,
        )
        replay.stream = caller.stream  # the same callId and token, still within their TTL
        await replay.connect_stream()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(replay._closed.wait(), 5.0)
        assert standin.connection_count == 1
        return replay.close_code

    assert live_bridge.run(scenario) == 1008


def test_a_stream_of_another_twilio_account_is_refused(live_bridge) -> None:
    """With TWILIO_ACCOUNT_SID set, the stream's `start.accountSid` must name it too (the
    webhook's AccountSid is checked the same way: tests/telephony/test_webhooks.py)."""
    ours = "AC" + "0123456789abcdef" * 2
    live_bridge.settings.TWILIO_ACCOUNT_SID = ours

    async def scenario(standin: RealtimeStandIn, caller: SimulatedTwilioCaller) -> int | None:
        caller.webhook_params["AccountSid"] = ours  # the webhook is ours and is answered...
        await caller.place_call()
        caller.account_sid = "AC" + "f" * 32  # ...but the stream claims another account
        await caller.connect_stream()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(caller._closed.wait(), 5.0)
        assert standin.connection_count == 0
        return caller.close_code

    assert live_bridge.run(scenario) == 1008
