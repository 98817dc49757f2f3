"""`manage.py simulate_call` against the real server, with the stand-in the command runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import (
    base_env,
    free_port,
    manage,
    running_process,
    uvicorn_command,
    wait_for_http,
)

from simulator.management.commands.simulate_call import loopback_standin_port

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"


def test_loopback_standin_port_reads_only_local_ws_urls():
    assert loopback_standin_port("ws://127.0.0.1:8765/v1/realtime") == 8765
    assert loopback_standin_port("ws://localhost:9000/v1/realtime") == 9000
    assert loopback_standin_port("wss://api.openai.com/v1/realtime") is None
    assert loopback_standin_port("ws://10.0.0.5:8765/v1/realtime") is None


def test_no_server_is_a_clear_error():
    port = free_port()
    result = manage(
        base_env(DJANGO_ENV="development"),
        "simulate_call",
        "--url",
        f"http://127.0.0.1:{port}",
        timeout=60,
    )
    assert result.returncode != 0
    assert "make run" in result.stderr


@pytest.mark.slow
def test_simulate_call_places_a_signed_call_with_a_barge_in(tmp_path: Path):
    port, standin_port = free_port(), free_port()
    env = base_env(
        DJANGO_ENV="development",
        DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3",
        RECORDING_STORAGE_PATH=str(tmp_path / "recordings"),
        PORT=str(port),
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        # The server and the command share it: the command runs the stand-in there.
        OPENAI_REALTIME_URL=f"ws://127.0.0.1:{standin_port}/v1/realtime",
        # Where no make-run REST stand-in listens: this call goes without one.
        TWILIO_STANDIN_PORT=str(free_port()),
    )
    assert manage(env, "migrate", "--noinput", "-v0").returncode == 0
    with running_process(uvicorn_command(port), env, tmp_path / "server.log") as server:
        wait_for_http(f"http://127.0.0.1:{port}/health", server, deadline_s=30)
        result = manage(env, "simulate_call", "--barge-in", timeout=90)
    output = result.stdout
    assert result.returncode == 0, result.stderr + output
    assert f"Realtime stand-in running at ws://127.0.0.1:{standin_port}" in output
    assert "ended by caller (close code 1000)" in output
    clears = re.search(r"clears \(barge-in\): (.*)", output)
    assert clears is not None and clears.group(1) != "none"
    latencies = re.search(r"first agent audio: (.*)", output)
    assert latencies is not None and len(latencies.group(1).split(",")) == 3
    assert re.search(r"/admin/calls/call/[0-9a-f-]{36}/change/", output)
    server_log = (tmp_path / "server.log").read_text()
    assert "call ended: caller hung up" in server_log

    # The server's record beside what the caller saw: the latency both measured agrees, the
    # reply the caller talked over is marked, and the cost is the reported usage at list price.
    caller_avg = float(re.search(r"caller measured it: avg (\d+) ms", output).group(1))
    server_avg = float(re.search(r"server measured it: avg (\d+) ms", output).group(1))
    assert abs(caller_avg - server_avg) <= 60, output
    assert re.search(r"agent .* \[interrupted\]", output), output
    usage = re.search(
        r"audio in (\d+) \(cached (\d+)\), text in (\d+) \(cached (\d+)\), "
        r"audio out (\d+), text out (\d+) tokens",
        output,
    )
    audio_in, cached_audio, text_in, cached_text, audio_out, text_out = map(int, usage.groups())
    list_price = (
        (audio_in - cached_audio) * 32 + cached_audio * 0.40 + (text_in - cached_text) * 4
        + cached_text * 0.40 + audio_out * 64 + text_out * 16
    ) / 1_000_000  # fmt: skip
    cost = float(re.search(r"cost at list price: \$([0-9.]+)", output).group(1))
    assert cost == pytest.approx(list_price, abs=1e-6), output
    assert cached_audio > 0
