"""Agents answer calls (issue 21): each number reaches its agent, which speaks first with its
greeting, listens as configured, and ends the call politely at its time limit; every call
keeps the snapshot of what its session was told, whatever happens to the agent afterwards."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import soundfile as sf
from e2e_support import AUTH_TOKEN, PUBLIC_BASE_URL, call_rows, finished_call

from simulator.openai.standin import RealtimeStandIn
from simulator.twilio.caller import SimulatedTwilioCaller
from simulator.twilio.script import AwaitAgentPlayed, Silence, Speak, Until

pytestmark = pytest.mark.slow

SALES = "+15550001111"
SUPPORT = "+15550002222"


def agent_on(make_agent, slug: str, number: str, **fields):
    """An agent answering `number`, with a greeting unless one is given."""
    values = {
        "instructions": f"You are the {slug} line. Be brief.",
        "greeting": f"Hello, this is {slug}.",
        "voice": "marin",
        **fields,
    }
    return make_agent(name=slug.title(), slug=slug, phone_numbers=(number,), **values)


def caller_for(live_bridge, number: str) -> SimulatedTwilioCaller:
    return SimulatedTwilioCaller(
        live_bridge.url, auth_token=AUTH_TOKEN, public_base_url=PUBLIC_BASE_URL, to_number=number
    )


def session_of(connection) -> dict:
    """The session the bridge configured on one stand-in connection (its first update)."""
    return connection.received_of("session.update")[0].payload["session"]


def greeting_requests(connection) -> list[str]:
    return [
        event.payload["response"]["instructions"]
        for event in connection.received_of("response.create")
        if "response" in event.payload
    ]


GREETED_CALL = [AwaitAgentPlayed(), Speak(1.5, seed=1), AwaitAgentPlayed(), Silence(0.3)]


def test_two_agents_on_two_numbers_answer_at_once_each_as_itself(live_bridge, make_agent) -> None:
    from calls.models import Call

    sales = agent_on(make_agent, "sales", SALES)
    support = agent_on(make_agent, "support", SUPPORT, greeting="Support desk, how can I help?")

    async def scenario(standin: RealtimeStandIn, _caller):
        callers = [caller_for(live_bridge, SALES), caller_for(live_bridge, SUPPORT)]
        reports = await asyncio.gather(*(c.call(GREETED_CALL) for c in callers))
        return reports, standin

    reports, standin = live_bridge.run(scenario)
    assert [report.script_error for report in reports] == [None, None]
    for report, agent in zip(reports, (sales, support), strict=True):
        call = finished_call(report.call_id)
        assert (call.agent_id, call.agent_version) == (agent.pk, agent.version)
        lines = call_rows(call).transcripts
        assert (lines[0].speaker, lines[0].text) == ("agent", agent.greeting)
        assert [line.speaker for line in lines] == ["agent", "caller", "agent"]

    # What each model session was told: its agent's instructions, then its greeting; and the
    # call keeps exactly the session.update its bridge sent.
    assert len(standin.connections) == 2
    for connection in standin.connections:
        session = session_of(connection)
        call = Call.objects.get(agent_snapshot__agent__instructions=session["instructions"])
        assert call.agent_snapshot["session"]["session"] == session
        [greeting] = greeting_requests(connection)
        assert f'"{call.agent.greeting}"' in greeting


def test_editing_an_agent_mid_call_changes_the_next_calls_only(live_bridge, make_agent) -> None:
    from agents.models import Agent

    sales = agent_on(make_agent, "sales", SALES)

    async def scenario(standin: RealtimeStandIn, _caller):
        first = caller_for(live_bridge, SALES)
        under_way = asyncio.create_task(first.call(GREETED_CALL))
        await standin.wait_until(lambda: standin.connection_count == 1, 10)
        await asyncio.to_thread(edit_sales)
        second = caller_for(live_bridge, SALES)
        return await asyncio.gather(under_way, second.call(GREETED_CALL))

    def edit_sales() -> None:
        from agents.services import agent_update

        agent = Agent.objects.get(pk=sales.pk)
        agent_update(agent=agent, fields={"greeting": "Sales, new greeting."})

    first, second = live_bridge.run(scenario)
    sales.refresh_from_db()
    assert sales.version == 2
    old, new = finished_call(first.call_id), finished_call(second.call_id)
    assert (old.agent_version, new.agent_version) == (1, 2)
    assert old.agent_snapshot["agent"]["greeting"] == "Hello, this is sales."
    assert new.agent_snapshot["agent"]["greeting"] == "Sales, new greeting."
    assert call_rows(old).transcripts[0].text == "Hello, this is sales."
    assert call_rows(new).transcripts[0].text == "Sales, new greeting."


def test_the_greeting_is_heard_first_and_is_on_the_recording(live_bridge, make_agent) -> None:
    greeting = "Thanks for calling the sales line, how can I help?"
    agent_on(make_agent, "sales", SALES, greeting=greeting)

    async def scenario(standin: RealtimeStandIn, _caller):
        caller = caller_for(live_bridge, SALES)
        report = await caller.call(GREETED_CALL)
        return report, caller

    report, caller = live_bridge.run(scenario)
    rows = call_rows(finished_call(report.call_id))
    greeting = rows.transcripts[0]
    assert greeting.speaker == "agent"
    first_words_ms = caller.speech_spans_ms[0][0]
    assert greeting.start_ms < first_words_ms
    assert greeting.end_ms <= first_words_ms + 50  # heard out before the caller spoke
    audio, rate = sf.read(rows.recording_path, dtype="float32")
    window = audio[int(greeting.start_ms * rate / 1000) : int(greeting.end_ms * rate / 1000)]
    agent_rms, caller_rms = (float(np.sqrt(np.mean(window[:, ch] ** 2))) for ch in (1, 0))
    assert agent_rms > 0.01 and caller_rms < 0.001, (agent_rms, caller_rms)


def test_a_silent_caller_is_re_prompted_and_the_silence_is_no_line(live_bridge, make_agent) -> None:
    agent_on(make_agent, "sales", SALES, idle_timeout_ms=5000)
    script = [AwaitAgentPlayed(), Silence(6.5), AwaitAgentPlayed(), Silence(0.3)]

    async def scenario(standin: RealtimeStandIn, _caller):
        caller = caller_for(live_bridge, SALES)
        return await caller.call(script), standin

    report, standin = live_bridge.run(scenario)
    assert report.script_error is None
    [connection] = standin.connections
    assert connection.sent_of("input_audio_buffer.timeout_triggered")
    lines = call_rows(finished_call(report.call_id)).transcripts
    assert [line.speaker for line in lines] == ["agent", "agent"]  # greeting, re-prompt


def test_at_its_time_limit_the_agent_says_goodbye_and_hangs_up(live_bridge, make_agent) -> None:
    agent_on(make_agent, "sales", SALES, greeting="", max_call_minutes=1)
    script = [Silence(0.5), Speak(1.5, seed=1), AwaitAgentPlayed(), Until(80.0)]

    async def scenario(standin: RealtimeStandIn, _caller):
        caller = caller_for(live_bridge, SALES)
        return await caller.call(script, max_seconds=90), caller

    report, caller = live_bridge.run(scenario)
    assert report.ended_by == "server"
    assert 60_000 <= caller.frames_sent * 20 <= 60_000 + 20_000
    # Twilio asks <Connect action> how to go on: hang up, no fallback message.
    twiml = ET.fromstring(caller.after_stream_twiml or "<Response/>")
    assert [child.tag for child in twiml] == ["Hangup"]
    call = finished_call(report.call_id)
    assert call.end_reason == "time limit reached"
    goodbye = call_rows(call).transcripts[-1]
    assert goodbye.speaker == "agent" and "time limit" in goodbye.text
    assert not goodbye.interrupted  # heard to the end before the hang-up
