"""Writes to the call record. Keyword-only, typed, named <entity>_<action>.

Every function here is safe to retry: the bridge's writer re-runs a batch whole when the
database is unavailable, and Twilio re-sends webhooks it did not see answered. A write the
database refuses for good (`write_error_is_permanent`) is not retried: the writer splits it
into parts so only the refused one is lost (and logged).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DataError, IntegrityError, transaction
from django.utils import timezone

from calls.models import (
    ACTIVE_STATUSES,
    NOTE_MAX_CHARS,
    TERMINAL_STATUSES,
    Analytics,
    AnsweredBy,
    Call,
    CallDirection,
    CallMetadata,
    CallNote,
    CallStatus,
    OutboundRequest,
    Recording,
    ToolCall,
    Transcript,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from agents.models import Agent

# Twilio's webhook fields that map onto CallMetadata columns.
_METADATA_FIELDS = {
    "FromCountry": "country",
    "FromState": "state",
    "FromCity": "city",
    "CallerName": "caller_name",
}


@dataclass(frozen=True)
class TranscriptLine:
    sequence: int
    speaker: str
    text: str
    start_ms: int
    end_ms: int
    item_id: str = ""
    interrupted: bool = False
    confidence: float | None = None
    inaudible: bool = False  # the turn could not be transcribed; text is a placeholder


@dataclass(frozen=True)
class ToolCallLine:
    """A tool call as the bridge saw it (calls.models.ToolCall)."""

    call_ref: str
    name: str
    kind: str
    arguments: dict[str, Any]
    output: str
    status: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class RecordingFile:
    """A finished recording on local disk, to be stored through Django's storage API."""

    path: Path
    duration_s: float
    size_bytes: int
    sample_rate: int
    channels: int


@dataclass
class CallOutcome:
    """What the bridge knows when a call ends."""

    end_reason: str
    ended_at: dt.datetime
    analytics: dict[str, Any] = field(default_factory=dict)
    recording: RecordingFile | None = None
    network: dict[str, Any] = field(default_factory=dict)  # CallMetadata's network quality
    # Transferred: the call goes on at Twilio (with a person); its status callback ends it.
    handed_over: bool = False


# What a value, refused once, is refused again for: the row itself is wrong (out of range, not
# valid text, a broken constraint, its call gone), so retrying it can only hold up the rows
# behind it. Anything else (OperationalError, InterfaceError, connection errors: the database
# unavailable, locked or restarting) is worth retrying.
_PERMANENT_WRITE_ERRORS = (
    DataError,
    IntegrityError,
    ObjectDoesNotExist,
    ValidationError,
    ValueError,  # UnicodeEncodeError included: a lone surrogate no driver can encode
    TypeError,
    ArithmeticError,  # OverflowError: SQLite's "Python int too large"; decimal errors
)

# Refused in PostgreSQL text (NUL) or never part of speech (other C0/C1 controls, e.g. a DTMF
# tone decoded as text), plus lone surrogates no driver can encode. Newline and tab stay.
_UNWRITABLE_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")

Refused = dict[str, tuple[Any, Exception]]  # part of a write -> (its value, the database's error)


def write_error_is_permanent(exc: BaseException) -> bool:
    """True when the database refused the row itself, so the same write can never succeed."""
    return isinstance(exc, _PERMANENT_WRITE_ERRORS)


def text_clean(text: str) -> str:
    """Text any database accepts: control characters (newline and tab excepted) removed."""
    return _UNWRITABLE_CHARS.sub("", text)


def transcript_line_clean(*, line: TranscriptLine) -> TranscriptLine:
    """The line with writable text, so one odd character cannot get it refused."""
    text = text_clean(line.text)
    return line if text == line.text else replace(line, text=text)


def _part_write(*, refused: Refused, part: str, value: Any, write: Callable[[], object]) -> None:
    """One part of a refused write in its own transaction; refused for good -> noted in
    `refused` and skipped; a transient error propagates (the caller retries the whole)."""
    try:
        with transaction.atomic():
            write()
    except Exception as exc:
        if not write_error_is_permanent(exc):
            raise
        refused[part] = (value, exc)


def _present(value: str | None) -> str:
    """Twilio sends empty strings for unknown fields; treat them as missing."""
    return (value or "").strip()


def call_create(
    *,
    params: Mapping[str, str],
    agent: Agent | None = None,
    agent_snapshot: Mapping[str, Any] | None = None,
    started_at: dt.datetime | None = None,
) -> Call:
    """Create (or, on a retried webhook, return) the Call for Twilio's incoming-call webhook.

    `agent` answers the call and `agent_snapshot` is what the model is told
    (realtime.configuration.agent_snapshot: {"version", "agent", "session"}); both are kept as
    they were at the first webhook: a retry returns the call unchanged, even if the agent was
    edited in between. Without an agent, the dialled number is kept in metadata.
    """
    call_sid = _present(params.get("CallSid"))
    status = _present(params.get("CallStatus")) or CallStatus.RINGING
    if status not in CallStatus.values:
        status = CallStatus.RINGING
    direction = _present(params.get("Direction")) or "inbound"
    if direction.startswith("outbound-dial"):
        direction = "outbound-dial"
    elif direction.startswith("outbound"):
        direction = "outbound-api"
    snapshot = dict(agent_snapshot or {})
    dialled = _present(params.get("To")) or _present(params.get("Called"))
    with transaction.atomic():
        call, created = Call.objects.get_or_create(
            call_sid=call_sid,
            defaults={
                "account_sid": _present(params.get("AccountSid")),
                "caller": _present(params.get("From")) or _present(params.get("Caller")),
                "agent": agent,
                "agent_version": snapshot.get("version"),
                "agent_snapshot": snapshot,
                "direction": direction,
                "status": status,
                "started_at": started_at or timezone.now(),
            },
        )
        if created:
            metadata = {
                column: _present(params.get(name))
                for name, column in _METADATA_FIELDS.items()
                if _present(params.get(name))
            }
            custom: dict[str, Any] = {"webhook": dict(params)}
            if agent is None and dialled:
                custom["dialled_number"] = dialled  # as calls from before agents keep it
            CallMetadata.objects.create(call=call, custom=custom, **metadata)
            Analytics.objects.create(call=call)
    return call


def _outbound_call_for_update(*, call_sid: str, call_id: str | None) -> Call | None:
    """(In a transaction.) The call Twilio names, locked. An outbound call's callbacks name our
    call id too (in their URL): one that arrives before Twilio's answer to the create was
    recorded gives the call its CallSid."""
    call = Call.objects.select_for_update().filter(call_sid=call_sid).first()
    if call is not None or not call_id:
        return call
    call = Call.objects.select_for_update().filter(pk=call_id, call_sid__isnull=True).first()
    if call is not None:
        call.call_sid = call_sid
        call.save(update_fields=["call_sid", "updated_at"])
    return call


def call_status_apply(
    *,
    call_sid: str,
    status: str,
    sequence: int | None,
    duration_s: float | None,
    at: dt.datetime | None = None,
    call_id: str | None = None,
) -> Call | None:
    """Apply a status callback; out-of-order and stale callbacks change nothing.

    Returns None for an unknown CallSid: the callback is acknowledged but creates nothing.
    """
    at = at or timezone.now()
    with transaction.atomic():
        call = _outbound_call_for_update(call_sid=call_sid, call_id=call_id)
        if call is None or status not in CallStatus.values:
            return call
        if sequence is not None and sequence <= call.status_sequence:
            return call  # an older callback arriving late
        if call.status in TERMINAL_STATUSES and status in ACTIVE_STATUSES:
            return call  # a finished call never goes back to ringing or in-progress
        call.status = status
        if sequence is not None:
            call.status_sequence = sequence
        if status == CallStatus.IN_PROGRESS and call.answered_at is None:
            call.answered_at = at
        if status in TERMINAL_STATUSES:
            call.ended_at = call.ended_at or max(at, call.started_at)
            if duration_s is not None:
                call.duration_s = duration_s
        call.save()
    return call


def call_stream_started(
    *, call_id: str, stream_sid: str, custom_parameters: Mapping[str, str], tracks: list[str]
) -> None:
    """The media stream is up: the call is in progress and we know its stream."""
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=call_id)
        call.stream_sid = stream_sid
        if call.status in (CallStatus.QUEUED, CallStatus.RINGING):
            call.status = CallStatus.IN_PROGRESS
        call.answered_at = call.answered_at or timezone.now()
        call.save()
        metadata, _ = CallMetadata.objects.get_or_create(call=call)
        metadata.custom = {
            **metadata.custom,
            "stream": {"custom_parameters": dict(custom_parameters), "tracks": tracks},
        }
        metadata.save(update_fields=["custom"])


def call_stream_claim(*, call_id: str, stream_sid: str, call_sid: str) -> dict[str, Any] | None:
    """Bind a call to its media stream, once. Claimed: the call's agent snapshot, which the
    bridge configures the model session from (`{}` for a call without one). Refused: None,
    when the call already had a stream, is over, does not exist (a stream token replayed
    within its lifetime must not open a second bridge) or is another Twilio call than the
    stream's. An outbound call whose CallSid is not recorded yet takes the stream's."""
    with transaction.atomic():
        call = (
            Call.objects.select_for_update()
            .filter(pk=call_id, stream_sid="", ended_at__isnull=True)
            .exclude(status__in=TERMINAL_STATUSES)
            .first()
        )
        if call is None or (call.call_sid is not None and call.call_sid != call_sid):
            return None
        call.stream_sid = stream_sid
        call.call_sid = call_sid
        call.save(update_fields=["stream_sid", "call_sid", "updated_at"])
    return dict(call.agent_snapshot or {})


def call_create_outbound(
    *,
    agent: Agent,
    to: str,
    from_: str,
    agent_snapshot: Mapping[str, Any],
    outbound: Mapping[str, Any],
    started_at: dt.datetime | None = None,
) -> Call:
    """The record of a call we are about to ask Twilio to place: queued, no CallSid yet.
    `caller` is the other party (the number dialled), as it is the caller on inbound calls,
    so the list's caller filter finds both directions; `outbound` (from, context, machine
    detection) is kept in metadata."""
    snapshot = dict(agent_snapshot)
    with transaction.atomic():
        call = Call.objects.create(
            caller=to,
            agent=agent,
            agent_version=snapshot.get("version"),
            agent_snapshot=snapshot,
            direction=CallDirection.OUTBOUND_API,
            status=CallStatus.QUEUED,
            started_at=started_at or timezone.now(),
        )
        CallMetadata.objects.create(call=call, custom={"outbound": {"to": to, "from": from_,
                                                                    **outbound}})  # fmt: skip
        Analytics.objects.create(call=call)
    return call


def call_dialled(*, call_id: str, call_sid: str) -> Call:
    """Twilio took the call: record its CallSid (unless a callback brought it first)."""
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=call_id)
        if call.call_sid is None:
            call.call_sid = call_sid
            call.save(update_fields=["call_sid", "updated_at"])
    return call


def call_dial_failed(*, call_id: str, reason: str) -> Call:
    """Twilio refused to place the call (or could not be reached): it ends, failed, with why."""
    now = timezone.now()
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=call_id)
        if call.status not in TERMINAL_STATUSES:
            call.status = CallStatus.FAILED
            call.ended_at = max(now, call.started_at)
        call.end_reason = text_clean(reason)[:200]
        call.save()
    return call


def outbound_request_find(
    *, user: AbstractBaseUser, key: str, since: dt.datetime
) -> OutboundRequest | None:
    """The request an Idempotency-Key was first used for, if still remembered; older uses of
    the key are forgotten (deleted) so it can place a new call."""
    OutboundRequest.objects.filter(user=user, key=key, created_at__lt=since).delete()
    return OutboundRequest.objects.select_related("call").filter(user=user, key=key).first()


def outbound_request_add(
    *, user: AbstractBaseUser, key: str, fingerprint: str, call: Call
) -> OutboundRequest:
    """(In the transaction that created the call.) IntegrityError when a concurrent request
    with the same key got there first."""
    return OutboundRequest.objects.create(user=user, key=key, fingerprint=fingerprint, call=call)


def call_answered_by_apply(
    *, call_sid: str, answered_by: str, detection_ms: int | None, call_id: str | None = None
) -> Call | None:
    """Twilio's answering machine detection result for an outbound call: the first answer is
    kept (the bridge acts on it); None for a call we do not know."""
    if answered_by not in AnsweredBy.values:
        answered_by = AnsweredBy.UNKNOWN
    with transaction.atomic():
        call = _outbound_call_for_update(call_sid=call_sid, call_id=call_id)
        if call is None or call.answered_by:
            return call
        call.answered_by = answered_by
        call.save(update_fields=["answered_by", "updated_at"])
        metadata, _ = CallMetadata.objects.get_or_create(call=call)
        amd = {"answered_by": answered_by, "detection_ms": detection_ms}
        metadata.custom = {**metadata.custom, "machine_detection": amd}
        metadata.save(update_fields=["custom"])
    return call


def transcripts_add(*, call_id: str, lines: Iterable[TranscriptLine]) -> int:
    """Insert transcript lines; lines already stored (same sequence) are skipped, not doubled."""
    rows = [
        Transcript(
            call_id=call_id,
            sequence=line.sequence,
            speaker=line.speaker,
            text=line.text,
            start_ms=max(0, line.start_ms),
            end_ms=max(line.start_ms, line.end_ms, 0),
            item_id=line.item_id,
            interrupted=line.interrupted,
            confidence=line.confidence,
            inaudible=line.inaudible,
        )
        for line in lines
    ]
    existing = set(
        Transcript.objects.filter(
            call_id=call_id, sequence__in=[r.sequence for r in rows]
        ).values_list("sequence", flat=True)
    )
    fresh = [row for row in rows if row.sequence not in existing]
    Transcript.objects.bulk_create(fresh)
    return len(fresh)


def tool_calls_add(*, call_id: str, lines: Iterable[ToolCallLine]) -> int:
    """Insert tool calls; one already stored (same call_ref) is skipped, not doubled."""
    rows = [
        ToolCall(
            call_id=call_id,
            call_ref=line.call_ref,
            name=text_clean(line.name),
            kind=line.kind,
            arguments=line.arguments,
            output=text_clean(line.output),
            status=line.status,
            start_ms=max(0, line.start_ms),
            end_ms=max(line.start_ms, line.end_ms, 0),
        )
        for line in lines
    ]
    existing = set(
        ToolCall.objects.filter(
            call_id=call_id, call_ref__in=[row.call_ref for row in rows]
        ).values_list("call_ref", flat=True)
    )
    fresh = [row for row in rows if row.call_ref not in existing]
    ToolCall.objects.bulk_create(fresh)
    return len(fresh)


def analytics_update(*, call_id: str, values: Mapping[str, Any]) -> None:
    """Overwrite the live analytics of a call with the latest measures."""
    fields = {key: value for key, value in values.items() if key in _ANALYTICS_FIELDS}
    if "estimated_cost_usd" in fields:
        fields["estimated_cost_usd"] = Decimal(str(round(fields["estimated_cost_usd"], 6)))
    Analytics.objects.update_or_create(call_id=call_id, defaults=fields)


_ANALYTICS_FIELDS = {
    f.name for f in Analytics._meta.get_fields() if f.concrete and f.name not in ("id", "call")
}


def analytics_update_by_field(*, call_id: str, values: Mapping[str, Any]) -> Refused:
    """`analytics_update` one value per transaction, after the whole was refused for good:
    the values the database accepts land; returns the refused ones ("analytics.<field>")."""
    refused: Refused = {}
    for key, value in values.items():
        _part_write(
            refused=refused,
            part=f"analytics.{key}",
            value=value,
            write=lambda key=key, value=value: analytics_update(
                call_id=call_id, values={key: value}
            ),
        )
    return refused


def recording_stored_name(*, call_id: str) -> str | None:
    """The storage name of the call's recording, if one is already stored (so not again)."""
    return Recording.objects.filter(call_id=call_id).values_list("file", flat=True).first()


def recording_file_store(*, call_id: str, recording: RecordingFile) -> str:
    """Copy the finished WAV into the default storage backend; returns its storage name.

    No database access: the call store runs this off its writer thread, because an upload
    to a slow object store must not hold up every other call's rows.
    """
    name = timezone.now().strftime(f"recordings/%Y/%m/%d/{call_id}.wav")
    with open(recording.path, "rb") as handle:
        return default_storage.save(name, File(handle))


def _recording_row_add(*, call_id: str, recording: RecordingFile, name: str) -> None:
    existing = recording_stored_name(call_id=call_id)
    if existing is None:
        Recording.objects.create(
            call_id=call_id,
            file=name,
            sample_rate=recording.sample_rate,
            channels=recording.channels,
            duration_s=recording.duration_s,
            size_bytes=recording.size_bytes,
        )
    elif existing != name:
        # Another finalization stored this call's recording first (a rare race): ours is a
        # second copy. (The same name is our own row, committed by an attempt whose answer
        # was lost: keep it.)
        transaction.on_commit(lambda: default_storage.delete(name))


def _call_close(*, call_id: str, outcome: CallOutcome) -> Call:
    call = Call.objects.select_for_update().get(pk=call_id)
    if not outcome.handed_over:
        call.ended_at = call.ended_at or max(outcome.ended_at, call.started_at)
        if call.duration_s is None:
            call.duration_s = round((call.ended_at - call.started_at).total_seconds(), 3)
        if call.status in ACTIVE_STATUSES:
            call.status = CallStatus.COMPLETED
    # An error message can be long or odd; a refused reason must not keep the call open.
    reason = text_clean(outcome.end_reason)[: Call._meta.get_field("end_reason").max_length]
    call.end_reason = call.end_reason or reason
    call.save()
    return call


def call_finalize_rows(*, call_id: str, outcome: CallOutcome, recording_name: str = "") -> Call:
    """The database half of closing a call, in one transaction: the Recording row for a file
    already stored as `recording_name` (none if empty), analytics final, status and duration.
    """
    with transaction.atomic():
        if recording_name and outcome.recording is not None:
            _recording_row_add(call_id=call_id, recording=outcome.recording, name=recording_name)
        analytics_update(call_id=call_id, values=outcome.analytics)
        if outcome.network:
            CallMetadata.objects.update_or_create(call_id=call_id, defaults=outcome.network)
        return _call_close(call_id=call_id, outcome=outcome)


def call_finalize_parts(*, call_id: str, outcome: CallOutcome, recording_name: str = "") -> Refused:
    """`call_finalize_rows` once the database refused it for good: each part (the recording
    row, each analytics and network value, the call's status) in its own transaction, so the
    call is closed with everything the database accepts. Returns the refused parts ("call"
    among them if the call itself cannot be closed). A transient error propagates; every
    part is idempotent, so the retry runs this again.
    """
    refused: Refused = {}
    if recording_name and outcome.recording is not None:
        recording = outcome.recording
        _part_write(
            refused=refused,
            part="recording",
            value=(recording_name, recording),
            write=lambda: _recording_row_add(
                call_id=call_id, recording=recording, name=recording_name
            ),
        )
    refused.update(analytics_update_by_field(call_id=call_id, values=outcome.analytics))
    for key, value in outcome.network.items():
        _part_write(
            refused=refused,
            part=f"network.{key}",
            value=value,
            write=lambda key=key, value=value: CallMetadata.objects.update_or_create(
                call_id=call_id, defaults={key: value}
            ),
        )
    _part_write(
        refused=refused,
        part="call",
        value=(outcome.end_reason, outcome.ended_at),
        write=lambda: _call_close(call_id=call_id, outcome=outcome),
    )
    return refused


def call_finalize(*, call_id: str, outcome: CallOutcome) -> Call:
    """Close the call in one thread: recording stored, analytics final, status and duration set
    (start-up recovery and tools; the call store does the same in two steps, see its finalize).

    A recording already stored is not stored again; if the rows fail the stored copy is
    removed, so a re-run neither loses nor doubles the recording.
    """
    stored_name = ""
    if outcome.recording is not None and recording_stored_name(call_id=call_id) is None:
        stored_name = recording_file_store(call_id=call_id, recording=outcome.recording)
    try:
        return call_finalize_rows(call_id=call_id, outcome=outcome, recording_name=stored_name)
    except Exception:
        if stored_name:
            default_storage.delete(stored_name)
        raise


def _note_render(*, note: CallNote, author_name: str) -> str:
    """The paragraph a note adds to `Call.notes`: stamped in the server's time zone."""
    stamp = timezone.localtime(note.created_at).strftime("%Y-%m-%d %H:%M %Z")
    return f"[{stamp}] {author_name or 'unknown'}: {note.text}"


def call_note_add(*, call_id: str, author: AbstractBaseUser | None, text: str) -> Call:
    """Append a note: a signed, dated paragraph at the end of `Call.notes` plus its CallNote row.

    The call row is locked while its text is extended, so two notes added at once both land.
    An admin form opened before the append and saved after it replaces the text, as any admin
    edit does; the CallNote rows keep the record of every note either way.
    """
    text = text.strip()
    if not text:
        raise ValidationError("A note cannot be empty.", code="blank")
    if len(text) > NOTE_MAX_CHARS:
        raise ValidationError(f"A note has at most {NOTE_MAX_CHARS} characters.", code="max_length")
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=call_id)
        note = CallNote.objects.create(call=call, author=author, text=text)
        paragraph = _note_render(note=note, author_name=author.get_username() if author else "")
        call.notes = f"{call.notes.rstrip()}\n\n{paragraph}" if call.notes.strip() else paragraph
        call.save(update_fields=["notes", "updated_at"])
    return call


def call_end_reason_set(*, call_id: str, reason: str) -> None:
    """Record why a call ends before it is finalized (a first reason is never replaced)."""
    reason = text_clean(reason)[: Call._meta.get_field("end_reason").max_length]
    Call.objects.filter(pk=call_id, end_reason="").update(end_reason=reason)
