"""`make run` in development starts the simulator's stand-ins as subprocesses: the realtime
stand-in without OPENAI_API_KEY, the Twilio REST stand-in without TWILIO_ACCOUNT_SID (port
TWILIO_STANDIN_PORT, default 8766, another one when that is taken), and points the server at
them (OPENAI_REALTIME_URL, TWILIO_API_BASE_URL), saying so in a banner."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bridge_project import serve


def test_the_rest_stand_in_is_for_development_without_an_account() -> None:
    development = {"DJANGO_ENV": "development"}
    assert serve.needs_rest_standin(development)
    assert serve.needs_rest_standin({**development, "TWILIO_API_BASE_URL": ""})
    assert serve.needs_rest_standin(
        {**development, "TWILIO_API_BASE_URL": "https://api.twilio.com"}
    )
    assert not serve.needs_rest_standin({**development, "TWILIO_ACCOUNT_SID": "AC" + "1" * 32})
    assert not serve.needs_rest_standin({**development, "TWILIO_API_BASE_URL": "http://x:1"})
    assert not serve.needs_rest_standin({"DJANGO_ENV": "production"})


def test_a_port_in_use_is_seen() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert serve.port_in_use(sock.getsockname()[1])
    assert not serve.port_in_use(serve.free_port())


def test_the_rest_stand_in_port_is_8766_unless_taken_or_set(monkeypatch) -> None:
    monkeypatch.setattr(serve, "port_in_use", lambda port: False)
    assert serve.rest_standin_port({}) == (8766, "")
    assert serve.rest_standin_port({"TWILIO_STANDIN_PORT": "9000"}) == (9000, "")
    monkeypatch.setattr(serve, "port_in_use", lambda port: True)
    port, note = serve.rest_standin_port({})
    assert port != 8766 and f"--twilio-rest-url http://127.0.0.1:{port}" in note


def test_main_starts_both_stand_ins_and_points_the_server_at_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(serve, "BASE_DIR", tmp_path)  # no .env
    unset = ("PORT", "HOST", "OPENAI_API_KEY", "TWILIO_ACCOUNT_SID", "TWILIO_API_BASE_URL",
             "OPENAI_REALTIME_URL", "OPENAI_LIVE_URL")  # fmt: skip
    for name in unset:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("DJANGO_ENV", "development")
    monkeypatch.setenv("REALTIME_STANDIN_PORT", "18765")
    monkeypatch.setenv("TWILIO_STANDIN_PORT", "18766")
    monkeypatch.setattr(serve.signal, "signal", lambda *args: None)
    monkeypatch.setattr(serve, "wait_for_port", lambda *args, **kwargs: None)
    started: list[tuple[list[str], dict[str, str]]] = []
    stopped: list[str] = []

    class FakeProcess:
        def __init__(self, command: list[str], env: dict[str, str], **kwargs: object) -> None:
            self.command = command
            started.append((command, dict(env)))

        def wait(self, timeout: float | None = None) -> int:
            return 0

        def terminate(self) -> None:
            stopped.append(self.command[2])

    monkeypatch.setattr(serve.subprocess, "Popen", FakeProcess)
    assert serve.main(["--server", "uvicorn", "--port", "8123"]) == 0
    realtime, rest, server = started
    assert realtime[0][1:] == ["-m", "simulator.openai.standin", "--port", "18765"]
    assert rest[0][1:5] == ["-m", "simulator.twilio.rest", "--port", "18766"]
    # It dials outbound calls back to this server.
    assert rest[0][5:7] == ["--server-url", "http://127.0.0.1:8123"]
    assert server[1]["OPENAI_REALTIME_URL"] == "ws://127.0.0.1:18765/v1/realtime"
    # GPT-Live agents reach the same stand-in on GPT-Live's path.
    assert server[1]["OPENAI_LIVE_URL"] == "ws://127.0.0.1:18765/v1/live/sessions"
    assert server[1]["TWILIO_API_BASE_URL"] == "http://127.0.0.1:18766"
    assert stopped == ["simulator.openai.standin", "simulator.twilio.rest"]
    out = capsys.readouterr().out
    assert "LOCAL TWILIO REST STAND-IN at http://127.0.0.1:18766" in out
    assert "LOCAL REALTIME STAND-IN" in out and "--scenario end_call|transfer|webhook" in out
