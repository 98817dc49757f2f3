"""`manage.py simulate_call --agent <slug>` dials that agent's first number (issue 21)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from simulator.management.commands import simulate_call
from simulator.management.commands.simulate_call import agent_number, dialled_number
from simulator.twilio.caller import WebhookRejected


def make_agent(slug: str, *numbers: str) -> Any:
    from agents.models import Agent, PhoneNumber

    agent = Agent.objects.create(name=slug.title(), slug=slug, instructions="Be brief.")
    for number in numbers:
        PhoneNumber.objects.create(agent=agent, number=number)
    return agent


def test_without_an_agent_the_call_dials_the_configured_number(settings):
    settings.TWILIO_PHONE_NUMBER = "+14155550199"
    assert dialled_number(None) == "+14155550199"
    settings.TWILIO_PHONE_NUMBER = ""
    assert dialled_number(None) is None  # the simulated caller's own default


@pytest.mark.django_db
def test_the_agents_first_number_by_id_is_dialled():
    # Added in this order: the first is dialled, though the second sorts before it.
    make_agent("sim-sales", "+14155550222", "+14155550111")
    make_agent("sim-support", "+14155550333")
    assert agent_number("sim-sales") == "+14155550222"
    assert dialled_number("sim-support") == "+14155550333"


@pytest.mark.django_db
def test_an_unknown_agent_is_a_clear_error():
    make_agent("sim-sales", "+14155550222")
    with pytest.raises(CommandError) as error:
        agent_number("sim-nobody")
    assert "no agent with the slug 'sim-nobody'" in str(error.value)
    assert "sim-sales" in str(error.value)  # the slugs there are


@pytest.mark.django_db
def test_an_agent_without_a_number_is_a_clear_error():
    make_agent("sim-silent")
    with pytest.raises(CommandError, match="agent 'sim-silent' has no phone number"):
        agent_number("sim-silent")


@pytest.mark.django_db
def test_a_wrong_slug_fails_before_any_server_is_needed():
    # No server listens at this URL: the slug is what the command complains about.
    with pytest.raises(CommandError, match="no agent with the slug 'sim-nobody'"):
        call_command("simulate_call", "--agent", "sim-nobody", "--url", "http://127.0.0.1:9")


@pytest.mark.django_db
def test_the_call_goes_to_the_agents_number(monkeypatch):
    make_agent("sim-sales", "+14155550222")
    seen: dict[str, Any] = {}

    class Caller:
        """Records how the command builds its caller, and is refused at the webhook."""

        def __init__(self, url: str, **options: Any) -> None:
            seen.update(options)
            self.webhook_params = {"To": options.get("to_number"), "From": "+14155550123"}

        async def call(self, *args: object, **kwargs: object) -> None:
            raise WebhookRejected(403, "test")

    monkeypatch.setattr(simulate_call, "SimulatedTwilioCaller", Caller)
    monkeypatch.setattr(simulate_call.Command, "_check_server", lambda self, url: None)
    monkeypatch.setattr(simulate_call.Command, "_standin", lambda self, port: None)
    with pytest.raises(CommandError, match="webhook refused"):
        call_command("simulate_call", "--agent", "sim-sales", "--url", "http://127.0.0.1:9")
    assert seen["to_number"] == "+14155550222"
