"""Twilio's webhooks: thin views that check the signature and call the call services."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from agents.selectors import agent_for_number
from agents.services import agent_config
from calls import services
from calls.events import CALL_UPDATED, call_event_publish_sync
from calls.selectors import call_end_reason
from realtime.configuration import agent_snapshot
from telephony.security import (
    account_sid_allowed,
    public_url,
    signature_valid,
    signatures_enforced,
    whisper_signature_valid,
)
from telephony.twiml import (
    connect_stream_twiml,
    error_twiml,
    stream_ended_twiml,
    whisper_twiml,
)

logger = logging.getLogger(__name__)
View = Callable[[HttpRequest], HttpResponse]

# Twilio sends a CallSid like CA + 32 hex digits; anything far off is not Twilio.
_MAX_SID_LENGTH = 64
_MAX_SEQUENCE = 2**31 - 1  # the column is a 32-bit integer
_MAX_DURATION_S = 86400  # Twilio ends calls long before a day
_MAX_DETECTION_MS = 600_000  # machine detection gives up within a minute (at most 59 s)


def _text(body: str, status: int) -> HttpResponse:
    return HttpResponse(body + "\n", status=status, content_type="text/plain; charset=utf-8")


def twilio_signed(view: View) -> View:
    """403 unless X-Twilio-Signature matches the public URL and the posted form, and the
    form's AccountSid is our TWILIO_ACCOUNT_SID (when set)."""

    def wrapper(request: HttpRequest) -> HttpResponse:
        if any("\x00" in value for value in request.POST.values()):
            # PostgreSQL cannot store NUL in text; Twilio never sends one. Refuse, don't crash.
            return _text("Form fields must not contain NUL characters.", 400)
        if signatures_enforced():
            url = public_url(request.get_full_path())
            signature = request.headers.get("X-Twilio-Signature", "")
            if not signature_valid(url, request.POST.dict(), signature):
                logger.warning(
                    "rejected webhook %s: bad or missing X-Twilio-Signature", request.path
                )
                return _text("Invalid or missing X-Twilio-Signature.", 403)
        account_sid = request.POST.get("AccountSid", "")
        if not account_sid_allowed(account_sid):
            logger.warning(
                "rejected webhook %s: AccountSid %r is not this account's",
                request.path,
                account_sid[:_MAX_SID_LENGTH],
            )
            return _text("AccountSid is not this account's.", 403)
        return view(request)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


def _call_sid(request: HttpRequest) -> str | None:
    call_sid = request.POST.get("CallSid", "").strip()
    if not call_sid or len(call_sid) > _MAX_SID_LENGTH:
        return None
    return call_sid


def _our_call_id(request: HttpRequest) -> str | None:
    """The call id an outbound call's callback URLs carry (?call=), when it is one."""
    raw = request.GET.get("call", "")
    try:
        return str(uuid.UUID(raw)) if raw else None
    except ValueError:
        return None


@csrf_exempt
@require_POST
@twilio_signed
def incoming_call(request: HttpRequest) -> HttpResponse:
    """Create the call and answer with TwiML that connects its media stream to us."""
    if _call_sid(request) is None:
        return _text("CallSid is required (at most 64 characters).", 400)
    dialled = request.POST.get("To", "").strip() or request.POST.get("Called", "").strip()
    try:
        agent = agent_for_number(number=dialled)
        snapshot = (
            agent_snapshot(agent_config(agent=agent), version=agent.version) if agent else None
        )
        call = services.call_create(
            params=request.POST.dict(), agent=agent, agent_snapshot=snapshot
        )
    except DatabaseError:
        logger.exception("could not record incoming call %s", request.POST.get("CallSid"))
        # Twilio would read a 5xx as "application error" to the caller; say something instead.
        return HttpResponse(
            error_twiml("Sorry, we cannot take your call right now. Please try again later."),
            content_type="text/xml",
        )
    twiml = connect_stream_twiml(
        str(call.id),
        call.call_sid,
        caller=call.caller,
        dialled=dialled,
        agent=agent.slug if agent else "",
    )
    return HttpResponse(twiml, content_type="text/xml")


def _parse_optional_number(raw: str, kind: type[int] | type[float]) -> int | float | None:
    """None when absent; ValueError for anything that is not a finite number."""
    raw = raw.strip()
    if not raw:
        return None
    number = kind(raw)
    if not math.isfinite(number):
        raise ValueError(f"{raw!r} is not a finite number")
    return number


@csrf_exempt
@require_POST
@twilio_signed
def call_status(request: HttpRequest) -> HttpResponse:
    """Apply a status callback; unknown calls are acknowledged (Twilio retries otherwise)."""
    call_sid = _call_sid(request)
    if call_sid is None:
        return _text("CallSid is required (at most 64 characters).", 400)
    try:
        sequence = _parse_optional_number(request.POST.get("SequenceNumber", ""), int)
        duration = _parse_optional_number(request.POST.get("CallDuration", ""), float)
    except ValueError:
        return _text("SequenceNumber and CallDuration must be numbers.", 400)
    if duration is not None and not 0 <= duration <= _MAX_DURATION_S:
        return _text("CallDuration must be between 0 and 86400 seconds.", 400)
    if sequence is not None and not 0 <= sequence <= _MAX_SEQUENCE:
        return _text("SequenceNumber must be between 0 and 2147483647.", 400)
    call = services.call_status_apply(
        call_sid=call_sid,
        status=request.POST.get("CallStatus", "").strip(),
        sequence=sequence,
        duration_s=duration,
        call_id=_our_call_id(request),
    )
    if call is None:
        logger.info("status callback for unknown call %s ignored", call_sid)
    else:
        call_event_publish_sync(kind=CALL_UPDATED, call_id=str(call.id), status=call.status)
    return HttpResponse(status=200)


@csrf_exempt
@require_POST
@twilio_signed
def amd_status(request: HttpRequest) -> HttpResponse:
    """Answering machine detection's result for an outbound call (AsyncAmdStatusCallback). It
    is recorded; the bridge, waiting on it before the agent speaks, acts on it (a person: the
    greeting; a machine: hang up, or the voicemail message after the beep)."""
    call_sid = _call_sid(request)
    if call_sid is None:
        return _text("CallSid is required (at most 64 characters).", 400)
    answered_by = request.POST.get("AnsweredBy", "").strip()
    if not answered_by:
        return _text("AnsweredBy is required.", 400)
    try:
        detection_ms = _parse_optional_number(request.POST.get("MachineDetectionDuration", ""), int)
    except ValueError:
        return _text("MachineDetectionDuration must be a number.", 400)
    if detection_ms is not None and not 0 <= detection_ms <= _MAX_DETECTION_MS:
        return _text("MachineDetectionDuration must be between 0 and 600000 ms.", 400)
    call = services.call_answered_by_apply(
        call_sid=call_sid,
        answered_by=answered_by,
        detection_ms=detection_ms,
        call_id=_our_call_id(request),
    )
    if call is None:
        logger.info("machine detection result for unknown call %s ignored", call_sid)
    else:
        call_event_publish_sync(
            kind=CALL_UPDATED, call_id=str(call.id), status=call.status,
            answered_by=call.answered_by,
        )  # fmt: skip
    return HttpResponse(status=200)


@csrf_exempt
@require_POST
@twilio_signed
def stream_ended(request: HttpRequest) -> HttpResponse:
    """<Connect action>: the media stream is over and the call is still up. Hang up when the
    bridge ended the call on purpose (it records why before it closes the stream); otherwise
    the bridge lost the model or is shutting down: play the fallback (message, a human)."""
    call_sid = _call_sid(request)
    reason = call_end_reason(call_sid=call_sid) if call_sid else ""
    return HttpResponse(stream_ended_twiml(reason), content_type="text/xml")


@csrf_exempt
@require_POST
@twilio_signed
def whisper(request: HttpRequest) -> HttpResponse:
    """A warm transfer: what the person taking the call hears before they are connected (the
    agent's summary). The URL is ours, signed over the call and the summary."""
    call_id = request.GET.get("call", "")
    summary = request.GET.get("summary", "")
    if not whisper_signature_valid(call_id, summary, request.GET.get("sig", "")):
        return _text("Invalid whisper signature.", 403)
    return HttpResponse(whisper_twiml(summary), content_type="text/xml")
