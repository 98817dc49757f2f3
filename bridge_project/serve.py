"""`make run`'s server: uvicorn (default) or daphne, plus, in development, the simulator's
local stand-ins: the realtime stand-in when no OPENAI_API_KEY is set, and the Twilio REST
stand-in when no TWILIO_ACCOUNT_SID is set, so a fresh checkout can take a simulated call in
which the agent hangs up or transfers. They run as subprocesses (`python -m simulator...`):
the product never imports the simulator, and this launcher only names its modules.

Run as `python -m bridge_project.serve --server uvicorn --host 127.0.0.1 --port 8000`. Without
--host/--port the address comes from HOST/PORT in the environment, else in `.env`, else
127.0.0.1:8000 (`make run` passes them only when they are set, so `.env` is not overridden).

`--workers N` (or WORKERS, likewise; `auto`: one per core) serves with N uvicorn processes on
the one port (uvicorn's own supervisor: each worker runs the ASGI lifespan, so start-up recovery
and graceful shutdown happen in each). Processes share only what lives outside them, so N > 1
needs the Redis channel layer (REDIS_URL): the live feed and the API throttles go through it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import environ

from bridge_project.config import (
    DEFAULT_LIVE_URL,
    DEFAULT_REALTIME_URL,
    DEFAULT_TWILIO_API_BASE_URL,
    STANDIN_ACCOUNT_SID,
    detect_environment,
)

BASE_DIR = Path(__file__).resolve().parent.parent
STANDIN_READY_TIMEOUT_S = 15.0
WS_MAX_MESSAGE_BYTES = 64 * 1024
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# The Twilio REST stand-in's usual port: `manage.py simulate_call` finds it there.
DEFAULT_TWILIO_STANDIN_PORT = 8766
BANNER = "=" * 78
DAPHNE_ONE_PROCESS = (
    "daphne serves from one process: WORKERS > 1 needs the uvicorn server "
    "(make run SERVER=uvicorn WORKERS=N)"
)
NEEDS_REDIS = (
    "WORKERS={workers}: several server processes need a shared channel layer, and the "
    "in-memory one lives inside a single process (the live call feed would see only its own "
    "process's calls). Set REDIS_URL (e.g. REDIS_URL=redis://127.0.0.1:6379/0, in the "
    "environment or .env) or run with WORKERS=1."
)


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], timeout_s: float, *, what: str
) -> None:
    """Return once `process` listens on `port`; exit with a clear message if it died or never
    did (used for the stand-in here and for the server in `manage.py soak`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on port {port} in {timeout_s:.0f} s")


def stop_process_group(process: subprocess.Popen[bytes], *, timeout_s: float = 10.0) -> None:
    """SIGTERM a process started with start_new_session (and what it started), SIGKILL if it
    outlives `timeout_s` (make run's server, the contract and test servers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def needs_standin(env: dict[str, str]) -> bool:
    """Development without a key and without a custom realtime URL talks to the stand-in."""
    return (
        detect_environment(env) == "development"
        and not env.get("OPENAI_API_KEY", "").strip()
        and env.get("OPENAI_REALTIME_URL", "").strip() in ("", DEFAULT_REALTIME_URL)
    )


def needs_rest_standin(env: Mapping[str, str]) -> bool:
    """Development without a Twilio account and without a custom REST URL talks to the
    simulator's Twilio REST stand-in (hang-ups and transfers then work on simulated calls)."""
    return (
        detect_environment(env) == "development"
        and not env.get("TWILIO_ACCOUNT_SID", "").strip()
        and env.get("TWILIO_API_BASE_URL", "").strip() in ("", DEFAULT_TWILIO_API_BASE_URL)
    )


def port_in_use(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def rest_standin_port(env: Mapping[str, str]) -> tuple[int, str]:
    """TWILIO_STANDIN_PORT if set; else 8766, or a free port (and why) when 8766 is taken."""
    if env.get("TWILIO_STANDIN_PORT", "").strip():
        return int(env["TWILIO_STANDIN_PORT"]), ""
    if not port_in_use(DEFAULT_TWILIO_STANDIN_PORT):
        return DEFAULT_TWILIO_STANDIN_PORT, ""
    port = free_port()
    return port, (
        f"  (port {DEFAULT_TWILIO_STANDIN_PORT} is taken: pass simulate_call "
        f"--twilio-rest-url http://127.0.0.1:{port})\n"
    )


def start_rest_standin(env: dict[str, str]) -> subprocess.Popen[bytes]:
    port, note = rest_standin_port(env)
    # The stand-in dials the calls the server creates back to this server: its real address
    # (main() has set PORT) and the public URL its TwiML and callbacks are built on.
    server_url = f"http://127.0.0.1:{env.get('PORT', DEFAULT_PORT)}"
    public_base_url = env.get("PUBLIC_BASE_URL", "").strip() or server_url
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator.twilio.rest",
            "--port",
            str(port),
            "--server-url",
            server_url,
            "--public-base-url",
            public_base_url,
        ],
        cwd=BASE_DIR,
        env=env,
    )
    wait_for_port(port, process, STANDIN_READY_TIMEOUT_S, what="the Twilio REST stand-in")
    env["TWILIO_API_BASE_URL"] = f"http://127.0.0.1:{port}"
    print(
        f"{BANNER}\n  NO TWILIO_ACCOUNT_SID: Twilio REST requests (hang up, transfer) go to the\n"
        f"  LOCAL TWILIO REST STAND-IN at {env['TWILIO_API_BASE_URL']} (account "
        f"{STANDIN_ACCOUNT_SID},\n  not Twilio). Set TWILIO_ACCOUNT_SID to use Twilio's API.\n"
        f"{note}{BANNER}",
        flush=True,
    )
    return process


def start_standin(env: dict[str, str]) -> subprocess.Popen[bytes]:
    port = int(env.get("REALTIME_STANDIN_PORT") or free_port())
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator.openai.standin", "--port", str(port)],
        cwd=BASE_DIR,
        env=env,
    )
    wait_for_port(port, process, STANDIN_READY_TIMEOUT_S, what="the realtime stand-in")
    env["OPENAI_REALTIME_URL"] = f"ws://127.0.0.1:{port}/v1/realtime"
    # GPT-Live agents talk to the same stand-in, on GPT-Live's path.
    if env.get("OPENAI_LIVE_URL", "").strip() in ("", DEFAULT_LIVE_URL):
        env["OPENAI_LIVE_URL"] = f"ws://127.0.0.1:{port}/v1/live/sessions"
    server_url = f"http://127.0.0.1:{env.get('PORT', '8000')}"
    print(
        f"{BANNER}\n  NO OPENAI_API_KEY: calls are bridged to the LOCAL REALTIME STAND-IN at\n"
        f"  {env['OPENAI_REALTIME_URL']} (scripted replies, not OpenAI;\n"
        f"  GPT-Live agents: {env['OPENAI_LIVE_URL']}).\n"
        f"  Set OPENAI_API_KEY to talk to OpenAI. Place a test call with:\n"
        f"  .venv/bin/python manage.py simulate_call --url {server_url}\n"
        f"  or see a tool at work: ... simulate_call --scenario end_call|transfer|webhook\n"
        f"{BANNER}",
        flush=True,
    )
    return process


def server_command(
    server: str, host: str, port: int, env: Mapping[str, str] | None = None, *, workers: int = 1
) -> list[str]:
    """The server's command line; `workers` > 1 is uvicorn's supervisor with that many
    processes on one listening socket (daphne has no such mode: ValueError)."""
    env = os.environ if env is None else env
    if workers < 1:
        raise ValueError(f"workers must be at least 1 (got {workers})")
    if server == "daphne" and workers > 1:
        raise ValueError(DAPHNE_ONE_PROCESS)
    # Twilio's frames are well under 1 KiB; anything near this cap is not Twilio.
    max_message = env.get("WS_MAX_MESSAGE_BYTES") or str(WS_MAX_MESSAGE_BYTES)
    app = "bridge_project.asgi:application"
    if server == "daphne":
        # Not the bare daphne binary: daphne has no ASGI lifespan, and this launcher adds
        # start-up recovery and graceful shutdown around it (bridge_project.daphne_server).
        return [
            sys.executable, "-m", "bridge_project.daphne_server",
            "--bind", host, "--port", str(port),
            "--websocket-max-message-size", max_message, app,
        ]  # fmt: skip
    command = [
        str(Path(sys.executable).parent / "uvicorn"), app, "--host", host, "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
        "--lifespan", "on", "--no-access-log", "--ws-max-size", max_message,
    ]  # fmt: skip
    if workers > 1:
        # uvicorn's supervisor binds the socket once and spawns the workers on it; each runs
        # the lifespan, and SIGTERM to the supervisor is passed to every worker, which then
        # finishes its own calls (realtime.lifecycle). One worker stays one plain process.
        command += ["--workers", str(workers)]
    return command


def environment_with_dotenv(dotenv: Path, environ_map: Mapping[str, str]) -> dict[str, str]:
    """`environ_map` plus the variables `dotenv` sets that it lacks (real variables win), read
    with django-environ's parser, as settings.py reads the same file."""
    env = dict(environ_map)

    class _Reader(environ.Env):
        ENVIRON = env  # read_env fills this mapping instead of os.environ

    _Reader.read_env(dotenv, overwrite=False)
    return env


def resolve_address(host: str | None, port: int | None, env: Mapping[str, str]) -> tuple[str, int]:
    """--host/--port if given, else HOST/PORT from `env` (the environment with .env merged),
    else 127.0.0.1:8000."""
    resolved_host = host or env.get("HOST", "").strip() or DEFAULT_HOST
    if port is not None:
        return resolved_host, port
    raw = env.get("PORT", "").strip()
    if not raw:
        return resolved_host, DEFAULT_PORT
    try:
        resolved_port = int(raw)
    except ValueError:
        resolved_port = 0
    if not 1 <= resolved_port <= 65535:
        raise SystemExit(f"PORT must be an integer between 1 and 65535 (got {raw!r})")
    return resolved_host, resolved_port


def resolve_workers(raw: str | None, env: Mapping[str, str]) -> int:
    """--workers if given, else WORKERS from `env`, else 1; `auto` is the machine's cores."""
    value = (raw if raw is not None else env.get("WORKERS", "")).strip().lower()
    if not value:
        return 1
    if value == "auto":
        return os.cpu_count() or 1
    try:
        workers = int(value)
    except ValueError:
        workers = 0
    if workers < 1:
        raise SystemExit(f"WORKERS must be a whole number of at least 1, or auto (got {value!r})")
    return workers


def check_workers(server: str, workers: int, env: Mapping[str, str]) -> None:
    """Exit with what to change when `workers` processes cannot serve this configuration."""
    if workers == 1:
        return
    if server == "daphne":
        raise SystemExit(DAPHNE_ONE_PROCESS)
    # settings.py picks channels_redis exactly when REDIS_URL is non-empty.
    if not env.get("REDIS_URL", "").strip():
        raise SystemExit(NEEDS_REDIS.format(workers=workers))


def share_development_secret(env: dict[str, str]) -> None:
    """Without SECRET_KEY, development makes up a key per process (bridge_project.config). Across
    workers that breaks anything one process signs and another checks: the media stream token
    (the webhook's TwiML, then the WebSocket, land on any worker), warm-transfer whisper URLs,
    admin sessions and CSRF. One key per launch, handed to every worker, keeps them agreeing."""
    if not env.get("SECRET_KEY", "").strip():
        env["SECRET_KEY"] = "dev-insecure-" + secrets.token_urlsafe(40)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn")
    parser.add_argument("--host", default=None, help="default: $HOST, .env's HOST, 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: $PORT, .env's PORT, 8000")
    parser.add_argument(
        "--workers", default=None, help="N or auto (one per core); default: $WORKERS, .env's, 1"
    )
    args = parser.parse_args(argv)

    env = environment_with_dotenv(BASE_DIR / ".env", os.environ)
    host, port = resolve_address(args.host, args.port, env)
    workers = resolve_workers(args.workers, env)
    check_workers(args.server, workers, env)
    if workers > 1:
        share_development_secret(env)
    # The app sees the port it is served on (its default PUBLIC_BASE_URL is built from it).
    env["PORT"] = str(port)
    processes = f" x {workers} processes" if workers > 1 else ""
    print(
        f"Serving on http://{host}:{port} with {args.server}{processes}  "
        "(health: /health, admin: /admin/)",
        flush=True,
    )
    standins: list[subprocess.Popen[bytes]] = []
    if needs_standin(env):
        standins.append(start_standin(env))
    if needs_rest_standin(env):
        standins.append(start_rest_standin(env))
    server = subprocess.Popen(
        server_command(args.server, host, port, env, workers=workers), env=env
    )

    def forward(signum: int, _frame: object) -> None:
        server.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        return server.wait()
    finally:
        for standin in standins:
            standin.terminate()
        for standin in standins:
            standin.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
