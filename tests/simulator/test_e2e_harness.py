"""The end-to-end harness (tests/e2e_support.py) runs a Twilio REST stand-in beside the
realtime stand-in: the server sends its REST requests there, the simulated caller registers its
call there and acts on them, and scenarios reach it (`live_bridge.twilio_rest`,
`CallRun.twilio_rest`)."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import LiveBridge, finished_call

from bridge_project.config import STANDIN_ACCOUNT_SID
from simulator.twilio.script import AwaitAgentPlayed, Silence, Speak

pytestmark = pytest.mark.slow

ONE_TURN = [Silence(0.5), Speak(1.2, seed=1), AwaitAgentPlayed(), Silence(0.5)]


def test_the_server_and_the_caller_share_a_rest_stand_in(live_bridge: LiveBridge) -> None:
    seen: dict[str, Any] = {}

    async def during(_model: Any, caller: Any) -> None:
        rest = live_bridge.twilio_rest
        assert rest is not None
        seen.update(base_url=live_bridge.settings.TWILIO_API_BASE_URL, rest=rest, caller=caller)
        await rest.wait_until(lambda: caller.call_sid in rest.calls, 10.0)
        seen["status"] = rest.call(caller.call_sid).status

    run = live_bridge.place_call(ONE_TURN, during=during)
    rest = run.twilio_rest
    assert rest is not None and rest is seen["rest"]
    assert seen["base_url"] == rest.url and run.caller.twilio_rest_url == rest.url
    assert seen["status"] in ("ringing", "in-progress")
    call = rest.call(run.caller.call_sid)
    assert call.account_sid == STANDIN_ACCOUNT_SID == run.caller.account_sid
    assert call.status == "completed" and not call.ended_by_rest
    assert run.report.ended_by == "caller"
    assert live_bridge.twilio_rest is None  # only during a run


def test_an_agent_that_hangs_up_ends_the_call_through_the_rest_stand_in(
    live_bridge: LiveBridge, make_agent
) -> None:
    make_agent(slug="closer", is_default=True, tools=[{"type": "end_call"}])
    run = live_bridge.place_call([*ONE_TURN, Silence(20.0)])
    rest = run.twilio_rest
    assert rest is not None
    assert run.report.ended_by == "twilio" and run.report.ended_by_rest
    [hang_up] = rest.updates(run.caller.call_sid)
    assert (hang_up.value("Status"), hang_up.status) == ("completed", 200)
    assert hang_up.auth == (STANDIN_ACCOUNT_SID, rest.accounts[STANDIN_ACCOUNT_SID][0])
    assert rest.problems == [] and run.standin.protocol_problems == []
    record = finished_call(run.report.call_id)
    assert record.end_reason.startswith("agent ended the call")
