"""The bridge under faults from each side, over real sockets: who gets in, what survives."""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET

import pytest
from db_faults import database_locked, short_lock_timeout
from e2e_support import call_rows, finished_call, wait_for

from simulator.openai.connection import Faults
from simulator.twilio.caller import CallEnded
from simulator.twilio.script import AwaitAgentPlayed, Raw, Silence, Speak, standard_call

pytestmark = pytest.mark.slow

POLICY_VIOLATION = 1008


async def _connect_and_wait_for_close(caller) -> int | None:
    """Open the stream (the server may close it before `start` is even sent)."""
    with contextlib.suppress(CallEnded):
        await caller.connect_stream()
    await asyncio.wait_for(caller._closed.wait(), 15)
    return caller.close_code


def test_bad_stream_token_is_closed_with_1008(live_bridge) -> None:
    async def scenario(model, caller):
        await caller.place_call()
        caller.stream.parameters["token"] = "9999999999.forged"
        return await _connect_and_wait_for_close(caller)

    assert live_bridge.run(scenario) == POLICY_VIOLATION


def test_stream_token_of_another_call_is_refused(live_bridge) -> None:
    async def scenario(model, caller):
        await caller.place_call()
        caller.call_sid = "CA" + "0" * 32  # a token signed for one CallSid, used by another
        return await _connect_and_wait_for_close(caller)

    assert live_bridge.run(scenario) == POLICY_VIOLATION


def test_bad_upgrade_signature_is_closed_with_1008(live_bridge) -> None:
    async def scenario(model, caller):
        await caller.place_call()
        caller.auth_token = "f" * 32  # signs the upgrade with the wrong token
        return await _connect_and_wait_for_close(caller), model.connection_count

    code, model_connections = live_bridge.run(scenario)
    assert code == POLICY_VIOLATION
    assert model_connections == 0  # nothing reached the model


def test_malformed_frames_are_counted_and_the_call_goes_on(live_bridge) -> None:
    script = [
        Silence(0.3),
        Raw("not json at all"),
        Raw(b"\x00\x01 binary"),
        Raw('{"event": "media", "media": {"payload": "!!!not base64", "timestamp": "10"}}'),
        Raw('{"event": "media", "media": {"payload": 42}}'),
        Speak(1.5, seed=1),
        AwaitAgentPlayed(),
        Silence(0.3),
    ]
    run = live_bridge.place_call(script)
    assert run.report.script_error is None
    assert run.report.played_s > 0.5  # the agent was heard after the garbage
    call = finished_call(run.report.call_id)
    rows = call_rows(call)
    assert rows.analytics.frames_malformed == 4
    assert [line.speaker for line in rows.transcripts] == ["caller", "agent"]
    assert call.end_reason == "caller hung up"


def test_model_drop_mid_call_reconnects_replays_context_and_continues(live_bridge) -> None:
    script = [
        Silence(0.3),
        Speak(1.5, seed=1),
        AwaitAgentPlayed(quiet_s=1.5),  # the drop happens in this pause
        Speak(1.5, seed=2),
        AwaitAgentPlayed(),
        Silence(0.3),
    ]

    async def drop_after_first_reply(model, caller) -> None:
        await model.wait_until(
            lambda: bool(caller.played) and len(caller.played) == len(caller.agent_audio), 20
        )
        await model.drop_connections()

    run = live_bridge.place_call(script, during=drop_after_first_reply)
    assert run.report.script_error is None
    first, second = run.standin.connections
    assert first.dropped
    replayed = [
        event.payload["item"]["content"][0]
        for event in second.received_of("conversation.item.create")
    ]
    assert [part["text"] for part in replayed] == [
        run.standin.caller_line(0),
        run.standin.reply_for(0).text,
    ]
    assert second.sent_of("response.output_audio.delta")  # the call went on with the new session
    call = finished_call(run.report.call_id)
    rows = call_rows(call)
    assert rows.analytics.reconnects == 1
    assert [line.speaker for line in rows.transcripts] == ["caller", "agent", "caller", "agent"]


def test_model_unreachable_ends_the_call_cleanly_with_its_reason(live_bridge) -> None:
    run = live_bridge.place_call(
        [Silence(20)], standin={"faults": Faults(refuse="handshake")}, max_seconds=30
    )
    # The bridge closed the stream itself; Twilio asks <Connect action> how to go on and is
    # told to play the fallback.
    assert run.report.ended_by == "server"
    assert run.report.close_code == 1000
    after = ET.fromstring(run.caller.after_stream_twiml or "<Response/>")
    assert (after[0].tag, after[0].text) == ("Say", live_bridge.settings.FALLBACK_MESSAGE)
    assert run.standin.connection_count == 0
    assert len(run.standin.handshakes) == 1 + live_bridge.settings.REALTIME_MAX_RECONNECTS
    call = finished_call(run.report.call_id)
    assert call.end_reason.startswith("model unavailable")
    assert call.status == "completed"


def test_database_outage_mid_call_loses_no_transcript_line(live_bridge) -> None:
    script = [
        Silence(0.3),
        Speak(1.5, seed=1),
        AwaitAgentPlayed(),
        Speak(1.5, seed=2),
        AwaitAgentPlayed(),
        Silence(0.3),
    ]

    async def outage_during_the_call(model, caller) -> None:
        await model.wait_until(lambda: bool(caller.agent_arrivals), 20)
        with database_locked():
            await asyncio.sleep(4.0)  # the second turn happens while writes fail

    with short_lock_timeout():
        run = live_bridge.place_call(script, during=outage_during_the_call)
        assert run.report.script_error is None
        assert run.report.played_s > 2  # both replies heard: audio flowed through the outage
        call = finished_call(run.report.call_id, timeout_s=30)
    rows = call_rows(call)
    assert [line.speaker for line in rows.transcripts] == ["caller", "agent", "caller", "agent"]
    assert rows.recording is not None


@pytest.mark.parametrize("how", ["close", "abort"])
def test_hang_up_without_stop_still_finalizes(live_bridge, how: str) -> None:
    run = live_bridge.place_call(standard_call(barge_in=False)[:3], hang_up=how)
    call = finished_call(run.report.call_id)
    rows = call_rows(call)
    assert call.end_reason == "media stream closed without stop"
    assert rows.recording is not None and rows.recording.duration_s > 1.5
    assert [line.speaker for line in rows.transcripts] == ["caller", "agent"]


def test_dtmf_is_recorded_and_forwarded_to_the_model(live_bridge) -> None:
    from simulator.twilio.script import Dtmf

    run = live_bridge.place_call([Silence(0.3), Dtmf("7"), AwaitAgentPlayed(), Silence(0.3)])
    texts = [
        event.payload["item"]["content"][0]["text"]
        for event in run.standin.connections[0].received_of("conversation.item.create")
    ]
    assert texts == ["The caller pressed 7 on the keypad."]
    call = finished_call(run.report.call_id)
    assert wait_for(lambda: call.transcripts.filter(text="[DTMF 7]").exists(), 5)


def test_a_stream_that_never_sends_start_is_closed(live_bridge) -> None:
    from twilio.request_validator import RequestValidator
    from websockets.asyncio.client import connect

    live_bridge.settings.STREAM_START_TIMEOUT_S = 1.0

    async def scenario(model, caller):
        await caller.place_call()
        signature = RequestValidator(caller.auth_token).compute_signature(caller.stream.url, {})
        async with connect(
            caller.stream_connect_url(), additional_headers={"X-Twilio-Signature": signature}
        ) as ws:
            started = asyncio.get_running_loop().time()
            await ws.send('{"event": "connected", "protocol": "Call", "version": "1.0.0"}')
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code, asyncio.get_running_loop().time() - started

    code, waited = live_bridge.run(scenario)
    assert code == POLICY_VIOLATION
    assert 0.8 <= waited < 5


def test_the_same_stream_connecting_twice_is_refused(live_bridge) -> None:
    from simulator.twilio.caller import SimulatedTwilioCaller

    async def scenario(model, caller):
        await caller.place_call()
        await caller.connect_stream()
        first_call = asyncio.create_task(
            caller.run([Silence(0.3), Speak(1.5, seed=1), AwaitAgentPlayed(), Silence(0.3)])
        )
        await asyncio.sleep(0.5)
        twin = SimulatedTwilioCaller(
            caller.server_url,
            auth_token=caller.auth_token,
            public_base_url=caller.public_base_url,
            call_sid=caller.call_sid,
        )
        twin.stream = caller.stream  # the same TwiML: same call id and token
        code = await _connect_and_wait_for_close(twin)
        await first_call
        await caller.hang_up("stop")
        return code, caller.report()

    code, report = live_bridge.run(scenario)
    assert code == POLICY_VIOLATION
    assert report.played_s > 0.5  # the first stream was not disturbed
    call = finished_call(report.call_id)
    assert call.end_reason == "caller hung up"


def _two_turns_with_a_pause(pause_s: float) -> list:
    return [
        Silence(0.3),
        Speak(1.5, seed=1),
        AwaitAgentPlayed(quiet_s=pause_s),  # the fault happens in this pause
        Speak(1.5, seed=2),
        AwaitAgentPlayed(),
        Silence(0.3),
    ]


def _after_first_reply_played(model, caller):
    return model.wait_until(
        lambda: bool(caller.played) and len(caller.played) == len(caller.agent_audio), 20
    )


@pytest.mark.parametrize("fault", ["session_expired", "stall"])
def test_model_session_expiry_and_stall_are_survived(live_bridge, fault: str) -> None:
    live_bridge.settings.REALTIME_PING_INTERVAL_S = 0.3
    live_bridge.settings.REALTIME_PING_TIMEOUT_S = 0.3

    async def inject(model, caller) -> None:
        await _after_first_reply_played(model, caller)
        if fault == "stall":
            await model.stall_connections()
        else:
            await model.expire_sessions()

    run = live_bridge.place_call(_two_turns_with_a_pause(2.5), during=inject)
    assert run.report.script_error is None
    first, second = run.standin.connections
    if fault == "session_expired":
        assert first.close_code == 1001
    else:
        assert first.stalled
    assert second.sent_of("response.output_audio.delta")
    call = finished_call(run.report.call_id)
    rows = call_rows(call)
    assert rows.analytics.reconnects == 1
    assert [line.speaker for line in rows.transcripts] == ["caller", "agent", "caller", "agent"]


def test_repeated_model_drops_are_each_survived(live_bridge) -> None:
    script = [Silence(0.3)]
    for turn in range(3):
        script += [Speak(1.2, seed=turn + 1), AwaitAgentPlayed(quiet_s=1.5)]

    async def drop_after_each_reply(model, caller) -> None:
        for replies in (1, 2):
            await model.wait_until(
                lambda n=replies: (
                    len(caller.played) == len(caller.agent_audio)
                    and len(model.connections) == n
                    and bool(model.connections[-1].sent_of("response.done"))
                ),
                30,
            )
            await model.drop_connections()

    run = live_bridge.place_call(script, during=drop_after_each_reply)
    assert run.report.script_error is None
    assert len(run.standin.connections) == 3
    rows = call_rows(finished_call(run.report.call_id))
    assert rows.analytics.reconnects == 2
    assert [line.speaker for line in rows.transcripts] == ["caller", "agent"] * 3


def test_gaps_and_reordered_chunks_are_counted_not_fatal(live_bridge) -> None:
    async def scenario(model, caller):
        await caller.place_call()
        await caller.connect_stream()
        await caller.run([Silence(0.5)])
        caller.frames_sent += 5  # skip five chunk numbers: a gap of 100 ms
        late = '{"event": "media", "media": {"track": "inbound", "chunk": "3", "timestamp": "40", '
        late += '"payload": "' + "/" * 160 + '"}, "streamSid": "' + caller.stream_sid + '"}'
        await caller.run([Speak(1.5, seed=1), Raw(late), AwaitAgentPlayed(), Silence(0.3)])
        await caller.hang_up("stop")
        return caller.report()

    report = live_bridge.run(scenario)
    assert report.script_error is None
    call = finished_call(report.call_id)
    rows = call_rows(call)
    assert rows.analytics.frames_missing == 5
    assert (call.metadata.frames_missing, call.metadata.frames_late) == (5, 1)
    assert rows.analytics.frames_malformed == 0
    assert [line.speaker for line in rows.transcripts] == ["caller", "agent"]


def test_model_error_events_are_counted_and_the_call_goes_on(live_bridge) -> None:
    async def errors_after_first_reply(model, caller) -> None:
        await _after_first_reply_played(model, caller)
        await model.send_error("The server had an error while processing", code="server_error")
        await model.send_error("Rate limit reached", code="rate_limit_exceeded")

    run = live_bridge.place_call(_two_turns_with_a_pause(1.0), during=errors_after_first_reply)
    assert run.report.script_error is None
    assert len(run.standin.connections) == 1  # no reconnect: the session survived
    rows = call_rows(finished_call(run.report.call_id))
    assert rows.analytics.reconnects == 0
    assert rows.analytics.model_errors == 2
    assert [line.speaker for line in rows.transcripts] == ["caller", "agent", "caller", "agent"]


@pytest.mark.parametrize(
    ("transcription_delay_s", "asked_again"),
    [(0.0, True), (1.5, False)],
    ids=["turn-transcribed-before-the-drop", "turn-transcribed-after-the-drop"],
)
def test_a_reply_lost_in_a_drop_is_asked_for_again(
    live_bridge, transcription_delay_s: float, asked_again: bool
) -> None:
    """The reply dies with the socket. If the caller's turn was already in the conversation
    as text, the new session is asked to answer it; if its transcription died with the
    socket too, its audio is replayed and the new session's VAD answers it. Either way the
    caller is answered once."""

    async def drop_mid_reply(model, caller) -> None:
        await model.wait_until(
            lambda: (
                bool(model.connections) and bool(model.connections[0].sent_of("response.created"))
            ),
            20,
        )
        await model.drop_connections()

    script = [Silence(0.3), Speak(1.5, seed=1), AwaitAgentPlayed(timeout_s=15), Silence(0.3)]
    timing = {"transcription_delay_s": transcription_delay_s, "transcription_failure_rate": 0.0}
    run = live_bridge.place_call(script, standin={"speed": 1.0, **timing}, during=drop_mid_reply)
    assert run.report.script_error is None  # the caller was answered, by the new session
    first, second = run.standin.connections
    assert not first.sent_of("response.done")  # the first reply died with the socket
    assert bool(second.received_of("response.create")) == asked_again
    assert len(second.sent_of("response.created")) == 1
    assert second.sent_of("response.output_audio.delta")
    rows = call_rows(finished_call(run.report.call_id))
    assert rows.analytics.reconnects == 1
    assert [line.speaker for line in rows.transcripts] == ["caller", "agent"]


def test_a_turn_cut_by_a_drop_is_heard_again_and_answered(live_bridge) -> None:
    async def drop_mid_second_turn(model, caller) -> None:
        await model.wait_until(
            lambda: (
                bool(model.connections)
                and len(model.connections[0].sent_of("input_audio_buffer.speech_started")) == 2
            ),
            20,
        )
        await asyncio.sleep(0.6)  # the caller is half-way through the turn
        await model.drop_connections()

    script = [
        Silence(0.3),
        Speak(1.5, seed=1),
        AwaitAgentPlayed(),
        Silence(0.5),
        Speak(2.0, seed=2),  # the drop lands in here
        AwaitAgentPlayed(timeout_s=15),
        Silence(0.3),
    ]
    run = live_bridge.place_call(script, during=drop_mid_second_turn)
    assert run.report.script_error is None  # answered, by the new session
    first, second = run.standin.connections
    assert first.dropped and len(first.sent_of("input_audio_buffer.speech_stopped")) == 1
    # The new session got the cut turn again (the audio since the last transcribed turn),
    # then the rest of the call: it ends with everything the caller sent after the drop.
    sent = bytes(run.caller.sent_audio)
    assert len(second.audio) > len(sent) - len(first.audio)
    assert sent.endswith(bytes(second.audio))
    rows = call_rows(finished_call(run.report.call_id))
    assert rows.analytics.reconnects == 1
    assert [line.speaker for line in rows.transcripts] == ["caller", "agent", "caller", "agent"]
    # The cut turn sits on the call's timeline where it was spoken (less the VAD's 300 ms
    # prefix padding), not where the new session's audio began.
    spoken_at = run.caller.speech_spans_ms[1][0]
    assert abs(rows.transcripts[2].start_ms - (spoken_at - 300)) <= 100, (
        rows.transcripts[2].start_ms,
        spoken_at,
    )


def test_a_frame_flood_is_cut_off_and_the_call_is_kept(live_bridge) -> None:
    async def scenario(model, caller):
        await caller.place_call()
        await caller.connect_stream()
        await caller.run([Silence(0.3), Speak(1.0, seed=1)])
        frame = (
            '{"event": "media", "media": {"track": "inbound", "chunk": "1", "timestamp": "0", '
            '"payload": "' + "/" * 216 + '"}, "streamSid": "' + caller.stream_sid + '"}'
        )
        with contextlib.suppress(Exception):
            for _ in range(5000):  # as fast as the socket takes them: ~100x Twilio's rate
                await caller.ws.send(frame)
        await asyncio.wait_for(caller._closed.wait(), 15)
        return caller.close_code, caller.call_id

    code, call_id = live_bridge.run(scenario)
    assert code == POLICY_VIOLATION
    call = finished_call(call_id)
    assert call.end_reason == "media stream closed: frame flood"
    assert call_rows(call).recording is not None


def test_frame_budget_refills_at_its_rate() -> None:
    from telephony.consumer import FrameBudget

    budget = FrameBudget(rate=50, burst=10)
    budget.updated = 0.0
    assert all(budget.take(0.0) for _ in range(10))
    assert not budget.take(0.0)  # the burst is spent
    assert budget.take(0.02)  # 20 ms later: one frame's worth
    assert not budget.take(0.02)
    assert sum(budget.take(10.0) for _ in range(100)) == 10  # refills to the burst, no more
