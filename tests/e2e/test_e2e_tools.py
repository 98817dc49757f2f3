"""The agent acts during the call (issue 22), over real sockets: the bridge, the realtime
stand-in (scripted to call tools), the Twilio REST stand-in and a webhook server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import xml.etree.ElementTree as ET

import pytest
from e2e_support import CallRun, call_rows, finished_call, wait_for

from simulator.openai.tools import ScriptedToolCall
from simulator.twilio.script import AwaitAgentPlayed, Silence, Speak

pytestmark = pytest.mark.slow

SALES = "+15550001111"
HUMAN = "+15550003333"
SECRET = "webhook-secret-for-the-e2e-tools-test"
ORDER_TOOL = {
    "type": "webhook",
    "name": "lookup_order",
    "description": "Find an order by its number.",
    "parameters": {
        "type": "object",
        "properties": {"number": {"type": "string", "pattern": "^[0-9]+$"}},
        "required": ["number"],
        "additionalProperties": False,
    },
    "timeout_s": 2,
}
TWO_TURNS = [
    Silence(0.5),
    Speak(1.5, seed=1),
    AwaitAgentPlayed(timeout_s=20),
    Speak(1.5, seed=2),
    AwaitAgentPlayed(timeout_s=20),
    Silence(0.5),
]


def agent_with(make_agent, *tools: dict):
    return make_agent(
        slug="sales", phone_numbers=(SALES,), instructions="Help with orders.", tools=list(tools)
    )


def place(live_bridge, script, *, tool_calls) -> CallRun:
    """One call to the sales agent, the stand-in calling tools as `tool_calls` say."""

    async def scenario(standin, caller) -> CallRun:
        caller.webhook_params.update(To=SALES, Called=SALES)
        report = await caller.call(script, max_seconds=60)
        return CallRun(report, caller, standin, live_bridge.twilio_rest)

    return live_bridge.run(scenario, standin={"tool_calls": tool_calls})


def test_the_model_hangs_up_after_its_goodbye_was_heard(live_bridge, make_agent) -> None:
    agent_with(make_agent, {"type": "end_call"})
    goodbye = ScriptedToolCall(
        "end_call", {"reason": "the caller is done"}, at_turn=1, say_first="Goodbye, take care!"
    )
    script = [Silence(0.5), Speak(1.5, seed=1), Silence(20)]
    run = place(live_bridge, script, tool_calls=[goodbye])
    assert run.report.ended_by == "twilio"  # Twilio ended the stream after the REST hang-up
    [update] = run.twilio_rest.updates(run.caller.call_sid)
    assert update.value("Status") == "completed"
    call = finished_call(run.report.call_id)
    assert call.end_reason == "agent ended the call: the caller is done"
    lines = call_rows(call).transcripts
    assert (lines[-1].speaker, lines[-1].text) == ("agent", "Goodbye, take care!")
    assert not lines[-1].interrupted  # heard to the end before the hang-up
    # Hung up only after the goodbye had played: every byte of agent audio was heard.
    assert len(run.caller.played) == len(run.caller.agent_audio) > 0
    [tool] = call.tool_calls.all()
    assert (tool.name, tool.kind, tool.status) == ("end_call", "end_call", "ok")
    assert call.analytics.tool_calls == 1


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_a_transfer_dials_the_chosen_person(live_bridge, make_agent, warm: bool) -> None:
    from calls.models import Call

    agent_with(make_agent, {"type": "transfer_call", "targets": {"sales": HUMAN}, "warm": warm})
    transfer = ScriptedToolCall(
        "transfer_call",
        {"target": "sales", "summary": "Ada wants to upgrade her plan."},
        at_turn=1,
        say_first="Let me transfer you now.",
    )
    script = [Silence(0.5), Speak(1.5, seed=1), Silence(20)]
    run = place(live_bridge, script, tool_calls=[transfer])
    assert run.report.ended_by == "twilio"
    [update] = run.twilio_rest.updates(run.caller.call_sid)
    dial = ET.fromstring(update.value("Twiml")).find("./Dial")
    assert dial.get("callerId") == SALES  # the number the caller dialled
    number = dial.find("./Number")
    assert number.text == HUMAN
    if warm:
        assert "Ada wants to upgrade her plan." in run.caller.whisper_twiml[HUMAN]
    else:
        assert number.get("url") is None
    transferred = Call.objects.filter(pk=run.report.call_id, end_reason="transferred to sales")
    call = wait_for(
        transferred.first,
        20,
        "the transfer on the record",
    )
    assert call.status == "in-progress"  # Twilio's status callback closes it, not the bridge
    [tool] = call.tool_calls.all()
    assert (tool.kind, tool.status, tool.arguments["target"]) == ("transfer_call", "ok", "sales")


def test_a_webhook_answer_reaches_the_model_before_the_next_reply(
    live_bridge, make_agent, webhook, settings
) -> None:
    settings.TOOL_WEBHOOK_SECRET = SECRET
    agent_with(make_agent, {**ORDER_TOOL, "url": webhook.url})
    lookup = ScriptedToolCall("lookup_order", {"number": "427"}, at_turn=1)
    run = place(live_bridge, TWO_TURNS, tool_calls=[lookup])
    assert run.report.script_error is None
    [(headers, body)] = webhook.received
    payload = json.loads(body)
    assert payload["tool"] == "lookup_order" and payload["arguments"] == {"number": "427"}
    assert payload["call"]["id"] == run.report.call_id and payload["call"]["agent"] == "sales"
    t, v1 = (part.split("=", 1)[1] for part in headers["X-Bridge-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected)

    [connection] = run.standin.connections
    events = [(e.type, e.payload) for e in connection.received]
    output_at = next(
        i for i, (kind, p) in enumerate(events)
        if kind == "conversation.item.create" and p["item"]["type"] == "function_call_output"
    )  # fmt: skip
    assert json.loads(events[output_at][1]["item"]["output"]) == webhook.answer
    creates = [i for i, (kind, _) in enumerate(events) if kind == "response.create"]
    assert creates and creates[0] > output_at  # the reply was asked for after the answer
    assert connection.protocol_problems == []
    call = finished_call(run.report.call_id)
    [tool] = call.tool_calls.all()
    assert (tool.kind, tool.status, json.loads(tool.output)) == ("webhook", "ok", webhook.answer)


def test_a_slow_webhook_times_out_while_the_caller_is_heard(
    live_bridge, make_agent, webhook, settings
) -> None:
    settings.TOOL_WEBHOOK_SECRET = SECRET
    webhook.delay_s = 4.0
    agent_with(make_agent, {**ORDER_TOOL, "url": webhook.url, "timeout_s": 1})
    lookup = ScriptedToolCall("lookup_order", {"number": "427"}, at_turn=1)
    run = place(live_bridge, TWO_TURNS, tool_calls=[lookup])
    assert run.report.script_error is None
    [connection] = run.standin.connections
    [output] = connection.function_outputs
    assert "did not answer within 1 s" in json.loads(output["output"])["error"]
    # Caller audio flowed the whole time: every byte reached the model, in order.
    assert bytes(connection.audio) == bytes(run.caller.sent_audio)
    call = finished_call(run.report.call_id)
    [tool] = call.tool_calls.all()
    assert tool.status == "timeout" and 900 <= tool.duration_ms <= 2500
    assert (call.analytics.tool_calls, call.analytics.tool_errors) == (1, 1)


def test_invalid_arguments_never_reach_the_webhook(
    live_bridge, make_agent, webhook, settings
) -> None:
    settings.TOOL_WEBHOOK_SECRET = SECRET
    agent_with(make_agent, {**ORDER_TOOL, "url": webhook.url})
    bad = ScriptedToolCall("lookup_order", {"number": "four two seven"}, at_turn=1)
    run = place(live_bridge, TWO_TURNS, tool_calls=[bad])
    assert run.report.script_error is None
    assert webhook.received == []
    [output] = run.standin.connections[0].function_outputs
    assert "invalid arguments" in json.loads(output["output"])["error"]
    [tool] = finished_call(run.report.call_id).tool_calls.all()
    assert tool.status == "error"


def test_tool_calls_are_in_the_api_detail_and_on_the_live_feed(
    live_bridge, make_agent, webhook, settings
) -> None:
    from calls.api.serializers import CallDetailSerializer
    from calls.selectors import call_detail_list

    settings.TOOL_WEBHOOK_SECRET = SECRET
    agent_with(make_agent, {**ORDER_TOOL, "url": webhook.url})
    published: list[dict] = []

    async def listen() -> None:
        from channels.layers import get_channel_layer

        from calls.events import STATUS_GROUP

        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(STATUS_GROUP, channel)
        while True:
            published.append(await layer.receive(channel))

    async def scenario(standin, caller):
        listener = asyncio.create_task(listen())
        caller.webhook_params.update(To=SALES, Called=SALES)
        report = await caller.call(TWO_TURNS, max_seconds=60)
        await asyncio.sleep(1.0)  # the writer publishes after it writes
        listener.cancel()
        return report

    lookup = ScriptedToolCall("lookup_order", {"number": "427"}, at_turn=1)
    report = live_bridge.run(scenario, standin={"tool_calls": [lookup]})
    finished_call(report.call_id)
    detail = CallDetailSerializer(
        call_detail_list().get(pk=report.call_id), context={"request": None}
    ).data
    [tool] = detail["tool_calls"]
    assert (tool["name"], tool["kind"], tool["status"]) == ("lookup_order", "webhook", "ok")
    assert detail["analytics"]["tool_calls"] == 1
    tools_published = [e for e in published if e.get("kind") == "call.tool"]
    assert [(e["name"], e["status"]) for e in tools_published] == [("lookup_order", "ok")]


def test_the_admin_shows_tool_calls_inline(live_bridge, make_agent, webhook, settings, client):
    from django.contrib.auth.models import User

    settings.TOOL_WEBHOOK_SECRET = SECRET
    agent_with(make_agent, {**ORDER_TOOL, "url": webhook.url})
    lookup = ScriptedToolCall("lookup_order", {"number": "427"}, at_turn=1)
    report = place(live_bridge, TWO_TURNS, tool_calls=[lookup]).report
    finished_call(report.call_id)
    admin = User.objects.create_superuser("boss", "boss@example.com", "pw-boss-123")
    client.force_login(admin)
    page = client.get(f"/admin/calls/call/{report.call_id}/change/").content.decode()
    assert "bo-turn--tool" in page
    assert "lookup_order({&quot;number&quot;: &quot;427&quot;}) -&gt; ok" in page


def test_an_mcp_call_the_service_made_is_on_the_record(live_bridge, make_agent) -> None:
    agent_with(make_agent, {"type": "mcp", "server_label": "crm",
                            "server_url": "https://crm.example.com/mcp"})  # fmt: skip
    crm = ScriptedToolCall(
        "find_customer", {"phone": "+14155550123"}, at_turn=1, server_label="crm",
        output='{"name": "Ada"}',
    )  # fmt: skip
    run = place(live_bridge, TWO_TURNS, tool_calls=[crm])
    assert run.report.script_error is None
    [connection] = run.standin.connections
    assert connection.received_of("session.update")[0].payload["session"]["tools"][0]["type"] == (
        "mcp"
    )
    assert connection.function_outputs == []  # the service called it: nothing to answer
    [tool] = finished_call(run.report.call_id).tool_calls.all()
    assert (tool.name, tool.kind, tool.status) == ("crm.find_customer", "mcp", "ok")
    assert (tool.arguments, tool.output) == ({"phone": "+14155550123"}, '{"name": "Ada"}')
