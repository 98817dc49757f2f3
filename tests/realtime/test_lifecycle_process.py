"""Process faults against a real server process: SIGTERM finishes calls, SIGKILL's leftovers
are recovered by the next start. The server is a uvicorn subprocess with its own SQLite file."""

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
from support import (
    base_env,
    free_port,
    manage_ok,
    running_process,
    uvicorn_command,
    wait_for_http,
)

from simulator.openai.standin import RealtimeStandIn
from simulator.twilio.caller import CallEnded, SimulatedTwilioCaller
from simulator.twilio.script import AwaitAgentPlayed, Silence, Speak

pytestmark = pytest.mark.slow

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
OPENAI_KEY = "sk-proj-test-key-that-must-never-be-logged-000"
WEBHOOK_SECRET = "stream-token-secret-that-must-never-be-logged"


def _server_env(tmp_path: Path, realtime_url: str) -> dict[str, str]:
    return base_env(
        DJANGO_ENV="development",
        DATABASE_URL=f"sqlite:///{tmp_path}/server.sqlite3",
        RECORDING_STORAGE_PATH=str(tmp_path / "recordings"),
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        PUBLIC_BASE_URL="https://bridge.example.test",
        OPENAI_REALTIME_URL=realtime_url,
        OPENAI_API_KEY=OPENAI_KEY,
        TWILIO_WEBHOOK_SECRET=WEBHOOK_SECRET,
        SHUTDOWN_DEADLINE_S="15",
        LOG_LEVEL="DEBUG",  # the most talkative level must still keep the secrets out
    )


def _call_row(tmp_path: Path, call_id: str) -> dict:
    with contextlib.closing(sqlite3.connect(tmp_path / "server.sqlite3")) as db:
        db.row_factory = sqlite3.Row
        call = db.execute(
            "SELECT * FROM calls_call WHERE id = ?", (call_id.replace("-", ""),)
        ).fetchone()
        recordings = db.execute(
            "SELECT * FROM calls_recording WHERE call_id = ?", (call_id.replace("-", ""),)
        ).fetchall()
    return {"call": dict(call) if call else None, "recordings": [dict(r) for r in recordings]}


async def _call_until_mid_reply(server_url: str, standin: RealtimeStandIn) -> SimulatedTwilioCaller:
    """Start a call and return once the caller has heard the first reply (call still open)."""
    caller = SimulatedTwilioCaller(
        server_url, auth_token=AUTH_TOKEN, public_base_url="https://bridge.example.test"
    )
    await caller.place_call()
    await caller.connect_stream()
    await caller.run([Silence(0.3), Speak(1.5, seed=1), AwaitAgentPlayed(quiet_s=0.2)])
    return caller


def test_sigterm_finalizes_calls_in_flight_before_exit(tmp_path: Path) -> None:
    port = free_port()

    async def scenario() -> tuple[str, float]:
        async with RealtimeStandIn() as standin:
            env = _server_env(tmp_path, standin.url)
            manage_ok(env, "migrate", "--noinput", "-v0")
            with running_process(uvicorn_command(port), env, tmp_path / "server.log") as server:
                await asyncio.to_thread(
                    wait_for_http, f"http://127.0.0.1:{port}/health", server, 30
                )
                caller = await _call_until_mid_reply(f"http://127.0.0.1:{port}", standin)
                keep_talking = asyncio.create_task(caller.run([Silence(30)]))
                started = time.monotonic()
                server.send_signal(signal.SIGTERM)
                exit_code = await asyncio.to_thread(server.wait, 30)
                elapsed = time.monotonic() - started
                keep_talking.cancel()
                with contextlib.suppress(asyncio.CancelledError, CallEnded):
                    await keep_talking
                log = (tmp_path / "server.log").read_text()
                # uvicorn finishes its graceful shutdown, then re-raises the signal to exit.
                assert exit_code in (0, -signal.SIGTERM), log
                assert "Application shutdown complete" in log
                assert "call bridged" in log  # a whole call was logged at DEBUG...
                for secret in (AUTH_TOKEN, OPENAI_KEY, WEBHOOK_SECRET):
                    assert secret not in log  # ...without a single secret in it
                # Twilio would now run the TwiML after <Connect> (the fallback).
                assert caller.close_code in (1000, 1012)
                return caller.call_id, elapsed

    call_id, elapsed = asyncio.run(scenario())
    assert elapsed < 15
    rows = _call_row(tmp_path, call_id)
    assert rows["call"]["status"] == "completed"
    assert rows["call"]["end_reason"] == "server shutting down"
    [recording] = rows["recordings"]
    assert sf.info(tmp_path / "recordings" / recording["file"]).duration > 1.5
    assert not list((tmp_path / "recordings" / "in-progress").glob("*.wav"))


def test_calls_left_by_a_killed_process_are_recovered_at_the_next_start(tmp_path: Path) -> None:
    port = free_port()

    async def scenario() -> str:
        async with RealtimeStandIn() as standin:
            env = _server_env(tmp_path, standin.url)
            manage_ok(env, "migrate", "--noinput", "-v0")
            with running_process(uvicorn_command(port), env, tmp_path / "server.log") as server:
                await asyncio.to_thread(
                    wait_for_http, f"http://127.0.0.1:{port}/health", server, 30
                )
                caller = await _call_until_mid_reply(f"http://127.0.0.1:{port}", standin)
                await caller.run([Silence(1.5)])  # let the recorder write a block or two
                os.killpg(server.pid, signal.SIGKILL)
                await asyncio.to_thread(server.wait, 10)
            assert _call_row(tmp_path, caller.call_id)["call"]["status"] == "in-progress"
            assert list((tmp_path / "recordings" / "in-progress").glob("*.wav"))
            # The next start recovers it (ASGI lifespan start-up).
            with running_process(uvicorn_command(port), env, tmp_path / "server2.log") as server:
                await asyncio.to_thread(
                    wait_for_http, f"http://127.0.0.1:{port}/health", server, 30
                )
            return caller.call_id

    call_id = asyncio.run(scenario())
    rows = _call_row(tmp_path, call_id)
    assert rows["call"]["status"] == "completed"
    assert rows["call"]["end_reason"].startswith("interrupted")
    [recording] = rows["recordings"]
    info = sf.info(tmp_path / "recordings" / recording["file"])
    assert (info.channels, info.samplerate) == (2, 16000)
    assert info.duration > 2.0
    assert not list((tmp_path / "recordings" / "in-progress").iterdir())
