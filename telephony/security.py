"""Who may talk to us as Twilio: request signatures, our account, short-lived stream tokens.

Twilio signs each request over the URL *it* called. Behind a TLS proxy the URL Django sees has
another scheme, host or port, so the URL is rebuilt from PUBLIC_BASE_URL, never from the
request. The media stream's upgrade request is signed over the `wss://` form of that URL.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from django.conf import settings
from twilio.request_validator import RequestValidator

STREAM_PATH = "/streams"


def public_url(path_with_query: str) -> str:
    """The https URL Twilio called for this path (what it signed)."""
    return f"{settings.PUBLIC_BASE_URL}{path_with_query}"


def stream_url() -> str:
    """wss://PUBLIC_HOST/streams, where Twilio opens the media stream."""
    parts = urlsplit(settings.PUBLIC_BASE_URL)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{STREAM_PATH}"


def signatures_enforced() -> bool:
    """Signatures are checked whenever an auth token is configured (always in production)."""
    return bool(settings.TWILIO_AUTH_TOKEN)


def account_sid_allowed(account_sid: str) -> bool:
    """Whether a request naming `account_sid` (a webhook's AccountSid, a stream's accountSid)
    is for our Twilio account: True when it equals TWILIO_ACCOUNT_SID, or when that is unset
    (development). A number moved to another account, or a request replayed from one, is
    refused even though it reaches our URLs."""
    expected = settings.TWILIO_ACCOUNT_SID
    if not expected:
        return True
    # Bytes, so non-ASCII input compares as unequal instead of raising.
    return hmac.compare_digest(account_sid.encode(), expected.encode())


def signature_valid(url: str, params: Mapping[str, str], signature: str) -> bool:
    if not signature:
        return False
    return RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(url, dict(params), signature)


def _stream_token_key() -> bytes:
    return (settings.TWILIO_WEBHOOK_SECRET or settings.SECRET_KEY).encode()


def _stream_token_mac(call_id: str, call_sid: str, expires: int) -> str:
    message = f"{call_id}.{call_sid}.{expires}".encode()
    return hmac.new(_stream_token_key(), message, hashlib.sha256).hexdigest()


def stream_token_create(call_id: str, call_sid: str, *, now: float | None = None) -> str:
    """A token binding the media stream to the call the webhook created, valid briefly.

    Stream URLs cannot carry a query string, so it travels as a TwiML <Parameter>. It signs
    the CallSid too, so the stream's `start` must name the same Twilio call, and the consumer
    needs no database read to trust it.
    """
    expires = int((now if now is not None else time.time()) + settings.STREAM_TOKEN_TTL_S)
    return f"{expires}.{_stream_token_mac(call_id, call_sid, expires)}"


def stream_token_valid(
    call_id: str, call_sid: str, token: str, *, now: float | None = None
) -> bool:
    expires_text, _, mac = token.partition(".")
    if not expires_text.isdigit() or not mac:
        return False
    expires = int(expires_text)
    if expires < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(mac, _stream_token_mac(call_id, call_sid, expires))


def whisper_signature(call_id: str, summary: str) -> str:
    """Binds a transfer's whisper URL to its call and summary (the text Twilio will read to
    the person taking the call must be ours, not whatever a URL says)."""
    message = f"whisper.{call_id}.{summary}".encode()
    return hmac.new(_stream_token_key(), message, hashlib.sha256).hexdigest()


def whisper_signature_valid(call_id: str, summary: str, signature: str) -> bool:
    return hmac.compare_digest(whisper_signature(call_id, summary), signature)
