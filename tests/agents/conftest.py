"""Agents tests start from an empty agents table, so which agent is the default is decided by
the test, not by whether the migration's seeded "Default" agent survived an earlier test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from agents.models import Agent


@pytest.fixture(autouse=True)
def _no_agents(request: pytest.FixtureRequest) -> None:
    names = request.fixturenames
    marker = request.node.get_closest_marker("django_db")
    if marker is None and "db" not in names and "transactional_db" not in names:
        return  # no database in this test
    transactional = "transactional_db" in names or bool(marker and marker.kwargs.get("transaction"))
    request.getfixturevalue("transactional_db" if transactional else "db")
    Agent.objects.all().delete()


@pytest.fixture
def reader(make_user) -> User:
    return make_user("agents.view_agent", username="reader")


@pytest.fixture
def editor(make_user) -> User:
    return make_user("agents.view_agent", "agents.change_agent", username="editor")


@pytest.fixture
def agent_body() -> Callable[..., dict[str, Any]]:
    """A valid agent (API body or service fields); keyword arguments override."""

    def factory(**fields: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "name": "Support",
            "slug": "support",
            "instructions": "You are the support assistant. Be brief.",
        }
        values.update(fields)
        return values

    return factory
