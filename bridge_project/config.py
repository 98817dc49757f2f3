"""Read and validate the process environment once, before Django settings are built.

Every variable is checked and every problem collected, so a misconfigured production
deployment fails with one message listing all of them instead of one traceback at a time.
Development and test get safe defaults and a one-line warning per missing credential.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import environ

ENVIRONMENTS = ("development", "production", "test")
DEFAULT_REALTIME_URL = "wss://api.openai.com/v1/realtime"
DEFAULT_REALTIME_MODEL = "gpt-realtime"
# GPT-Live (agents whose backend is gpt-live): the session URL takes no query string.
DEFAULT_LIVE_URL = "wss://api.openai.com/v1/live/sessions"
# The simulator's Twilio REST stand-in accepts these credentials. They live here, not in the
# simulator, because the product reads them (telephony.rest uses them when no TWILIO_ACCOUNT_SID
# is configured and TWILIO_API_BASE_URL is not Twilio's) and the product never imports the
# simulator. Well-formed (AC + 32 hex digits, 32 hex digits) and plainly not a real account.
STANDIN_ACCOUNT_SID = "AC" + "0" * 32
STANDIN_AUTH_TOKEN = "5" * 32
DEFAULT_TWILIO_API_BASE_URL = "https://api.twilio.com"

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_AUTH_TOKEN = re.compile(r"^[0-9a-fA-F]{32}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")

# Credentials the bridge cannot talk to Twilio or OpenAI without. Production refuses to start
# without them; development starts and warns once per missing one.
CREDENTIALS = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_PHONE_NUMBER",
    "OPENAI_API_KEY",
    "TWILIO_WEBHOOK_SECRET",
)
PRODUCTION_REQUIRED = (
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "PUBLIC_BASE_URL",
    "DATABASE_URL",
    *CREDENTIALS,
)


class ConfigError(Exception):
    """The environment cannot run the bridge; `problems` lists every reason."""

    def __init__(self, django_env: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"Configuration error ({len(problems)} problem(s), DJANGO_ENV={django_env}):\n"
            f"{lines}\nSee .env.example for every variable and its format."
        )


@dataclass(frozen=True)
class Config:
    django_env: str
    debug: bool
    secret_key: str
    allowed_hosts: list[str]
    port: int
    public_base_url: str
    database_url: str
    redis_url: str
    recording_storage_path: Path
    twilio_account_sid: str
    twilio_auth_token: str
    twilio_phone_number: str
    twilio_webhook_secret: str
    openai_api_key: str
    openai_realtime_url: str
    openai_realtime_model: str
    openai_live_url: str
    log_level: str
    warnings: list[str] = field(default_factory=list)

    @property
    def is_production(self) -> bool:
        return self.django_env == "production"


def detect_environment(environ_map: Mapping[str, str]) -> str:
    """DJANGO_ENV if set; under pytest "test"; otherwise "development" (no config needed)."""
    explicit = environ_map.get("DJANGO_ENV", "").strip().lower()
    if explicit:
        return explicit
    return "test" if "pytest" in sys.modules else "development"


def _check_url(name: str, value: str, schemes: tuple[str, ...], problems: list[str]) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        allowed = " or ".join(f"{scheme}://" for scheme in schemes)
        problems.append(f"{name} must be an absolute {allowed} URL (got {value!r})")


def _check_formats(values: Mapping[str, str], production: bool, problems: list[str]) -> None:
    """Format checks for variables that are set; production adds stricter rules."""
    checks = {
        "TWILIO_ACCOUNT_SID": (_ACCOUNT_SID, "'AC' followed by 32 hex digits"),
        "TWILIO_AUTH_TOKEN": (_AUTH_TOKEN, "32 hex digits"),
        "TWILIO_PHONE_NUMBER": (_E164, "an E.164 number such as +14155550100"),
    }
    for name, (pattern, description) in checks.items():
        value = values.get(name, "")
        if value and not pattern.match(value):
            problems.append(f"{name} must be {description}")
    if values.get("OPENAI_API_KEY", "") and any(c.isspace() for c in values["OPENAI_API_KEY"]):
        problems.append("OPENAI_API_KEY must not contain whitespace")
    if values.get("PUBLIC_BASE_URL"):
        schemes = ("https",) if production else ("https", "http")
        _check_url("PUBLIC_BASE_URL", values["PUBLIC_BASE_URL"], schemes, problems)
    if values.get("OPENAI_REALTIME_URL"):
        _check_url("OPENAI_REALTIME_URL", values["OPENAI_REALTIME_URL"], ("wss", "ws"), problems)
    if values.get("OPENAI_LIVE_URL"):
        _check_url("OPENAI_LIVE_URL", values["OPENAI_LIVE_URL"], ("wss", "ws"), problems)
    if values.get("REDIS_URL"):
        _check_url("REDIS_URL", values["REDIS_URL"], ("redis", "rediss"), problems)
    if production and values.get("SECRET_KEY") and len(values["SECRET_KEY"]) < 50:
        problems.append("SECRET_KEY must be at least 50 characters in production")
    if (
        production
        and values.get("TWILIO_WEBHOOK_SECRET")
        and len(values["TWILIO_WEBHOOK_SECRET"]) < 32
    ):
        problems.append("TWILIO_WEBHOOK_SECRET must be at least 32 characters in production")


def _check_port(raw: str, problems: list[str]) -> int:
    try:
        port = int(raw)
    except ValueError:
        problems.append(f"PORT must be an integer between 1 and 65535 (got {raw!r})")
        return 8000
    if not 1 <= port <= 65535:
        problems.append(f"PORT must be an integer between 1 and 65535 (got {raw!r})")
    return port


def _check_database_url(raw: str, problems: list[str]) -> None:
    # django-environ passes unknown schemes through as an ENGINE name, so check the scheme here.
    scheme = urlsplit(raw).scheme
    if scheme not in environ.Env.DB_SCHEMES:
        known = "postgres://, sqlite:///, mysql://"
        problems.append(f"DATABASE_URL must be a database URL such as {known} (got {scheme!r}://)")


# Settings with a fixed set of values: (default, allowed values).
_CHOICES = {
    "REALTIME_PROTOCOL": ("ga", ("ga", "beta")),
    "REALTIME_AUDIO_FORMAT": ("audio/pcmu", ("audio/pcmu", "audio/pcm")),
    "REALTIME_TURN_DETECTION": ("server_vad", ("server_vad", "semantic_vad")),
}


def load_config(environ_map: Mapping[str, str], base_dir: Path) -> Config:
    """Build the Config or raise ConfigError listing every problem found."""
    django_env = detect_environment(environ_map)
    problems: list[str] = []
    if django_env not in ENVIRONMENTS:
        problems.append(f"DJANGO_ENV must be one of {', '.join(ENVIRONMENTS)} (got {django_env!r})")
    production = django_env == "production"
    values = {key: value.strip() for key, value in environ_map.items()}

    if production:
        problems += [
            f"{name} is required in production"
            for name in PRODUCTION_REQUIRED
            if not values.get(name)
        ]
    _check_formats(values, production, problems)
    port = _check_port(values.get("PORT") or "8000", problems)
    database_url = values.get("DATABASE_URL") or f"sqlite:///{base_dir / 'db.sqlite3'}"
    _check_database_url(database_url, problems)
    debug_default = "false" if production else "true"
    debug_raw = (values.get("DEBUG") or debug_default).lower()
    if debug_raw not in ("true", "false", "1", "0", "yes", "no"):
        problems.append(f"DEBUG must be true or false (got {debug_raw!r})")
    if production and debug_raw in ("true", "1", "yes"):
        problems.append("DEBUG must be false in production")
    for name, (default, choices) in _CHOICES.items():
        if (values.get(name) or default) not in choices:
            problems.append(f"{name} must be one of {', '.join(choices)} (got {values[name]!r})")
    if problems:
        raise ConfigError(django_env, problems)

    warnings = [
        f"{name} is not set: {_MISSING_CREDENTIAL_EFFECT[name]}"
        for name in CREDENTIALS
        if not values.get(name)
    ]
    hosts = [h.strip() for h in values.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
    return Config(
        django_env=django_env,
        debug=debug_raw in ("true", "1", "yes"),
        # A fresh random key per process is safe for development: sessions just don't survive
        # a restart. Production never reaches this default (SECRET_KEY is required above).
        secret_key=values.get("SECRET_KEY") or "dev-insecure-" + secrets.token_urlsafe(40),
        allowed_hosts=hosts or ["localhost", "127.0.0.1", "[::1]", "testserver"],
        port=port,
        public_base_url=(values.get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{port}").rstrip("/"),
        database_url=database_url,
        redis_url=values.get("REDIS_URL", ""),
        recording_storage_path=Path(
            values.get("RECORDING_STORAGE_PATH") or base_dir / "recordings"
        ),
        twilio_account_sid=values.get("TWILIO_ACCOUNT_SID", ""),
        twilio_auth_token=values.get("TWILIO_AUTH_TOKEN", ""),
        twilio_phone_number=values.get("TWILIO_PHONE_NUMBER", ""),
        twilio_webhook_secret=values.get("TWILIO_WEBHOOK_SECRET", ""),
        openai_api_key=values.get("OPENAI_API_KEY", ""),
        openai_realtime_url=values.get("OPENAI_REALTIME_URL") or DEFAULT_REALTIME_URL,
        openai_realtime_model=values.get("OPENAI_REALTIME_MODEL") or DEFAULT_REALTIME_MODEL,
        openai_live_url=values.get("OPENAI_LIVE_URL") or DEFAULT_LIVE_URL,
        log_level=(values.get("LOG_LEVEL") or "INFO").upper(),
        warnings=warnings,
    )


_MISSING_CREDENTIAL_EFFECT = {
    "TWILIO_ACCOUNT_SID": "Twilio's REST API (hang-ups, transfers, outbound calls) is reached only "
    "through a stand-in (TWILIO_API_BASE_URL)",
    "TWILIO_AUTH_TOKEN": "Twilio request signatures are NOT verified (development only)",
    "TWILIO_PHONE_NUMBER": "outbound calls need an agent with a number (or `from`)",
    "OPENAI_API_KEY": "calls are bridged to the local realtime stand-in, not OpenAI",
    "TWILIO_WEBHOOK_SECRET": "stream tokens are signed with SECRET_KEY instead",
}


def load_config_or_exit(environ_map: Mapping[str, str], base_dir: Path) -> Config:
    """For settings.py: print one clear message and exit instead of a traceback."""
    try:
        config = load_config(environ_map, base_dir)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(2) from None
    if not config.is_production:
        for warning in config.warnings:
            sys.stderr.write(f"warning: {warning}\n")
    return config
