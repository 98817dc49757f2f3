"""`make run WORKERS=N`: N uvicorn processes on one port, sharing the database and Redis.

The process tests run on loopback with a SQLite file of their own. The one that serves needs
Redis: it uses database 13 of REDIS_URL's server (else of 127.0.0.1:6379) and is skipped when
that server does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from support import (
    REPO_ROOT,
    VENV_BIN,
    base_env,
    free_port,
    manage_ok,
    running_process,
    wait_for_http,
)

from bridge_project import serve

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://bridge.example.test"
REDIS_DB = 13  # not 0: the test empties it


# --- The launcher's decisions ----------------------------------------------------------------


def test_workers_come_from_the_argument_then_the_environment_else_one() -> None:
    assert serve.resolve_workers(None, {}) == 1
    assert serve.resolve_workers(None, {"WORKERS": " 3 "}) == 3
    assert serve.resolve_workers("2", {"WORKERS": "3"}) == 2
    assert serve.resolve_workers("auto", {}) == (os.cpu_count() or 1)
    assert serve.resolve_workers(None, {"WORKERS": "AUTO"}) == (os.cpu_count() or 1)


@pytest.mark.parametrize("raw", ["0", "-2", "two", "1.5"])
def test_a_malformed_worker_count_stops_with_a_message(raw: str) -> None:
    with pytest.raises(SystemExit, match="WORKERS must be a whole number"):
        serve.resolve_workers(raw, {})


def test_several_workers_need_redis_and_uvicorn() -> None:
    serve.check_workers("uvicorn", 1, {})  # one process: nothing to share
    serve.check_workers("daphne", 1, {})
    serve.check_workers("uvicorn", 4, {"REDIS_URL": "redis://127.0.0.1:6379/0"})
    with pytest.raises(SystemExit, match="Set REDIS_URL") as refused:
        serve.check_workers("uvicorn", 2, {"REDIS_URL": "  "})
    assert "WORKERS=2" in str(refused.value)
    with pytest.raises(SystemExit, match="daphne serves from one process"):
        serve.check_workers("daphne", 2, {"REDIS_URL": "redis://127.0.0.1:6379/0"})


def test_server_command_adds_workers_only_above_one() -> None:
    env = {"WS_MAX_MESSAGE_BYTES": "4096"}
    one = serve.server_command("uvicorn", "127.0.0.1", 8123, env)
    assert "--workers" not in one  # as bench/run.py and soak have always run it
    assert serve.server_command("uvicorn", "127.0.0.1", 8123, env, workers=1) == one
    three = serve.server_command("uvicorn", "127.0.0.1", 8123, env, workers=3)
    assert three[: len(one)] == one and three[len(one) :] == ["--workers", "3"]
    with pytest.raises(ValueError, match="daphne serves from one process"):
        serve.server_command("daphne", "127.0.0.1", 8123, env, workers=2)


def test_development_workers_share_one_made_up_secret_key() -> None:
    env: dict[str, str] = {}
    serve.share_development_secret(env)
    assert env["SECRET_KEY"].startswith("dev-insecure-") and len(env["SECRET_KEY"]) > 50
    kept = {"SECRET_KEY": "set-by-the-operator"}
    serve.share_development_secret(kept)
    assert kept == {"SECRET_KEY": "set-by-the-operator"}


def test_make_run_passes_workers_when_set() -> None:
    def serve_line(*args: str) -> str:
        output = subprocess.run(
            ["/usr/bin/make", "-n", "run", *args],
            cwd=REPO_ROOT,
            env=base_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        [line] = [line for line in output.splitlines() if "bridge_project.serve" in line]
        return line

    assert "--workers" not in serve_line()
    assert "--workers auto" in serve_line("WORKERS=auto")
    assert serve_line("WORKERS=2", "PORT=9123").split()[-4:] == ["--workers", "2", "--port", "9123"]


@pytest.mark.slow
def test_serve_refuses_several_workers_without_redis(tmp_path: Path) -> None:
    # REDIS_URL set empty: a real variable wins over any .env in the checkout.
    env = base_env(DJANGO_ENV="development", REDIS_URL="", DATABASE_URL=f"sqlite:///{tmp_path}/db")
    result = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "bridge_project.serve", "--port", str(free_port()),
         "--workers", "2"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Set REDIS_URL" in result.stderr
    assert "Serving on" not in result.stdout  # refused before anything started


# --- Two real workers -------------------------------------------------------------------------


def _test_redis_url() -> str:
    """REDIS_URL's server (else the local one), database REDIS_DB."""
    base = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    return urlunsplit(base._replace(path=f"/{REDIS_DB}"))


def _redis_or_skip(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {url}: {exc}")
    client.flushdb()
    client.close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            # The parent pid is the 2nd field after the command name (which may hold spaces).
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _workers(serve_pid: int) -> set[int]:
    """The uvicorn worker processes under serve.py (serve -> supervisor -> spawned workers)."""
    workers = set()
    for supervisor in _children(serve_pid):
        for child in _children(supervisor):
            with contextlib.suppress(OSError):
                if b"spawn_main" in (Path("/proc") / str(child) / "cmdline").read_bytes():
                    workers.add(child)
    return workers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _call_until_mid_reply(server_url: str):  # type: ignore[no-untyped-def]
    from simulator.twilio.caller import SimulatedTwilioCaller
    from simulator.twilio.script import AwaitAgentPlayed, Silence, Speak

    caller = SimulatedTwilioCaller(server_url, auth_token=AUTH_TOKEN, public_base_url=PUBLIC)
    await caller.place_call()
    await caller.connect_stream()
    await caller.run([Silence(0.3), Speak(1.2, seed=1), AwaitAgentPlayed(quiet_s=0.2)])
    return caller


@pytest.mark.slow
def test_two_workers_serve_one_port_and_sigterm_finishes_every_call(tmp_path: Path) -> None:
    from simulator.openai.standin import RealtimeStandIn
    from simulator.twilio.caller import CallEnded
    from simulator.twilio.script import Silence

    redis_url = _test_redis_url()
    _redis_or_skip(redis_url)
    port = free_port()
    log_path = tmp_path / "serve.log"

    async def scenario() -> tuple[list[str], set[int], int, str]:
        async with RealtimeStandIn() as standin:
            env = base_env(
                DJANGO_ENV="development",
                DATABASE_URL=f"sqlite:///{tmp_path}/server.sqlite3",
                RECORDING_STORAGE_PATH=str(tmp_path / "recordings"),
                REDIS_URL=redis_url,
                TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                PUBLIC_BASE_URL=PUBLIC,
                OPENAI_REALTIME_URL=standin.url,
                OPENAI_API_KEY="sk-test-workers-0000000000000000",
                # No REST stand-in (serve.py starts one for development without an account).
                TWILIO_API_BASE_URL="http://127.0.0.1:9",
                SHUTDOWN_DEADLINE_S="15",
                # No SECRET_KEY and no TWILIO_WEBHOOK_SECRET: the stream token a webhook signs
                # on one worker must still open the stream on the other.
                SECRET_KEY="",
                TWILIO_WEBHOOK_SECRET="",
            )
            manage_ok(env, "migrate", "--noinput", "-v0")
            command = [str(VENV_BIN / "python"), "-m", "bridge_project.serve", "--port",
                       str(port), "--workers", "2"]  # fmt: skip
            with running_process(command, env, log_path) as server:
                health = await asyncio.to_thread(
                    wait_for_http, f"http://127.0.0.1:{port}/health", server, 60
                )
                assert health.status == 200, log_path.read_text()
                assert health.json()["checks"]["channel_layer"]["backend"] == "RedisChannelLayer"
                workers: set[int] = set()
                for _ in range(100):  # the second worker may still be starting
                    workers = _workers(server.pid)
                    if (
                        len(workers) == 2
                        and log_path.read_text().count("Application startup complete") == 2
                    ):
                        break
                    await asyncio.sleep(0.2)
                assert len(workers) == 2, (workers, log_path.read_text())
                for _ in range(10):  # every request answered, whichever worker takes it
                    answer = await asyncio.to_thread(
                        wait_for_http, f"http://127.0.0.1:{port}/health", server, 10
                    )
                    assert answer.status == 200
                callers = await asyncio.gather(
                    *(_call_until_mid_reply(f"http://127.0.0.1:{port}") for _ in range(4))
                )
                talking = [asyncio.create_task(c.run([Silence(30)])) for c in callers]
                server.send_signal(signal.SIGTERM)  # serve.py passes it to the supervisor
                exit_code = await asyncio.to_thread(server.wait, 40)
                for task in talking:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, CallEnded):
                        await task
            return [c.call_id for c in callers], workers, exit_code, log_path.read_text()

    started = time.monotonic()
    call_ids, workers, exit_code, log = asyncio.run(scenario())
    assert time.monotonic() - started < 120
    assert exit_code == 0, log
    assert not any(_alive(pid) for pid in workers), log
    assert log.count("Application shutdown complete") == 2, log
    assert "Traceback" not in log, log
    with contextlib.closing(sqlite3.connect(tmp_path / "server.sqlite3")) as db:
        rows = {
            str(uuid.UUID(row[0])): row[1:]
            for row in db.execute(
                "SELECT c.id, c.status, c.end_reason, count(r.id) FROM calls_call c "
                "LEFT JOIN calls_recording r ON r.call_id = c.id GROUP BY c.id"
            )
        }
    # Every call in flight, on either worker, was ended and finalized before its worker left.
    assert {rows[call_id] for call_id in call_ids} == {("completed", "server shutting down", 1)}
