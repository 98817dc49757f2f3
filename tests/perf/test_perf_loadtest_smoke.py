"""The load generator's regression guard (not a timed test): 10 echo calls for a few seconds
against the real app on loopback lose no frame and fail no call, with a Realtime agent and with
a GPT-Live one (the bench's `live` row); the figures are printed."""

from __future__ import annotations

import asyncio

import pytest
from e2e_support import AUTH_TOKEN, PUBLIC_BASE_URL
from support import asgi_server_in_thread, free_port

from simulator.load import LoadConfig, run_load, summary


@pytest.fixture
def echo_bridge(transactional_db, settings, bridge_settings):
    standin_port = free_port()
    settings.OPENAI_REALTIME_URL = f"ws://127.0.0.1:{standin_port}/v1/realtime"
    settings.OPENAI_LIVE_URL = f"ws://127.0.0.1:{standin_port}/v1/live/sessions"
    with asgi_server_in_thread(free_port()) as server:
        yield server.url, standin_port


@pytest.mark.parametrize("backend", ["realtime", "gpt-live"])
def test_ten_echo_calls_lose_no_frame_and_fail_no_call(echo_bridge, backend: str) -> None:
    if backend == "gpt-live":
        from agents.services import agent_create

        # The simulated callers dial a number of no agent's: the default agent answers.
        fields = {"name": "Live", "slug": "live", "backend": backend, "is_default": True}
        agent_create(fields={**fields, "instructions": "Be brief."})
    url, standin_port = echo_bridge
    config = LoadConfig(
        url=url,
        calls=10,
        seconds=3.0,
        ramp_s=0.5,
        echo=True,
        auth_token=AUTH_TOKEN,
        public_base_url=PUBLIC_BASE_URL,
        standin_port=standin_port,
    )
    result = asyncio.run(run_load(config))
    print("\n".join(summary(result)))
    assert result.calls_failed == 0, result.failures
    assert result.frames_lost_in == 0
    assert result.frames_lost_out == 0
    assert result.foreign_frames == 0
    assert result.frames_sent >= 10 * 3.0 / 0.02 * 0.9
    assert result.inbound_ms["count"] > 0 and result.outbound_ms["count"] > 0
    protocol = "live" if backend == "gpt-live" else "realtime"
    assert result.model_sessions[protocol] == 10 and sum(result.model_sessions.values()) == 10


def test_frames_keep_their_tag_through_base64() -> None:
    import base64

    from simulator.load import BODY_B64, TAG, read_tag

    payload = base64.b64encode(TAG.pack(7, 123456)) + BODY_B64
    assert read_tag(payload, 0) == (7, 123456)
    assert len(base64.b64decode(payload)) == 160  # a whole 20 ms mu-law frame
