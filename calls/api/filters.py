"""Query parameters of GET /api/calls: filters (django-filter), search and ordering."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request

from agents.models import Agent
from calls import selectors
from calls.models import Call, CallStatus, Sentiment

PERIOD_BOUND_HELP = (
    "ISO 8601 date (2026-01-31) or date-time (2026-01-31T09:30:00Z; without an offset, the "
    "server's time zone). Inclusive: a date as endDate includes that whole day."
)
INVALID_PERIOD_BOUND = "Enter an ISO 8601 date (2026-01-31) or date-time (2026-01-31T09:30:00Z)."
SEARCH_MAX_CHARS = 200


def parse_period_bound(value: str, *, end: bool) -> dt.datetime:
    """An inclusive bound of a period, as an aware datetime; ValueError when malformed.

    A bare date starts at its local midnight, or as an end bound ends at its last instant,
    so `startDate=2026-01-31&endDate=2026-01-31` is that whole day in the server's zone.
    """
    value = value.strip()
    # The date first: parse_datetime would read a bare date as its midnight. Both raise
    # ValueError for well-formed impossible values (2026-02-30).
    day = parse_date(value)
    if day is not None:
        moment = dt.datetime.combine(day, dt.time.max if end else dt.time.min)
    else:
        moment = parse_datetime(value)
        if moment is None:
            raise ValueError(value)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


class PeriodBoundField(forms.Field):
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


class PeriodBoundFilter(django_filters.CharFilter):
    """A CharFilter to the schema (a date or a date-time is not one OpenAPI format)."""

    field_class = PeriodBoundField


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
    agent = django_filters.ModelChoiceFilter(
        field_name="agent",
        to_field_name="slug",
        queryset=Agent.objects.all(),
        help_text="The answering agent's slug (see /api/agents); an unknown slug is a 400.",
    )
    status = django_filters.ChoiceFilter(choices=CallStatus.choices, help_text="Twilio status.")
    sentiment = django_filters.ChoiceFilter(
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
    search = django_filters.CharFilter(
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
        ordering = list(super().get_ordering(request, queryset, view) or [])
        # A public name for a path (agent -> agent__name): clients sort by what they see.
        aliases: dict[str, str] = getattr(view, "ordering_aliases", {})
        ordering = [_alias(term, aliases) for term in ordering]
        # Calls starting in the same instant would otherwise swap places between pages.
        return [*ordering, "-pk"]


def _alias(term: str, aliases: dict[str, str]) -> str:
    sign = "-" if term.startswith("-") else ""
    return sign + aliases.get(term.lstrip("-"), term.lstrip("-"))
