"""Django settings, all driven by the environment (see .env.example and bridge_project.config)."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import environ

from bridge_project.config import DEFAULT_TWILIO_API_BASE_URL, load_config_or_exit

BASE_DIR = Path(__file__).resolve().parent.parent

# A .env file in the checkout is a convenience for development; real environment variables win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
CONFIG = load_config_or_exit(os.environ, BASE_DIR)

DJANGO_ENV = CONFIG.django_env
DEBUG = CONFIG.debug
SECRET_KEY = CONFIG.secret_key
ALLOWED_HOSTS = CONFIG.allowed_hosts
CSRF_TRUSTED_ORIGINS = [CONFIG.public_base_url] if CONFIG.is_production else []

INSTALLED_APPS = [
    # daphne first: it replaces runserver with an ASGI server that also speaks WebSocket.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "agents",
    "calls",
    "telephony",
    "realtime",
    # For its management commands (simulate_call, loadtest, soak); it has no models. Nothing
    # in the product imports it (tests/test_simulator_boundary.py checks).
    "simulator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "bridge_project.urls"
ASGI_APPLICATION = "bridge_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": environ.Env.db_url_config(CONFIG.database_url)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the admin read while the call writer writes; the timeout rides out short locks.
    # IMMEDIATE transactions take the write lock up front, so concurrent writers (webhooks,
    # the call writer) wait their turn instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests serve the app from real servers in other threads; a test database in a file
    # behaves like production (locks, WAL), where Django's in-memory default would not.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"bridge-test-{os.getpid()}.sqlite3")
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = 60
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if CONFIG.redis_url:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [CONFIG.redis_url]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# With Redis, the cache (API throttle counts) is shared by every process too. Tests keep a
# per-process cache so throttle counts never leak from one test into the next.
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CONFIG.redis_url}
        if CONFIG.redis_url and DJANGO_ENV != "test"
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if DJANGO_ENV == "test":
    # Hashing strength is not under test; the default hasher costs ~0.3 s per login.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(CONFIG.recording_storage_path)},
    },
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if CONFIG.is_production
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# In development WhiteNoise serves straight from the app folders, so no collectstatic is needed.
WHITENOISE_USE_FINDERS = not CONFIG.is_production
WHITENOISE_AUTOREFRESH = DEBUG

# Security headers on every response (SecurityMiddleware, XFrameOptionsMiddleware): nosniff,
# same-origin referrer and opener policies, no framing. Production adds cookie flags and HSTS.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if CONFIG.is_production:
    # TLS ends at the proxy in front of us; it tells us the original scheme.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))

# The largest request body (bytes) Django reads, and the API's 413 line: Django's default,
# stated here because the API promises it. An agent with the longest instructions and a hundred
# numbers is well under 100 KB.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# A failed CSRF check under /api/ answers the API's JSON 403; elsewhere Django's page.
CSRF_FAILURE_VIEW = "calls.api.exceptions.csrf_failure"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Token first: an anonymous request then gets 401 with `WWW-Authenticate: Token`; the
    # session serves the admin's own pages (with CSRF checks on writes).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["calls.api.permissions.CallPermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON, refused with 413 over DATA_UPLOAD_MAX_MEMORY_SIZE (DRF's own reads any size).
    "DEFAULT_PARSER_CLASSES": ["calls.api.parsers.BoundedJSONParser"],
    # Per user: every endpoint refuses anonymous requests before throttles are consulted, so
    # an anonymous rate would never apply. Counted in the default cache (per process unless
    # CACHES names a shared one).
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    # POST /api/calls dials real phones (and costs money): its own, much lower, rate.
    "DEFAULT_THROTTLE_RATES": {
        "user": os.environ.get("API_THROTTLE_USER", "1200/min"),
        "outbound_calls": os.environ.get("API_THROTTLE_OUTBOUND_CALLS", "30/min"),
    },
    "EXCEPTION_HANDLER": "calls.api.exceptions.api_exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Voice bridge API",
    "DESCRIPTION": (
        "Calls bridged between Twilio and OpenAI (Realtime API or GPT-Live): history, "
        "transcripts, recordings, notes, analytics and a live status feed. Authenticate with "
        "`Authorization: Token <key>` (or the admin's session); reading needs calls.view_call, "
        "notes calls.change_call, agents agents.view_agent / agents.change_agent. Every answer "
        "under "
        '/api/ that is not a success is `{"error": {"code", "message", "details"}}` JSON: 400 '
        "for a request the schema refuses, 409 for one that conflicts with what is stored. A "
        "query parameter given with an empty value counts as given (an empty enum value is "
        "refused); strings never contain NUL (U+0000)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["calls.api.permissions.CallPermission"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "calls.api.schema.status_feed_path",
        "agents.api.schema.agent_schema_constraints",
        "calls.api.schema.response_headers",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    # Two fields are named "status": a call's (Twilio's values) and a tool call's.
    "ENUM_NAME_OVERRIDES": {
        "CallStatusEnum": "calls.models.CallStatus",
        "ToolCallStatusEnum": "calls.models.ToolCallStatus",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- The bridge -------------------------------------------------------------------------------
PORT = CONFIG.port
PUBLIC_BASE_URL = CONFIG.public_base_url
TWILIO_ACCOUNT_SID = CONFIG.twilio_account_sid
TWILIO_AUTH_TOKEN = CONFIG.twilio_auth_token
TWILIO_PHONE_NUMBER = CONFIG.twilio_phone_number
TWILIO_WEBHOOK_SECRET = CONFIG.twilio_webhook_secret
OPENAI_API_KEY = CONFIG.openai_api_key
OPENAI_REALTIME_URL = CONFIG.openai_realtime_url
OPENAI_REALTIME_MODEL = CONFIG.openai_realtime_model
# GPT-Live agents' sessions (README, "GPT-Live"): OpenAI's, a proxy's, or the stand-in's.
OPENAI_LIVE_URL = CONFIG.openai_live_url
RECORDING_STORAGE_PATH = CONFIG.recording_storage_path

_env = environ.Env()
# Where Twilio's REST API is (hang up, redirect, dial out): Twilio's, or in development and
# tests the simulator's REST stand-in (`make run` points this at it when no account is set).
# (An empty value, as .env.example has it, means the default.)
TWILIO_API_BASE_URL = (
    _env.str("TWILIO_API_BASE_URL", default="").strip() or DEFAULT_TWILIO_API_BASE_URL
)
# The stream token in the TwiML must be used within this many seconds.
STREAM_TOKEN_TTL_S = _env.int("STREAM_TOKEN_TTL_S", default=300)
# Said before the stream connects (empty: none).
TWILIO_GREETING = _env.str("TWILIO_GREETING", default="")
# What the caller hears / who they are connected to when the bridge closes the stream because
# the model is unreachable (TwiML after <Connect> runs then).
FALLBACK_MESSAGE = _env.str(
    "FALLBACK_MESSAGE",
    default="Sorry, our assistant is not available right now. Please try again later.",
)
FALLBACK_DIAL_NUMBER = _env.str("FALLBACK_DIAL_NUMBER", default="")

REALTIME_PROTOCOL = _env.str("REALTIME_PROTOCOL", default="ga")
REALTIME_AUDIO_FORMAT = _env.str("REALTIME_AUDIO_FORMAT", default="audio/pcmu")
REALTIME_INSTRUCTIONS = _env.str(
    "REALTIME_INSTRUCTIONS",
    default="You are a friendly, concise phone assistant. Keep answers short and speak naturally.",
)
REALTIME_VOICE = _env.str("REALTIME_VOICE", default="alloy")
REALTIME_TURN_DETECTION = _env.str("REALTIME_TURN_DETECTION", default="server_vad")
# server_vad's numbers (the service's defaults). The silence that closes a turn is also what
# response latency takes off the service's end of turn to find where the caller stopped talking.
REALTIME_VAD_THRESHOLD = _env.float("REALTIME_VAD_THRESHOLD", default=0.5)
REALTIME_VAD_PREFIX_PADDING_MS = _env.int("REALTIME_VAD_PREFIX_PADDING_MS", default=300)
REALTIME_VAD_SILENCE_DURATION_MS = _env.int("REALTIME_VAD_SILENCE_DURATION_MS", default=500)
REALTIME_TRANSCRIPTION_MODEL = _env.str(
    "REALTIME_TRANSCRIPTION_MODEL", default="gpt-4o-mini-transcribe"
)
# The longest instructions an agent may have (characters). The whole prompt is sent on every
# session (and again on each reconnect), so a bound keeps a pasted document from costing every
# call its latency and tokens.
AGENT_INSTRUCTIONS_MAX_CHARS = _env.int("AGENT_INSTRUCTIONS_MAX_CHARS", default=16000)
REALTIME_MAX_RECONNECTS = _env.int("REALTIME_MAX_RECONNECTS", default=5)
# One connection attempt to the model (socket, session.update, session.updated) may take this
# long. The caller's frames are read and kept meanwhile (up to 30 s), then sent to the model.
REALTIME_CONNECT_TIMEOUT_S = _env.float("REALTIME_CONNECT_TIMEOUT_S", default=10.0)
# After a model socket drop, the caller's audio not yet transcribed (up to this many seconds,
# and what arrives while reconnecting) is sent to the new session, so a turn the drop cut is
# still heard and answered. 0 turns it off.
REALTIME_REPLAY_AUDIO_S = _env.float("REALTIME_REPLAY_AUDIO_S", default=8.0)
# A model socket that answers no ping within interval + timeout is dead (a stall): reconnect.
REALTIME_PING_INTERVAL_S = _env.float("REALTIME_PING_INTERVAL_S", default=10.0)
REALTIME_PING_TIMEOUT_S = _env.float("REALTIME_PING_TIMEOUT_S", default=10.0)
# When the caller hangs up, how long the bridge waits for their last turn's transcription and
# the agent's last line before it finishes the call (0: finish at once).
CALL_END_SETTLE_S = _env.float("CALL_END_SETTLE_S", default=2.0)
# What the agent says when a call reaches its max_call_minutes, before it hangs up.
CALL_TIME_LIMIT_GOODBYE = _env.str(
    "CALL_TIME_LIMIT_GOODBYE",
    default="We have reached the time limit for this call. Thank you for calling, goodbye.",
)
# How long a finished call keeps retrying its final writes through a database outage.
CALL_FINALIZE_GIVE_UP_S = _env.float("CALL_FINALIZE_GIVE_UP_S", default=900.0)
# On SIGTERM, how long calls in flight get to finalize (recording stored, rows written).
SHUTDOWN_DEADLINE_S = _env.float("SHUTDOWN_DEADLINE_S", default=20.0)
# Calls still "active" after this long are closed at start-up (their end was never seen).
STALE_CALL_AFTER_HOURS = _env.float("STALE_CALL_AFTER_HOURS", default=25.0)
# Twilio must send `start` this soon after opening the media stream, or it is closed (1008).
STREAM_START_TIMEOUT_S = _env.float("STREAM_START_TIMEOUT_S", default=10.0)
# Agent audio gets a Twilio `mark` once this much has been sent since the last one, and at the
# end of each reply. Marks tell the bridge what the caller has heard (truncation at barge-in
# extrapolates between them at real-time rate); 0 sends one after every media message.
TWILIO_MARK_INTERVAL_MS = _env.float("TWILIO_MARK_INTERVAL_MS", default=100.0)
# List prices in USD per 1M tokens, for the per-call cost estimate (late 2026, gpt-realtime).
# Cached input is billed per kind; PRICE_CACHED_INPUT_PER_M, if set, is the default of both.
_CACHED_INPUT_PER_M = _env.float("PRICE_CACHED_INPUT_PER_M", default=0.40)
REALTIME_PRICES_PER_M = {
    "input_audio": _env.float("PRICE_INPUT_AUDIO_PER_M", default=32.0),
    "cached_input_audio": _env.float("PRICE_CACHED_AUDIO_INPUT_PER_M", default=_CACHED_INPUT_PER_M),
    "output_audio": _env.float("PRICE_OUTPUT_AUDIO_PER_M", default=64.0),
    "input_text": _env.float("PRICE_INPUT_TEXT_PER_M", default=4.0),
    "cached_input_text": _env.float("PRICE_CACHED_TEXT_INPUT_PER_M", default=_CACHED_INPUT_PER_M),
    "output_text": _env.float("PRICE_OUTPUT_TEXT_PER_M", default=16.0),
}
# GPT-Live: billed per minute of session, plus the tokens of the Responses model its tool
# calls are delegated to (LIVE_BACKEND_MODEL, at its own list prices per 1M tokens).
LIVE_PRICE_PER_MINUTE_USD = _env.float("LIVE_PRICE_PER_MINUTE_USD", default=0.05)
LIVE_BACKEND_MODEL = _env.str("LIVE_BACKEND_MODEL", default="gpt-5-mini")
LIVE_BACKEND_PRICES_PER_M = {
    "input_text": _env.float("LIVE_BACKEND_PRICE_INPUT_PER_M", default=0.25),
    "cached_input_text": _env.float("LIVE_BACKEND_PRICE_CACHED_INPUT_PER_M", default=0.025),
    "output_text": _env.float("LIVE_BACKEND_PRICE_OUTPUT_PER_M", default=2.0),
}
# A GPT-Live session is replaced by a fresh one (the conversation so far as its history) this
# long before its expires_at, so a long call never meets the session's end mid-sentence.
LIVE_RENEW_BEFORE_EXPIRY_S = _env.float("LIVE_RENEW_BEFORE_EXPIRY_S", default=30.0)
# Tools (README, "Tools"). Webhook tools sign their requests with this secret (HMAC-SHA256,
# header X-Bridge-Signature); without it they answer the model with an error.
TOOL_WEBHOOK_SECRET = _env.str("TOOL_WEBHOOK_SECRET", default="")
# The most of a webhook tool's answer that is read; a longer answer is an error for the model.
TOOL_RESPONSE_MAX_BYTES = _env.int("TOOL_RESPONSE_MAX_BYTES", default=65536)
# Modules whose `@agents.tools.tool` functions agents may use as {"type": "python"} tools.
TOOL_MODULES = _env.list("TOOL_MODULES", default=[])
# Outbound calls (README, "Outbound calls"). At most this many of one agent's outbound calls
# at once (queued, ringing or in progress); POST /api/calls answers 429 past it.
OUTBOUND_MAX_CONCURRENT_PER_AGENT = _env.int("OUTBOUND_MAX_CONCURRENT_PER_AGENT", default=10)
# Twilio's MachineDetectionTimeout (3-59 s): how long answering machine detection may take. The
# agent's greeting waits for its answer (a person hears it at once, a machine is not talked
# over), at most this long plus a few seconds.
OUTBOUND_AMD_TIMEOUT_S = min(59, max(3, _env.int("OUTBOUND_AMD_TIMEOUT_S", default=30)))
# How long an Idempotency-Key of POST /api/calls is remembered.
OUTBOUND_IDEMPOTENCY_TTL_S = _env.int("OUTBOUND_IDEMPOTENCY_TTL_S", default=86400)
# Dotted path of a callable(text) -> (label, score in [-1, 1]) scoring the caller's words.
SENTIMENT_ANALYZER = _env.str("SENTIMENT_ANALYZER", default="calls.sentiment.vader_sentiment")

# Values that must never reach a log line, whatever logs them (see bridge_project.logging).
LOG_REDACTED_VALUES = [
    value
    for value in (
        SECRET_KEY,
        TWILIO_AUTH_TOKEN,
        TWILIO_WEBHOOK_SECRET,
        OPENAI_API_KEY,
        TOOL_WEBHOOK_SECRET,
        DATABASES["default"].get("PASSWORD", ""),
    )
    if value
]

# Python warnings become log records, so production output stays one JSON object per line.
logging.captureWarnings(True)
# WhiteNoise hands Django a synchronous file iterator; under ASGI Django drains it in a thread
# and warns on every static file. Harmless for static assets, so it is not worth a log line.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "call_context": {"()": "bridge_project.logging.CallContextFilter"},
        "redact_secrets": {
            "()": "bridge_project.logging.RedactSecretsFilter",
            "secrets": LOG_REDACTED_VALUES,
        },
    },
    "formatters": {
        "json": {"()": "bridge_project.logging.JsonFormatter"},
        "readable": {"()": "bridge_project.logging.ReadableFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if CONFIG.is_production else "readable",
            "filters": ["call_context", "redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": CONFIG.log_level},
    "loggers": {
        "django": {"handlers": ["console"], "level": CONFIG.log_level, "propagate": False},
        # uvicorn installs its own handlers; route them through ours so the format is uniform.
        "uvicorn": {"handlers": ["console"], "level": CONFIG.log_level, "propagate": False},
        "uvicorn.access": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
