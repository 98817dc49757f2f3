"""`make run` on a clean environment serves /health and the admin; production serves static."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import (
    base_env,
    free_port,
    http_get,
    manage_ok,
    running_process,
    uvicorn_command,
    wait_for_http,
)
from test_config import VALID_PRODUCTION

pytestmark = pytest.mark.slow


def test_make_run_serves_health_and_admin_with_no_configuration(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "make-run.log"
    # Nothing but PORT: make itself runs from its absolute path; the Makefile uses the venv's
    # own binaries, so no PATH is needed once `make test` has installed it.
    with running_process(["/usr/bin/make", "run"], {"PORT": str(port)}, log) as server:
        health = wait_for_http(f"http://127.0.0.1:{port}/health", server, deadline_s=120)
        admin = http_get(f"http://127.0.0.1:{port}/admin/")
        login = http_get(f"http://127.0.0.1:{port}/admin/login/")
        css = http_get(f"http://127.0.0.1:{port}/static/admin/css/base.css")
    output = log.read_text()
    assert health.status == 200, output
    assert health.json()["status"] == "ok"
    assert admin.status == 302 and "/admin/login/" in admin.headers["location"]
    assert login.status == 200 and b"Voice bridge" in login.body
    assert css.status == 200
    assert "createsuperuser" in output
    assert f"http://127.0.0.1:{port}" in output


def test_production_serves_admin_static_files_and_logs_json_without_secrets(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = base_env(
        **VALID_PRODUCTION
        | {
            "DATABASE_URL": f"sqlite:///{tmp_path}/prod.sqlite3",
            "ALLOWED_HOSTS": "127.0.0.1",
            "STATIC_ROOT": str(tmp_path / "static"),
            "LOG_LEVEL": "DEBUG",
        }
    )
    manage_ok(env, "migrate", "--noinput", "-v0")
    manage_ok(env, "collectstatic", "--noinput", "-v0")
    log = tmp_path / "server.log"
    with running_process(uvicorn_command(port), env, log) as server:
        health = wait_for_http(f"http://127.0.0.1:{port}/health", server, deadline_s=30)
        css = http_get(f"http://127.0.0.1:{port}/static/admin/css/base.css")
        missing = http_get(f"http://127.0.0.1:{port}/no-such-page")
    assert health.status == 200
    assert css.status == 200
    assert b"body" in css.body
    assert missing.status == 404
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(entry["logger"] == "django.request" for entry in entries), lines
    for entry in entries:
        assert {"level", "logger", "message", "timestamp"} <= entry.keys()
    secrets = [VALID_PRODUCTION[k] for k in ("SECRET_KEY", "TWILIO_AUTH_TOKEN", "OPENAI_API_KEY")]
    text = log.read_text()
    assert not any(secret in text for secret in secrets)
