"""Log formatting: JSON lines in production, readable lines in development.

Inside a call, `call_sid` and `stream_sid` come from context variables that the call's tasks
bind once (asyncio copies context into tasks they start), so no log call has to pass them.
Configured secrets are scrubbed from every record before it is formatted.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

call_sid_var: ContextVar[str] = ContextVar("call_sid", default="")
stream_sid_var: ContextVar[str] = ContextVar("stream_sid", default="")

REDACTED = "[redacted]"
# Credentials that look like credentials, even when they are not ours (a pasted key in a URL).
_CREDENTIAL_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-]{16,})|(Bearer\s+[A-Za-z0-9._\-]{16,})|(Token\s+[0-9a-f]{40})"
)
# LogRecord's own attributes, plus uvicorn's ANSI-coloured duplicate of its message.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


def bind_call_context(*, call_sid: str = "", stream_sid: str = "") -> None:
    """Tag every later log line of this task (and tasks it starts) with the call's ids."""
    if call_sid:
        call_sid_var.set(call_sid)
    if stream_sid:
        stream_sid_var.set(stream_sid)


@contextlib.contextmanager
def call_context(*, call_sid: str = "", stream_sid: str = "") -> Iterator[None]:
    tokens = (call_sid_var.set(call_sid), stream_sid_var.set(stream_sid))
    try:
        yield
    finally:
        call_sid_var.reset(tokens[0])
        stream_sid_var.reset(tokens[1])


class CallContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.call_sid = call_sid_var.get()
        record.stream_sid = stream_sid_var.get()
        return True


class RedactSecretsFilter(logging.Filter):
    """Replace configured secret values and credential-shaped strings in the final message."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is removed whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _CREDENTIAL_PATTERNS.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        # The traceback is now text; dropping exc_info stops formatters re-rendering it unredacted.
        record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _RESERVED and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


def _extra_fields(record: logging.LogRecord) -> dict[str, object]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RESERVED
        and key not in ("call_sid", "stream_sid")
        and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: level, logger, message, timestamp, call ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("call_sid", "stream_sid"):
            value = getattr(record, key, "")
            if value:
                entry[key] = value
        entry.update(_extra_fields(record))
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class ReadableFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(call)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        call_sid = getattr(record, "call_sid", "")
        record.call = f" [{call_sid}]" if call_sid else ""
        return super().format(record)
