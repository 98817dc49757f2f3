"""Two server processes sharing PostgreSQL and Redis, as at scale behind a load balancer.

Runs in the PostgreSQL + Redis pass of CI (DATABASE_URL=postgres..., REDIS_URL set); skipped on
the embedded defaults, where there is nothing to share.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from support import (
    base_env,
    free_port,
    manage_ok,
    running_process,
    uvicorn_command,
    wait_for_http,
)

from simulator.openai.standin import RealtimeStandIn
from simulator.twilio.caller import SimulatedTwilioCaller
from simulator.twilio.script import AwaitAgentPlayed, Silence, Speak

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (
            os.environ.get("REDIS_URL")
            and os.environ.get("DATABASE_URL", "").startswith("postgres")
        ),
        reason="scale-out needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)",
    ),
]

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://bridge.example.test"
CALLS = 20


@pytest.fixture
def shared_database():
    """A database of its own on the CI PostgreSQL server (not pytest-django's test database)."""
    admin_url = os.environ["DATABASE_URL"]
    name = f"bridge_scaleout_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


CREATE_LISTENER = """
from django.contrib.auth.models import Permission, User
from rest_framework.authtoken.models import Token
user = User.objects.create_user("listener")
user.user_permissions.add(Permission.objects.get(codename="view_call"))
print(Token.objects.create(user=user).key)
"""


def _read_feed(
    url: str, token: str, seen: list[dict], ready: threading.Event, stop: threading.Event
) -> None:
    headers = {"Authorization": f"Token {token}", "Accept": "text/event-stream"}
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(60.0)) as response:
        ready.set()
        for line in response.iter_lines():
            if line.startswith("data:"):
                seen.append(json.loads(line.removeprefix("data:").strip()))
            if stop.is_set():
                return


async def _call(server_url: str) -> str:
    caller = SimulatedTwilioCaller(server_url, auth_token=AUTH_TOKEN, public_base_url=PUBLIC)
    report = await caller.call(
        [Silence(0.3), Speak(1.2, seed=1), AwaitAgentPlayed(quiet_s=0.3), Silence(0.2)],
        max_seconds=40,
    )
    assert report.script_error is None, report
    return report.call_id


def test_two_processes_share_calls_and_the_live_feed(shared_database: str, tmp_path: Path) -> None:
    ports = [free_port(), free_port()]

    async def scenario() -> list[str]:
        async with RealtimeStandIn() as standin:
            env = base_env(
                DJANGO_ENV="development",
                DATABASE_URL=shared_database,
                REDIS_URL=os.environ["REDIS_URL"],
                RECORDING_STORAGE_PATH=str(tmp_path / "recordings"),
                TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                PUBLIC_BASE_URL=PUBLIC,
                OPENAI_REALTIME_URL=standin.url,
                OPENAI_API_KEY="sk-test-scale-out-000000000000000",
            )
            manage_ok(env, "migrate", "--noinput", "-v0")
            # The key is the last line (Django's shell may print a banner first).
            token = manage_ok(env, "shell", "-c", CREATE_LISTENER).strip().splitlines()[-1]
            with (
                running_process(uvicorn_command(ports[0]), env, tmp_path / "a.log") as a,
                running_process(uvicorn_command(ports[1]), env, tmp_path / "b.log") as b,
            ):
                for port, server in zip(ports, (a, b), strict=True):
                    await asyncio.to_thread(
                        wait_for_http, f"http://127.0.0.1:{port}/health", server, 30
                    )
                seen: list[dict] = []
                ready, stop = threading.Event(), threading.Event()
                feed_url = f"http://127.0.0.1:{ports[1]}/api/status"
                reader = threading.Thread(
                    target=_read_feed, args=(feed_url, token, seen, ready, stop), daemon=True
                )
                reader.start()
                assert ready.wait(10)
                # A call on process A is seen live on process B's feed...
                first = await _call(f"http://127.0.0.1:{ports[0]}")
                for _ in range(100):
                    if any(
                        e.get("call_id") == first and e.get("kind", e.get("event")) for e in seen
                    ):
                        break
                    await asyncio.sleep(0.1)
                assert any(event.get("call_id") == first for event in seen), seen[-5:]
                # ...and 20 concurrent calls, split across both, all complete.
                urls = [f"http://127.0.0.1:{ports[i % 2]}" for i in range(CALLS)]
                ids = await asyncio.gather(*(_call(url) for url in urls))
                stop.set()
                await asyncio.sleep(3)  # finalization writes after the last socket closed
                return [first, *ids]

    call_ids = asyncio.run(scenario())
    with psycopg.connect(shared_database) as db:
        rows = db.execute(
            "SELECT c.status, count(DISTINCT t.id), count(DISTINCT r.id) FROM calls_call c "
            "LEFT JOIN calls_transcript t ON t.call_id = c.id "
            "LEFT JOIN calls_recording r ON r.call_id = c.id "
            "WHERE c.id = ANY(%s) GROUP BY c.id, c.status",
            ([uuid.UUID(i) for i in call_ids],),
        ).fetchall()
    assert len(rows) == CALLS + 1
    assert all(status == "completed" for status, _, _ in rows), rows
    assert all(transcripts == 2 for _, transcripts, _ in rows), rows  # caller + agent, none lost
    assert all(recordings == 1 for _, _, recordings in rows), rows
