"""`make run`'s address: the command line or environment, else .env, else 127.0.0.1:8000."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO_ROOT, base_env

from bridge_project import serve


def _dotenv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    return path


def test_env_file_port_and_host_are_used_when_nothing_else_sets_them(tmp_path: Path) -> None:
    env = serve.environment_with_dotenv(_dotenv(tmp_path, "PORT=9123\nHOST=0.0.0.0\n"), {})
    assert serve.resolve_address(None, None, env) == ("0.0.0.0", 9123)


def test_the_environment_wins_over_env_file_and_arguments_over_both(tmp_path: Path) -> None:
    dotenv = _dotenv(tmp_path, "PORT=9123\nHOST=0.0.0.0\n")
    env = serve.environment_with_dotenv(dotenv, {"PORT": "9200", "HOST": "127.0.0.2"})
    assert serve.resolve_address(None, None, env) == ("127.0.0.2", 9200)
    assert serve.resolve_address("127.0.0.3", 9300, env) == ("127.0.0.3", 9300)


def test_without_any_setting_the_address_is_loopback_8000(tmp_path: Path) -> None:
    env = serve.environment_with_dotenv(tmp_path / "no-such.env", {"PATH": "/bin"})
    assert env == {"PATH": "/bin"}
    assert serve.resolve_address(None, None, env) == ("127.0.0.1", 8000)


@pytest.mark.parametrize("raw", ["eighty", "0", "70000"])
def test_a_malformed_port_stops_with_a_message(raw: str) -> None:
    with pytest.raises(SystemExit, match="PORT must be an integer"):
        serve.resolve_address(None, None, {"PORT": raw})


def test_main_serves_on_the_port_in_env_file_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _dotenv(tmp_path, "PORT=9123\n")
    monkeypatch.setattr(serve, "BASE_DIR", tmp_path)
    for name in ("PORT", "HOST"):
        # setenv first so that the undo restores "unset" even if main() wrote os.environ.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(serve, "needs_standin", lambda env: False)
    monkeypatch.setattr(serve.signal, "signal", lambda *args: None)
    started: list[tuple[list[str], dict[str, str]]] = []

    class FakeServer:
        def __init__(self, command: list[str], env: dict[str, str]) -> None:
            started.append((command, env))

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(serve.subprocess, "Popen", FakeServer)
    assert serve.main(["--server", "uvicorn"]) == 0
    [(command, env)] = started
    assert command[command.index("--port") + 1] == "9123"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert env["PORT"] == "9123"  # the app builds its default PUBLIC_BASE_URL from it
    assert "Serving on http://127.0.0.1:9123 with uvicorn" in capsys.readouterr().out


def test_daphne_runs_through_the_lifecycle_launcher() -> None:
    command = serve.server_command("daphne", "127.0.0.1", 8123, {"WS_MAX_MESSAGE_BYTES": "4096"})
    assert command[:3] == [sys.executable, "-m", "bridge_project.daphne_server"]
    assert command[command.index("--port") + 1] == "8123"
    assert command[command.index("--websocket-max-message-size") + 1] == "4096"
    assert command[-1] == "bridge_project.asgi:application"


def _make_run_dry(*make_args: str, **env: str) -> tuple[str, str]:
    """`make -n run`'s output (nothing is run) and the server command line in it."""
    output = subprocess.run(
        ["/usr/bin/make", "-n", "run", *make_args],
        cwd=REPO_ROOT,
        env=base_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    [line] = [line for line in output.splitlines() if "bridge_project.serve" in line]
    return output, line


def test_make_run_forces_no_port_or_host_so_env_file_can_set_them() -> None:
    output, line = _make_run_dry()
    assert "--port" not in line and "--host" not in line
    # No banner line guesses the address either: serve.py prints it once it is resolved.
    assert "8000" not in output and "Serving on" not in output


def test_make_run_passes_port_and_host_when_set() -> None:
    _, line = _make_run_dry("PORT=9123", HOST="0.0.0.0")  # a make variable, an environment one
    assert line.split()[-4:] == ["--host", "0.0.0.0", "--port", "9123"]
