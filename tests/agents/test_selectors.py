"""Who answers a number: its agent, else the default agent, each only while active."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from agents import selectors, services

pytestmark = pytest.mark.django_db


def test_a_number_reaches_its_agent(make_agent) -> None:
    make_agent(slug="main", is_default=True)
    sales = make_agent(slug="sales", phone_numbers=("+18005550100",))
    assert selectors.agent_for_number(number="+18005550100") == sales
    assert selectors.agent_for_number(number=" +18005550100 ") == sales


def test_any_other_number_reaches_the_default_agent(make_agent) -> None:
    main = make_agent(slug="main", is_default=True)
    make_agent(slug="sales", phone_numbers=("+18005550100",))
    assert selectors.agent_for_number(number="+18005550199") == main
    assert selectors.agent_for_number(number="") == main


def test_an_inactive_agents_number_reaches_the_default(make_agent) -> None:
    main = make_agent(slug="main", is_default=True)
    make_agent(slug="sales", is_active=False, phone_numbers=("+18005550100",))
    assert selectors.agent_for_number(number="+18005550100") == main


def test_no_agent_at_all_is_none(make_agent) -> None:
    assert selectors.agent_for_number(number="+18005550100") is None
    make_agent(slug="asleep", is_active=False, phone_numbers=("+18005550100",))
    assert selectors.agent_for_number(number="+18005550100") is None


def test_the_list_counts_todays_calls_and_has_the_numbers(make_agent, make_call) -> None:
    sales = make_agent(name="Sales", phone_numbers=("+18005550100", "+18005550101"))
    quiet = make_agent(name="Quiet")
    now = timezone.now()
    make_call(agent=sales, started_at=selectors.today_start() + dt.timedelta(seconds=1))
    make_call(agent=sales, started_at=now)
    make_call(agent=sales, started_at=selectors.today_start() - dt.timedelta(seconds=1))
    rows = {agent.slug: agent for agent in selectors.agent_list_with_calls_today()}
    assert (rows[sales.slug].calls_today, rows[quiet.slug].calls_today) == (2, 0)
    assert [p.number for p in rows[sales.slug].phone_numbers.all()] == [
        "+18005550100",
        "+18005550101",
    ]


def test_the_first_number_is_the_oldest(make_agent) -> None:
    agent = make_agent(phone_numbers=("+18005550100",))
    services.agent_update(agent=agent, fields={}, phone_numbers=["+18005550100", "+18005550000"])
    assert selectors.agent_first_number(agent=agent) == "+18005550100"
    assert selectors.agent_first_number(agent=make_agent()) is None
