"""Outbound calls: the agent dials a number (POST /api/calls, the back-office's "Call a number").

The call is on the record before Twilio is asked (queued, no CallSid yet), so a refusal is a
failed call with Twilio's reason, not a request that left no trace. Twilio is asked with the
same `<Connect><Stream>` TwiML as inbound calls, status callbacks for every progress event and,
unless turned off, asynchronous answering machine detection (DetectMessageEnd): the call is
connected at once and the bridge holds the agent's first words until the result says who
answered (realtime.bridge). The per-call `context` fills `{placeholders}` in the agent's
instructions, greeting and voicemail message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.catalog import E164_PATTERN
from agents.models import Agent, PhoneNumber
from agents.selectors import agent_first_number
from agents.services import agent_config
from calls import services
from calls.models import ACTIVE_STATUSES, Call, CallDirection
from realtime.configuration import agent_snapshot
from telephony import rest
from telephony.twiml import amd_status_url, call_status_url, connect_stream_twiml

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

MACHINE_DETECTION_CHOICES = ("hangup", "voicemail", "off")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
CONTEXT_MAX_KEYS = 50
CONTEXT_VALUE_MAX_CHARS = 1000
VOICEMAIL_MESSAGE_MAX_CHARS = 1000
# Outbound calls longer than this are rare enough that the per-agent cap may forget them.
OUTBOUND_IN_FLIGHT_HOURS = 2
# Retry-After of our 429 when Twilio answered 429 to every retry.
TWILIO_BUSY_RETRY_AFTER_S = 10
_E164 = re.compile(E164_PATTERN)


class OutboundRefused(Exception):
    """The call is not placed; `status` is the HTTP answer, `code` and str() say why.

    `field` names the request field at fault (a 400), `details` carries what else a client
    needs (Twilio's error code, the failed call's id)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.details = details or {}
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class OutboundCall:
    """What to dial: the API's request body, validated for shape (types) only."""

    to: str
    agent: str = ""  # slug; "" = the default agent
    from_: str = ""  # "" = the agent's first number, else TWILIO_PHONE_NUMBER
    context: Mapping[str, Any] = field(default_factory=dict)
    machine_detection: str = "hangup"
    voicemail_message: str = ""

    def fingerprint(self) -> str:
        """Identifies the request for Idempotency-Key reuse checks."""
        body = {
            "to": self.to,
            "agent": self.agent,
            "from": self.from_,
            "context": dict(self.context),
            "machine_detection": self.machine_detection,
            "voicemail_message": self.voicemail_message,
        }
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class Placed:
    call: Call
    replayed: bool = False  # an Idempotency-Key retry: the call the first request placed


def _bad(field_name: str, message: str, code: str = "invalid") -> OutboundRefused:
    return OutboundRefused(400, code, message, field=field_name)


def placeholders_in(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def placeholders_fill(text: str, context: Mapping[str, str]) -> str:
    """`{name}` -> context["name"]; other braces (a JSON example in a prompt) stay as written."""
    return PLACEHOLDER.sub(lambda match: context.get(match.group(1), match.group(0)), text)


def context_clean(context: Mapping[str, Any]) -> dict[str, str]:
    """The context as text: flat, bounded, scalar values only (what a prompt can hold)."""
    if len(context) > CONTEXT_MAX_KEYS:
        raise _bad("context", f"At most {CONTEXT_MAX_KEYS} context values.")
    cleaned: dict[str, str] = {}
    for key, value in context.items():
        if not PLACEHOLDER.fullmatch("{" + str(key) + "}"):
            raise _bad("context", f"{key!r} is not a placeholder name (letters, digits, _).")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _bad("context", f"context[{key!r}] must be a string or a number.")
        text = services.text_clean(str(value)).strip()
        if len(text) > CONTEXT_VALUE_MAX_CHARS:
            raise _bad("context", f"context[{key!r}] is over {CONTEXT_VALUE_MAX_CHARS} characters.")
        cleaned[key] = text
    return cleaned


def _agent(slug: str) -> Agent:
    if slug:
        agent = Agent.objects.filter(slug=slug).first()
        if agent is None:
            raise OutboundRefused(404, "agent_not_found", f"No agent {slug!r}.", field="agent")
    else:
        agent = Agent.objects.filter(is_default=True).first()
        if agent is None:
            raise _bad("agent", "No agent given and no default agent.")
    if not agent.is_active:
        raise _bad("agent", f"The agent {agent.slug!r} is not active.", "agent_inactive")
    return agent


def _from_number(requested: str, agent: Agent) -> str:
    """The caller id: one of our numbers (an agent's, or TWILIO_PHONE_NUMBER)."""
    ours = settings.TWILIO_PHONE_NUMBER
    if not requested:
        number = agent_first_number(agent=agent) or ours
        if not number:
            raise _bad(
                "from",
                "No number to call from: give `from`, give the agent a number, "
                "or set TWILIO_PHONE_NUMBER.",
            )
        return number
    if requested != ours and not PhoneNumber.objects.filter(number=requested).exists():
        raise _bad("from", f"{requested} is not one of our numbers.", "number_not_ours")
    return requested


def _filled_config(
    agent: Agent, context: Mapping[str, str], voicemail_message: str, machine_detection: str
) -> tuple[dict[str, Any], str]:
    """The agent's configuration for this call, placeholders filled, and the voicemail
    message (the greeting when none is given); a placeholder with no value is a 400."""
    config = agent_config(agent=agent)
    texts = {
        "instructions": config.get("instructions") or "",
        "greeting": config.get("greeting") or "",
        "voicemail_message": voicemail_message,
    }
    missing = sorted(
        set().union(*(placeholders_in(text) for text in texts.values())) - set(context)
    )
    if missing:
        raise OutboundRefused(
            400,
            "missing_context",
            f"The agent's text needs context for: {', '.join(missing)}.",
            field="context",
            details={"missing": missing},
        )
    config["instructions"] = placeholders_fill(texts["instructions"], context)
    config["greeting"] = placeholders_fill(texts["greeting"], context)
    message = placeholders_fill(voicemail_message, context) or config["greeting"]
    if machine_detection == "voicemail" and not message:
        raise _bad("voicemail_message", "Leaving a voicemail needs a message (or a greeting).")
    return config, message


def _over_limit(agent: Agent) -> bool:
    """(In the transaction holding the agent's row.) Its outbound calls in flight at the cap.

    Only calls placed in the last OUTBOUND_IN_FLIGHT_HOURS count: a call whose end Twilio never
    reported (callbacks lost, PUBLIC_BASE_URL wrong when it was placed) stays "active" on the
    record until start-up closes it as stale, and must not block the agent until then."""
    since = timezone.now() - dt.timedelta(hours=OUTBOUND_IN_FLIGHT_HOURS)
    active = Call.objects.filter(
        agent=agent,
        direction=CallDirection.OUTBOUND_API,
        status__in=ACTIVE_STATUSES,
        ended_at__isnull=True,
        started_at__gte=since,
    ).count()
    return active >= settings.OUTBOUND_MAX_CONCURRENT_PER_AGENT


def _replayed(user: AbstractBaseUser, key: str, fingerprint: str) -> Placed | None:
    since = timezone.now() - dt.timedelta(seconds=settings.OUTBOUND_IDEMPOTENCY_TTL_S)
    first = services.outbound_request_find(user=user, key=key, since=since)
    if first is None:
        return None
    if first.fingerprint != fingerprint:
        raise OutboundRefused(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was used for another request: use a new key.",
            details={"call_id": str(first.call_id)},
        )
    return Placed(call=first.call, replayed=True)


def _record(
    request: OutboundCall, *, user: AbstractBaseUser | None, idempotency_key: str
) -> Placed:
    """Validate and create the queued call (with its idempotency key, atomically)."""
    to = request.to.strip()
    if not _E164.match(to):
        raise _bad("to", f"{to!r} is not an E.164 number (+ and up to 15 digits).", "invalid_e164")
    if request.machine_detection not in MACHINE_DETECTION_CHOICES:
        raise _bad("machine_detection", f"One of {', '.join(MACHINE_DETECTION_CHOICES)}.")
    if len(request.voicemail_message) > VOICEMAIL_MESSAGE_MAX_CHARS:
        raise _bad("voicemail_message", f"At most {VOICEMAIL_MESSAGE_MAX_CHARS} characters.")
    context = context_clean(request.context)
    agent = _agent(request.agent.strip())
    from_ = _from_number(request.from_.strip(), agent)
    config, voicemail_message = _filled_config(
        agent,
        context,
        services.text_clean(request.voicemail_message).strip(),
        request.machine_detection,
    )
    snapshot = agent_snapshot(config, version=agent.version)
    snapshot["outbound"] = {
        "machine_detection": request.machine_detection,
        "voicemail_message": voicemail_message,
    }
    with transaction.atomic():
        # One at a time per agent, so two requests cannot both take the last free slot.
        Agent.objects.select_for_update().filter(pk=agent.pk).first()
        if _over_limit(agent):
            raise OutboundRefused(
                429,
                "too_many_calls",
                f"The agent {agent.slug!r} has {settings.OUTBOUND_MAX_CONCURRENT_PER_AGENT} "
                "outbound calls in progress (OUTBOUND_MAX_CONCURRENT_PER_AGENT).",
                retry_after_s=5,
            )
        call = services.call_create_outbound(
            agent=agent,
            to=to,
            from_=from_,
            agent_snapshot=snapshot,
            outbound={
                "context": context,
                "machine_detection": request.machine_detection,
                "voicemail_message": voicemail_message,
                "requested_by": getattr(user, "username", "") or "",
            },
        )
        if idempotency_key and user is not None:
            services.outbound_request_add(
                user=user, key=idempotency_key, fingerprint=request.fingerprint(), call=call
            )
    return Placed(call=call)


def _refusal_status(exc: rest.RestUnavailable) -> int:
    """Twilio's 400/404 are about the request (the number): the client's 400. Its 429 is
    passed on. Anything else (our credentials refused, Twilio down) is a 502."""
    status = getattr(exc, "status", None)
    if status in (400, 404):
        return 400
    if status == 429:
        return 429
    return 502


def outbound_call_place(
    request: OutboundCall,
    *,
    user: AbstractBaseUser | None = None,
    idempotency_key: str = "",
) -> Placed:
    """Record the call and ask Twilio to dial it; OutboundRefused (the call recorded as
    failed when it got that far) if it cannot be placed."""
    if idempotency_key and user is not None:
        replay = _replayed(user, idempotency_key, request.fingerprint())
        if replay is not None:
            return replay
    try:
        placed = _record(request, user=user, idempotency_key=idempotency_key)
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its call.
        replay = _replayed(user, idempotency_key, request.fingerprint()) if user else None
        if replay is None:
            raise
        return replay
    call = placed.call
    call_id = str(call.pk)
    metadata = call.metadata.custom["outbound"]
    detect = metadata["machine_detection"] != "off"
    twiml = connect_stream_twiml(
        call_id,
        "",
        caller=call.caller,
        dialled=metadata["from"],
        agent=call.agent.slug if call.agent else "",
        outbound=True,
    )
    try:
        call_sid = rest.call_create(
            to=call.caller,
            from_=metadata["from"],
            twiml=twiml,
            status_callback=call_status_url(call_id),
            machine_detection_callback=amd_status_url(call_id) if detect else None,
            machine_detection_timeout_s=settings.OUTBOUND_AMD_TIMEOUT_S,
        )
    except rest.RestUnavailable as exc:
        services.call_dial_failed(call_id=call_id, reason=str(exc))
        details: dict[str, Any] = {"call_id": call_id}
        if isinstance(exc, rest.RestRefused):
            details.update(
                twilio_status=exc.status, twilio_code=exc.code, twilio_message=exc.message
            )
        status = _refusal_status(exc)
        raise OutboundRefused(
            status,
            "twilio_refused" if isinstance(exc, rest.RestRefused) else "twilio_unavailable",
            str(exc),
            details=details,
            # Twilio still throttling after our retries: the client waits, as for our own 429.
            retry_after_s=TWILIO_BUSY_RETRY_AFTER_S if status == 429 else None,
        ) from None
    return Placed(call=services.call_dialled(call_id=call_id, call_sid=call_sid))
