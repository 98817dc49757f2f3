"""The realtime stand-in calls tools (issue 22): the session's tools and tool_choice checked per
the SDK, scripted calls and the default policy, calls streamed as the service streams them, the
client's outputs and the reply to them, unanswered calls flagged, MCP calls the service makes
itself. Every event the stand-in sends is checked against the `openai` SDK's server event types.
Loopback only; every test is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai.types.beta.realtime import session_update_event_param as beta_session
from openai.types.realtime import RealtimeFunctionToolParam
from openai.types.realtime.realtime_tools_config_union_param import (
    Mcp,
    McpAllowedToolsMcpToolFilter,
)
from sim_support import RealtimeClient, assert_all_sdk_valid, caller_turn, of_type
from websockets.asyncio.client import connect

from simulator.openai import protocol as rt
from simulator.openai.standin import DEFAULT_CALLER_LINES, DEFAULT_REPLIES, RealtimeStandIn
from simulator.openai.tools import (
    DEFAULT_SAY_FIRST,
    DEFAULT_TOOL_REPLY,
    ScriptedToolCall,
    arguments_for,
    default_choice,
)

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

END_CALL = {
    "type": "function",
    "name": "end_call",
    "description": "End the phone call once you have said goodbye.",
    "parameters": {
        "type": "object",
        "properties": {"reason": {"type": "string"}},
        "required": ["reason"],
        "additionalProperties": False,
    },
}
TRANSFER = {
    "type": "function",
    "name": "transfer_call",
    "description": "Transfer the caller to a person.",
    "parameters": {
        "type": "object",
        "properties": {
            "target": {"type": "string", "enum": ["support", "sales"]},
            "summary": {"type": "string"},
        },
        "required": ["target", "summary"],
    },
}
LOOKUP = {
    "type": "function",
    "name": "check_order",
    "description": "Look an order up by its number.",
    "parameters": {
        "type": "object",
        "properties": {
            "order_number": {"type": "string", "examples": ["427"]},
            "express": {"type": "boolean"},
            "quantity": {"type": "integer", "minimum": 2},
            "note": {"type": "string"},
        },
        "required": ["order_number", "express", "quantity"],
    },
}
WEATHER = {"type": "function", "name": "weather", "parameters": {"type": "object"}}
MCP = {
    "type": "mcp",
    "server_label": "orders",
    "server_url": "https://mcp.example.com/sse",
    "allowed_tools": ["lookup_order"],
    "require_approval": "never",
    "headers": {"Authorization": "Bearer x"},
}


@pytest.fixture
async def quick() -> AsyncIterator[RealtimeStandIn]:
    async with RealtimeStandIn(
        speed=0,
        response_delay_s=0.02,
        first_audio_delay_s=0.02,
        transcription_delay_s=0.05,
        transcription_failure_rate=0.0,
        mcp_delay_s=0.02,
    ) as server:
        yield server


async def open_client(server: RealtimeStandIn, *, beta: bool = False) -> RealtimeClient:
    headers = {"Authorization": "Bearer k"}
    if beta:
        headers["OpenAI-Beta"] = "realtime=v1"
    ws = await connect(server.url + "?model=gpt-realtime", additional_headers=headers)
    return RealtimeClient(ws)


async def configure(client: RealtimeClient, **session: Any) -> dict[str, Any]:
    """A mu-law GA session (no transcription) with these fields; session.updated or error."""
    pcmu = {"type": "audio/pcmu"}
    await client.send(
        "session.update",
        session={
            "type": "realtime",
            "audio": {"input": {"format": pcmu}, "output": {"format": pcmu}},
            **session,
        },
    )
    while True:
        event = await client.next_event()
        if event["type"] in ("session.updated", "error"):
            return event


async def configure_beta(client: RealtimeClient, **session: Any) -> dict[str, Any]:
    await client.send(
        "session.update",
        session={"input_audio_format": "g711_ulaw", "output_audio_format": "g711_ulaw", **session},
    )
    while True:
        event = await client.next_event()
        if event["type"] in ("session.updated", "error"):
            return event


async def turn(client: RealtimeClient) -> dict[str, Any]:
    """One caller turn; the response.done answering it."""
    await client.append(caller_turn(1.0, lead_s=0.3, tail_s=0.8))
    return await client.until("response.done")


def calls_in(done: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for item in done["response"]["output"] if item["type"] == "function_call"]


def said(client: RealtimeClient, response_id: str) -> str:
    deltas = of_type(client, "response.output_audio_transcript.delta") + of_type(
        client, "response.audio_transcript.delta"
    )
    return "".join(d["delta"] for d in deltas if d["response_id"] == response_id)


async def answer(
    client: RealtimeClient, done: dict[str, Any], output: str = "ok", *, beta: bool = False
) -> None:
    """The output of every call of `done`, as a client sends it (GA announces the item done;
    beta only created)."""
    for call in calls_in(done):
        await client.send(
            "conversation.item.create",
            item={"type": "function_call_output", "call_id": call["call_id"], "output": output},
        )
        await client.until("conversation.item.created" if beta else "conversation.item.done")


# --- the SDK's shapes -------------------------------------------------------------------------


def test_the_tool_field_lists_are_the_sdks():
    def keys(typed_dict: Any) -> set[str]:
        return set(typed_dict.__required_keys__ | typed_dict.__optional_keys__)

    assert keys(RealtimeFunctionToolParam) == rt.FUNCTION_TOOL_FIELDS
    assert keys(beta_session.SessionTool) == rt.FUNCTION_TOOL_FIELDS
    assert keys(Mcp) == rt.MCP_TOOL_FIELDS
    assert keys(McpAllowedToolsMcpToolFilter) == rt.MCP_FILTER_FIELDS


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({"tools": [{**LOOKUP, "strict": True}]}, "unknown_parameter", "session.tools[0].strict"),
        ({"tools": [{"type": "function"}]}, "missing_required_parameter", "session.tools[0].name"),
        ({"tools": [{**WEATHER, "name": "no spaces"}]}, "invalid_value", "session.tools[0].name"),
        ({"tools": [{**WEATHER, "parameters": "{}"}]}, "invalid_type",
         "session.tools[0].parameters"),
        ({"tools": [{"type": "web_search"}]}, "invalid_value", "session.tools[0].type"),
        ({"tools": [WEATHER, {"type": "mcp"}]}, "missing_required_parameter",
         "session.tools[1].server_label"),
        ({"tools": [{"type": "mcp", "server_label": "x"}]}, "missing_required_parameter",
         "session.tools[0].server_url"),
        ({"tools": [{**MCP, "require_approval": "sometimes"}]}, "invalid_value",
         "session.tools[0].require_approval"),
        ({"tools": [{**MCP, "allowed_tools": {"names": ["a"]}}]}, "unknown_parameter",
         "session.tools[0].allowed_tools.names"),
        ({"tools": [{**MCP, "headers": {"X-Id": 7}}]}, "invalid_type",
         "session.tools[0].headers.X-Id"),
        ({"tool_choice": "sometimes"}, "invalid_value", "session.tool_choice"),
        ({"tool_choice": {"type": "function"}}, "missing_required_parameter",
         "session.tool_choice.name"),
        ({"tool_choice": {"type": "function", "name": "x", "strict": 1}}, "unknown_parameter",
         "session.tool_choice.strict"),
    ],
)  # fmt: skip
async def test_bad_tools_are_refused_as_the_service_words_it(
    quick: RealtimeStandIn, session: dict[str, Any], code: str, param: str
):
    async with asyncio.timeout(10):
        client = await open_client(quick)
        event = await configure(client, **session)
    assert event["type"] == "error", event
    assert (event["error"]["code"], event["error"]["param"]) == (code, param)
    assert_all_sdk_valid(quick.connections[0])


async def test_every_tool_shape_the_sdk_allows_is_taken(quick: RealtimeStandIn):
    tools = [
        LOOKUP,
        {**MCP, "allowed_tools": {"read_only": True, "tool_names": ["lookup_order"]}},
        {
            "type": "mcp",
            "server_label": "calendar",
            "connector_id": "connector_googlecalendar",
            "authorization": "token",
            "require_approval": {"never": {"tool_names": ["list_events"]}},
            "allowed_callers": ["direct"],
        },
    ]
    choices: list[Any] = [
        "required",
        {"type": "function", "name": "check_order"},
        {"type": "mcp", "server_label": "orders", "name": "lookup_order"},
        "auto",
    ]
    async with asyncio.timeout(10):
        client = await open_client(quick)
        updated = [await configure(client, tools=tools, tool_choice=choice) for choice in choices]
    assert [event["type"] for event in updated] == ["session.updated"] * len(choices)
    assert updated[-1]["session"]["tools"] == tools
    assert updated[-1]["session"]["tool_choice"] == "auto"
    # Both MCP servers are listed once, with the tools the stand-in knows of.
    listed = [
        e["item"]
        for e in of_type(client, "conversation.item.done")
        if e["item"]["type"] == "mcp_list_tools"
    ]
    assert [(item["server_label"], [t["name"] for t in item["tools"]]) for item in listed] == [
        ("orders", ["lookup_order"]),
        ("calendar", []),
    ]
    assert len(of_type(client, "mcp_list_tools.completed")) == 2
    assert_all_sdk_valid(quick.connections[0])


# --- the default policy -----------------------------------------------------------------------


def test_the_default_policy_keeps_the_ending_tools_for_last():
    tools = [END_CALL, LOOKUP, TRANSFER, WEATHER]
    called: set[str] = set()
    order = []
    for _ in range(5):
        chosen = default_choice(tools, called)
        order.append([tool["name"] for tool in chosen])
        called.update(tool["name"] for tool in chosen)
    assert order == [["check_order"], ["weather"], ["transfer_call"], ["end_call"], []]
    assert [t["name"] for t in default_choice(tools, set(), calls_per_turn=3)] == [
        "check_order",
        "weather",
    ]
    assert default_choice(tools, set(), "none") == []
    assert default_choice(tools, {"weather"}, {"type": "function", "name": "weather"}) == [WEATHER]
    every = {"end_call", "check_order", "transfer_call", "weather"}
    assert default_choice(tools, every, "required") == [LOOKUP]
    assert default_choice(tools, every, "auto") == []
    assert default_choice([MCP], set()) == []


def test_arguments_are_made_from_the_schema():
    assert arguments_for(LOOKUP["parameters"]) == {
        "order_number": "427",
        "express": True,
        "quantity": 2,
    }
    assert arguments_for(TRANSFER["parameters"]) == {"target": "support", "summary": "example"}
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date"},
            "code": {"type": "string", "minLength": 10},
            "price": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
            "address": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "const": "Paris"},
                    "zip": {"type": "string"},
                },
                "required": ["city"],
            },
            "maybe": {"type": ["null", "integer"]},
        },
        "required": ["when", "code", "price", "tags", "address", "maybe"],
    }
    assert arguments_for(schema) == {
        "when": "2026-01-01",
        "code": "examplexxx",
        "price": 1,
        "tags": ["a"],
        "address": {"city": "Paris"},
        "maybe": 1,
    }
    assert arguments_for(None) == {}


async def test_each_caller_turn_calls_the_next_tool_streamed_as_the_service_does(
    quick: RealtimeStandIn,
):
    async with asyncio.timeout(30):
        client = await open_client(quick)
        await configure(client, tools=[END_CALL, LOOKUP, TRANSFER], tool_choice="auto")
        first = await turn(client)
        await answer(client, first, output='{"status": "shipped"}')
        await client.send("response.create")
        reply = await client.until("response.done")
        second = await turn(client)
        third = await turn(client)
        fourth = await turn(client)
    connection = quick.connections[0]
    assert_all_sdk_valid(connection)
    assert [[c["name"] for c in calls_in(d)] for d in (first, second, third, fourth)] == [
        ["check_order"],
        ["transfer_call"],
        ["end_call"],
        [],
    ]
    lookup = calls_in(first)[0]
    assert json.loads(lookup["arguments"]) == {
        "order_number": "427",
        "express": True,
        "quantity": 2,
    }
    assert lookup["status"] == "completed" and lookup["call_id"].startswith("call_")
    # A call said nothing first; an ending call says its line first, in the same response.
    assert [item["type"] for item in first["response"]["output"]] == ["function_call"]
    assert [item["type"] for item in third["response"]["output"]] == ["message", "function_call"]
    assert said(client, third["response"]["id"]) == DEFAULT_SAY_FIRST["end_call"]
    assert said(client, second["response"]["id"]) == DEFAULT_SAY_FIRST["transfer_call"]
    # The output came back and was answered with the reply to it; the script did not move.
    assert connection.function_outputs == [
        {
            "type": "function_call_output",
            "call_id": lookup["call_id"],
            "output": '{"status": "shipped"}',
        }
    ]
    assert said(client, reply["response"]["id"]) == DEFAULT_TOOL_REPLY
    assert not calls_in(reply)
    assert said(client, fourth["response"]["id"]) == DEFAULT_REPLIES[0].text
    # The ending calls were never answered, but no response was asked for before they were.
    assert connection.protocol_problems == []
    # The usage counts the arguments as output text.
    assert first["response"]["usage"]["output_token_details"]["text_tokens"] > 0


async def test_a_call_is_streamed_event_by_event(quick: RealtimeStandIn):
    async with asyncio.timeout(15):
        client = await open_client(quick)
        await configure(client, tools=[END_CALL])
        start = len(client.events)
        done = await turn(client)
    events = client.events[start:]
    first_call = next(
        n
        for n, e in enumerate(events)
        if e["type"] == "response.output_item.added" and e["item"]["type"] == "function_call"
    )
    call_events = [e["type"] for e in events[first_call:]]
    deltas = call_events.count("response.function_call_arguments.delta")
    assert deltas >= 1
    assert call_events == [
        "response.output_item.added",
        "conversation.item.added",
        *["response.function_call_arguments.delta"] * deltas,
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    # Before it, the goodbye: a whole message, closed before the call starts.
    before = [e["type"] for e in events[:first_call]]
    assert before[before.index("response.created") :][-3:] == [
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
    ]
    added = events[first_call]
    assert added["output_index"] == 1
    assert added["item"]["status"] == "in_progress" and added["item"]["arguments"] == ""
    arguments_done = of_type(client, "response.function_call_arguments.done")[0]
    streamed = "".join(
        e["delta"] for e in of_type(client, "response.function_call_arguments.delta")
    )
    call = calls_in(done)[0]
    assert streamed == arguments_done["arguments"] == call["arguments"] == '{"reason":"example"}'
    assert (arguments_done["call_id"], arguments_done["name"], arguments_done["item_id"]) == (
        call["call_id"],
        "end_call",
        call["id"],
    )
    assert_all_sdk_valid(quick.connections[0])


async def test_no_tool_is_called_when_tool_choice_is_none(quick: RealtimeStandIn):
    async with asyncio.timeout(15):
        client = await open_client(quick)
        await configure(client, tools=[LOOKUP], tool_choice="none")
        done = await turn(client)
    assert not calls_in(done)
    assert said(client, done["response"]["id"]) == DEFAULT_REPLIES[0].text


# --- scripted calls ---------------------------------------------------------------------------


async def test_scripted_calls_at_a_turn_or_a_phrase_several_in_one_response():
    script = [
        ScriptedToolCall("check_order", {"order_number": "1"}, at_turn=1),
        ScriptedToolCall("weather", at_turn=1, reply_after="Sunny, and your order is on its way."),
        ScriptedToolCall("end_call", when_caller_says="DELIVERY ADDRESS", say_first="Bye now."),
        ScriptedToolCall("not_offered", at_turn=2),
    ]
    async with RealtimeStandIn(
        speed=0, response_delay_s=0.02, first_audio_delay_s=0.02, tool_calls=script
    ) as standin:
        async with asyncio.timeout(30):
            client = await open_client(standin)
            await configure(client, tools=[LOOKUP, WEATHER, END_CALL])
            first = await turn(client)
            await answer(client, first)
            await client.send("response.create")
            reply = await client.until("response.done")
            second = await turn(client)
            third = await turn(client)
        connection = standin.connections[0]
        assert_all_sdk_valid(connection)
    calls = calls_in(first)
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("check_order", {"order_number": "1"}),
        ("weather", {}),
    ]
    outputs = [
        e["output_index"] for e in of_type(client, "response.output_item.added")
        if e["response_id"] == first["response"]["id"]
    ]  # fmt: skip
    assert outputs == [0, 1]
    assert said(client, reply["response"]["id"]) == "Sunny, and your order is on its way."
    # Turn 2: the scripted tool is not offered, so the model cannot call it; a scripted reply.
    assert not calls_in(second)
    assert connection.skipped_tool_calls == ["turn 2: not_offered is not offered by the session"]
    # Turn 3 is when the caller speaks of the delivery address (the third caller line).
    assert "delivery address" in DEFAULT_CALLER_LINES[2]
    assert [c["name"] for c in calls_in(third)] == ["end_call"]
    assert said(client, third["response"]["id"]) == "Bye now."
    assert connection.protocol_problems == []


async def test_a_scripted_call_needs_a_turn():
    with pytest.raises(ValueError, match="exactly one"):
        ScriptedToolCall("x")
    with pytest.raises(ValueError, match="MCP"):
        ScriptedToolCall("x", at_turn=1, output="y")


# --- what the client owes -----------------------------------------------------------------------


async def test_asking_for_a_response_before_answering_every_call_is_flagged(
    quick: RealtimeStandIn,
):
    quick.calls_per_turn = 2
    async with asyncio.timeout(20):
        client = await open_client(quick)
        await configure(client, tools=[LOOKUP, WEATHER])
        done = await turn(client)
        lookup, weather = calls_in(done)
        await client.send(
            "conversation.item.create",
            item={"type": "function_call_output", "call_id": lookup["call_id"], "output": "ok"},
        )
        await client.until("conversation.item.done")
        await client.send("response.create", event_id="evt_early")
        await client.until("response.done")
        # An output for a call nobody made is refused, as the service refuses it.
        await client.send(
            "conversation.item.create",
            event_id="evt_unknown",
            item={"type": "function_call_output", "call_id": "call_nope", "output": "?"},
        )
        error = await client.until("error")
        # Malformed outputs are refused too.
        await client.send(
            "conversation.item.create", item={"type": "function_call_output", "call_id": "x"}
        )
        missing = await client.until("error")
    connection = quick.connections[0]
    assert_all_sdk_valid(connection)
    assert connection.protocol_problems == [
        f"response.create (evt_early) while weather ({weather['call_id']}) of "
        f"{done['response']['id']} has no function_call_output",
        "function_call_output for an unknown call_id 'call_nope'",
    ]
    assert quick.protocol_problems == connection.protocol_problems
    assert (error["error"]["code"], error["error"]["param"], error["error"]["event_id"]) == (
        "invalid_value",
        "item.call_id",
        "evt_unknown",
    )
    assert (missing["error"]["code"], missing["error"]["param"]) == (
        "missing_required_parameter",
        "item.output",
    )
    assert [o["call_id"] for o in connection.function_outputs] == [lookup["call_id"]]


async def test_a_replayed_call_and_its_output_are_taken(quick: RealtimeStandIn):
    """After a reconnect the client replays the conversation: its own function_call items are
    known calls, and the default policy does not call those tools again."""
    async with asyncio.timeout(15):
        client = await open_client(quick)
        await configure(client, tools=[LOOKUP, WEATHER])
        for item in (
            {
                "type": "function_call",
                "call_id": "call_old",
                "name": "check_order",
                "arguments": "{}",
            },
            {"type": "function_call_output", "call_id": "call_old", "output": "shipped"},
        ):
            await client.send("conversation.item.create", item=item)
            await client.until("conversation.item.done")
        done = await turn(client)
    assert [c["name"] for c in calls_in(done)] == ["weather"]
    assert quick.connections[0].protocol_problems == []
    assert_all_sdk_valid(quick.connections[0])


# --- MCP: the service calls the server itself ------------------------------------------------


async def test_an_mcp_call_is_made_by_the_service_and_the_reply_goes_on():
    script = [
        ScriptedToolCall("lookup_order", {"number": "427"}, at_turn=1, server_label="orders",
                         output='{"status": "shipped"}', reply_after="It has shipped."),
        ScriptedToolCall("lookup_order", at_turn=2, server_label="orders", error="timed out"),
        ScriptedToolCall("delete_order", at_turn=3, server_label="orders"),
    ]  # fmt: skip
    async with RealtimeStandIn(
        speed=0, response_delay_s=0.02, first_audio_delay_s=0.02, tool_calls=script, mcp_delay_s=0
    ) as standin:
        async with asyncio.timeout(30):
            client = await open_client(standin)
            await configure(client, tools=[MCP])
            first_start = len(client.events)
            first = await turn(client)
            first_events = [e["type"] for e in client.events[first_start:]]
            second = await turn(client)
            third = await turn(client)
        connection = standin.connections[0]
        assert_all_sdk_valid(connection)
    mcp_events = [t for t in first_events if t.startswith(("response.mcp", "response.output_item"))]
    deltas = mcp_events.count("response.mcp_call_arguments.delta")
    assert mcp_events == [
        "response.output_item.added",
        *["response.mcp_call_arguments.delta"] * deltas,
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.output_item.done",
        "response.output_item.added",  # the reply goes on in the same response
        "response.output_item.done",
    ]
    output = first["response"]["output"]
    assert [item["type"] for item in output] == ["mcp_call", "message"]
    assert output[0] == {
        "id": output[0]["id"],
        "type": "mcp_call",
        "server_label": "orders",
        "name": "lookup_order",
        "arguments": '{"number":"427"}',
        "output": '{"status": "shipped"}',
    }
    assert said(client, first["response"]["id"]) == "It has shipped."
    failed = second["response"]["output"][0]
    assert failed["error"] == {"type": "tool_execution_error", "message": "timed out"}
    assert of_type(client, "response.mcp_call.failed")[0]["item_id"] == failed["id"]
    assert said(client, second["response"]["id"]) == DEFAULT_TOOL_REPLY
    # No client round trip: no function call to answer, nothing flagged.
    assert not calls_in(first) and connection.protocol_problems == []
    assert [c["name"] for c in connection.mcp_calls] == ["lookup_order", "lookup_order"]
    # allowed_tools does not name delete_order: the model cannot call it.
    assert connection.skipped_tool_calls == [
        "turn 3: orders.delete_order is not offered by the session"
    ]
    assert third["response"]["output"][0]["type"] == "message"


# --- beta ---------------------------------------------------------------------------------------


async def test_beta_calls_functions_in_its_own_shapes(quick: RealtimeStandIn):
    async with asyncio.timeout(20):
        client = await open_client(quick, beta=True)
        refused = await configure_beta(client, tools=[MCP])
        await configure_beta(client, tools=[LOOKUP], tool_choice="check_order")
        done = await turn(client)
        await answer(client, done, beta=True)
        await client.send("response.create")
        reply = await client.until("response.done")
    assert_all_sdk_valid(quick.connections[0])
    assert (refused["error"]["code"], refused["error"]["param"]) == (
        "invalid_value",
        "session.tools[0].type",
    )
    call = calls_in(done)[0]
    arguments_done = of_type(client, "response.function_call_arguments.done")[0]
    assert "name" not in arguments_done  # beta names the function only in the item
    assert arguments_done["call_id"] == call["call_id"] and call["name"] == "check_order"
    assert of_type(client, "conversation.item.created")
    assert said(client, reply["response"]["id"]) == DEFAULT_TOOL_REPLY
