"""GPT-Live agents (issue 24): calls answered through OpenAI's GPT-Live protocol, end to end.

The real app on loopback, the simulated Twilio caller, and the stand-in's GPT-Live sessions
(`simulator.openai.live`): the same assertions as the Realtime calls where they apply. Audio
both ways untouched (pcmu), both sides' lines in spoken order from the timed fragments, the
greeting first, interruptions from the timing, tools through Responses delegation, a session
that expires or drops survived with the conversation seeded, and every client event the
bridge sent valid against `openai.types.live`.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from e2e_support import AUTH_TOKEN, PUBLIC_BASE_URL, call_rows, finished_call

from simulator.openai.live import protocol as lp
from simulator.openai.live.connection import LiveConnection, LiveOptions
from simulator.openai.standin import RealtimeStandIn
from simulator.openai.tools import ScriptedToolCall
from simulator.twilio.caller import SimulatedTwilioCaller
from simulator.twilio.script import AwaitAgentAudio, AwaitAgentPlayed, Silence, Speak, Until

pytestmark = pytest.mark.slow

LIVE_NUMBER = "+15550003333"
REALTIME_NUMBER = "+15550004444"
GREETING = "Hello, you have reached the live line."
ULAW_SILENCE = 0xFF


def live_agent(make_agent, number: str = LIVE_NUMBER, **fields):
    values = {
        "name": "Live",
        "slug": "live",
        "backend": "gpt-live",
        "model": "gpt-live-1.1",
        "voice": "marin",
        "instructions": "You are the live line. Be brief.",
        "greeting": GREETING,
        **fields,
    }
    return make_agent(phone_numbers=(number,), **values)


def caller_for(live_bridge, number: str) -> SimulatedTwilioCaller:
    return SimulatedTwilioCaller(
        live_bridge.url, auth_token=AUTH_TOKEN, public_base_url=PUBLIC_BASE_URL, to_number=number
    )


def assert_client_events_valid(connection: LiveConnection) -> None:
    """Every event the bridge sent parses as the SDK's ClientEvent, with no unknown keys."""
    assert connection.received, "the bridge sent nothing"
    for event in connection.received:
        _, problem = lp.parse_client_event(event.payload)
        assert problem is None, (event.type, problem)
    assert connection.received[0].type == "session.start"


def assert_caller_audio_untouched(connection: LiveConnection, sent: bytes) -> None:
    """The caller's frames reached the model byte for byte, in order; after them only the
    silence the bridge sends when the caller hangs up."""
    received = bytes(connection.audio)
    assert received[: len(sent)] == sent
    assert set(received[len(sent) :]) <= {ULAW_SILENCE}


def assert_in_order(lines) -> None:
    """Each line ends after it starts and before the next one starts (nobody spoke over)."""
    for earlier, later in itertools.pairwise(lines):
        assert earlier.start_ms <= earlier.end_ms <= later.start_ms, (earlier, later)


def spoken(lines) -> list[tuple[str, str]]:
    return [(line.speaker, line.text) for line in lines]


def history_of(connection: LiveConnection) -> list[tuple[str, str]]:
    """The conversation a session was started with (its session.start's `input`)."""
    session = connection.received[0].payload["session"]
    return [(m["role"], m["content"][0]["text"]) for m in session.get("input") or []]


def live_call(live_bridge, script, *, standin=None, during=None, max_seconds=60.0):
    """One call to the live agent; `during(standin)` runs beside it."""

    async def scenario(model: RealtimeStandIn, caller: SimulatedTwilioCaller):
        caller.webhook_params.update(To=LIVE_NUMBER, Called=LIVE_NUMBER)
        side = asyncio.create_task(during(model)) if during else None
        report = await caller.call(script, max_seconds=max_seconds)
        if side is not None:
            await side
        return report, caller, model

    return live_bridge.run(scenario, standin=standin)


GREETED_CALL = [AwaitAgentPlayed(), Speak(1.5, seed=1), AwaitAgentPlayed(), Silence(0.3)]


def test_a_gpt_live_call_end_to_end(live_bridge, make_agent) -> None:
    agent = live_agent(make_agent)

    async def scenario(standin: RealtimeStandIn, _caller):
        caller = caller_for(live_bridge, LIVE_NUMBER)
        report = await caller.call(GREETED_CALL)
        return report, caller, standin

    report, caller, standin = live_bridge.run(scenario)
    assert report.script_error is None
    assert standin.connections == []  # the Realtime API was not used
    [connection] = standin.live_connections
    call = finished_call(report.call_id)
    rows = call_rows(call)

    # Audio: untouched both ways; the caller heard the model's track as it streamed it.
    assert_caller_audio_untouched(connection, bytes(caller.sent_audio))
    heard = bytes(caller.agent_audio)
    assert heard and bytes(connection.output_audio[: len(heard)]) == heard
    assert caller.clears_ms == []  # the model stops by itself: nothing is ever cleared

    # Lines: greeting, the caller's turn, the reply, in order on the call timeline.
    lines = rows.transcripts
    assert [(line.speaker, line.text) for line in lines] == [
        ("agent", GREETING),
        ("caller", standin.caller_line(0)),
        ("agent", standin.reply_for(0).text),
    ]
    assert_in_order(lines)
    caller_start, caller_end = caller.speech_spans_ms[0]
    assert abs(lines[1].start_ms - caller_start) < 300
    assert abs(lines[1].end_ms - caller_end) < 300

    # What the session was told, and what the call keeps of it.
    assert_client_events_valid(connection)
    start = connection.received[0].payload["session"]
    assert start["model"] == "gpt-live-1.1"
    assert start["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}
    assert call.agent_snapshot["agent"]["backend"] == "gpt-live"
    assert call.agent_snapshot["session"]["session"]["instructions"] == agent.instructions
    [greeting] = connection.received_of("session.commentary.append")
    assert f'"{GREETING}"' in greeting.payload["content"]

    analytics = rows.analytics
    assert analytics.turns == 2
    assert analytics.interruptions == 0
    assert analytics.latency_ms_avg > 0
    assert analytics.model_seconds >= 1
    assert float(analytics.estimated_cost_usd) == pytest.approx(
        analytics.model_seconds / 60 * 0.05, abs=1e-6
    )
    # Talk time is speech, not the track: the agent's silence between replies is not counted.
    agent_said_s = sum(u.seconds for u in connection.utterances)
    assert analytics.agent_talk_s == pytest.approx(agent_said_s, abs=0.5)


def test_talking_over_the_agent_is_an_interruption_the_model_handles(
    live_bridge, make_agent
) -> None:
    live_agent(make_agent)
    script = [
        AwaitAgentPlayed(),
        Speak(1.5, seed=1),
        AwaitAgentAudio(then_s=1.0),  # a second into the reply...
        Speak(1.5, seed=2),  # ... the caller talks over it
        AwaitAgentPlayed(),
        Silence(0.3),
    ]
    report, caller, standin = live_call(live_bridge, script)
    assert report.script_error is None
    [connection] = standin.live_connections
    call = finished_call(report.call_id)
    rows = call_rows(call)
    lines = rows.transcripts
    assert [line.speaker for line in lines] == ["agent", "caller", "agent", "caller", "agent"]
    cut = lines[2]
    full = standin.reply_for(0).text
    assert cut.interrupted and cut.text != full and full.startswith(cut.text)
    assert not any(line.interrupted for line in lines if line is not cut)
    # The caller started while the reply was playing, and the model stopped by itself.
    second_turn_start = caller.speech_spans_ms[1][0]
    assert cut.start_ms < second_turn_start < cut.end_ms + 300
    assert lines[3].text == standin.caller_line(1)
    assert caller.clears_ms == []
    assert rows.analytics.interruptions == 1
    assert rows.analytics.turns == 3
    assert connection.utterances[1].interrupted
    assert_client_events_valid(connection)


def test_a_tool_call_through_delegation_is_answered_and_the_answer_said(
    live_bridge, make_agent, webhook, settings
) -> None:
    settings.TOOL_WEBHOOK_SECRET = "a-secret-for-the-live-tools-test"
    order_tool = {
        "type": "webhook",
        "name": "lookup_order",
        "description": "Find an order by its number.",
        "parameters": {
            "type": "object",
            "properties": {"number": {"type": "string"}},
            "required": ["number"],
            "additionalProperties": False,
        },
        "url": webhook.url,
        "timeout_s": 2,
    }
    live_agent(make_agent, tools=[order_tool])
    lookup = ScriptedToolCall(
        "lookup_order",
        {"number": "427"},
        at_turn=1,
        say_first="Let me look that up.",
        reply_after="Your order ships on Friday.",
    )
    script = [AwaitAgentPlayed(), Speak(1.5, seed=1), AwaitAgentPlayed(quiet_s=2.5), Silence(0.3)]
    report, _caller, standin = live_call(live_bridge, script, standin={"tool_calls": [lookup]})
    assert report.script_error is None
    [connection] = standin.live_connections
    assert connection.protocol_problems == [] and connection.skipped_tool_calls == []
    [(_, body)] = webhook.received
    assert json.loads(body)["arguments"] == {"number": "427"}
    # The output went back as a Responses item, then the next response was asked for.
    kinds = [event.type for event in connection.received]
    output_at = kinds.index("response.item.create")
    assert "response.create" in kinds[output_at:]
    [output] = connection.function_outputs
    assert json.loads(output["output"]) == webhook.answer
    # The tools the backend was given are the agent's.
    delegation = connection.received[0].payload["session"]["delegation"]
    assert delegation["type"] == "responses"
    assert [tool["name"] for tool in delegation["responses"]["tools"]] == ["lookup_order"]

    call = finished_call(report.call_id)
    rows = call_rows(call)
    [tool] = call.tool_calls.all()
    assert (tool.name, tool.kind, tool.status) == ("lookup_order", "webhook", "ok")
    # The acknowledgement and the answer, in order (one line or two: GPT-Live says where a
    # reply ends only by pausing).
    lines = spoken(rows.transcripts)
    assert lines[:2] == [("agent", GREETING), ("caller", standin.caller_line(0))]
    assert {speaker for speaker, _ in lines[2:]} == {"agent"}
    assert (
        " ".join(text for _, text in lines[2:])
        == "Let me look that up. Your order ships on Friday."
    )
    analytics = rows.analytics
    assert analytics.tool_calls == 1 and analytics.tool_errors == 0
    # The backend's tokens are billed on top of the session's minutes.
    assert analytics.input_text_tokens > 0 and analytics.output_text_tokens > 0
    minutes_usd = analytics.model_seconds / 60 * 0.05
    assert float(analytics.estimated_cost_usd) > minutes_usd
    assert_client_events_valid(connection)


TWO_TURNS_ACROSS = [
    AwaitAgentPlayed(),
    Speak(1.5, seed=1),
    AwaitAgentPlayed(),
    Until(10.0),  # the first session has ended by now
    Speak(1.5, seed=2),
    AwaitAgentPlayed(),
    Silence(0.3),
]


def assert_conversation_went_on(report, standin, *, first_closed: str) -> None:
    first, second = standin.live_connections
    assert first.closed_reason == first_closed
    said_before = [
        ("assistant", GREETING),
        ("user", standin.caller_line(0)),
        ("assistant", standin.reply_for(0).text),
    ]
    assert history_of(first) == []
    assert history_of(second) == said_before  # the new session knows the conversation
    assert second.received_of("session.commentary.append") == []  # no second greeting
    call = finished_call(report.call_id)
    rows = call_rows(call)
    # Each session numbers its turns from the first: the second answers its first turn.
    assert spoken(rows.transcripts) == [
        ("agent", GREETING),
        ("caller", standin.caller_line(0)),
        ("agent", standin.reply_for(0).text),
        ("caller", standin.caller_line(0)),
        ("agent", standin.reply_for(0).text),
    ]
    assert_in_order(rows.transcripts)
    assert rows.transcripts[3].start_ms > 9_000  # on the call timeline, not the new session's
    for connection in (first, second):
        assert_client_events_valid(connection)


def test_an_expired_session_is_followed_by_one_that_knows_the_conversation(
    live_bridge, make_agent, settings
) -> None:
    settings.LIVE_RENEW_BEFORE_EXPIRY_S = 0  # no renewal: the session runs out
    live_agent(make_agent)
    standin = {"live": LiveOptions(session_limit_s=9.0)}
    report, _caller, model = live_call(live_bridge, TWO_TURNS_ACROSS, standin=standin)
    assert report.script_error is None
    assert_conversation_went_on(report, model, first_closed="expired")
    assert finished_call(report.call_id).analytics.reconnects == 1


def test_a_session_is_renewed_at_a_quiet_moment_before_it_expires(live_bridge, make_agent) -> None:
    live_agent(make_agent)
    # Renewed a quarter of its life before it ends (at most LIVE_RENEW_BEFORE_EXPIRY_S): at
    # about 9 s, while the caller is quiet.
    standin = {"live": LiveOptions(session_limit_s=12.0)}
    report, _caller, model = live_call(live_bridge, TWO_TURNS_ACROSS, standin=standin)
    assert report.script_error is None
    assert_conversation_went_on(report, model, first_closed="close_requested")
    assert finished_call(report.call_id).analytics.reconnects == 0  # renewed, not dropped


def test_a_dropped_socket_is_survived_with_the_conversation_seeded(live_bridge, make_agent) -> None:
    live_agent(make_agent)

    async def drop_after_the_first_reply(model: RealtimeStandIn) -> None:
        connection = await model.wait_for_live_connection()
        await model.wait_until(lambda: connection.scripted >= 1 and not connection.speaking, 30)
        await asyncio.sleep(1.0)
        await connection.drop()

    report, _caller, model = live_call(
        live_bridge, TWO_TURNS_ACROSS, during=drop_after_the_first_reply
    )
    assert report.script_error is None
    first, second = model.live_connections
    assert first.dropped and first.closed_reason is None
    assert history_of(second)[-1] == ("assistant", model.reply_for(0).text)
    call = finished_call(report.call_id)
    assert call.analytics.reconnects == 1
    assert [line.speaker for line in call_rows(call).transcripts] == [
        "agent",
        "caller",
        "agent",
        "caller",
        "agent",
    ]


def test_two_agents_one_per_backend_take_calls_at_once(live_bridge, make_agent) -> None:
    live = live_agent(make_agent)
    classic = make_agent(
        name="Classic",
        slug="classic",
        phone_numbers=(REALTIME_NUMBER,),
        instructions="You are the classic line.",
        greeting="Hello, you have reached the classic line.",
    )

    async def scenario(standin: RealtimeStandIn, _caller):
        callers = [caller_for(live_bridge, LIVE_NUMBER), caller_for(live_bridge, REALTIME_NUMBER)]
        reports = await asyncio.gather(*(c.call(GREETED_CALL) for c in callers))
        return reports, standin

    reports, standin = live_bridge.run(scenario)
    assert [report.script_error for report in reports] == [None, None]
    assert (len(standin.live_connections), len(standin.connections)) == (1, 1)
    for report, agent, backend in zip(
        reports, (live, classic), ("gpt-live", "realtime"), strict=True
    ):
        call = finished_call(report.call_id)
        assert call.agent_id == agent.pk
        assert call.agent_snapshot["agent"]["backend"] == backend
        lines = call_rows(call).transcripts
        assert [line.speaker for line in lines] == ["agent", "caller", "agent"]
        assert lines[0].text == agent.greeting


def test_the_agent_hangs_up_after_its_goodbye_was_heard(live_bridge, make_agent) -> None:
    live_agent(make_agent, tools=[{"type": "end_call"}])
    goodbye = ScriptedToolCall(
        "end_call", {"reason": "the caller is done"}, at_turn=1, say_first="Goodbye, take care!"
    )
    script = [AwaitAgentPlayed(), Speak(1.5, seed=1), Silence(20)]
    report, caller, _ = live_call(live_bridge, script, standin={"tool_calls": [goodbye]})
    assert report.ended_by == "twilio"  # Twilio ended the stream after the REST hang-up
    call = finished_call(report.call_id)
    assert call.end_reason == "agent ended the call: the caller is done"
    lines = call_rows(call).transcripts
    assert (lines[-1].speaker, lines[-1].text) == ("agent", "Goodbye, take care!")
    assert not lines[-1].interrupted
    [tool] = call.tool_calls.all()
    assert (tool.name, tool.kind, tool.status) == ("end_call", "end_call", "ok")
    # Hung up only once the goodbye had played and the track had been quiet a while since.
    assert tool.end_ms >= lines[-1].end_ms + 500
    assert caller.agent_arrivals[-1][0] < tool.end_ms


def test_the_time_limit_goodbye_is_said_then_the_call_ends(
    live_bridge, make_agent, settings
) -> None:
    settings.CALL_TIME_LIMIT_GOODBYE = "Our time is up, goodbye."
    agent = live_agent(make_agent)
    agent.max_call_minutes = 1
    agent.save()
    script = [AwaitAgentPlayed(), Speak(1.5, seed=1), AwaitAgentPlayed(), Silence(70)]
    report, caller, standin = live_call(live_bridge, script, max_seconds=90)
    assert 60_000 <= caller.frames_sent * 20 <= 60_000 + 20_000
    call = finished_call(report.call_id)
    assert call.end_reason == "time limit reached"
    lines = call_rows(call).transcripts
    assert (lines[-1].speaker, lines[-1].text) == ("agent", "Our time is up, goodbye.")
    [connection] = standin.live_connections
    commentary = [e.payload["content"] for e in connection.received_of("session.commentary.append")]
    assert len(commentary) == 2 and '"Our time is up, goodbye."' in commentary[1]
