"""Reads of agents and their numbers (writes live in agents.services)."""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from agents.models import Agent, PhoneNumber


def agent_for_number(*, number: str) -> Agent | None:
    """Who answers a call to `number`: the active agent that has the number, else the active
    default agent, else None (the caller then uses the environment's configuration)."""
    number = number.strip()
    if number:
        owner = Agent.objects.filter(is_active=True, phone_numbers__number=number).first()
        if owner is not None:
            return owner
    return Agent.objects.filter(is_active=True, is_default=True).first()


def _numbers() -> Prefetch:
    return Prefetch("phone_numbers", queryset=PhoneNumber.objects.order_by("created_at", "pk"))


def agent_list() -> QuerySet[Agent]:
    """Agents with their numbers (one more query, however many agents), by name."""
    return Agent.objects.prefetch_related(_numbers()).order_by("name", "pk")


def today_start() -> dt.datetime:
    """Midnight today in the server's time zone."""
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def agent_list_with_calls_today() -> QuerySet[Agent]:
    """agent_list, each with `calls_today`: its calls started since local midnight."""
    today = Q(calls__started_at__gte=today_start())
    return agent_list().annotate(calls_today=Count("calls", filter=today))


def agent_by_slug(*, slug: str) -> Agent | None:
    return agent_list().filter(slug=slug).first()


def agent_first_number(*, agent: Agent) -> str | None:
    """The number a test call dials: the agent's first (oldest) number, if it has one."""
    return agent.phone_numbers.order_by("created_at", "pk").values_list("number", flat=True).first()


def agent_choices(*, limit: int = 100) -> list[tuple[str, str]]:
    """(slug, name) of every agent, by name: the call list's agent filter (a bounded sidebar)."""
    return list(Agent.objects.order_by("name", "pk").values_list("slug", "name")[:limit])
