"""The back-office beyond Django's stock pages: the call sheet shown on a call's page, the
analytics page, the live calls page and the "Call a number" page. Reads go through
calls.selectors; the only write is placing a call, through telephony.outbound (as the API does).

calls.admin wires these into the Call admin (URLs, permission checks, the admin's context).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import zip_longest
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from agents import catalog as agent_catalog
from agents import selectors as agent_selectors
from agents.catalog import E164_PATTERN
from calls import admin_charts as charts
from calls import selectors
from calls.models import (
    LATENCY_HELP,
    Call,
    CallNote,
    CallStatus,
    Recording,
    Sentiment,
    ToolCall,
    ToolCallStatus,
)
from calls.selectors import Interval
from telephony import outbound

# A second of dead air after the caller stops is where callers start saying "hello?": the
# lists flag average response latency above it.
SLOW_RESPONSE_MS = 1000
CHANGELIST = "admin:calls_call_changelist"

# --- small formatting shared by the pages ---------------------------------------------------


def related_or_none(call: Call, name: str) -> Any:
    """A one-to-one row of the call (analytics, metadata), or None for calls without one."""
    try:
        return getattr(call, name)
    except ObjectDoesNotExist:
        return None


def dialled_number(call: Call) -> str:
    """The number a call without an agent was made to, as its metadata keeps it."""
    metadata = related_or_none(call, "metadata")
    custom = metadata.custom if metadata is not None else {}
    return str(custom.get("dialled_number", "")) if isinstance(custom, dict) else ""


def is_outbound(call: Call) -> bool:
    return call.direction in selectors.OUTBOUND_DIRECTIONS


def direction_marker(call: Call) -> SafeString:
    """Which way the call went, at a glance in a list: an arrow (its word for screen readers
    and in the tooltip)."""
    way, arrow, title = (
        ("outbound", "\u2197", "Outbound: we called them")
        if is_outbound(call)
        else ("inbound", "\u2199", "Inbound: they called us")
    )
    return format_html(
        '<span class="bo-direction bo-direction--{}" title="{}">{}'
        '<span class="bo-visually-hidden"> {}</span></span>',
        way,
        title,
        arrow,
        way,
    )


def outbound_from(call: Call) -> str:
    """The number an outbound call was placed from, as the call's metadata keeps it."""
    metadata = related_or_none(call, "metadata")
    custom = metadata.custom if metadata is not None else {}
    placed = custom.get("outbound") if isinstance(custom, dict) else None
    return str(placed.get("from", "")) if isinstance(placed, dict) else ""


def agent_link(call: Call) -> SafeString:
    """The answering agent's name, linked to its admin page; a quiet "no agent" otherwise."""
    if call.agent is None:
        return format_html('<span class="bo-quiet">{}</span>', "no agent")
    url = reverse("admin:agents_agent_change", args=[call.agent.pk])
    return format_html('<a href="{}">{}</a>', url, call.agent.name)


def duration_text(seconds: float | None) -> str:
    return "-" if seconds is None else charts.clock(seconds * 1000)


def status_badge(status: str) -> SafeString:
    label = CallStatus(status).label if status in CallStatus.values else status
    return format_html('<span class="bo-badge bo-status--{}">{}</span>', status, label)


def sentiment_badge(label: str, score: float | None) -> SafeString:
    """Coloured by label; the score (-1..1) is in the tooltip, for who wants the number."""
    if not label:
        return format_html('<span class="bo-badge bo-sentiment--unknown">{}</span>', "unknown")
    title = "" if score is None else f"score {score:+.2f}"
    return format_html(
        '<span class="bo-badge bo-sentiment--{}" title="{}">{}</span>', label, title, label
    )


def latency_text(ms: float | None) -> SafeString:
    if ms is None:
        return format_html('<span class="bo-quiet">{}</span>', "-")
    css = "bo-slow" if ms > SLOW_RESPONSE_MS else ""
    return format_html('<span class="{}">{} ms</span>', css, f"{ms:.0f}")


def _number(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def _cost(value: Decimal | None) -> str:
    return "-" if value is None else f"${value:,.4f}"


# --- the call page ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    speaker: str
    text: str
    start_ms: int
    end_ms: int
    stamp: str
    interrupted: bool
    heard: str  # how much of an interrupted agent turn the caller heard
    inaudible: bool  # the caller spoke but the service could not transcribe it
    failed: bool = False  # a tool call that errored or timed out


@dataclass(frozen=True)
class CallSheet:
    call: Call
    analytics: Any
    metadata: Any
    recording: Recording | None
    audio_url: str
    download_url: str
    turns: list[Turn]
    timeline: charts.Timeline | None
    analytics_rows: list[tuple[str, Any]]
    metadata_rows: list[tuple[str, str]]
    custom_json: str
    agent_link: SafeString
    dialled_number: str
    snapshot_json: str
    notes: list[CallNote]
    caller_calls_url: str
    status_badge: SafeString
    sentiment_badge: SafeString
    duration: str
    location: str
    latency: SafeString
    outbound: bool = False
    outbound_from: str = ""  # the number an outbound call was placed from
    answered_by: str = ""  # answering machine detection's verdict, once it has one
    # Which OpenAI service the call was configured with (its snapshot's backend), as a label.
    backend: str = ""
    latency_help: str = LATENCY_HELP


def _turns(call: Call) -> list[Turn]:
    """The conversation in call order: both sides' lines, and between them the tools the
    agent used (prefetched in order by selectors.call_detail_list)."""
    lines = [
        Turn(
            speaker=line.speaker,
            text=line.text,
            start_ms=line.start_ms,
            end_ms=line.end_ms,
            stamp=charts.clock(line.start_ms),
            interrupted=line.interrupted,
            heard=f"{(line.end_ms - line.start_ms) / 1000:.1f} s" if line.interrupted else "",
            inaudible=line.inaudible,
        )
        for line in call.transcripts.all()
    ]
    tools = [_tool_turn(tool) for tool in call.tool_calls.all()]
    return sorted([*lines, *tools], key=lambda turn: turn.start_ms)  # stable: lines first


def _tool_turn(tool: ToolCall) -> Turn:
    arguments = json.dumps(tool.arguments, ensure_ascii=False)
    output = tool.output if len(tool.output) <= 300 else f"{tool.output[:300]}..."
    return Turn(
        speaker="tool",
        text=f"{tool.name}({arguments}) -> {tool.status} in {tool.duration_ms} ms: {output}",
        start_ms=tool.start_ms,
        end_ms=tool.end_ms,
        stamp=charts.clock(tool.start_ms),
        interrupted=False,
        heard="",
        inaudible=False,
        failed=tool.status != ToolCallStatus.OK,
    )


def _analytics_rows(analytics: Any) -> list[tuple[str, Any]]:
    if analytics is None:
        return []
    a = analytics
    latency = " / ".join(
        _number(v) for v in (a.latency_ms_avg, a.latency_ms_p50, a.latency_ms_p95, a.latency_ms_max)
    )
    return [
        ("Sentiment", sentiment_badge(a.sentiment_label, a.sentiment_score)),
        ("Talk time caller / agent / silence", f"{a.caller_talk_s:.1f} s / "
         f"{a.agent_talk_s:.1f} s / {a.silence_s:.1f} s"),
        ("Turns", a.turns),
        ("Interruptions (barge-ins)", a.interruptions),
        ("Response latency avg / p50 / p95 / max (end of the caller's speech to the reply "
         "starting to play)", f"{latency} ms"),
        ("Model reconnects", a.reconnects),
        ("Model errors", a.model_errors),
        ("Tool calls (failed)", f"{a.tool_calls} ({a.tool_errors})"),
        ("Frames missing / malformed", f"{a.frames_missing} / {a.frames_malformed}"),
        ("Audio tokens in / out", f"{a.input_audio_tokens:,} / {a.output_audio_tokens:,}"),
        ("Audio tokens in cached", f"{a.cached_audio_tokens:,}"),
        ("Text tokens in / out", f"{a.input_text_tokens:,} / {a.output_text_tokens:,}"),
        ("Text tokens in cached", f"{a.cached_text_tokens:,}"),
        *([("GPT-Live time billed", f"{a.model_seconds:.0f} s")] if a.model_seconds else []),
        ("Estimated cost", _cost(a.estimated_cost_usd)),
    ]  # fmt: skip


def location_text(metadata: Any) -> str:
    if metadata is None:
        return ""
    return ", ".join(part for part in (metadata.city, metadata.state, metadata.country) if part)


def _metadata_rows(metadata: Any) -> list[tuple[str, str]]:
    if metadata is None:
        return []
    m = metadata
    return [
        ("Caller name", m.caller_name or "-"),
        ("Location", location_text(m) or "-"),
        ("Language", m.language or "-"),
        ("Device", m.device or "-"),
        ("Jitter", _number(m.jitter_ms, " ms", 1)),
        ("Frames missing / late", f"{m.frames_missing} / {m.frames_late}"),
    ]


def call_sheet(call: Call) -> CallSheet:
    """Everything the call page shows above its form, from a call fetched with
    selectors.call_detail_list (no further queries)."""
    analytics = related_or_none(call, "analytics")
    metadata = related_or_none(call, "metadata")
    recordings = list(call.recordings.all())
    recording = recordings[-1] if recordings else None  # the newest, as the API serves
    audio_url = download_url = ""
    if recording is not None:
        base = reverse("api:call-recording", kwargs={"pk": call.pk})
        audio_url = f"{base}?{urlencode({'recording': recording.pk})}"
        download_url = f"{audio_url}&download=true"
    turns = _turns(call)
    spoken_ms = int(1000 * (recording.duration_s if recording else call.duration_s or 0))
    timeline = (
        charts.call_timeline(spoken=list(call.transcripts.all()), duration_ms=spoken_ms)
        if turns
        else None
    )
    custom = metadata.custom if metadata is not None else {}
    return CallSheet(
        call=call,
        analytics=analytics,
        metadata=metadata,
        recording=recording,
        audio_url=audio_url,
        download_url=download_url,
        turns=turns,
        timeline=timeline,
        analytics_rows=_analytics_rows(analytics),
        metadata_rows=_metadata_rows(metadata),
        custom_json=json.dumps(custom, indent=2, sort_keys=True, default=str) if custom else "",
        agent_link=agent_link(call),
        dialled_number=dialled_number(call) if call.agent is None else "",
        snapshot_json=(
            json.dumps(call.agent_snapshot, indent=2, sort_keys=True, default=str)
            if call.agent_snapshot
            else ""
        ),
        notes=list(call.note_entries.all()),
        caller_calls_url=(
            f"{reverse(CHANGELIST)}?{urlencode({'q': call.caller})}" if call.caller else ""
        ),
        status_badge=status_badge(call.status),
        sentiment_badge=sentiment_badge(
            analytics.sentiment_label if analytics else "",
            analytics.sentiment_score if analytics else None,
        ),
        duration=duration_text(call.duration_s),
        location=location_text(metadata),
        latency=latency_text(analytics.latency_ms_avg if analytics else None),
        outbound=is_outbound(call),
        outbound_from=outbound_from(call) if is_outbound(call) else "",
        answered_by=call.get_answered_by_display() if call.answered_by else "",
        backend=agent_catalog.backend_label(agent_catalog.snapshot_backend(call.agent_snapshot)),
    )


# --- the analytics page -----------------------------------------------------------------------

# More bars than this stop being readable at the chart's width (a year of days still fits).
MAX_CHART_BUCKETS = 400
DEFAULT_PERIOD_DAYS = 30
QUICK_PERIODS_DAYS = (7, 30, 90)
_BUCKETS_PER_DAY = {Interval.HOUR: 24.0, Interval.DAY: 1.0, Interval.WEEK: 1 / 7}
_BUCKET_LABEL = {
    Interval.HOUR: "%d %b %H:00",
    Interval.DAY: "%a %d %b",
    Interval.WEEK: "week of %d %b",
}
_PER = {Interval.HOUR: "hour", Interval.DAY: "day", Interval.WEEK: "week"}


class PeriodForm(forms.Form):
    start = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    end = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    interval = forms.ChoiceField(
        choices=[
            (Interval.DAY, "per day"),
            (Interval.WEEK, "per week"),
            (Interval.HOUR, "per hour"),
        ]
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end, interval = cleaned.get("start"), cleaned.get("end"), cleaned.get("interval")
        if start and end and end < start:
            self.add_error("end", "The period ends before it starts.")
        elif start and end and interval:
            buckets = ((end - start).days + 1) * _BUCKETS_PER_DAY[Interval(interval)]
            if buckets > MAX_CHART_BUCKETS:
                self.add_error(
                    "interval",
                    f"That is about {buckets:.0f} bars; charts show at most {MAX_CHART_BUCKETS}. "
                    "Choose a shorter period or a longer interval.",
                )
        return cleaned

    def period(self) -> tuple[dt.datetime, dt.datetime]:
        """The chosen days as an inclusive period in the current time zone."""
        start = dt.datetime.combine(self.cleaned_data["start"], dt.time.min)
        end = dt.datetime.combine(self.cleaned_data["end"], dt.time.max)
        return timezone.make_aware(start), timezone.make_aware(end)


def _default_period(days: int = DEFAULT_PERIOD_DAYS) -> dict[str, str]:
    today = timezone.localdate()
    start = today - dt.timedelta(days=days - 1)
    return {"start": start.isoformat(), "end": today.isoformat(), "interval": Interval.DAY}


def _calls_url(**params: Any) -> str:
    """The call list filtered by the given lookups (dates as ISO 8601, as the admin takes them)."""
    query = {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in params.items()}
    return f"{reverse(CHANGELIST)}?{urlencode(query)}"


def _bucket_links(report: selectors.AnalyticsReport) -> list[str]:
    """Each bucket's calls in the list: from its start (or the period's) to the next bucket's."""
    starts = [entry["bucket"] for entry in report.series]
    links = []
    for index, start in enumerate(starts):
        since = max(start, report.start)
        if index + 1 < len(starts):
            links.append(_calls_url(started_at__gte=since, started_at__lt=starts[index + 1]))
        else:
            links.append(_calls_url(started_at__gte=since, started_at__lte=report.end))
    return links


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60


def _report_charts(report: selectors.AnalyticsReport) -> dict[str, Any]:
    interval = Interval(report.interval)
    labels = [
        timezone.localtime(entry["bucket"]).strftime(_BUCKET_LABEL[interval])
        for entry in report.series
    ]
    column = {key: [entry[key] for entry in report.series] for key in report.series[0]}
    other = [
        calls - done - failed - unanswered
        for calls, done, failed, unanswered in zip(
            column["calls"],
            column["completed"],
            column["failed"],
            column["unanswered"],
            strict=True,
        )
    ]
    count = lambda v: f"{v:,.0f}"  # noqa: E731
    calls_chart = charts.stacked_bars(
        title=f"Calls per {_PER[interval]}",
        categories=labels,
        series=[
            charts.Series("completed", "bo-fill-completed", column["completed"]),
            charts.Series("failed", "bo-fill-failed", column["failed"]),
            charts.Series("unanswered", "bo-fill-unanswered", column["unanswered"]),
            charts.Series("other (in progress)", "bo-fill-other", other),
        ],
        fmt=count,
        links=_bucket_links(report),
        min_step=1,
    )
    latency_chart = charts.lines(
        title="Response latency (ms)",
        categories=labels,
        series=[
            charts.Series("average", "bo-line-avg", column["latency_ms_avg"]),
            charts.Series("p95 of call averages", "bo-line-p95", column["latency_ms_p95"]),
        ],
        fmt=lambda v: f"{v:,.0f} ms",
    )
    talk_chart = charts.stacked_bars(
        title=f"Talk time per {_PER[interval]} (minutes)",
        categories=labels,
        series=[
            charts.Series(party, f"bo-fill-{party}", [_minutes(v) for v in column[key]])
            for party, key in (
                ("caller", "caller_talk_s"),
                ("agent", "agent_talk_s"),
                ("silence", "silence_s"),
            )
        ],
        fmt=lambda v: f"{v:,.1f} min",
    )
    return {"labels": labels, "charts": [calls_chart, latency_chart, talk_chart]}


def _sentiment_shares(report: selectors.AnalyticsReport) -> list[charts.Share]:
    counts = report.totals["sentiment"]
    period = {"started_at__gte": report.start, "started_at__lte": report.end}
    return charts.shares(
        [
            (label, f"bo-fill-{label}", counts[label], _calls_url(sentiment=label, **period))
            for label in (*Sentiment.values, "unknown")
        ]
    )


def _tiles(totals: Mapping[str, Any]) -> list[tuple[str, str]]:
    talk_s = totals["caller_talk_s"] + totals["agent_talk_s"]
    talk = f"{talk_s / 3600:,.1f} h" if talk_s >= 3600 else f"{talk_s / 60:,.1f} min"
    return [
        ("Calls", f"{totals['calls']:,}"),
        ("Inbound / outbound", "{inbound:,} / {outbound:,}".format(**totals["calls_by_direction"])),
        ("Completed", f"{totals['completed']:,}"),
        ("Failed / unanswered", f"{totals['failed']:,} / {totals['unanswered']:,}"),
        ("Average duration", duration_text(totals["duration_s_avg"])),
        ("Response latency avg", _number(totals["latency_ms_avg"], " ms")),
        ("Response latency p95", _number(totals["latency_ms_p95"], " ms")),
        ("Barge-ins per call", _number(totals["interruptions_per_call"], "", 2)),
        ("Talk time", talk),
        ("Estimated cost", _cost(totals["estimated_cost_usd"])),
    ]


def _table(labels: Sequence[str], report: selectors.AnalyticsReport) -> list[list[str]]:
    return [
        [
            label,
            f"{e['calls']:,}",
            f"{e['completed']:,}",
            f"{e['failed']:,}",
            f"{e['unanswered']:,}",
            duration_text(e["duration_s_avg"]),
            _number(e["latency_ms_avg"], " ms"),
            _number(e["latency_ms_p95"], " ms"),
            _number(e["caller_talk_s"] / 60, " min", 1),
            _number(e["agent_talk_s"] / 60, " min", 1),
            " / ".join(str(e["sentiment"][k]) for k in (*Sentiment.values, "unknown")),
            f"{e['calls_by_direction']['inbound']:,}",
            f"{e['calls_by_direction']['outbound']:,}",
        ]
        for label, e in zip(labels, report.series, strict=True)
    ]


def analytics_page(request: HttpRequest, *, context: dict[str, Any]) -> TemplateResponse:
    form = PeriodForm(request.GET if "start" in request.GET else _default_period())
    quick = [(days, f"?{urlencode(_default_period(days))}") for days in QUICK_PERIODS_DAYS]
    context.update(form=form, quick_periods=quick)
    if form.is_valid():
        start, end = form.period()
        report = selectors.call_analytics(
            start=start, end=end, interval=form.cleaned_data["interval"]
        )
        drawn = _report_charts(report)
        context.update(
            report=report,
            tiles=_tiles(report.totals),
            charts=drawn["charts"],
            sentiment=_sentiment_shares(report),
            share_width=charts.WIDTH,
            table=_table(drawn["labels"], report),
            period_calls_url=_calls_url(started_at__gte=start, started_at__lte=end),
            direction_urls=[
                (way, _calls_url(direction=way, started_at__gte=start, started_at__lte=end))
                for way in selectors.DIRECTION_FILTERS
            ],
        )
    return TemplateResponse(request, "admin/calls/call/analytics.html", context)


# --- the live calls page ----------------------------------------------------------------------


@dataclass(frozen=True)
class LiveRow:
    call: Call
    started_ms: int
    status_badge: SafeString
    lines: int
    interruptions: int
    last_speaker: str
    last_text: str


@dataclass(frozen=True)
class EndedRow:
    call: Call
    sentiment_badge: SafeString
    interruptions: int | None
    latency: SafeString


def _epoch_ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def live_rows() -> list[LiveRow]:
    rows = []
    for call in selectors.active_calls():
        analytics = related_or_none(call, "analytics")
        rows.append(
            LiveRow(
                call=call,
                started_ms=_epoch_ms(call.answered_at or call.started_at),
                status_badge=status_badge(call.status),
                lines=call.transcript_lines,
                interruptions=analytics.interruptions if analytics else 0,
                last_speaker=call.last_speaker or "",
                last_text=call.last_text or "",
            )
        )
    return rows


def ended_rows() -> list[EndedRow]:
    rows = []
    for call in selectors.calls_recently_ended():
        analytics = related_or_none(call, "analytics")
        rows.append(
            EndedRow(
                call=call,
                sentiment_badge=sentiment_badge(
                    analytics.sentiment_label if analytics else "",
                    analytics.sentiment_score if analytics else None,
                ),
                interruptions=analytics.interruptions if analytics else None,
                latency=latency_text(analytics.latency_ms_avg if analytics else None),
            )
        )
    return rows


LIVE_ROWS_TEMPLATE = "admin/calls/call/live_rows.html"
PLACEHOLDER_ID = uuid.UUID(int=0)


def live_page(request: HttpRequest, *, context: dict[str, Any]) -> TemplateResponse:
    """The page, or with ?fragment=rows only its table rows: the script re-reads them when the
    feed (re)connects or announces a call it has no row for, so rows are drawn in one place."""
    if request.GET.get("fragment") == "rows":
        # Never cached: admin_view marks every admin response no-store.
        return TemplateResponse(request, LIVE_ROWS_TEMPLATE, {"rows": live_rows()})
    context.update(
        rows=live_rows(),
        ended=ended_rows(),
        rows_template=LIVE_ROWS_TEMPLATE,
        feed_url=reverse("api:status"),
        rows_url=f"{request.path}?fragment=rows",
        # The script swaps the placeholder id for a call's own to link to its page.
        change_url_template=reverse("admin:calls_call_change", args=[PLACEHOLDER_ID]),
        placeholder_id=PLACEHOLDER_ID,
        server_now_ms=_epoch_ms(timezone.now()),
        time_zone=timezone.get_current_timezone_name(),
    )
    return TemplateResponse(request, "admin/calls/call/live.html", context)


# --- the "Call a number" page -----------------------------------------------------------------

PLACE_URL = "admin:calls_call_place"
# Rows the page always offers beyond those filled in: enough for most calls without script.
CONTEXT_BLANK_ROWS = 3
IDEMPOTENCY_KEY_MAX = 255
MACHINE_DETECTION_CHOICES = [
    ("hangup", "Hang up on an answering machine"),
    ("voicemail", "Leave the voicemail message after the beep"),
    ("off", "Off: the agent speaks as soon as the call is answered"),
]
# Where telephony.outbound's refusal names a field the form calls otherwise.
_REFUSED_FIELD = {"from": "from_number"}
# What people type around a number: "+1 (415) 555-0123" is +14155550123.
_NUMBER_PUNCTUATION = re.compile(r"[\s().\-]")
_E164 = re.compile(E164_PATTERN)


class ContextRowsWidget(forms.Widget):
    """Name/value rows posted as repeated `<name>_key` / `<name>_value` inputs, drawn by the
    page's template: rows the page's script adds post like the ones drawn by the server."""

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[tuple[str, str]]:
        if not hasattr(data, "getlist"):  # a plain dict: no rows
            return []
        keys, values = data.getlist(f"{name}_key"), data.getlist(f"{name}_value")
        return list(zip_longest(keys, values, fillvalue=""))

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return False


class ContextField(forms.Field):
    """The rows as a dict; blank rows are left out. Names are checked by telephony.outbound
    (placeholder names), so the page and the API refuse the same ones with the same words."""

    widget = ContextRowsWidget

    def to_python(self, value: Any) -> dict[str, str]:
        context: dict[str, str] = {}
        for raw_key, raw_text in value or []:
            key, text = str(raw_key).strip(), str(raw_text).strip()
            if not key and not text:
                continue
            if not key:
                raise ValidationError(f"The value {text!r} needs a name.")
            if key in context:
                raise ValidationError(f"{key!r} is given twice: give each name once.")
            context[key] = text
        return context


@dataclass(frozen=True)
class PlaceOptions:
    """What the form offers: the active agents (slug, label), the default one, our numbers."""

    agents: list[tuple[str, str]]
    default_agent: str
    numbers: list[tuple[str, str]]


def place_options() -> PlaceOptions:
    """Active agents and every number we may call from (the agents' numbers, and the
    account's TWILIO_PHONE_NUMBER): telephony.outbound refuses any other caller id."""
    agents = list(agent_selectors.agent_list())  # with their numbers: two queries
    active = [agent for agent in agents if agent.is_active]
    default = next((agent.slug for agent in active if agent.is_default), "")
    numbers = [
        (phone.number, " · ".join(filter(None, (phone.number, agent.name, phone.label))))
        for agent in agents
        for phone in agent.phone_numbers.all()
    ]
    ours = settings.TWILIO_PHONE_NUMBER
    if ours and ours not in {number for number, _ in numbers}:
        numbers.append((ours, f"{ours} · the account's number (TWILIO_PHONE_NUMBER)"))
    return PlaceOptions(
        agents=[(a.slug, f"{a.name} (default)" if a.is_default else a.name) for a in active],
        default_agent=default or (active[0].slug if active else ""),
        numbers=numbers,
    )


class PlaceCallForm(forms.Form):
    """The fields of POST /api/calls, as a page. The form checks their shape; what they mean
    (an E.164 number, our caller id, the context the agent's text needs) is checked by
    telephony.outbound, whose refusal is shown against the field it names."""

    required_css_class = "required"  # the admin's stylesheet marks these labels bold
    agent = forms.ChoiceField(
        help_text="Who speaks: the agent's instructions, greeting and voice (active agents)."
    )
    to = forms.CharField(
        label="Number to call",
        max_length=32,
        help_text="E.164: +, country code and number (+14155550123); spaces and dashes are "
        "dropped.",
        widget=forms.TextInput(attrs={"type": "tel", "placeholder": "+14155550123"}),
    )
    from_number = forms.ChoiceField(
        label="Call from",
        required=False,
        help_text="The caller id the callee sees: one of our numbers.",
    )
    machine_detection = forms.ChoiceField(
        label="Answering machine",
        choices=MACHINE_DETECTION_CHOICES,
        initial="hangup",
        widget=forms.RadioSelect,
        help_text="Detection holds the agent's first words until Twilio says who answered.",
    )
    voicemail_message = forms.CharField(
        label="Voicemail message",
        required=False,
        max_length=outbound.VOICEMAIL_MESSAGE_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text='Said after the beep (with "leave the voicemail message"); {placeholders} '
        "are filled from the context. Empty: the agent's greeting.",
    )
    context = ContextField(
        required=False,
        help_text="Values for the {placeholders} in the agent's instructions, greeting and "
        "voicemail message (name: letters, digits and _), e.g. name = Ada.",
    )

    def __init__(self, *args: Any, options: PlaceOptions, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["agent"].choices = options.agents
        self.fields["from_number"].choices = [
            ("", "The agent's number (its first), else the account's"),
            *options.numbers,
        ]

    def clean_to(self) -> str:
        return _NUMBER_PUNCTUATION.sub("", self.cleaned_data["to"])

    def outbound_call(self) -> outbound.OutboundCall:
        data = self.cleaned_data
        return outbound.OutboundCall(
            to=data["to"],
            agent=data["agent"],
            from_=data["from_number"],
            context=data["context"],
            machine_detection=data["machine_detection"],
            voicemail_message=data["voicemail_message"],
        )

    def add_refusal(self, refused: outbound.OutboundRefused) -> None:
        """The refusal's message against the field it names, else for the whole form."""
        name = _REFUSED_FIELD.get(refused.field or "", refused.field)
        self.add_error(name if name in self.fields else None, str(refused))

    def context_rows(self) -> list[tuple[str, str]]:
        """The rows to draw: those filled in (as typed), then blank ones."""
        value = self["context"].value() or []
        pairs = value.items() if isinstance(value, Mapping) else value
        filled = [(str(k), str(v)) for k, v in pairs if str(k).strip() or str(v).strip()]
        return filled + [("", "")] * CONTEXT_BLANK_ROWS


def place_initial(query: Mapping[str, Any], options: PlaceOptions) -> tuple[dict[str, Any], str]:
    """The form's initial values from the page's query (?to=...&agent=...&from=...), and a
    notice when the agent asked for cannot be chosen (a call back to a call whose agent has
    since been deactivated): the default agent is offered instead, and the page says so."""
    initial: dict[str, Any] = {"agent": options.default_agent, "machine_detection": "hangup"}
    for name in ("to", "machine_detection", "voicemail_message"):
        if query.get(name):
            initial[name] = query.get(name)
    if query.get("from"):
        initial["from_number"] = query.get("from")
    rows = ContextRowsWidget().value_from_datadict(query, {}, "context")
    if rows:
        initial["context"] = rows
    slug = query.get("agent") or ""
    if slug and slug in {value for value, _ in options.agents}:
        initial["agent"] = slug
    elif slug:
        return initial, f"The agent {slug!r} is not active (or no longer exists): choose another."
    return initial, ""


def call_back_url(call: Call) -> str:
    """The "Call a number" page for the call's other party, with its agent when it may still
    take calls; "" when the caller is not a number that can be dialled (withheld, a client)."""
    if not _E164.match(call.caller or ""):
        return ""
    query = {"to": call.caller}
    if call.agent is not None and call.agent.is_active:
        query["agent"] = call.agent.slug
    return f"{reverse(PLACE_URL)}?{urlencode(query)}"


def _placed_message(placed: outbound.Placed) -> str:
    call = placed.call
    if placed.replayed:
        return "This form was already sent: here is the call it placed (no second call)."
    agent = call.agent.name if call.agent is not None else "the default agent"
    return f"Calling {call.caller} with {agent}: the call is queued with Twilio."


def _failed_call_url(refused: outbound.OutboundRefused) -> str:
    """The page of the call a refusal left on the record (Twilio refused or was down)."""
    call_id = refused.details.get("call_id")
    return reverse("admin:calls_call_change", args=[call_id]) if call_id else ""


def place_page(request: HttpRequest, *, context: dict[str, Any]) -> HttpResponse:
    """GET: the form (pre-filled from the query). POST: place the call and open its page, or
    show the form again, as typed, with why it was refused."""
    options = place_options()
    notice = failed_call_url = ""
    if request.method == "POST":
        form = PlaceCallForm(request.POST, options=options)
        if form.is_valid():
            # The key makes a double submit open the first call instead of dialling twice.
            key = request.POST.get("idempotency_key", "")[:IDEMPOTENCY_KEY_MAX]
            try:
                placed = outbound.outbound_call_place(
                    form.outbound_call(), user=request.user, idempotency_key=key
                )
            except outbound.OutboundRefused as refused:
                form.add_refusal(refused)
                failed_call_url = _failed_call_url(refused)
            else:
                messages.success(request, _placed_message(placed))
                return HttpResponseRedirect(
                    reverse("admin:calls_call_change", args=[placed.call.pk])
                )
    else:
        initial, notice = place_initial(request.GET, options)
        form = PlaceCallForm(initial=initial, options=options)
    context.update(
        form=form,
        context_rows=form.context_rows(),
        agent_notice=notice,
        failed_call_url=failed_call_url,
        # A new key for every page shown: a form re-sent after a refusal is a new request.
        idempotency_key=uuid.uuid4().hex,
        no_agents=not options.agents,
    )
    return TemplateResponse(request, "admin/calls/call/place.html", context)
