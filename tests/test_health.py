"""GET /health, in-process for the happy paths and as a real server for a dead database."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client, override_settings
from support import base_env, free_port, running_process, uvicorn_command, wait_for_http

from bridge_project import __version__

pytestmark = pytest.mark.django_db


def test_health_reports_ok_with_checks_and_version(client: Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert body["uptime_s"] >= 0
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["channel_layer"]["ok"] is True
    assert response["Cache-Control"] == "no-store"


def test_health_counts_active_calls(client: Client, make_call) -> None:
    make_call(status="in-progress")
    make_call(status="ringing")
    make_call(status="completed")
    assert client.get("/health").json()["active_calls"] == 2


def test_health_is_503_when_the_channel_layer_does_not_answer(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    redis_address = f"127.0.0.1:{free_port()}"
    dead_redis = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://{redis_address}/0"]},
        }
    }
    with override_settings(CHANNEL_LAYERS=dead_redis):
        response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["channel_layer"] == {
        "ok": False,
        "backend": "RedisChannelLayer",
        "error": "unavailable",
    }
    assert body["checks"]["database"]["ok"] is True
    # The driver's message (here with Redis's address) is for the operator's log, not the
    # public endpoint.
    [warning] = [r for r in caplog.records if r.name == "bridge_project.health"]
    assert warning.levelname == "WARNING"
    assert "channel_layer" in warning.getMessage()
    assert redis_address in warning.getMessage()
    assert redis_address not in response.content.decode()
    assert "Error" not in response.content.decode()


@pytest.mark.slow
def test_health_is_503_when_the_database_does_not_answer(tmp_path: Path) -> None:
    port = free_port()
    # A database file in a folder that does not exist cannot be opened: a real failure.
    env = base_env(
        DJANGO_ENV="development", DATABASE_URL=f"sqlite:///{tmp_path}/missing/dir/db.sqlite3"
    )
    with running_process(uvicorn_command(port), env, tmp_path / "server.log") as server:
        response = wait_for_http(f"http://127.0.0.1:{port}/health", server, deadline_s=30)
    log = (tmp_path / "server.log").read_text()
    assert response.status == 503, log
    body = response.json()
    assert body["checks"]["database"] == {"ok": False, "error": "unavailable"}
    assert body["checks"]["channel_layer"]["ok"] is True
    assert body["active_calls"] is None
    # SQLite's message stays in the server's log; the public body names only the check.
    assert "OperationalError: unable to open database file" in log
    assert b"OperationalError" not in response.body
    assert b"unable to open" not in response.body
