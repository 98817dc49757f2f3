"""The back-office's "Place a test call": a simulated Twilio caller dials the agent's number on
this very server, so staff hear (and then read, on the call page) what a caller would get.

Development and test only (settings.DJANGO_ENV != "production"). The product never imports the
simulator: the call is placed by `manage.py simulate_call --agent <slug> --url <this server>`
run as a subprocess (this interpreter, this project, this environment), and the page finds the
new call in the database (the newest call of that agent started after the click) and opens its
page, where the call goes on live. The subprocess runs the standard call and exits by itself.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection
from django.utils import timezone

from agents.models import Agent
from agents.selectors import agent_for_number
from calls.models import Call

logger = logging.getLogger(__name__)

# How long the page waits for the new call to appear before it says the call did not start
# (the subprocess starts Django, checks the server, then posts the webhook: a second or two).
TEST_CALL_ANSWER_WAIT_S = 10.0
# A test call still going after this long is stopped (the standard call takes ~15 s, and
# simulate_call gives up on its own after 90 s).
TEST_CALL_MAX_S = 120.0
POLL_S = 0.1
# The settings the simulated caller must share with this server, passed to the subprocess so
# it signs, dials and reports as this server expects even when this process's settings differ
# from its environment (tests change settings in-process).
SHARED_SETTINGS = (
    "DJANGO_ENV",
    "PUBLIC_BASE_URL",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_BASE_URL",
    "OPENAI_REALTIME_URL",
    "OPENAI_LIVE_URL",  # a GPT-Live agent's calls: the same model the server uses
)


class PlaceCallFailed(Exception):
    """The test call did not start; the message says why, for the staff member."""


@dataclass
class PlacedCall:
    """One test call's subprocess, and what became of it."""

    command: list[str]
    agent_slug: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    call_id: str | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def output_tail(self, lines: int = 5) -> str:
        """The last lines the command wrote (its error, when it failed)."""
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""
        kept = [line.strip() for line in text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])


# Test calls placed by this process, newest last (tests wait for them; nothing else reads it).
PLACED: list[PlacedCall] = []
_PLACED_KEPT = 20


def may_place_test_calls() -> bool:
    return settings.DJANGO_ENV != "production"


def simulate_call_command(*, agent_slug: str, server_url: str) -> list[str]:
    manage = Path(settings.BASE_DIR) / "manage.py"
    return [sys.executable, str(manage), "simulate_call", "--agent", agent_slug,
            "--url", server_url, "--public-base-url", settings.PUBLIC_BASE_URL]  # fmt: skip


def database_url_in_use() -> str | None:
    """DATABASE_URL for the database this server is using right now: the test run's database
    differs from the environment's (Django's test runner renames it), and `--agent` must read
    the same agents as this server. None for an engine we do not pass on."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    if connection.vendor == "postgresql":
        user = quote(str(db.get("USER") or ""), safe="")
        password = quote(str(db.get("PASSWORD") or ""), safe="")
        credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgres://{credentials}{db.get('HOST') or ''}{port}/{quote(str(db['NAME']))}"
    return None


def subprocess_environment() -> dict[str, str]:
    """This process's environment, with the settings the caller must share with this server
    and the database this server uses."""
    env = dict(os.environ)
    for name in SHARED_SETTINGS:
        value = getattr(settings, name, "")
        if value:
            env[name] = str(value)
    database_url = database_url_in_use()
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def _supervise(placed: PlacedCall) -> None:
    """Reap the subprocess (no zombie), stopping it if it outlives TEST_CALL_MAX_S."""
    process = placed.process
    assert process is not None
    try:
        process.wait(timeout=TEST_CALL_MAX_S)
    except subprocess.TimeoutExpired:
        logger.warning("test call by %s still running after %.0f s: stopped", placed.agent_slug,
                       TEST_CALL_MAX_S)  # fmt: skip
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.returncode and placed.error is None:
        placed.error = placed.output_tail() or f"simulate_call exited with {process.returncode}"
    placed.log_path.unlink(missing_ok=True)
    placed.done.set()


def _new_call(agent: Agent, since: datetime) -> Call | None:
    return Call.objects.filter(agent=agent, started_at__gte=since).order_by("-started_at").first()


def _wait_for_call(placed: PlacedCall, agent: Agent, since: datetime, wait_s: float) -> str:
    deadline = time.monotonic() + wait_s
    while True:
        call = _new_call(agent, since)
        if call is not None:
            placed.call_id = str(call.pk)
            return placed.call_id
        if placed.done.is_set():
            why = placed.error or "the call ended before it was recorded"
            raise PlaceCallFailed(f"the call did not start: {why}")
        if time.monotonic() >= deadline:
            raise PlaceCallFailed(f"no call was recorded within {wait_s:g} s")
        placed.done.wait(POLL_S)


def place_test_call(
    *, server_url: str, to_number: str, wait_s: float = TEST_CALL_ANSWER_WAIT_S
) -> str:
    """Dial `to_number` (an agent's number) on the server at `server_url` as Twilio would; the
    new call's id once it is recorded. Raises PlaceCallFailed when it is not within `wait_s`."""
    agent = agent_for_number(number=to_number)
    if agent is None:
        raise PlaceCallFailed(f"no active agent answers {to_number}")
    # The database's clock, to the microsecond: a call started after this is the new one.
    since = timezone.now()
    log = tempfile.NamedTemporaryFile(prefix="test-call-", suffix=".log", delete=False)  # noqa: SIM115 - kept for the supervisor
    placed = PlacedCall(
        command=simulate_call_command(agent_slug=agent.slug, server_url=server_url),
        agent_slug=agent.slug,
        log_path=Path(log.name),
    )
    with log:
        placed.process = subprocess.Popen(
            placed.command, cwd=settings.BASE_DIR, env=subprocess_environment(),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    threading.Thread(
        target=_supervise, args=(placed,), name=f"test-call-{agent.slug}", daemon=True
    ).start()
    PLACED.append(placed)
    del PLACED[:-_PLACED_KEPT]
    try:
        return _wait_for_call(placed, agent, since, wait_s)
    except PlaceCallFailed as failed:
        placed.error = placed.error or str(failed)
        logger.warning("test call to %s failed: %s", to_number, failed)
        raise
