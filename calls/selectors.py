"""Reads of the call record (writes live in calls.services)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import (
    Avg,
    Count,
    DateTimeField,
    DecimalField,
    Exists,
    F,
    FloatField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    TextChoices,
    Value,
    Window,
)
from django.db.models.functions import Ceil, Coalesce, RowNumber, Trunc
from django.utils import timezone

from calls.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    Call,
    CallDirection,
    CallNote,
    CallStatus,
    Recording,
    Sentiment,
    ToolCall,
    Transcript,
)


def active_call_count() -> int:
    """Calls that Twilio has not reported finished yet (all processes, from the database)."""
    return Call.objects.filter(status__in=ACTIVE_STATUSES).count()


# --- calls ----------------------------------------------------------------------------------


def call_list() -> QuerySet[Call]:
    """Calls for a list page: everything a row shows comes from this one query (no N+1)."""
    return Call.objects.select_related("analytics", "agent").annotate(
        has_recording=Exists(Recording.objects.filter(call=OuterRef("pk")))
    )


def call_detail_list() -> QuerySet[Call]:
    """Calls with everything the detail view shows, fetched in a fixed number of queries."""
    return Call.objects.select_related("analytics", "metadata", "agent").prefetch_related(
        # Spoken order, not write order (see Transcript.Meta).
        Prefetch("transcripts", queryset=Transcript.objects.order_by("start_ms", "sequence")),
        Prefetch("tool_calls", queryset=ToolCall.objects.order_by("start_ms", "pk")),
        Prefetch("recordings", queryset=Recording.objects.order_by("created_at")),
        Prefetch("note_entries", queryset=CallNote.objects.select_related("author")),
    )


def call_search(*, queryset: QuerySet[Call], text: str) -> QuerySet[Call]:
    """Calls matching every word of `text` in caller, agent (name or slug), call SID, notes
    or transcript.

    Transcript lines are matched with EXISTS rather than a join, so a call with many
    matching lines appears once and the page count needs no DISTINCT.
    """
    for word in text.split():
        in_transcript = Exists(Transcript.objects.filter(call=OuterRef("pk"), text__icontains=word))
        queryset = queryset.filter(
            Q(caller__icontains=word)
            | Q(agent__name__icontains=word)
            | Q(agent__slug__icontains=word)
            | Q(call_sid__icontains=word)
            | Q(notes__icontains=word)
            | in_transcript
        )
    return queryset


def recording_for_call(*, call: Call, recording_id: uuid.UUID | None = None) -> Recording | None:
    """The call's newest recording, or the one asked for; None when there is none."""
    recordings = Recording.objects.filter(call=call)
    if recording_id is not None:
        recordings = recordings.filter(pk=recording_id)
    return recordings.order_by("-created_at").first()


def call_with_notes(*, call_id: uuid.UUID | str) -> Call:
    """A call with its note entries and their authors (two queries, however many notes)."""
    entries = CallNote.objects.select_related("author")
    return Call.objects.prefetch_related(Prefetch("note_entries", queryset=entries)).get(pk=call_id)


# --- analytics over a period ----------------------------------------------------------------


class Interval(TextChoices):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"


# Nominal bucket lengths, to bound the size of a report before it is built.
INTERVAL_LENGTH = {
    Interval.HOUR: dt.timedelta(hours=1),
    Interval.DAY: dt.timedelta(days=1),
    Interval.WEEK: dt.timedelta(weeks=1),
}
MAX_BUCKETS = 2000
UNANSWERED_STATUSES = (CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.CANCELED)
SENTIMENT_KEYS = (*Sentiment.values, "unknown")
# Outbound = every call our side placed: the API's dial-outs (outbound-api) and the legs Twilio
# dials for a <Dial> (outbound-dial). Reports and the call list split calls in these two.
OUTBOUND_DIRECTIONS = (CallDirection.OUTBOUND_API, CallDirection.OUTBOUND_DIAL)
DIRECTION_FILTERS = {
    "inbound": Q(direction=CallDirection.INBOUND),
    "outbound": Q(direction__in=OUTBOUND_DIRECTIONS),
}
# Counts nested in a report entry: the aggregate's name prefix -> the entry's key and its keys.
_NESTED_COUNTS = {
    "sentiment_": ("sentiment", SENTIMENT_KEYS),
    "direction_": ("calls_by_direction", tuple(DIRECTION_FILTERS)),
}
# Measures that are sums: an empty bucket shows 0 for these, and null for the averages.
_TALK_SUMS = ("caller_talk_s", "agent_talk_s", "silence_s")
_TOKEN_SUMS = ("input_audio_tokens", "output_audio_tokens")


@dataclass(frozen=True)
class AnalyticsReport:
    start: dt.datetime
    end: dt.datetime
    interval: str
    timezone: str
    totals: dict[str, Any]
    series: list[dict[str, Any]]


def _measures() -> dict[str, Any]:
    """Aggregates of one group of calls; each is one SQL expression, computed by the database."""
    sentiment = {
        f"sentiment_{label}": Count("pk", filter=Q(analytics__sentiment_label=label))
        for label in Sentiment.values
    }
    talk = {name: Coalesce(Sum(f"analytics__{name}"), Value(0.0)) for name in _TALK_SUMS}
    tokens = {name: Coalesce(Sum(f"analytics__{name}"), Value(0)) for name in _TOKEN_SUMS}
    return {
        "calls": Count("pk"),
        "completed": Count("pk", filter=Q(status=CallStatus.COMPLETED)),
        "failed": Count("pk", filter=Q(status=CallStatus.FAILED)),
        "unanswered": Count("pk", filter=Q(status__in=UNANSWERED_STATUSES)),
        "duration_s_avg": Avg("duration_s"),
        "latency_ms_avg": Avg("analytics__latency_ms_avg"),
        # Calls without an analytics row (none yet) are left out rather than counted as 0.
        "interruptions_per_call": Avg("analytics__interruptions", output_field=FloatField()),
        **sentiment,
        "sentiment_unknown": Count(
            "pk", filter=Q(analytics__isnull=True) | Q(analytics__sentiment_label="")
        ),
        **{f"direction_{key}": Count("pk", filter=q) for key, q in DIRECTION_FILTERS.items()},
        **talk,
        **tokens,
        "estimated_cost_usd": Coalesce(
            Sum("analytics__estimated_cost_usd"),
            Value(Decimal(0)),
            output_field=DecimalField(max_digits=16, decimal_places=6),
        ),
    }


# Percentiles whose value is a per-call column: name in the report -> column.
_P95_COLUMNS = {"duration_s_p95": "duration_s", "latency_ms_p95": "analytics__latency_ms_avg"}


def _p95_by_group(queryset: QuerySet[Call], *, column: str, group: Any | None) -> dict[Any, float]:
    """The 95th percentile (nearest rank) of `column` per group, computed in the database.

    Nearest rank: sort the group's values, take the one at rank ceil(0.95 * n). Row numbers
    and group sizes are window functions and the rank test is a filter on them, which Django
    runs as an outer query; SQLite and PostgreSQL both run it and agree to the digit, where
    PostgreSQL's percentile_cont would interpolate and SQLite has no percentile at all.
    One row per group comes back, never one per call.
    """
    partition = [group] if group is not None else None
    ranked = (
        queryset.filter(**{f"{column}__isnull": False})
        .order_by()
        .annotate(
            p_group=group if group is not None else Value(0),
            p_value=F(column),
            p_rank=Window(RowNumber(), partition_by=partition, order_by=[F(column), F("pk")]),
            p_size=Window(Count("pk"), partition_by=partition),
        )
        .filter(p_rank=Ceil(F("p_size") * 0.95))
    )
    return dict(ranked.values_list("p_group", "p_value"))


def _summary(row: Mapping[str, Any], percentiles: Mapping[str, float | None]) -> dict[str, Any]:
    """One report entry from a row of aggregates: the sentiment and direction counts nested."""
    summary = {
        key: value
        for key, value in row.items()
        if not key.startswith(tuple(_NESTED_COUNTS)) and key != "bucket"
    }
    for prefix, (name, keys) in _NESTED_COUNTS.items():
        summary[name] = {key: row[f"{prefix}{key}"] for key in keys}
    summary.update(percentiles)
    return summary


def _empty_summary() -> dict[str, Any]:
    measures = dict.fromkeys(_measures(), None)
    zeros = ("calls", "completed", "failed", "unanswered", *_TALK_SUMS, *_TOKEN_SUMS)
    measures.update(dict.fromkeys(zeros, 0))
    for prefix, (_, keys) in _NESTED_COUNTS.items():
        measures.update({f"{prefix}{key}": 0 for key in keys})
    measures["estimated_cost_usd"] = Decimal(0)
    return _summary(measures, dict.fromkeys(_P95_COLUMNS))


def _summary_copy(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A copy whose nested counts are copies too: empty buckets must not share one dict."""
    nested = {name: dict(summary[name]) for name, _ in _NESTED_COUNTS.values()}
    return {**summary, **nested}


def _local_key(value: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """A bucket's identity: its local wall-clock start, as the database truncated it."""
    return timezone.localtime(value, tz).replace(tzinfo=None)


def analytics_bucket_keys(
    *, start: dt.datetime, end: dt.datetime, interval: str, tz: dt.tzinfo
) -> list[dt.datetime]:
    """Every bucket from the one holding `start` to the one holding `end`, as local wall times.

    Hours step in absolute time, then are read in local time: a DST change yields the hours
    that exist (the repeated autumn hour is one bucket, as the database's truncation makes it).
    Days and weeks (starting Monday, like the databases' week truncation) step by date.
    """
    first, last = _local_key(start, tz), _local_key(end, tz)
    if interval == Interval.HOUR:
        keys: list[dt.datetime] = []
        cursor = timezone.make_aware(first.replace(minute=0, second=0, microsecond=0), tz)
        cursor = cursor.astimezone(dt.UTC)
        while cursor <= end:
            key = _local_key(cursor, tz).replace(minute=0, second=0, microsecond=0)
            if not keys or keys[-1] != key:
                keys.append(key)
            cursor += dt.timedelta(hours=1)
        return keys
    day, last_day = first.date(), last.date()
    step = dt.timedelta(days=1)
    if interval == Interval.WEEK:
        day -= dt.timedelta(days=day.weekday())
        step = dt.timedelta(weeks=1)
    keys = []
    while day <= last_day:
        keys.append(dt.datetime.combine(day, dt.time()))
        day += step
    return keys


def call_analytics(
    *, start: dt.datetime, end: dt.datetime, interval: str, tz: dt.tzinfo | None = None
) -> AnalyticsReport:
    """Aggregates of the calls started in [start, end] and the same measures per bucket.

    Every figure comes from the database in a fixed number of queries (totals, the series,
    and one percentile query per p95 measure for each), whatever the number of calls. Empty
    buckets are filled in from the bucket list, not from the calls.
    """
    tz = tz or timezone.get_current_timezone()
    calls = Call.objects.filter(started_at__gte=start, started_at__lte=end)
    bucket = Trunc("started_at", interval, output_field=DateTimeField(), tzinfo=tz)

    totals_row = calls.aggregate(**_measures())
    totals_p95 = {
        name: _p95_by_group(calls, column=column, group=None).get(0)
        for name, column in _P95_COLUMNS.items()
    }
    grouped = calls.annotate(bucket=bucket).order_by().values("bucket").annotate(**_measures())
    rows = {_local_key(row["bucket"], tz): row for row in grouped}
    bucket_p95 = {
        name: {
            _local_key(key, tz): value
            for key, value in _p95_by_group(calls, column=column, group=bucket).items()
        }
        for name, column in _P95_COLUMNS.items()
    }
    empty = _empty_summary()
    series = []
    for key in analytics_bucket_keys(start=start, end=end, interval=interval, tz=tz):
        row = rows.get(key)
        entry = _summary(row, {}) if row else _summary_copy(empty)
        entry.update({name: by_key.get(key) for name, by_key in bucket_p95.items()})
        entry["bucket"] = timezone.make_aware(key, tz)
        series.append(entry)
    return AnalyticsReport(
        start=start,
        end=end,
        interval=interval,
        timezone=str(tz),
        totals=_summary(totals_row, totals_p95),
        series=series,
    )


# --- the back-office (admin) ----------------------------------------------------------------


def active_calls() -> QuerySet[Call]:
    """Calls not finished yet, oldest first, each with its line count and latest line.

    Subqueries rather than a join: one row per call, in one query, however long the call.
    """
    lines = Transcript.objects.filter(call=OuterRef("pk"))
    latest = lines.order_by("-start_ms", "-sequence")
    count = lines.order_by().values("call").annotate(n=Count("pk")).values("n")
    return (
        Call.objects.filter(status__in=ACTIVE_STATUSES)
        .select_related("analytics", "metadata", "agent")
        .annotate(
            transcript_lines=Coalesce(Subquery(count), Value(0)),
            last_speaker=Subquery(latest.values("speaker")[:1]),
            last_text=Subquery(latest.values("text")[:1]),
        )
        .order_by("started_at", "pk")
    )


def calls_recently_ended(*, limit: int = 10) -> QuerySet[Call]:
    """The last calls to finish, newest first: the live page's "just ended" list on load."""
    finished = Call.objects.filter(status__in=TERMINAL_STATUSES, ended_at__isnull=False)
    return finished.select_related("analytics", "agent").order_by("-ended_at", "-pk")[:limit]


def call_end_reason(*, call_sid: str) -> str:
    """Why the call ended, as recorded so far ("" while it goes on, or for an unknown call)."""
    reason = Call.objects.filter(call_sid=call_sid).values_list("end_reason", flat=True).first()
    return reason or ""


def call_answered_by(*, call_id: str) -> str:
    """What answering machine detection said of an outbound call ("" until it has)."""
    return Call.objects.filter(pk=call_id).values_list("answered_by", flat=True).first() or ""
