"""The simulated caller places calls the way Twilio does, against a fake bridge server."""

from __future__ import annotations

import asyncio
import base64
import re
import statistics
import time
from typing import Any

import numpy as np
import orjson
import pytest
from sim_support import AUTH_TOKEN, PUBLIC_BASE_URL, TWIML_STREAM_URL, FakeBridge
from twilio.request_validator import RequestValidator
from websockets.asyncio.server import ServerConnection

from audio.g711 import ulaw_decode, ulaw_encode
from simulator.speech import speech
from simulator.twilio.caller import SimulatedTwilioCaller, WebhookRejected, parse_twiml
from simulator.twilio.script import (
    AwaitAgentAudio,
    AwaitAgentPlayed,
    Dtmf,
    Raw,
    Silence,
    Speak,
    standard_call,
)

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


def _caller(bridge: FakeBridge, token: str = AUTH_TOKEN) -> SimulatedTwilioCaller:
    return SimulatedTwilioCaller(
        bridge.url,
        auth_token=token,
        public_base_url=PUBLIC_BASE_URL,
        stream_base_url=bridge.stream_base,
    )


def _agent_media(stream_sid: str, audio: bytes) -> str:
    payload = base64.b64encode(audio).decode()
    return orjson.dumps(
        {"event": "media", "streamSid": stream_sid, "media": {"payload": payload}}
    ).decode()


def _mark(stream_sid: str, name: str) -> str:
    return orjson.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}).decode()


def _sid(start: dict[str, Any]) -> str:
    return start["start"]["streamSid"]


async def test_the_webhook_is_signed_like_twilio_and_the_twiml_is_read(fake_bridge: FakeBridge):
    caller = _caller(fake_bridge)
    async with asyncio.timeout(10):
        stream = await caller.place_call()
    request = fake_bridge.webhook_requests[0]
    assert request["valid"]  # RequestValidator over PUBLIC_BASE_URL + path and the form
    assert request["line"] == "POST /twilio/incoming-call HTTP/1.1"
    assert request["headers"]["content-type"].startswith("application/x-www-form-urlencoded")
    params = request["params"]
    assert re.fullmatch(r"CA[0-9a-f]{32}", params["CallSid"])
    assert re.fullmatch(r"AC[0-9a-f]{32}", params["AccountSid"])
    assert params["CallStatus"] == "ringing"
    assert params["Direction"] == "inbound"
    assert params["ApiVersion"] == "2010-04-01"
    assert {"From", "To", "FromCity", "FromState", "FromCountry", "FromZip", "CallerName"} <= set(
        params
    )
    assert stream.url == TWIML_STREAM_URL
    assert stream.parameters == fake_bridge.parameters
    assert caller.call_id == fake_bridge.parameters["callId"]


async def test_a_wrong_auth_token_is_refused(fake_bridge: FakeBridge):
    caller = _caller(fake_bridge, token="f" * 32)
    async with asyncio.timeout(10):
        with pytest.raises(WebhookRejected) as rejected:
            await caller.place_call()
    assert rejected.value.status == 403
    assert not fake_bridge.webhook_requests[0]["valid"]


def test_twiml_without_a_stream_is_a_rejection():
    with pytest.raises(WebhookRejected, match="no <Connect><Stream"):
        parse_twiml("<Response><Say>Sorry.</Say><Hangup/></Response>")


async def test_the_stream_opens_signed_over_the_twiml_url_with_connected_and_start(
    fake_bridge: FakeBridge,
):
    caller = _caller(fake_bridge)
    async with asyncio.timeout(10):
        await caller.place_call()
        await caller.connect_stream()
        await caller.run([Silence(0.1)])
        await caller.hang_up()
        await asyncio.sleep(0.05)
    signature = fake_bridge.upgrade_headers["x-twilio-signature"]
    assert RequestValidator(AUTH_TOKEN).validate(TWIML_STREAM_URL, {}, signature)
    connected, start, *_ = fake_bridge.messages()
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start["event"] == "start" and start["sequenceNumber"] == "1"
    body = start["start"]
    assert start["streamSid"] == body["streamSid"] == caller.stream_sid
    assert body["callSid"] == caller.call_sid and body["accountSid"] == caller.account_sid
    assert body["tracks"] == ["inbound"]
    assert body["customParameters"] == fake_bridge.parameters
    assert body["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    stop = fake_bridge.messages("stop")[0]
    assert stop["stop"] == {"accountSid": caller.account_sid, "callSid": caller.call_sid}


async def test_media_frames_are_paced_in_real_time_with_numbers_as_strings(
    fake_bridge: FakeBridge,
):
    caller = _caller(fake_bridge)
    async with asyncio.timeout(10):
        await caller.place_call()
        await caller.connect_stream()
        await caller.run([Speak(0.6, seed=2), Silence(0.4)])
        await caller.hang_up()
        await asyncio.sleep(0.05)
    media = [(f.at, f.message) for f in fake_bridge.frames if '"media"' in str(f.text)[:20]]
    assert len(media) == 50 == caller.frames_sent
    # Absolute schedule: frame n leaves n * 20 ms after the first slot. A late frame (the
    # first waits for its speech to be synthesised) is caught up, so nothing drifts.
    offsets = [at - n * 0.020 for n, (at, _) in enumerate(media)]
    assert max(offsets) - min(offsets) < 0.05
    assert abs(statistics.fmean(offsets[-10:]) - statistics.fmean(offsets[5:15])) < 0.01
    for n, (_, message) in enumerate(media):
        fields = message["media"]
        assert message["sequenceNumber"] == str(n + 2)  # connected has none, start is 1
        assert (fields["chunk"], fields["timestamp"], fields["track"]) == (
            str(n + 1),
            str(n * 20),
            "inbound",
        )
        assert message["streamSid"] == caller.stream_sid
    payloads = [base64.b64decode(m["media"]["payload"]) for _, m in media]
    assert {len(p) for p in payloads} == {160}
    spoken = ulaw_decode(b"".join(payloads[:30]))
    assert np.array_equal(spoken, ulaw_decode(ulaw_encode(speech(0.6, seed=2))))
    assert set(b"".join(payloads[30:])) == {0xFF}  # silence is still streamed
    assert caller.speech_spans_ms == [(0.0, 600.0)]


async def test_marks_are_echoed_only_once_playback_reaches_them(fake_bridge: FakeBridge):
    sent_at: dict[str, float] = {}

    async def play_one_second(ws: ServerConnection, start: dict[str, Any]) -> None:
        sid = _sid(start)
        await ws.send(_agent_media(sid, b"\x10" * 8000))  # 1 s of audio
        await ws.send(_mark(sid, "after-1s"))
        sent_at["after-1s"] = time.monotonic()

    fake_bridge.on_start = play_one_second
    caller = _caller(fake_bridge)
    async with asyncio.timeout(10):
        await caller.place_call()
        await caller.connect_stream()
        await caller.run([Silence(1.5)])
        await caller.hang_up()
    echoes = [f for f in fake_bridge.frames if '"mark"' in str(f.text)]
    assert [f.message["mark"]["name"] for f in echoes] == ["after-1s"]
    assert echoes[0].message["streamSid"] == caller.stream_sid
    assert 0.9 < echoes[0].at - sent_at["after-1s"] < 1.2
    assert bytes(caller.played) == b"\x10" * 8000
    assert caller.marks_received == ["after-1s"]


async def test_clear_flushes_the_buffer_and_echoes_pending_marks_at_once(fake_bridge: FakeBridge):
    cleared_at: list[float] = []

    async def play_then_clear(ws: ServerConnection, start: dict[str, Any]) -> None:
        sid = _sid(start)
        for name in ("first", "second"):
            await ws.send(_agent_media(sid, b"\x20" * 8000))
            await ws.send(_mark(sid, name))
        await asyncio.sleep(0.5)
        await ws.send(orjson.dumps({"event": "clear", "streamSid": sid}).decode())
        cleared_at.append(time.monotonic())

    fake_bridge.on_start = play_then_clear
    caller = _caller(fake_bridge)
    async with asyncio.timeout(10):
        await caller.place_call()
        await caller.connect_stream()
        await caller.run([Silence(1.2)])
        await caller.hang_up()
    echoes = [f for f in fake_bridge.frames if '"mark"' in str(f.text)]
    assert [f.message["mark"]["name"] for f in echoes] == ["first", "second"]
    assert all(0 <= f.at - cleared_at[0] < 0.1 for f in echoes)
    assert len(caller.agent_audio) == 16000  # everything received, before the clear
    assert 3200 <= len(caller.played) <= 4800  # about 0.5 s was heard
    assert len(caller.clears_ms) == 1


async def test_agent_triggered_steps_follow_what_was_received_and_played(fake_bridge: FakeBridge):
    async def reply_after_half_a_second(ws: ServerConnection, start: dict[str, Any]) -> None:
        await asyncio.sleep(0.5)
        await ws.send(_agent_media(_sid(start), b"\x30" * 4800))  # 0.6 s

    fake_bridge.on_start = reply_after_half_a_second
    caller = _caller(fake_bridge)
    async with asyncio.timeout(10):
        await caller.place_call()
        await caller.connect_stream()
        await caller.run([AwaitAgentAudio(then_s=0.3), Speak(0.2), AwaitAgentPlayed(quiet_s=0.2)])
        await caller.hang_up()
    arrival = caller.agent_arrivals[0][0]
    speech_start, _ = caller.speech_spans_ms[0]
    assert 280 <= speech_start - arrival <= 360  # barge-in 0.3 s into the reply
    # AwaitAgentPlayed ended once the 0.6 s reply was heard to the end, plus 0.2 s.
    assert len(caller.played) == 4800
    assert arrival + 600 + 200 <= caller.frames_sent * 20 <= arrival + 600 + 200 + 80


async def test_dtmf_malformed_frames_and_hanging_up_without_stop(fake_bridge: FakeBridge):
    caller = _caller(fake_bridge)
    async with asyncio.timeout(10):
        await caller.place_call()
        await caller.connect_stream()
        await caller.run([Dtmf("5"), Raw("{not json"), Raw(b"\x00\x01binary"), Silence(0.06)])
        await caller.hang_up("close")
        await asyncio.sleep(0.05)
    dtmf = fake_bridge.messages("dtmf")[0]
    assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "5"}
    assert dtmf["streamSid"] == caller.stream_sid and dtmf["sequenceNumber"] == "2"
    raw = [f.text for f in fake_bridge.frames]
    assert "{not json" in raw and b"\x00\x01binary" in raw
    assert fake_bridge.messages("stop") == []
    assert caller.close_code == 1000


async def test_a_whole_call_reports_what_the_caller_saw(fake_bridge: FakeBridge):
    async def answer_each_turn(ws: ServerConnection, start: dict[str, Any]) -> None:
        # A crude agent: 0.5 s of reply (and a mark) after 0.4 s of silence following speech.
        sid, quiet, spoke, turn = _sid(start), 0, False, 0
        async for message in _media_of(fake_bridge):
            silent = set(base64.b64decode(message["media"]["payload"])) == {0xFF}
            quiet = quiet + 1 if silent else 0
            spoke = spoke or not silent
            if spoke and quiet == 20:
                spoke, turn = False, turn + 1
                await ws.send(_agent_media(sid, b"\x40" * 4000))
                await ws.send(_mark(sid, f"turn-{turn}"))

    fake_bridge.on_start = answer_each_turn
    caller = _caller(fake_bridge)
    script = [Speak(0.8), AwaitAgentPlayed(quiet_s=0.1), Speak(0.8), AwaitAgentPlayed(quiet_s=0.1)]
    async with asyncio.timeout(15):
        report = await caller.call(script)
    assert report.ended_by == "caller" and report.script_error is None
    assert report.call_id == fake_bridge.parameters["callId"]
    assert report.marks_received == report.marks_echoed == 2
    assert report.agent_audio_s == report.played_s == 1.0
    assert len(report.latencies_ms) == 2
    assert all(380 <= ms <= 700 for ms in report.latencies_ms)
    assert report.protocol_errors == []


async def _media_of(bridge: FakeBridge):
    seen = 0
    while True:
        while seen < len(bridge.frames):
            text = bridge.frames[seen].text
            seen += 1
            if isinstance(text, str) and '"media"' in text[:20]:
                yield orjson.loads(text)
        await asyncio.sleep(0.005)


async def test_the_server_closing_the_stream_ends_the_call(fake_bridge: FakeBridge):
    async def hang_up_soon(ws: ServerConnection, start: dict[str, Any]) -> None:
        await asyncio.sleep(0.2)
        await ws.close(1000)

    fake_bridge.on_start = hang_up_soon
    caller = _caller(fake_bridge)
    async with asyncio.timeout(10):
        report = await caller.call([Speak(2.0)])
    assert report.ended_by == "server"
    assert report.close_code == 1000
    assert report.frames_sent < 30


def test_the_standard_call_script_has_two_turns_and_a_barge_in():
    steps = standard_call()
    speaks = [s for s in steps if isinstance(s, Speak)]
    assert [s.seconds for s in speaks] == [1.5, 1.5, 1.0]
    barge_in = steps[steps.index(speaks[2]) - 1]
    assert barge_in == AwaitAgentAudio(then_s=0.8)
    assert len([s for s in standard_call(barge_in=False) if isinstance(s, Speak)]) == 2
