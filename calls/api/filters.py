"""Query parameters of GET /api/calls: filters (django-filter), search and ordering."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request

from agents.models import Agent
from calls import selectors
from calls.models import Call, CallStatus, Sentiment

PERIOD_BOUND_HELP = (
    "ISO 8601 date (2026-01-31) or RFC 3339 date-time (2026-01-31T09:30:00Z); a date-time "
    "without an offset (2026-01-31T09:30) is read in the server's time zone. Inclusive: a date "
    "as endDate includes that whole day."
)
INVALID_PERIOD_BOUND = "Enter an ISO 8601 date (2026-01-31) or date-time (2026-01-31T09:30:00Z)."
# What the schema says a bound is: exactly what parse_period_bound reads (plus the offset-less
# date-time it also takes, which is not an OpenAPI format).
PERIOD_BOUND_SCHEMA = {
    "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}],
    "example": "2026-01-31",
}
SEARCH_MAX_CHARS = 200
# Any bound is clamped into this range: no call is older or newer, and the analytics' buckets
# (a week before the start, a week after the end) then never step outside what Python and the
# databases can represent (years 1 to 9999), whatever the offset.
PERIOD_EARLIEST = dt.datetime(1, 1, 15, tzinfo=dt.UTC)
PERIOD_LATEST = dt.datetime(9999, 12, 15, tzinfo=dt.UTC)
EMPTY_VALUE = "An empty value is not allowed: leave the parameter out instead."

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$", re.ASCII)
# RFC 3339 (T or t or a space; Z or z or an offset), and without the offset or the seconds.
_DATE_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?$",
    re.ASCII,
)


def _offset(text: str) -> dt.tzinfo:
    if text in ("Z", "z"):
        return dt.UTC
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError(text)
    sign = -1 if text[0] == "-" else 1
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


def _date_time(match: re.Match[str]) -> dt.datetime:
    year, month, day, hour, minute = (int(match[i]) for i in range(1, 6))
    second = int(match[6] or 0)
    micro = int((match[7] or ".0")[1:7].ljust(6, "0"))
    if second == 60:  # a leap second (RFC 3339 allows it): the last instant of its minute
        second, micro = 59, 999_999
    moment = dt.datetime(year, month, day, hour, minute, second, micro)
    return moment.replace(tzinfo=_offset(match[8])) if match[8] else moment


def _clamped(moment: dt.datetime) -> dt.datetime:
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    try:
        moment = moment.astimezone(dt.UTC)
    except OverflowError:  # an offset across year 1 or year 9999
        return PERIOD_EARLIEST if moment.year < 5000 else PERIOD_LATEST
    return min(max(moment, PERIOD_EARLIEST), PERIOD_LATEST)


def parse_period_bound(value: str, *, end: bool) -> dt.datetime:
    """An inclusive bound of a period, as an aware datetime; ValueError when malformed.

    A bare date starts at its local midnight, or as an end bound ends at its last instant,
    so `startDate=2026-01-31&endDate=2026-01-31` is that whole day in the server's zone.
    Well-formed impossible values (2026-02-30, 25:00) raise ValueError too, and so does
    surrounding white space, which the schema's formats do not allow either.
    """
    if match := _DATE.match(value):
        day = dt.date(int(match[1]), int(match[2]), int(match[3]))
        return _clamped(dt.datetime.combine(day, dt.time.max if end else dt.time.min))
    if match := _DATE_TIME.match(value):
        return _clamped(_date_time(match))
    raise ValueError(value)


class _GivenMeansNotEmpty:
    """A parameter given with an empty value is refused, as its schema (an enum, a format, a
    pattern) says, instead of being read as absent the way HTML forms would."""

    def clean(self, value: Any) -> Any:
        if value is not None and str(value).strip() == "":
            raise forms.ValidationError(EMPTY_VALUE, code="empty")
        return super().clean(value)  # type: ignore[misc]


class PeriodBoundField(_GivenMeansNotEmpty, forms.Field):
    default_error_messages = {"invalid": INVALID_PERIOD_BOUND}

    def __init__(self, *, end: bool = False, **kwargs: Any) -> None:
        self.end = end
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> dt.datetime | None:
        if value in self.empty_values:
            return None
        try:
            return parse_period_bound(str(value), end=self.end)
        except ValueError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class _SchemaFilter(django_filters.CharFilter):
    """A filter whose schema is `schema`, with its help text as the description (an explicit
    schema replaces what drf-spectacular would infer, description included)."""

    schema: dict[str, Any] = {"type": "string"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        described = {**self.schema, "description": self.extra.get("help_text", "")}
        extend_schema_field(described)(self)


class PeriodBoundFilter(_SchemaFilter):
    field_class = PeriodBoundField
    schema = PERIOD_BOUND_SCHEMA


class StrictChoiceField(_GivenMeansNotEmpty, django_filters.fields.ChoiceField):
    pass


class StrictChoiceFilter(django_filters.ChoiceFilter):
    """A choice, and only a choice: `?status=` is refused, not read as "any status"."""

    field_class = StrictChoiceField


class AgentSlugField(_GivenMeansNotEmpty, forms.SlugField):
    def __init__(self, **kwargs: Any) -> None:
        # Not stripped: " sales" is not a slug, as the schema's pattern says.
        super().__init__(strip=False, **kwargs)


class AgentSlugFilter(_SchemaFilter):
    field_class = AgentSlugField
    schema = {"type": "string", "pattern": r"^[-a-zA-Z0-9_]+$"}


class SearchFilter(_SchemaFilter):
    schema = {"type": "string", "maxLength": SEARCH_MAX_CHARS}


class PhoneNumberField(forms.CharField):
    def to_python(self, value: Any) -> str:
        # An unencoded "+" in a query string arrives as a space: "?caller=+1415..." means
        # "+1415...", and no stored number starts with a space.
        if isinstance(value, str) and value.startswith(" ") and value.strip().isdigit():
            value = "+" + value.strip()
        return super().to_python(value)


class PhoneNumberFilter(django_filters.CharFilter):
    field_class = PhoneNumberField


class CallFilterForm(forms.Form):
    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("startDate"), cleaned.get("endDate")
        if start and end and end < start:
            self.add_error("endDate", "endDate is before startDate.")
        return cleaned


class CallFilter(django_filters.FilterSet):
    # The parameter names are the API's (camelCase dates included), so are the attributes.
    caller = PhoneNumberFilter(help_text="The caller's number, exactly (E.164, +14155550123).")
    agent = AgentSlugFilter(
        method="filter_agent",
        help_text="The answering agent's slug (see /api/agents); a slug no agent has is a 404, "
        'so a typo does not read as "no calls".',
    )
    status = StrictChoiceFilter(choices=CallStatus.choices, help_text="Twilio status.")
    sentiment = StrictChoiceFilter(
        field_name="analytics__sentiment_label",
        choices=Sentiment.choices,
        help_text="The call's overall sentiment.",
    )
    startDate = PeriodBoundFilter(
        field_name="started_at", lookup_expr="gte", end=False, help_text=PERIOD_BOUND_HELP
    )
    endDate = PeriodBoundFilter(
        field_name="started_at", lookup_expr="lte", end=True, help_text=PERIOD_BOUND_HELP
    )
    search = SearchFilter(
        method="filter_search",
        max_length=SEARCH_MAX_CHARS,
        help_text="Words that must all appear in the caller, the agent's name or slug, call "
        "SID, notes or transcript (case-insensitive).",
    )

    class Meta:
        model = Call
        fields: Sequence[str] = ()
        form = CallFilterForm

    def filter_search(self, queryset: QuerySet[Call], name: str, value: str) -> QuerySet[Call]:
        return selectors.call_search(queryset=queryset, text=value)

    def filter_agent(self, queryset: QuerySet[Call], name: str, value: str) -> QuerySet[Call]:
        # Well-formed and unknown: not the client's syntax but a name nothing has (404), as
        # /api/agents/<slug> answers it.
        agent = Agent.objects.filter(slug=value).first()
        if agent is None:
            raise NotFound(f"agent: no agent has the slug {value!r} (see /api/agents).")
        return queryset.filter(agent=agent)


class StrictOrderingFilter(OrderingFilter):
    """`ordering` that rejects unknown fields and never leaves ties to the database."""

    ordering_description = (
        "Sort by started_at, ended_at, duration_s, caller, agent (its name) or status ('-' for "
        "descending, commas for several). Default: -started_at."
    )

    def remove_invalid_fields(
        self, queryset: QuerySet, fields: list[str], view: Any, request: Request
    ) -> list[str]:
        valid = {name for name, _ in self.get_valid_fields(queryset, view, {"request": request})}
        unknown = [term for term in fields if term.lstrip("-") not in valid]
        if unknown:
            raise ValidationError(
                {
                    self.ordering_param: [
                        f"Unknown ordering field(s): {', '.join(unknown) or '(empty)'}. "
                        f"Use {', '.join(sorted(valid))}, with '-' for descending."
                    ]
                }
            )
        return fields

    def get_ordering(self, request: Request, queryset: QuerySet, view: Any) -> list[str]:
        raw = request.query_params.get(self.ordering_param)
        if raw:
            # Terms as given, not stripped: " caller" is not a field, as the schema's enum says.
            ordering = self.remove_invalid_fields(queryset, raw.split(","), view, request)
        else:
            ordering = list(self.get_default_ordering(view) or [])
        # A public name for a path (agent -> agent__name): clients sort by what they see.
        aliases: dict[str, str] = getattr(view, "ordering_aliases", {})
        ordering = [_alias(term, aliases) for term in ordering]
        # Calls starting in the same instant would otherwise swap places between pages.
        return [*ordering, "-pk"]

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        """Terms from a list (comma-separated, as an unexploded array), not any string."""
        fields = [name for name in getattr(view, "ordering_fields", ())]
        return [
            {
                "name": self.ordering_param,
                "required": False,
                "in": "query",
                "description": self.ordering_description,
                "schema": {
                    "type": "array",
                    "items": {"type": "string", "enum": [*fields, *(f"-{f}" for f in fields)]},
                },
                "style": "form",
                "explode": False,
                "example": ["-started_at"],
            }
        ]


def _alias(term: str, aliases: dict[str, str]) -> str:
    sign = "-" if term.startswith("-") else ""
    return sign + aliases.get(term.lstrip("-"), term.lstrip("-"))
