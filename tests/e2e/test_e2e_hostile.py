"""Hostile media streams: whatever is thrown at /streams, the process keeps serving calls.

Frames come from hypothesis: malformed JSON, wrong types, unknown events, out-of-order and
oversized messages, on streams that did and did not pass the handshake. Meanwhile a real call
runs on the same server and must complete untouched, and /health must stay green.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading

import pytest
from e2e_support import AUTH_TOKEN, PUBLIC_BASE_URL, call_rows, finished_call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import http_get
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from simulator.twilio.caller import CallEnded, SimulatedTwilioCaller
from simulator.twilio.script import standard_call

pytestmark = pytest.mark.slow

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
events = st.sampled_from(["media", "start", "mark", "dtmf", "stop", "connected", "clear", "x"])
twilio_shaped = st.fixed_dictionaries(
    {"event": events},
    optional={
        "sequenceNumber": json_values,
        "streamSid": json_values,
        "media": st.fixed_dictionaries(
            {},
            optional={
                "payload": st.one_of(st.text(max_size=300), json_values),
                "timestamp": st.one_of(st.text(max_size=12), json_values),
                "chunk": st.one_of(st.text(max_size=12), json_values),
                "track": json_values,
            },
        ),
        "start": json_values,
        "mark": json_values,
        "dtmf": json_values,
    },
)
frames = st.one_of(
    twilio_shaped.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.just("x" * 70_000),  # over the 64 KiB message cap
)


async def _throw(caller: SimulatedTwilioCaller, batch: list, *, handshake: bool) -> None:
    """Send a batch of frames on a fresh stream (after a valid start, or instead of one)."""
    await caller.place_call()
    if handshake:
        with contextlib.suppress(CallEnded):
            await caller.connect_stream()
        ws = caller.ws
    else:
        from twilio.request_validator import RequestValidator

        signature = RequestValidator(AUTH_TOKEN).compute_signature(caller.stream.url, {})
        ws = await connect(
            caller.stream_connect_url(), additional_headers={"X-Twilio-Signature": signature}
        )
    with contextlib.suppress(ConnectionClosed):
        for frame in batch:
            await ws.send(frame)
    await ws.close()


def test_hostile_frames_never_break_the_server(live_bridge, error_log) -> None:
    real_call: dict = {}
    model_up, barrage_over = threading.Event(), threading.Event()

    async def real_call_beside_the_barrage(model, caller):
        model_up.set()  # the hostile streams' calls reach this stand-in too
        real_call["report"] = await caller.call(standard_call(barge_in=False), max_seconds=60)
        await asyncio.to_thread(barrage_over.wait, 120)

    worker = threading.Thread(target=live_bridge.run, args=(real_call_beside_the_barrage,))
    worker.start()
    assert model_up.wait(20)

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(batch=st.lists(frames, min_size=1, max_size=30), handshake=st.booleans())
    def barrage(batch: list, handshake: bool) -> None:
        caller = SimulatedTwilioCaller(
            live_bridge.url, auth_token=AUTH_TOKEN, public_base_url=PUBLIC_BASE_URL
        )
        asyncio.run(asyncio.wait_for(_throw(caller, batch, handshake=handshake), 20))
        assert http_get(f"{live_bridge.url}/health").status == 200

    try:
        barrage()
    finally:
        barrage_over.set()
        worker.join(timeout=90)
    assert [r.getMessage() for r in error_log.records] == []
    report = real_call["report"]
    assert report.script_error is None
    rows = call_rows(finished_call(report.call_id))
    assert [line.speaker for line in rows.transcripts] == ["caller", "agent", "caller", "agent"]
