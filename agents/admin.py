"""The back-office's Agents: who answers each number, what it says, how it listens.

The list says at a glance which agent answers what and how busy it is today; the change form
is grouped the way staff think about an agent ("Who", "What it says", "How it listens") and
shows, read-only, the exact session the model is sent. For a GPT-Live agent the Realtime API's
listening settings (catalog.REALTIME_ONLY_FIELDS) are hidden and ignored: the form disables
them (a disabled field keeps its stored value whatever is posted) and agents/admin/agent_form.js
hides their rows when the backend select changes. Saving goes through agents.services
(one default agent, the version bumped when what the model is told changes); deleting an agent
that answered calls is refused with the way out (deactivate it).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from agents import admin_views, catalog, selectors, services
from agents.models import Agent, PhoneNumber
from realtime.configuration import session_preview

WHO = ("name", "slug", "is_default", "is_active")
WHAT_IT_SAYS = ("instructions", "greeting", "backend", "model", "voice", "language")
WHAT_IT_CAN_DO = ("tools",)
HOW_IT_LISTENS = (*catalog.REALTIME_ONLY_FIELDS, "max_call_minutes")


def _choices(names: tuple[str, ...], current: str) -> list[tuple[str, str]]:
    """A select's options; a stored value no longer in the list is shown (and then refused
    on save, naming the field) rather than silently replaced by the first option."""
    options = [(name, name) for name in names]
    if current and current not in names:
        options.insert(0, (current, f"{current} (unknown: choose another)"))
    return options


def _model_choices(current: str) -> list[Any]:
    """The models grouped by backend (the label says which service has them)."""
    groups: list[Any] = [
        (catalog.backend_label(backend), [(m, m) for m in catalog.models_for_backend(backend)])
        for backend in catalog.BACKENDS
    ]
    if current and current not in catalog.MODELS:
        groups.insert(0, (current, f"{current} (unknown: choose another)"))
    return groups


def backends_for_script() -> dict[str, Any]:
    """What agents/admin/agent_form.js needs (json_script: data, not code, on the page)."""
    return {
        "realtime_only": list(catalog.REALTIME_ONLY_FIELDS),
        "backends": {
            backend: {
                "models": list(catalog.models_for_backend(backend)),
                "voices": list(catalog.voices_for_backend(backend)),
                "model": catalog.default_model(backend),
                "voice": catalog.default_voice(backend),
            }
            for backend in catalog.BACKENDS
        },
    }


class AgentForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = (*WHO, *WHAT_IT_SAYS, *HOW_IT_LISTENS, *WHAT_IT_CAN_DO)
        widgets = {
            "tools": forms.Textarea(attrs={"rows": 10, "cols": 90}),
            "instructions": forms.Textarea(attrs={"rows": 14, "cols": 90}),
            "greeting": forms.Textarea(attrs={"rows": 2, "cols": 90}),
            "language": forms.TextInput(attrs={"size": 4}),
        }

    def clean_tools(self) -> list[Any]:
        # An emptied box means no tools (the JSON field would make it null).
        return self.cleaned_data.get("tools") or []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lists = {
            "voice": catalog.ALL_VOICES,
            "transcription_model": catalog.TRANSCRIPTION_MODELS,
        }
        for name, names in lists.items():
            if name in self.fields:
                current = str(self.initial.get(name) or "")
                self.fields[name].widget = forms.Select(choices=_choices(names, current))
        if "model" in self.fields:
            current = str(self.initial.get("model") or "")
            self.fields["model"].widget = forms.Select(choices=_model_choices(current))
        # The backend the form is judged by: the one posted, else the agent's.
        self.effective_backend = self._backend()
        if self.effective_backend == "gpt-live":
            # Not GPT-Live's settings: ignored (the stored values are kept, for a switch back
            # to the Realtime API) and hidden (the template's data-backend, agent_form.css).
            for name in catalog.REALTIME_ONLY_FIELDS:
                if name in self.fields:
                    self.fields[name].disabled = True
                    self.fields[name].required = False

    def _backend(self) -> str:
        if self.is_bound and "backend" in self.fields:
            posted = self.data.get(self.add_prefix("backend"))
            if posted in catalog.BACKENDS:
                return str(posted)
        stored = self.initial.get("backend") or self.instance.backend
        return str(stored) if stored in catalog.BACKENDS else catalog.DEFAULT_BACKEND


class PhoneNumberInline(admin.TabularInline):
    model = PhoneNumber
    fields = ("number", "label")
    extra = 1
    verbose_name = "phone number"
    verbose_name_plural = "Phone numbers (calls to these reach this agent)"

    # A number is part of its agent: whoever may change the agent may change its numbers, as
    # the API's phone_numbers field allows (no separate PhoneNumber permissions to hand out).
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user = request.user
        return user.has_perm("agents.view_agent") or user.has_perm("agents.change_agent")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("agents.change_agent")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("agents.change_agent")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("agents.change_agent")


def _copy_saved(into: Agent, saved: Agent) -> None:
    """The admin keeps its own instance (its inlines hold it): give it what was saved."""
    for field in Agent._meta.concrete_fields:
        setattr(into, field.attname, getattr(saved, field.attname))
    into._state.adding = False
    into._state.db = saved._state.db


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    inlines = (PhoneNumberInline,)
    list_display = (
        "name",
        "slug",
        "numbers_column",
        "calls_today_column",
        "is_default",
        "is_active",
        "backend",
        "version",
    )
    list_display_links = ("name",)
    list_filter = ("is_active", "is_default", "backend", "turn_detection", "model")
    search_fields = ("name", "slug", "phone_numbers__number")
    search_help_text = "Matches the name, the slug or a number."
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("version", "session_json", "created_at", "updated_at")
    fieldsets = (
        ("Who", {"fields": WHO}),
        ("What it says", {"fields": WHAT_IT_SAYS}),
        (
            "How it listens",
            {
                "fields": HOW_IT_LISTENS,
                "description": "GPT-Live listens while it speaks and transcribes both sides "
                "itself: for a GPT-Live agent only the call length applies (the Realtime API's "
                "settings are kept for a switch back, unused).",
            },
        ),
        (
            "What it can do",
            {
                "fields": WHAT_IT_CAN_DO,
                "description": 'Tools as JSON, e.g. [{"type": "end_call"}, {"type": '
                '"transfer_call", "targets": {"sales": "+15550003333"}, "warm": true}]; '
                'webhook, mcp and python tools too (README, "Tools").',
            },
        ),
        (
            "What the model is sent",
            {
                "fields": ("version", "session_json", "created_at", "updated_at"),
                "description": "What the model is sent at the start of each call to this agent "
                "(the Realtime API's session configuration, or GPT-Live's session start), as "
                "saved (save to see a change here). Each call keeps a copy, with the version.",
            },
        ),
    )
    change_form_template = "admin/agents/agent/change_form.html"
    list_per_page = 100

    # --- queries ---

    def get_queryset(self, request: HttpRequest) -> QuerySet[Agent]:
        # Numbers prefetched and today's calls counted in the same query as the rows.
        return selectors.agent_list_with_calls_today()

    # --- list columns ---

    @admin.display(description="Numbers")
    def numbers_column(self, agent: Agent) -> SafeString:
        numbers = [phone.number for phone in agent.phone_numbers.all()]
        if not numbers:
            note = "default for all other numbers" if agent.is_default else "none"
            return format_html('<span class="bo-quiet">{}</span>', note)
        return format_html_join(", ", "{}", ((number,) for number in numbers))

    @admin.display(description="Calls today", ordering="calls_today")
    def calls_today_column(self, agent: Agent) -> SafeString:
        count = getattr(agent, "calls_today", 0)
        if not count:
            return format_html('<span class="bo-quiet">{}</span>', 0)
        query = urlencode({"agent": agent.slug, "started_at__gte": selectors.today_start()})
        url = f"{reverse('admin:calls_call_changelist')}?{query}"
        return format_html('<a href="{}">{}</a>', url, count)

    # --- the change page ---

    @admin.display(description="At the start of each call")
    def session_json(self, agent: Agent) -> SafeString:
        if agent.pk is None:
            return format_html('<span class="bo-quiet">{}</span>', "Shown once the agent is saved.")
        preview = session_preview(services.agent_config(agent=agent))
        return format_html('<pre class="bo-json">{}</pre>', json.dumps(preview, indent=2))

    def save_model(self, request: HttpRequest, obj: Agent, form: AgentForm, change: bool) -> None:
        # Through the services: they move the default flag and bump the version. (The form
        # has checked every rule already, so a refusal here is a race, shown as an error.)
        if change:
            fields = {
                name: form.cleaned_data[name]
                for name in form.changed_data
                if name in services.AGENT_WRITABLE_FIELDS
            }
            saved = services.agent_update(agent=obj, fields=fields)
        else:
            fields = {
                name: value
                for name, value in form.cleaned_data.items()
                if name in services.AGENT_WRITABLE_FIELDS
            }
            saved = services.agent_create(fields=fields)
        _copy_saved(obj, saved)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Agent | None = None,
    ) -> HttpResponse:
        context["agent_backends"] = backends_for_script()
        if obj is not None and obj.pk is not None and admin_views.may_place_test_calls():
            context["test_call"] = {
                "url": reverse("admin:agents_agent_test_call", args=[obj.pk]),
                "number": selectors.agent_first_number(agent=obj),
                # An inactive agent's number reaches the default agent: no test of this one.
                "active": obj.is_active,
                "allowed": self.has_change_permission(request, obj),
            }
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- deleting: refused for the default agent and for agents that answered calls ---

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # A bulk delete would bypass the checks below; agents are deleted one at a time.
        actions.pop("delete_selected", None)
        return actions

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        agent = self.get_object(request, object_id)
        if agent is not None and self.has_delete_permission(request, agent):
            refusal = _delete_refusal(agent)
            if refusal:
                self.message_user(request, refusal, messages.ERROR)
                return HttpResponseRedirect(reverse("admin:agents_agent_change", args=[agent.pk]))
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: Agent) -> None:
        services.agent_delete(agent=obj)

    # --- the test call ---

    def get_urls(self) -> list[URLPattern]:
        test_call = self.admin_site.admin_view(self.test_call_view)
        pages = [path("<path:object_id>/test-call/", test_call, name="agents_agent_test_call")]
        return pages + super().get_urls()

    def test_call_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        agent = self.get_object(request, object_id)
        if not admin_views.may_place_test_calls() or agent is None:
            raise PermissionDenied
        if not self.has_change_permission(request, agent):
            raise PermissionDenied
        back = HttpResponseRedirect(reverse("admin:agents_agent_change", args=[agent.pk]))
        number = selectors.agent_first_number(agent=agent)
        if number is None or not agent.is_active:
            why = "has no number to call: add one" if number is None else "is inactive: activate it"
            self.message_user(request, f"This agent {why} first.", messages.ERROR)
            return back
        # This server, as the browser reached it: the simulated caller posts the webhook and
        # opens the media stream here, like Twilio would at PUBLIC_BASE_URL.
        server_url = f"{request.scheme}://{request.get_host()}"
        try:
            call_id = admin_views.place_test_call(server_url=server_url, to_number=number)
        except admin_views.PlaceCallFailed as failed:
            self.message_user(
                request, f"The test call to {number} failed: {failed}", messages.ERROR
            )
            return back
        self.message_user(
            request, f"Test call to {number} placed: it is going on now.", messages.SUCCESS
        )
        return HttpResponseRedirect(reverse("admin:calls_call_change", args=[call_id]))


def _delete_refusal(agent: Agent) -> str:
    if agent.is_default:
        return (
            f"{agent.name} is the default agent and cannot be deleted: make another agent the "
            "default first."
        )
    calls = agent.calls.count()
    if calls:
        return (
            f"{agent.name} answered {calls} call(s), which keep it for their record, so it "
            "cannot be deleted: deactivate it instead (uncheck Is active)."
        )
    return ""
