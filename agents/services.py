"""Writes to agents and their numbers. Keyword-only, typed, named <entity>_<action>.

Every write validates the whole row (`full_clean`) and raises Django's ValidationError keyed
by field, so the admin and the API report a bad value against the field that holds it. The
rules a single row cannot keep are kept here, in one transaction each:
- exactly one default agent: a new default unsets the old one; the default cannot be unset
  (make another agent the default instead), deactivated or deleted;
- a new agent's model and voice, when not given, are its backend's defaults;
- `version` goes up by one whenever a field the model is told (catalog.AGENT_CONFIG_FIELDS)
  changes, never otherwise, so a call's agent_version says which configuration it had;
- a number is on one agent: giving an agent a number another agent has is refused, naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from agents import catalog
from agents.catalog import AGENT_CONFIG_FIELDS
from agents.models import Agent, PhoneNumber
from agents.validators import validate_e164

# What agent_create and agent_update accept: the model's editable fields (not the version,
# which only the services move, nor the timestamps).
AGENT_WRITABLE_FIELDS = frozenset({"name", "slug", "is_default", "is_active", *AGENT_CONFIG_FIELDS})


class AgentDeleteRefused(Exception):
    """The agent cannot be deleted; the message says what to do instead."""

    code = "agent_delete_refused"


class AgentHasCalls(AgentDeleteRefused):
    code = "agent_has_calls"

    def __init__(self, agent: Agent, calls: int) -> None:
        self.calls = calls
        super().__init__(
            f"The agent {agent.slug!r} answered {calls} call(s), which keep it for their record: "
            "deactivate it instead (is_active: false). It then answers no calls."
        )


class AgentIsDefault(AgentDeleteRefused):
    code = "agent_is_default"

    def __init__(self, agent: Agent) -> None:
        super().__init__(
            f"The agent {agent.slug!r} is the default agent, which answers every number without "
            "an agent of its own: make another agent the default first."
        )


def agent_config(*, agent: Agent) -> dict[str, Any]:
    """What the model is told, as a plain dict keyed by realtime.model.AgentConfig's fields
    (AgentConfig.from_dict reads it; realtime.configuration.agent_snapshot keeps it)."""
    return {name: getattr(agent, name) for name in AGENT_CONFIG_FIELDS}


def _fields_check(fields: Mapping[str, Any]) -> None:
    unknown = sorted(set(fields) - AGENT_WRITABLE_FIELDS)
    if unknown:
        # A programming error, not a user's: the edges only pass the fields they show.
        raise TypeError(f"not writable agent fields: {', '.join(unknown)}")


def _defaults_clear(*, keep: Agent) -> None:
    """Unset the current default (it is locked first, so two new defaults cannot cross)."""
    others = Agent.objects.select_for_update().filter(is_default=True).exclude(pk=keep.pk)
    Agent.objects.filter(pk__in=list(others.values_list("pk", flat=True))).update(is_default=False)


def _numbers_clean(numbers: Iterable[str]) -> list[str]:
    """The numbers, stripped and E.164-checked, each once (in the order given)."""
    cleaned: list[str] = []
    errors: list[str] = []
    for raw in numbers:
        number = str(raw).strip()
        try:
            validate_e164(number)
        except ValidationError:
            errors.append(f"{number!r} is not an E.164 number (e.g. +14155550100).")
            continue
        if number in cleaned:
            errors.append(f"{number} is listed twice.")
            continue
        cleaned.append(number)
    if errors:
        raise ValidationError({"phone_numbers": errors})
    return cleaned


def _numbers_replace(*, agent: Agent, numbers: list[str]) -> None:
    """The agent's numbers become exactly `numbers` (kept ones keep their label and date)."""
    taken = PhoneNumber.objects.filter(number__in=numbers).exclude(agent=agent)
    conflicts = [
        f"{phone.number} already reaches the agent {phone.agent.slug!r}: remove it there first."
        for phone in taken.select_related("agent").order_by("number")
    ]
    if conflicts:
        raise ValidationError({"phone_numbers": conflicts})
    agent.phone_numbers.exclude(number__in=numbers).delete()
    have = set(agent.phone_numbers.values_list("number", flat=True))
    try:
        with transaction.atomic():  # a savepoint: a number taken meanwhile leaves a clean error
            PhoneNumber.objects.bulk_create(
                [PhoneNumber(agent=agent, number=n) for n in numbers if n not in have]
            )
    except IntegrityError:
        raise ValidationError(
            {"phone_numbers": ["One of these numbers was just given to another agent."]}
        ) from None


def _save(*, agent: Agent) -> Agent:
    agent.full_clean()
    try:
        with transaction.atomic():
            agent.save()
    except IntegrityError as error:
        # Only a race gets here (the checks above passed): say which rule it broke.
        if "slug" in str(error):
            raise ValidationError({"slug": ["An agent with this slug already exists."]}) from None
        if "default" in str(error):
            message = "Another agent just became the default."
            raise ValidationError({"is_default": [message]}) from None
        raise
    return agent


def agent_create(*, fields: Mapping[str, Any], phone_numbers: Iterable[str] = ()) -> Agent:
    """A new agent (version 1) with these numbers. It is made the default when asked, or when
    there is no default yet and it is active (a fresh database keeps exactly one default).
    A model or voice not given is the backend's default (gpt-live-1.1 and marin for GPT-Live)."""
    _fields_check(fields)
    numbers = _numbers_clean(phone_numbers)
    backend = fields.get("backend", catalog.DEFAULT_BACKEND)
    fields = {
        "model": catalog.default_model(backend),
        "voice": catalog.default_voice(backend),
        **fields,
    }
    with transaction.atomic():
        agent = Agent(**fields)
        no_default = not Agent.objects.select_for_update().filter(is_default=True).exists()
        if no_default and agent.is_active:
            agent.is_default = True
        if agent.is_default:
            _defaults_clear(keep=agent)
        _save(agent=agent)
        _numbers_replace(agent=agent, numbers=numbers)
    return agent


def agent_update(
    *, agent: Agent, fields: Mapping[str, Any], phone_numbers: Iterable[str] | None = None
) -> Agent:
    """Change the given fields (and replace the numbers, when given). The version goes up by
    one when what the model is told changed. Returns the agent as saved (a fresh instance)."""
    _fields_check(fields)
    numbers = None if phone_numbers is None else _numbers_clean(phone_numbers)
    with transaction.atomic():
        current = Agent.objects.select_for_update().get(pk=agent.pk)
        before, was_default = agent_config(agent=current), current.is_default
        for name, value in fields.items():
            setattr(current, name, value)
        if agent_config(agent=current) != before:
            current.version += 1
        if current.is_default and not was_default:
            _defaults_clear(keep=current)
        _save(agent=current)
        if numbers is not None:
            _numbers_replace(agent=current, numbers=numbers)
    return current


def agent_set_default(*, agent: Agent) -> Agent:
    """Make the agent the default, unsetting the previous default in the same transaction."""
    return agent_update(agent=agent, fields={"is_default": True})


def agent_delete(*, agent: Agent) -> None:
    """Delete an agent that never answered a call and is not the default.

    Raises AgentHasCalls (calls keep their agent: deactivate it instead) or AgentIsDefault.
    Its numbers go with it (they then reach the default agent).
    """
    with transaction.atomic():
        current = Agent.objects.select_for_update().filter(pk=agent.pk).first()
        if current is None:
            return  # already gone: deleting twice is not an error
        if current.is_default:
            raise AgentIsDefault(current)
        calls = current.calls.count()
        if calls:
            raise AgentHasCalls(current, calls)
        try:
            with transaction.atomic():
                current.delete()
        except ProtectedError:
            # A call came in for it between the count and the delete.
            raise AgentHasCalls(current, current.calls.count()) from None
