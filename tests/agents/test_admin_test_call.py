"""The agent page's "Place a test call", for real: staff post the button on the served app,
`manage.py simulate_call --agent <slug>` (a subprocess: the product never imports the simulator)
dials the agent's number on that same server, the bridge talks to the realtime stand-in, and the
page sends staff to the new call's page while the call goes on."""

from __future__ import annotations

import asyncio
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from e2e_support import LiveBridge, finished_call

from agents import admin_views

pytestmark = pytest.mark.slow


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def staff_session(user: User) -> str:
    """A session cookie for the user, stored where the served app reads it."""
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def post_form(url: str, *, session: str) -> tuple[int, str]:
    """POST as the browser does from the change page: session and CSRF cookies, CSRF field."""
    csrf = secrets.token_hex(16)  # 32 characters: Django takes an unmasked secret as the token
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode({"csrfmiddlewaretoken": csrf}).encode(),
        headers={"Cookie": f"sessionid={session}; csrftoken={csrf}"},
        method="POST",
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers.get("Location", "")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", "")


def test_the_button_places_a_call_and_opens_its_page(
    live_bridge: LiveBridge, make_agent, make_user
) -> None:
    make_agent(slug="main", is_default=True)
    agent = make_agent(
        name="Sales",
        slug="sales",
        instructions="You are the sales agent of the test-call test.",
        greeting="Hello, sales here.",
        phone_numbers=("+18005550100",),
    )
    session = staff_session(
        make_user("agents.view_agent", "agents.change_agent", "calls.view_call", is_staff=True)
    )
    before = len(admin_views.PLACED)

    async def scenario(model: Any, _caller: Any) -> tuple[int, str, Any]:
        url = f"{live_bridge.url}/admin/agents/agent/{agent.pk}/test-call/"
        status, location = await asyncio.to_thread(post_form, url, session=session)
        placed = admin_views.PLACED[-1] if len(admin_views.PLACED) > before else None
        if placed is not None:
            # The call goes on after the redirect: let it finish while the stand-in is up.
            await asyncio.to_thread(placed.done.wait, 90)
        return status, location, model

    status, location, model = live_bridge.run(scenario)
    assert status == 302, location
    placed = admin_views.PLACED[-1]
    assert placed.error is None, placed.error
    assert placed.process is not None and placed.process.returncode == 0
    assert placed.command[1:5] == [
        str(Path(settings.BASE_DIR) / "manage.py"),
        "simulate_call",
        "--agent",
        "sales",
    ]
    assert placed.command[placed.command.index("--url") + 1] == live_bridge.url
    assert location == f"/admin/calls/call/{placed.call_id}/change/"
    call = finished_call(placed.call_id, timeout_s=30)
    # The call was answered by the agent on the number dialled, and keeps what it was told.
    assert call.agent == agent
    assert call.agent_version == agent.version
    assert call.agent_snapshot["agent"]["greeting"] == "Hello, sales here."
    assert call.caller == "+14155550123"  # the simulated caller's number
    updates = [
        event.payload
        for connection in model.connections
        for event in connection.received_of("session.update")
    ]
    assert updates, "the model was never configured"
    assert updates[0]["session"]["instructions"] == agent.instructions
    assert call.transcripts.exists()


def test_a_call_that_does_not_start_is_reported_on_the_agent_page(
    live_bridge: LiveBridge, make_agent, make_user, monkeypatch
) -> None:
    from django.db import DatabaseError

    from calls import services

    agent = make_agent(phone_numbers=("+18005550100",))
    session = staff_session(make_user("agents.view_agent", "agents.change_agent", is_staff=True))

    def database_down(**kwargs: Any) -> None:
        raise DatabaseError("down")

    # The webhook then answers with an apology instead of a stream: the call never starts.
    monkeypatch.setattr(services, "call_create", database_down)

    async def scenario(_model: Any, _caller: Any) -> tuple[int, str]:
        url = f"{live_bridge.url}/admin/agents/agent/{agent.pk}/test-call/"
        return await asyncio.to_thread(post_form, url, session=session)

    status, location = live_bridge.run(scenario)
    assert (status, location) == (302, f"/admin/agents/agent/{agent.pk}/change/")
    placed = admin_views.PLACED[-1]
    assert placed.done.wait(30)
    # simulate_call said why: the webhook's TwiML connects no stream.
    assert "Connect" in str(placed.error)
    assert placed.process is not None and placed.process.returncode != 0
    assert placed.command[0] == sys.executable
