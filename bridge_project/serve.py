"""`make run`'s server: uvicorn (default) or daphne, plus the local realtime stand-in in
development when no OPENAI_API_KEY is set, so a fresh checkout can take a simulated call.

Run as `python -m bridge_project.serve --server uvicorn --host 127.0.0.1 --port 8000`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import environ

from bridge_project.config import DEFAULT_REALTIME_URL, detect_environment

BASE_DIR = Path(__file__).resolve().parent.parent
STANDIN_READY_TIMEOUT_S = 15.0
WS_MAX_MESSAGE_BYTES = 64 * 1024


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


def start_standin(env: dict[str, str]) -> subprocess.Popen[bytes]:
    port = int(env.get("REALTIME_STANDIN_PORT") or free_port())
    process = subprocess.Popen(
        [sys.executable, "-m", "realtime.simulator.standin", "--port", str(port)],
        cwd=BASE_DIR,
        env=env,
    )
    wait_for_port(port, process, STANDIN_READY_TIMEOUT_S, what="the realtime stand-in")
    env["OPENAI_REALTIME_URL"] = f"ws://127.0.0.1:{port}/v1/realtime"
    banner = "=" * 78
    server_url = f"http://127.0.0.1:{env.get('PORT', '8000')}"
    print(
        f"{banner}\n  NO OPENAI_API_KEY: calls are bridged to the LOCAL REALTIME STAND-IN at\n"
        f"  {env['OPENAI_REALTIME_URL']} (scripted replies, not OpenAI).\n"
        f"  Set OPENAI_API_KEY to talk to OpenAI. Place a test call with:\n"
        f"  .venv/bin/python manage.py simulate_call --url {server_url}\n"
        f"{banner}",
        flush=True,
    )
    return process


def server_command(server: str, host: str, port: int) -> list[str]:
    bin_dir = Path(sys.executable).parent
    app = "bridge_project.asgi:application"
    if server == "daphne":
        return [str(bin_dir / "daphne"), "--bind", host, "--port", str(port), app]
    return [
        str(bin_dir / "uvicorn"), app, "--host", host, "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
        "--lifespan", "on", "--no-access-log",
        # Twilio's frames are well under 1 KiB; anything near this cap is not Twilio.
        "--ws-max-size", os.environ.get("WS_MAX_MESSAGE_BYTES", str(WS_MAX_MESSAGE_BYTES)),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
    env = dict(os.environ)
    env["PORT"] = str(args.port)
    standin = start_standin(env) if needs_standin(env) else None
    server = subprocess.Popen(server_command(args.server, args.host, args.port), env=env)

    def forward(signum: int, _frame: object) -> None:
        server.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        return server.wait()
    finally:
        if standin is not None:
            standin.terminate()
            standin.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
