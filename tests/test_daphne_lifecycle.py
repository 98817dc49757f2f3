"""`make run SERVER=daphne`: start-up recovery and graceful shutdown run under daphne too.

daphne has no ASGI lifespan; bridge_project.daphne_server adds both. The server is started as
`make run` starts it (bridge_project.serve --server daphne) in a subprocess with its own SQLite
file, as tests/realtime/test_lifecycle_process.py does for uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import soundfile as sf
from support import VENV_BIN, base_env, free_port, manage_ok, running_process, wait_for_http

from simulator.openai.standin import RealtimeStandIn
from simulator.twilio.caller import CallEnded, SimulatedTwilioCaller
from simulator.twilio.script import AwaitAgentPlayed, Silence, Speak

pytestmark = pytest.mark.slow

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://bridge.example.test"


def _daphne_command(port: int) -> list[str]:
    return [
        str(VENV_BIN / "python"),
        "-m",
        "bridge_project.serve",
        "--server",
        "daphne",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def _server_env(tmp_path: Path, realtime_url: str) -> dict[str, str]:
    return base_env(
        DJANGO_ENV="development",
        DATABASE_URL=f"sqlite:///{tmp_path}/server.sqlite3",
        RECORDING_STORAGE_PATH=str(tmp_path / "recordings"),
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        PUBLIC_BASE_URL=PUBLIC,
        OPENAI_REALTIME_URL=realtime_url,
        OPENAI_API_KEY="sk-test-daphne-lifecycle",  # so serve.py starts no stand-in of its own
        SHUTDOWN_DEADLINE_S="15",
    )


def _call_row(tmp_path: Path, call_id: str) -> dict:
    with contextlib.closing(sqlite3.connect(tmp_path / "server.sqlite3")) as db:
        db.row_factory = sqlite3.Row
        key = call_id.replace("-", "")
        call = db.execute("SELECT * FROM calls_call WHERE id = ?", (key,)).fetchone()
        recordings = db.execute(
            "SELECT * FROM calls_recording WHERE call_id = ?", (key,)
        ).fetchall()
    return {"call": dict(call) if call else None, "recordings": [dict(r) for r in recordings]}


async def _call_until_mid_reply(server_url: str) -> SimulatedTwilioCaller:
    """Start a call and return once the caller has heard the first reply (call still open)."""
    caller = SimulatedTwilioCaller(server_url, auth_token=AUTH_TOKEN, public_base_url=PUBLIC)
    await caller.place_call()
    await caller.connect_stream()
    await caller.run([Silence(0.3), Speak(1.5, seed=1), AwaitAgentPlayed(quiet_s=0.2)])
    return caller


def _recording_seconds(tmp_path: Path, recording: dict) -> float:
    return sf.info(tmp_path / "recordings" / recording["file"]).duration


def test_daphne_recovers_at_start_and_finalizes_calls_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    in_progress = tmp_path / "recordings" / "in-progress"

    async def scenario() -> tuple[str, str, dict, int, float, int | None, str]:
        async with RealtimeStandIn() as standin:
            env = _server_env(tmp_path, standin.url)
            manage_ok(env, "migrate", "--noinput", "-v0")
            # 1. A daphne process dies mid-call (SIGKILL: nothing of ours runs).
            with running_process(_daphne_command(port), env, tmp_path / "first.log") as server:
                await asyncio.to_thread(wait_for_http, f"{url}/health", server, 30)
                orphan = await _call_until_mid_reply(url)
                await orphan.run([Silence(1.5)])  # let the recorder write a block or two
                os.killpg(server.pid, signal.SIGKILL)
                await asyncio.to_thread(server.wait, 10)
            assert _call_row(tmp_path, orphan.call_id)["call"]["status"] == "in-progress"
            assert list(in_progress.glob("*.wav"))
            # 2. The next daphne start recovers it before it serves anything...
            log_path = tmp_path / "second.log"
            with running_process(_daphne_command(port), env, log_path) as server:
                await asyncio.to_thread(wait_for_http, f"{url}/health", server, 30)
                recovered = _call_row(tmp_path, orphan.call_id)
                # 3. ...and SIGTERM mid-call ends and finalizes the call before exiting.
                caller = await _call_until_mid_reply(url)
                keep_talking = asyncio.create_task(caller.run([Silence(30)]))
                started = time.monotonic()
                server.send_signal(signal.SIGTERM)  # to serve.py, which forwards it to daphne
                exit_code = await asyncio.to_thread(server.wait, 30)
                elapsed = time.monotonic() - started
                keep_talking.cancel()
                with contextlib.suppress(asyncio.CancelledError, CallEnded):
                    await keep_talking
            return (
                orphan.call_id,
                caller.call_id,
                recovered,
                exit_code,
                elapsed,
                caller.close_code,
                log_path.read_text(),
            )

    orphan_id, call_id, recovered, exit_code, elapsed, close_code, log = asyncio.run(scenario())

    # (a) Recovered at start-up: closed as interrupted, its recording stored.
    assert recovered["call"]["status"] == "completed", log
    assert recovered["call"]["end_reason"].startswith("interrupted")
    [orphan_recording] = recovered["recordings"]
    assert _recording_seconds(tmp_path, orphan_recording) > 2.0

    # (b) SIGTERM: the call in flight was ended and finalized before the process exited.
    assert exit_code == 0, log
    assert elapsed < 15, log
    assert close_code in (1000, 1012)  # Twilio would now play the fallback
    assert "shutdown: 1 call(s) in flight ended and finalized" in log
    rows = _call_row(tmp_path, call_id)
    assert rows["call"]["status"] == "completed", log
    assert rows["call"]["end_reason"] == "server shutting down"
    [recording] = rows["recordings"]
    assert _recording_seconds(tmp_path, recording) > 1.5
    assert not list(in_progress.glob("*.wav"))
    assert orphan_id != call_id
