"""Twilio's REST API, for what the media stream cannot do: dial out, hang a call up, send it
elsewhere.

Through the `twilio` package's client, pointed at TWILIO_API_BASE_URL (Twilio's by default; the
simulator's REST stand-in in development and tests). Synchronous, like the client: the bridge
calls it in a thread. Twilio asks callers to retry on 429 and 5xx; those are retried here with
backoff (bounded), anything else is reported at once.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from bridge_project.config import STANDIN_ACCOUNT_SID, STANDIN_AUTH_TOKEN

logger = logging.getLogger(__name__)

TWILIO_API = "https://api.twilio.com"
RETRIES = 3
RETRY_BASE_S = 0.5


class RestUnavailable(Exception):
    """The call could not be updated through the REST API; str() says why (for the model and
    the log)."""


class RestRefused(RestUnavailable):
    """Twilio answered with an error: its HTTP status, error code and message."""

    def __init__(self, what: str, *, status: int, code: int | None, message: str) -> None:
        super().__init__(f"Twilio refused {what} ({status}, code {code}): {message}")
        self.status = status
        self.code = code
        self.message = message


def _credentials() -> tuple[str, str]:
    """Our account, or (with no account configured) the stand-in's, when the base URL is not
    Twilio's. With neither, REST calls are off: there is nobody to ask."""
    if settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN:
        return settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN
    if urlsplit(settings.TWILIO_API_BASE_URL).hostname not in (None, "api.twilio.com"):
        return STANDIN_ACCOUNT_SID, STANDIN_AUTH_TOKEN
    raise RestUnavailable("Twilio's REST API is not configured (TWILIO_ACCOUNT_SID)")


def _client() -> Client:
    account_sid, auth_token = _credentials()
    client = Client(account_sid, auth_token)
    client.api.base_url = settings.TWILIO_API_BASE_URL.rstrip("/")
    return client


def _retryable(exc: TwilioRestException) -> bool:
    return exc.status == 429 or exc.status >= 500


def call_update(*, call_sid: str, **params: str) -> None:
    """Update a live call (Calls/{CallSid}.json); RestUnavailable with Twilio's code and
    message when it refuses, after retries where Twilio says to retry."""
    context = _client().calls(call_sid)
    for attempt in range(RETRIES + 1):
        try:
            context.update(**params)
            return
        except TwilioRestException as exc:
            if not _retryable(exc) or attempt == RETRIES:
                raise _refused("the call update", exc) from None
            logger.warning("Twilio answered %s to a call update; retrying", exc.status)
            time.sleep(RETRY_BASE_S * 2**attempt)
        except OSError as exc:
            raise RestUnavailable(f"Twilio's REST API could not be reached: {exc}") from None


def _refused(what: str, exc: TwilioRestException) -> RestRefused:
    # The client prefixes Twilio's message with what it was doing ("Unable to create record:
    # ..."); the message is Twilio's own.
    message = str(exc.msg)
    if message.startswith("Unable to ") and ": " in message:
        message = message.split(": ", 1)[1]
    return RestRefused(what, status=exc.status, code=exc.code, message=message)


def call_create(
    *,
    to: str,
    from_: str,
    twiml: str,
    status_callback: str,
    machine_detection_callback: str | None = None,
    machine_detection_timeout_s: int = 30,
) -> str:
    """Ask Twilio to dial `to` from `from_` and run `twiml` when answered; the new CallSid.

    Status callbacks for every progress event; with `machine_detection_callback`, answering
    machine detection runs asynchronously (the call is connected at once) and its result
    (AnsweredBy) is posted there once the greeting or message has ended. Only 429 is retried:
    Twilio did not take that request, while after a 5xx a call may have been placed, and
    dialling twice is worse than reporting the error.
    """
    params: dict[str, Any] = {
        "to": to,
        "from_": from_,
        "twiml": twiml,
        "status_callback": status_callback,
        "status_callback_method": "POST",
        "status_callback_event": ["initiated", "ringing", "answered", "completed"],
    }
    if machine_detection_callback:
        params.update(
            machine_detection="DetectMessageEnd",
            machine_detection_timeout=machine_detection_timeout_s,
            async_amd="true",
            async_amd_status_callback=machine_detection_callback,
            async_amd_status_callback_method="POST",
        )
    calls = _client().calls
    for attempt in range(RETRIES + 1):
        try:
            return str(calls.create(**params).sid)
        except TwilioRestException as exc:
            if exc.status != 429 or attempt == RETRIES:
                raise _refused("the call", exc) from None
            logger.warning("Twilio answered 429 to a call create; retrying")
            time.sleep(RETRY_BASE_S * 2**attempt)
        except OSError as exc:
            raise RestUnavailable(f"Twilio's REST API could not be reached: {exc}") from None
    raise AssertionError("unreachable")  # the loop returns or raises


def call_hang_up(*, call_sid: str) -> None:
    call_update(call_sid=call_sid, status="completed")


def call_redirect(*, call_sid: str, twiml: str) -> None:
    """Run `twiml` on the live call instead of what it is doing (its media stream ends)."""
    call_update(call_sid=call_sid, twiml=twiml)
