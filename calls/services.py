"""Writes to the call record. Keyword-only, typed, named <entity>_<action>.

Every function here is safe to retry: the bridge's writer re-runs a batch whole when the
database fails, and Twilio re-sends webhooks it did not see answered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from calls.models import (
    ACTIVE_STATUSES,
    NOTE_MAX_CHARS,
    TERMINAL_STATUSES,
    Analytics,
    Call,
    CallMetadata,
    CallNote,
    CallStatus,
    Recording,
    Transcript,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

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


def _present(value: str | None) -> str:
    """Twilio sends empty strings for unknown fields; treat them as missing."""
    return (value or "").strip()


def call_create(*, params: Mapping[str, str], started_at: dt.datetime | None = None) -> Call:
    """Create (or, on a retried webhook, return) the Call for Twilio's incoming-call webhook."""
    call_sid = _present(params.get("CallSid"))
    status = _present(params.get("CallStatus")) or CallStatus.RINGING
    if status not in CallStatus.values:
        status = CallStatus.RINGING
    direction = _present(params.get("Direction")) or "inbound"
    if direction.startswith("outbound-dial"):
        direction = "outbound-dial"
    elif direction.startswith("outbound"):
        direction = "outbound-api"
    with transaction.atomic():
        call, created = Call.objects.get_or_create(
            call_sid=call_sid,
            defaults={
                "account_sid": _present(params.get("AccountSid")),
                "caller": _present(params.get("From")) or _present(params.get("Caller")),
                "agent": _present(params.get("To")) or _present(params.get("Called")),
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
            CallMetadata.objects.create(call=call, custom={"webhook": dict(params)}, **metadata)
            Analytics.objects.create(call=call)
    return call


def call_status_apply(
    *,
    call_sid: str,
    status: str,
    sequence: int | None,
    duration_s: float | None,
    at: dt.datetime | None = None,
) -> Call | None:
    """Apply a status callback; out-of-order and stale callbacks change nothing.

    Returns None for an unknown CallSid: the callback is acknowledged but creates nothing.
    """
    at = at or timezone.now()
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(call_sid=call_sid).first()
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


def analytics_update(*, call_id: str, values: Mapping[str, Any]) -> None:
    """Overwrite the live analytics of a call with the latest measures."""
    fields = {key: value for key, value in values.items() if key in _ANALYTICS_FIELDS}
    if "estimated_cost_usd" in fields:
        fields["estimated_cost_usd"] = Decimal(str(round(fields["estimated_cost_usd"], 6)))
    Analytics.objects.update_or_create(call_id=call_id, defaults=fields)


_ANALYTICS_FIELDS = {
    f.name for f in Analytics._meta.get_fields() if f.concrete and f.name not in ("id", "call")
}


def _recording_save_file(*, call_id: str, recording: RecordingFile) -> str:
    """Copy the finished WAV into the default storage backend; returns its storage name."""
    name = timezone.now().strftime(f"recordings/%Y/%m/%d/{call_id}.wav")
    with open(recording.path, "rb") as handle:
        return default_storage.save(name, File(handle))


def call_finalize(*, call_id: str, outcome: CallOutcome) -> Call:
    """Close the call: recording stored, analytics final, status and duration set.

    The file is stored first and the rows written in one transaction; if the transaction
    fails the stored copy is removed, so a retry neither loses nor doubles the recording.
    """
    stored_name = ""
    if outcome.recording is not None and not Recording.objects.filter(call_id=call_id).exists():
        stored_name = _recording_save_file(call_id=call_id, recording=outcome.recording)
    try:
        with transaction.atomic():
            if stored_name:
                Recording.objects.create(
                    call_id=call_id,
                    file=stored_name,
                    sample_rate=outcome.recording.sample_rate,
                    channels=outcome.recording.channels,
                    duration_s=outcome.recording.duration_s,
                    size_bytes=outcome.recording.size_bytes,
                )
            analytics_update(call_id=call_id, values=outcome.analytics)
            if outcome.network:
                CallMetadata.objects.update_or_create(call_id=call_id, defaults=outcome.network)
            call = Call.objects.select_for_update().get(pk=call_id)
            call.ended_at = call.ended_at or max(outcome.ended_at, call.started_at)
            if call.duration_s is None:
                call.duration_s = round((call.ended_at - call.started_at).total_seconds(), 3)
            if call.status in ACTIVE_STATUSES:
                call.status = CallStatus.COMPLETED
            call.end_reason = call.end_reason or outcome.end_reason
            call.save()
    except Exception:
        if stored_name:
            default_storage.delete(stored_name)
        raise
    return call


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
