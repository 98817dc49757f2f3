"""Start-up validation of the environment (bridge_project.config) and its process behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import base_env, manage

from bridge_project.config import CREDENTIALS, PRODUCTION_REQUIRED, ConfigError, load_config

VALID_PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "k" * 64,
    "ALLOWED_HOSTS": "voice.example.com",
    "PUBLIC_BASE_URL": "https://voice.example.com",
    "DATABASE_URL": "sqlite:////tmp/bridge-prod-test.sqlite3",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "f" * 32,
    "TWILIO_PHONE_NUMBER": "+14155550100",
    "TWILIO_WEBHOOK_SECRET": "w" * 40,
    "OPENAI_API_KEY": "sk-test-" + "x" * 30,
}


def test_valid_production_environment_loads(tmp_path: Path) -> None:
    config = load_config(VALID_PRODUCTION, tmp_path)
    assert config.is_production
    assert config.debug is False
    assert config.warnings == []
    assert config.allowed_hosts == ["voice.example.com"]


def test_production_lists_every_missing_variable_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"DJANGO_ENV": "production"}, tmp_path)
    message = str(caught.value)
    for name in PRODUCTION_REQUIRED:
        assert f"{name} is required in production" in message
    assert len(caught.value.problems) == len(PRODUCTION_REQUIRED)


def test_production_reports_malformed_values_together(tmp_path: Path) -> None:
    bad = VALID_PRODUCTION | {
        "PUBLIC_BASE_URL": "http://voice.example.com",
        "TWILIO_ACCOUNT_SID": "not-a-sid",
        "TWILIO_PHONE_NUMBER": "4155550100",
        "PORT": "eighty",
        "DATABASE_URL": "nosuchdb://x",
        "REDIS_URL": "http://redis",
        "SECRET_KEY": "short",
        "OPENAI_LIVE_URL": "https://api.openai.com/v1/live/sessions",
    }
    with pytest.raises(ConfigError) as caught:
        load_config(bad, tmp_path)
    joined = "\n".join(caught.value.problems)
    for name in (
        "PUBLIC_BASE_URL",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_PHONE_NUMBER",
        "PORT",
        "DATABASE_URL",
        "REDIS_URL",
        "SECRET_KEY",
        "OPENAI_LIVE_URL",
    ):
        assert name in joined
    assert len(caught.value.problems) == 8


def test_production_refuses_debug(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DEBUG must be false"):
        load_config(VALID_PRODUCTION | {"DEBUG": "true"}, tmp_path)


def test_unknown_environment_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DJANGO_ENV must be one of"):
        load_config({"DJANGO_ENV": "staging"}, tmp_path)


def test_development_has_safe_defaults_and_one_warning_per_credential(tmp_path: Path) -> None:
    config = load_config({"DJANGO_ENV": "development"}, tmp_path)
    assert config.database_url == f"sqlite:///{tmp_path / 'db.sqlite3'}"
    assert config.redis_url == ""
    assert config.secret_key.startswith("dev-insecure-")
    assert config.debug is True
    assert config.port == 8000
    assert config.recording_storage_path == tmp_path / "recordings"
    assert config.openai_realtime_url == "wss://api.openai.com/v1/realtime"
    assert config.openai_live_url == "wss://api.openai.com/v1/live/sessions"
    assert len(config.warnings) == len(CREDENTIALS)
    for name, warning in zip(CREDENTIALS, config.warnings, strict=True):
        assert warning.startswith(f"{name} is not set")
        assert "\n" not in warning


def test_development_secret_is_random_per_start(tmp_path: Path) -> None:
    first = load_config({}, tmp_path).secret_key
    assert first != load_config({}, tmp_path).secret_key


def test_production_start_without_variables_exits_with_one_message() -> None:
    result = manage(base_env(DJANGO_ENV="production"), "check", timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.count("Configuration error") == 1
    for name in PRODUCTION_REQUIRED:
        assert name in result.stderr


def test_production_start_with_valid_variables_passes_checks() -> None:
    result = manage(base_env(**VALID_PRODUCTION), "check", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "warning:" not in result.stderr


def test_development_start_warns_once_per_missing_credential() -> None:
    result = manage(base_env(DJANGO_ENV="development"), "check", timeout=60)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len(CREDENTIALS)
