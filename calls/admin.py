"""The back-office: calls as a support lead reads them every morning.

Calls come from Twilio and the bridge, never from a form: staff annotate a call (its notes),
they do not rewrite it. Everything else on a call is read-only, nobody adds call rows here, and
only superusers delete them. Staff with calls.add_call may have an agent dial a number (the
"Call a number" page, which places the call as POST /api/calls does). Beside the list and the
call page, the Call admin serves the analytics, live calls and "Call a number" pages
(calls.admin_views), under its own URLs and permissions.
"""

from __future__ import annotations

import csv
import hashlib
import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from agents import selectors as agent_selectors
from calls import admin_views, selectors, services
from calls.models import (
    ACTIVE_STATUSES,
    NOTE_MAX_CHARS,
    TERMINAL_STATUSES,
    Call,
    CallStatus,
    Sentiment,
)

# There is no public site: the stock "View site" link would lead to a 404.
admin.site.site_url = None
# The back-office is one model and its pages, linked from the header: the model sidebar would
# only take the width the call list needs.
admin.site.enable_nav_sidebar = False

# --- list filters -----------------------------------------------------------------------------


class StatusFilter(admin.SimpleListFilter):
    """Twilio's statuses, plus "active" and "finished": the two questions asked most."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        groups = [("active", "Active (queued, ringing, in progress)"), ("finished", "Finished")]
        return groups + [(value, label) for value, label in CallStatus.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Call]) -> QuerySet[Call]:
        value = self.value()
        if value == "active":
            return queryset.filter(status__in=ACTIVE_STATUSES)
        if value == "finished":
            return queryset.filter(status__in=TERMINAL_STATUSES)
        if value in CallStatus.values:
            return queryset.filter(status=value)
        return queryset


class SentimentFilter(admin.SimpleListFilter):
    title = "sentiment"
    parameter_name = "sentiment"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [*Sentiment.choices, ("unknown", "Unknown (not scored yet)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Call]) -> QuerySet[Call]:
        value = self.value()
        if value == "unknown":
            # A call without an analytics row has not been scored either.
            return queryset.filter(Q(analytics__isnull=True) | Q(analytics__sentiment_label=""))
        if value in Sentiment.values:
            return queryset.filter(analytics__sentiment_label=value)
        return queryset


class AgentFilter(admin.SimpleListFilter):
    """The agents, by name (one query, capped), and the calls no agent answered."""

    title = "agent"
    parameter_name = "agent"
    NONE = "-"  # not a slug (slugs have no lone dash)

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [*agent_selectors.agent_choices(), (self.NONE, "No agent")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Call]) -> QuerySet[Call]:
        value = self.value()
        if value == self.NONE:
            return queryset.filter(agent__isnull=True)
        # Any slug works, listed or not: a link to ?agent=sales must not be ignored silently.
        return queryset.filter(agent__slug=value) if value else queryset


class DirectionFilter(admin.SimpleListFilter):
    """Calls to us, or calls we placed (the API's dial-outs and the legs of a <Dial>)."""

    title = "direction"
    parameter_name = "direction"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("inbound", "Inbound (they called)"), ("outbound", "Outbound (we called)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Call]) -> QuerySet[Call]:
        condition = selectors.DIRECTION_FILTERS.get(self.value() or "")
        return queryset.filter(condition) if condition is not None else queryset


class BargeInFilter(admin.SimpleListFilter):
    """Calls where the caller had to talk over the agent: the first ones worth a listen."""

    title = "barge-ins"
    parameter_name = "barge_ins"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "With barge-ins"), ("no", "None")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Call]) -> QuerySet[Call]:
        if self.value() == "yes":
            return queryset.filter(analytics__interruptions__gt=0)
        if self.value() == "no":
            return queryset.exclude(analytics__interruptions__gt=0)
        return queryset


class LatencyFilter(admin.SimpleListFilter):
    title = "response latency"
    parameter_name = "latency"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        slow = admin_views.SLOW_RESPONSE_MS
        return [("slow", f"Slow (average over {slow} ms)"), ("ok", f"Up to {slow} ms")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Call]) -> QuerySet[Call]:
        slow = admin_views.SLOW_RESPONSE_MS
        if self.value() == "slow":
            return queryset.filter(analytics__latency_ms_avg__gt=slow)
        if self.value() == "ok":
            return queryset.filter(analytics__latency_ms_avg__lte=slow)
        return queryset


# --- the notes form ---------------------------------------------------------------------------


def notes_normalized(text: str) -> str:
    """Browsers send a textarea's lines with CRLF; stored notes use LF, like the API's."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def notes_digest(text: str) -> str:
    return hashlib.sha256(notes_normalized(text).encode()).hexdigest()


class CallNotesForm(forms.ModelForm):
    """The notes document, editable, and a new note to append with its author and time.

    The API appends notes to the same document (calls.services.call_note_add). A page opened
    before such an append and saved after it would silently drop the appended note, so the
    page carries a digest of the notes it showed: saving an edit over notes that changed
    meanwhile is refused, and a page whose notes were not edited leaves them as they are now.
    """

    add_note = forms.CharField(
        label="Add a note",
        required=False,
        max_length=NOTE_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Appended to the notes, signed with your name and the time (as the API does).",
    )
    notes_base = forms.CharField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = Call
        fields = ("notes",)
        widgets = {"notes": forms.Textarea(attrs={"rows": 8, "cols": 80})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "notes" in self.fields:  # not for read-only visitors: their form has no fields
            self.fields["notes"].help_text = "The call's notes as one document; edit them freely."
        # As read for this request: the form writes the posted notes into the instance later.
        self.notes_now = self.instance.notes
        self.initial["notes_base"] = notes_digest(self.notes_now)

    def _base(self) -> str:
        """The digest of the notes the user was shown (a post without one: the current ones)."""
        return self.data.get("notes_base") or notes_digest(self.notes_now)

    def notes_edited(self) -> bool:
        """Whether the user changed the notes they were shown (not whether they differ now)."""
        return "notes" in self.data and notes_digest(self.data["notes"]) != self._base()

    @property
    def changed_data(self) -> list[str]:
        changed = [name for name in super().changed_data if name != "notes_base"]
        return [name for name in changed if name != "notes" or self.notes_edited()]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.notes_edited():
            cleaned["notes"] = self.notes_now
        elif notes_digest(self.notes_now) != self._base():
            self.add_error(
                "notes",
                "Someone added to these notes since you opened this page (another member of "
                "staff or the API). Copy your text, reload the page and apply your change again.",
            )
        else:
            cleaned["notes"] = notes_normalized(cleaned.get("notes", ""))
        return cleaned


# --- CSV export -------------------------------------------------------------------------------

CSV_COLUMNS = (
    "id",
    "call_sid",
    "started_at",
    "ended_at",
    "caller",
    "agent",
    "agent_version",
    "direction",
    "answered_by",
    "status",
    "duration_s",
    "end_reason",
    "sentiment",
    "sentiment_score",
    "turns",
    "interruptions",
    "latency_ms_avg",
    "latency_ms_p95",
    "caller_talk_s",
    "agent_talk_s",
    "silence_s",
    "estimated_cost_usd",
    "caller_name",
    "city",
    "country",
    "notes",
)
# Spreadsheets run a cell starting with these as a formula (CSV injection): a caller ID or a
# note is untrusted text. Numbers such as "+14155550123" or "-0.5" are left alone.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    if not isinstance(value, str) or not value.startswith(_FORMULA_STARTS):
        return value
    try:
        float(value.replace(" ", ""))
    except ValueError:
        return "'" + value
    return value


def _iso(moment: Any) -> str:
    return timezone.localtime(moment).isoformat() if moment else ""


def _csv_row(call: Call) -> list[Any]:
    a = admin_views.related_or_none(call, "analytics")
    m = admin_views.related_or_none(call, "metadata")
    row = [
        call.pk,
        call.call_sid,
        _iso(call.started_at),
        _iso(call.ended_at),
        call.caller,
        call.agent.name if call.agent is not None else "",
        call.agent_version,
        call.direction,
        call.answered_by,
        call.status,
        call.duration_s,
        call.end_reason,
        a.sentiment_label if a else "",
        a.sentiment_score if a else "",
        a.turns if a else "",
        a.interruptions if a else "",
        a.latency_ms_avg if a else "",
        a.latency_ms_p95 if a else "",
        a.caller_talk_s if a else "",
        a.agent_talk_s if a else "",
        a.silence_s if a else "",
        a.estimated_cost_usd if a else "",
        m.caller_name if m else "",
        m.city if m else "",
        m.country if m else "",
        call.notes,
    ]
    return ["" if value is None else spreadsheet_safe(value) for value in row]


def csv_write(calls: QuerySet[Call], out: Any) -> None:
    writer = csv.writer(out)
    # A byte order mark, so Excel reads the file as UTF-8 (names, notes) rather than ANSI.
    out.write("\ufeff")
    writer.writerow(CSV_COLUMNS)
    for call in calls.iterator(chunk_size=500):
        writer.writerow(_csv_row(call))


# --- the Call admin ---------------------------------------------------------------------------

# Words are matched with one EXISTS each over the transcript (selectors.call_search): a bound
# on the search text bounds the query.
SEARCH_MAX_CHARS = 200
RECORDED_FIELDS = (
    "id",
    "call_sid",
    "stream_sid",
    "account_sid",
    "caller",
    "agent_version",
    "direction",
    "status",
    "status_sequence",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_s",
    "end_reason",
    "created_at",
    "updated_at",
)


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    form = CallNotesForm
    list_display = (
        "started",
        "caller_column",
        "agent_column",
        "status_column",
        "duration_column",
        "sentiment_column",
        "interruptions_column",
        "latency_column",
        "has_recording",
    )
    list_display_links = ("started", "caller_column")
    # The list rows read analytics, metadata and the agent: joined, so a page is a fixed number
    # of queries.
    list_select_related = ("analytics", "metadata", "agent")
    list_filter = (
        StatusFilter,
        DirectionFilter,
        SentimentFilter,
        AgentFilter,
        BargeInFilter,
        LatencyFilter,
    )
    date_hierarchy = "started_at"
    # Searching is selectors.call_search (see get_search_results); these name what it covers.
    search_fields = ("caller", "agent__name", "call_sid", "notes", "transcripts__text")
    search_help_text = (
        "Words matched in the caller, the agent (name or slug), call SID, notes and transcript."
    )
    list_per_page = 50
    actions = ("export_csv",)
    readonly_fields = (*RECORDED_FIELDS, "note_history")
    fieldsets = (
        ("Notes", {"fields": ("note_history", "notes", "add_note", "notes_base")}),
        ("Recorded by the call", {"classes": ("collapse",), "fields": RECORDED_FIELDS}),
    )
    change_form_template = "admin/calls/call/change_form.html"
    change_list_template = "admin/calls/call/change_list.html"

    # --- queries ---

    def get_queryset(self, request: HttpRequest) -> QuerySet[Call]:
        # Applied here: the changelist skips list_select_related for a queryset that already
        # has a select_related (call_list joins analytics), and the rows read metadata too.
        return selectors.call_list().select_related(*self.list_select_related)

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Call | None:
        # The call page shows everything about the call: fetched in a fixed number of queries.
        try:
            return selectors.call_detail_list().get(pk=uuid.UUID(str(object_id)))
        except (Call.DoesNotExist, ValueError, ValidationError):
            return None

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Call], search_term: str
    ) -> tuple[QuerySet[Call], bool]:
        term = search_term[:SEARCH_MAX_CHARS]
        # EXISTS per word, not a join: a call never appears twice, so no DISTINCT is needed.
        return selectors.call_search(queryset=queryset, text=term), False

    def get_fieldsets(self, request: HttpRequest, obj: Call | None = None) -> Any:
        if self.has_change_permission(request, obj):
            return self.fieldsets
        # Read-only visitors see the notes, not the inputs for changing them.
        notes = {"fields": ("note_history", "notes")}
        return (("Notes", notes), *self.fieldsets[1:])

    # --- permissions: calls come from Twilio, staff annotate them ---

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        # A deleted call takes its recording and transcript with it; not an everyday action.
        return request.user.is_active and request.user.is_superuser

    def has_place_permission(self, request: HttpRequest) -> bool:
        """Whether the user may have an agent dial a number: calls.add_call, as for the API
        (has_add_permission stays False: there is no form to write a call row by hand)."""
        return request.user.has_perm(f"{self.opts.app_label}.add_{self.opts.model_name}")

    # --- list columns ---

    @admin.display(description="Started", ordering="started_at")
    def started(self, call: Call) -> str:
        return timezone.localtime(call.started_at).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="Other party", ordering="caller")
    def caller_column(self, call: Call) -> SafeString:
        # The other party: who called us, or whom we called; the arrow says which.
        metadata = admin_views.related_or_none(call, "metadata")
        detail = ""
        if metadata is not None:
            detail = metadata.caller_name or admin_views.location_text(metadata)
        who = format_html("{} {}", admin_views.direction_marker(call), call.caller or "unknown")
        if not detail:
            return who
        return format_html('{}<br><span class="bo-quiet">{}</span>', who, detail)

    @admin.display(description="Agent", ordering="agent__name")
    def agent_column(self, call: Call) -> SafeString:
        return admin_views.agent_link(call)

    @admin.display(description="Status", ordering="status")
    def status_column(self, call: Call) -> SafeString:
        return admin_views.status_badge(call.status)

    @admin.display(description="Duration", ordering="duration_s")
    def duration_column(self, call: Call) -> str:
        return admin_views.duration_text(call.duration_s)

    @admin.display(description="Sentiment", ordering="analytics__sentiment_score")
    def sentiment_column(self, call: Call) -> SafeString:
        analytics = admin_views.related_or_none(call, "analytics")
        if analytics is None:
            return admin_views.sentiment_badge("", None)
        return admin_views.sentiment_badge(analytics.sentiment_label, analytics.sentiment_score)

    @admin.display(description="Barge-ins", ordering="analytics__interruptions")
    def interruptions_column(self, call: Call) -> int | str:
        analytics = admin_views.related_or_none(call, "analytics")
        return analytics.interruptions if analytics else "-"

    @admin.display(description="Latency", ordering="analytics__latency_ms_avg")
    def latency_column(self, call: Call) -> SafeString:
        analytics = admin_views.related_or_none(call, "analytics")
        return admin_views.latency_text(analytics.latency_ms_avg if analytics else None)

    @admin.display(description="Rec.", boolean=True, ordering="has_recording")
    def has_recording(self, call: Call) -> bool:
        return bool(getattr(call, "has_recording", False))

    # --- the call page ---

    @admin.display(description="Notes added")
    def note_history(self, call: Call) -> SafeString:
        entries = list(call.note_entries.all())
        if not entries:
            return format_html('<span class="bo-quiet">{}</span>', "None yet.")
        items = [
            format_html(
                "<li><strong>{}</strong> <span class='bo-quiet'>{}</span><br>{}</li>",
                entry.author.get_username() if entry.author else "unknown",
                timezone.localtime(entry.created_at).strftime("%Y-%m-%d %H:%M"),
                entry.text,
            )
            for entry in entries
        ]
        return format_html('<ul class="bo-note-history">{}</ul>', SafeString("".join(items)))

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Call | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context["sheet"] = admin_views.call_sheet(obj)
            if self.has_place_permission(request):
                context["call_back_url"] = admin_views.call_back_url(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(
        self, request: HttpRequest, obj: Call, form: CallNotesForm, change: bool
    ) -> None:
        # Only the notes column is written: a full save would write back every column as read
        # when the form was posted, over a status the bridge may have changed meanwhile.
        if "notes" in form.changed_data:
            obj.save(update_fields=["notes", "updated_at"])
        note = form.cleaned_data.get("add_note", "").strip()
        if note:
            services.call_note_add(call_id=str(obj.pk), author=request.user, text=note)
            self.message_user(request, "Your note was added.", messages.SUCCESS)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {
            "title": "Calls",
            "can_place_calls": self.has_place_permission(request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # "Change call" would promise more than the page allows: staff read and annotate.
        extra = {"title": "Call", **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    # --- actions ---

    @admin.action(description="Export selected calls as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Call]) -> HttpResponse:
        # Built whole rather than streamed: under ASGI Django would read a synchronous stream
        # into memory anyway, and a selection is at most the calls the list can select.
        calls = queryset.select_related("analytics", "metadata", "agent")
        calls = calls.order_by("-started_at", "-pk")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        csv_write(calls, response)
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="calls-{stamp}.csv"'
        return response

    # --- the analytics, live and "Call a number" pages ---

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        pages = [
            path("analytics/", wrap(self.analytics_view), name="calls_call_analytics"),
            path("live/", wrap(self.live_view), name="calls_call_live"),
            path("place/", wrap(self.place_view), name="calls_call_place"),
        ]
        # Before the stock patterns: their "<path:object_id>/" would take these paths.
        return pages + super().get_urls()

    def _page_context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
        }

    def analytics_view(self, request: HttpRequest) -> TemplateResponse:
        context = self._page_context(request, "Call analytics")
        return admin_views.analytics_page(request, context=context)

    def live_view(self, request: HttpRequest) -> TemplateResponse:
        context = self._page_context(request, "Live calls")
        return admin_views.live_page(request, context=context)

    def place_view(self, request: HttpRequest) -> HttpResponse:
        # admin_view has checked staff and login; CSRF is Django's middleware, as on every page.
        if not self.has_place_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Call a number",
        }
        return admin_views.place_page(request, context=context)
