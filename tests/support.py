"""Helpers for tests that run real servers as subprocesses on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from bridge_project.serve import stop_process_group

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = REPO_ROOT / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class HttpResult:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def http_get(url: str, timeout: float = 5.0) -> HttpResult:
    """GET without following redirects, returning error statuses instead of raising."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as response:
            return HttpResult(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return HttpResult(error.code, dict(error.headers), error.read())


def wait_for_http(url: str, process: subprocess.Popen, deadline_s: float) -> HttpResult:
    """Poll until the server answers at all (any status), or fail with its output."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early with {process.returncode}")
        with contextlib.suppress(OSError):
            return http_get(url, timeout=2.0)
        time.sleep(0.2)
    raise AssertionError(f"no answer from {url} within {deadline_s} s")


@contextlib.contextmanager
def running_process(
    command: list[str], env: Mapping[str, str], log_path: Path, cwd: Path = REPO_ROOT
) -> Iterator[subprocess.Popen]:
    """Start a process group, always stop it (SIGTERM, then SIGKILL), keep its output in a file."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            stop_process_group(process)


def manage(
    env: Mapping[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`manage.py <args>` in a subprocess with exactly this environment."""
    return subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", *args],
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def manage_ok(env: Mapping[str, str], *args: str) -> str:
    """`manage.py <args>` that must succeed; returns its standard output."""
    result = manage(env, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def uvicorn_command(port: int) -> list[str]:
    return [
        str(VENV_BIN / "uvicorn"),
        "bridge_project.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--ws",
        "websockets-sansio",
        "--lifespan",
        "on",
        "--ws-max-size",
        "65536",
    ]


def base_env(**overrides: str) -> dict[str, str]:
    """A minimal environment: PATH and HOME only, plus what the test sets."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    env.update(overrides)
    return env


@dataclass
class LiveServer:
    """The real ASGI app served by uvicorn in a thread of this process."""

    url: str
    loop: asyncio.AbstractEventLoop

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
        """Run a coroutine on the server's event loop, as code of the server itself would."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


@contextlib.contextmanager
def asgi_server_in_thread(
    port: int, *, app: str = "bridge_project.asgi:application"
) -> Iterator[LiveServer]:
    """Serve the real ASGI app with uvicorn (uvloop, httptools) in a background thread.

    In-process (not a subprocess) so the server shares the test's database, settings
    overrides and channel layer; use it with the `transactional_db` fixture so committed rows
    are visible.
    """
    import threading

    import uvicorn
    from django.db import connections

    from realtime.store import writer_connections_close

    class LoopRecordingServer(uvicorn.Server):
        loop: asyncio.AbstractEventLoop | None = None

        async def serve(self, sockets: list | None = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        lifespan="off",
        ws_max_size=65536,  # as bridge_project.serve runs it
        log_level="warning",
    )
    # Each request's connection closes when the request ends instead of idling for
    # CONN_MAX_AGE in a thread the test cannot reach (PostgreSQL would then refuse to drop
    # the test database while they are open).
    database = connections.settings["default"]
    saved_max_age = database.get("CONN_MAX_AGE", 0)
    database["CONN_MAX_AGE"] = 0
    server = LoopRecordingServer(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the in-process uvicorn server did not start")
        time.sleep(0.02)
    assert server.loop is not None
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", loop=server.loop)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        database["CONN_MAX_AGE"] = saved_max_age
        writer_connections_close()  # the call writer's thread outlives the server


def unknown_keys(value: Any, path: str = "") -> list[str]:
    """Paths of keys an SDK model accepted only as extras (i.e. that its schema lacks): the
    openai SDK's models allow unknown keys, so validation alone would not catch a misspelling."""
    if isinstance(value, BaseModel):
        found = [f"{path}.{key}" for key in value.model_extra or {}]
        for name in type(value).model_fields:
            found += unknown_keys(getattr(value, name), f"{path}.{name}")
        return found
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in unknown_keys(item, f"{path}[{i}]")]
    return []


@contextlib.contextmanager
def twilio_rest_in_thread(**options: Any) -> Iterator[Any]:
    """The Twilio REST stand-in (simulator.twilio.rest) on its own event loop in a thread, for
    synchronous tests (the API client, the admin) that make the product call Twilio."""
    import threading

    from simulator.twilio.rest import TwilioRestStandIn

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="twilio-rest-standin", daemon=True)
    thread.start()
    standin = TwilioRestStandIn(**options)
    asyncio.run_coroutine_threadsafe(standin.start(), loop).result(10)
    try:
        yield standin
    finally:
        asyncio.run_coroutine_threadsafe(standin.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
