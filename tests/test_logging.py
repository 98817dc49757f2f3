"""Log lines: JSON shape, call context, and secrets scrubbed wherever they hide."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from bridge_project.logging import (
    REDACTED,
    CallContextFilter,
    JsonFormatter,
    ReadableFormatter,
    RedactSecretsFilter,
    bind_call_context,
    call_context,
)

SECRET = "s3cr3t-auth-token-0123456789"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CallContextFilter())
    handler.addFilter(RedactSecretsFilter([SECRET]))
    logger = logging.getLogger("tests.logging")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def _entries(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_level_logger_message_timestamp(captured) -> None:
    logger, stream = captured
    logger.info("call %s answered", "CA1", extra={"frames": 3})
    [entry] = _entries(stream)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "tests.logging"
    assert entry["message"] == "call CA1 answered"
    assert entry["timestamp"].endswith("+00:00")
    assert entry["frames"] == 3
    assert "call_sid" not in entry


def test_call_ids_come_from_context(captured) -> None:
    logger, stream = captured
    with call_context(call_sid="CA42", stream_sid="MZ7"):
        logger.warning("inside")
    logger.warning("outside")
    inside, outside = _entries(stream)
    assert (inside["call_sid"], inside["stream_sid"]) == ("CA42", "MZ7")
    assert "call_sid" not in outside


def test_context_bound_in_a_task_reaches_the_tasks_it_starts(captured) -> None:
    logger, stream = captured

    async def call_task() -> None:
        bind_call_context(call_sid="CA9", stream_sid="MZ9")
        await asyncio.create_task(asyncio.to_thread(logger.info, "from a child"))

    asyncio.run(call_task())
    logger.info("after the call")
    child, after = _entries(stream)
    assert child["call_sid"] == "CA9"
    assert "call_sid" not in after


def test_secret_is_scrubbed_from_message_args_extras_and_tracebacks(captured) -> None:
    logger, stream = captured
    logger.info(f"token is {SECRET}")
    logger.info("token is %s", SECRET)
    logger.info("extra", extra={"header": f"Basic {SECRET}"})
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        logger.exception("boom")
    text = stream.getvalue()
    assert SECRET not in text
    assert text.count(REDACTED) >= 4


def test_credential_shaped_strings_are_scrubbed_even_if_not_configured(captured) -> None:
    logger, stream = captured
    logger.info("Authorization: Bearer sk-abcdefghijklmnopqrstuvwxyz123456")
    assert "sk-abcdefghijklmnop" not in stream.getvalue()


def test_readable_formatter_shows_call_sid() -> None:
    record = logging.makeLogRecord({"msg": "hello", "levelname": "INFO", "name": "x"})
    with call_context(call_sid="CA5"):
        CallContextFilter().filter(record)
    assert "[CA5]" in ReadableFormatter().format(record)
