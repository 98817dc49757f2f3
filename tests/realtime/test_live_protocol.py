"""The GPT-Live wire format (realtime.live.protocol) against the official SDK types.

Client events: each one validates against `openai.types.live.ClientEvent`, dumps back to exactly
what was built, and leaves no unknown key anywhere in the tree (the SDK models keep unknown keys
as extras, so validation alone would not catch a misspelled field). The GPT-Live stand-in's own
checks (strict configuration, history limits) must accept them too.

Server events: each fixture is built as the GPT-Live stand-in sends it, first validated against
`openai.types.live.ServerEvent` (and a nested Responses event against `ResponseStreamEvent`), so
the fixtures are real shapes; then parsed.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from openai.types.live import ClientEvent, ServerEvent
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter
from support import unknown_keys

from agents.tools import END_CALL_DEFINITION, session_tool
from realtime.live import protocol
from realtime.live.protocol import (
    BackendResponseDone,
    Closed,
    OutputAudio,
    Started,
    TranscriptDelta,
    UsageUpdated,
)
from realtime.model import (
    AgentConfig,
    ContextItem,
    ModelError,
    RealtimeSettings,
    ServiceToolCall,
    ToolCallRequested,
    Usage,
)
from simulator.openai.live import backend
from simulator.openai.live import protocol as standin
from simulator.openai.tools import PlannedCall

CLIENT = TypeAdapter(ClientEvent)
SERVER = TypeAdapter(ServerEvent)
RESPONSES = TypeAdapter(ResponseStreamEvent)
BACKEND_MODEL = "gpt-5-mini"

WEBHOOK = {
    "type": "webhook",
    "name": "lookup_order",
    "description": "Find an order by its number.",
    "parameters": {
        "type": "object",
        "properties": {"number": {"type": "string"}},
        "required": ["number"],
    },
    "url": "https://orders.example.com/lookup",
    "timeout_s": 5,
}
MCP = {
    "type": "mcp",
    "server_label": "crm",
    "server_url": "https://crm.example.com/mcp",
    "allowed_tools": ["find_customer"],
    "require_approval": "never",
}
TRANSFER = {"type": "transfer_call", "targets": {"sales": "+15550003333"}, "warm": False}


def live_settings(*tools: dict[str, Any], instructions: str = "Be brief.") -> RealtimeSettings:
    """A GPT-Live agent offered these configured tools, as the bridge builds its settings."""
    return RealtimeSettings(
        url="wss://api.openai.com/v1/live/sessions",
        api_key="k",
        agent=AgentConfig(
            backend="gpt-live",
            model="gpt-live-1.1",
            voice="marin",
            instructions=instructions,
        ),
        session_tools=tuple(session_tool(tool) for tool in tools),
    )


def assert_client_valid(event: dict[str, Any]) -> Any:
    """A client event the SDK takes as it is and the stand-in accepts."""
    model = CLIENT.validate_python(event)
    assert unknown_keys(model) == []
    assert model.model_dump(exclude_unset=True) == event
    assert standin.parse_client_event(event)[1] is None
    return model


# --- client events ----------------------------------------------------------------------------


def test_session_start_with_tools_and_history_matches_sdk() -> None:
    settings = live_settings(WEBHOOK, {"type": "end_call"}, TRANSFER, MCP)
    history = [
        ContextItem("user", "Where is my order?"),
        ContextItem("assistant", "Which order number?"),
        ContextItem("user", "  427  "),
    ]
    event = protocol.session_start(settings, history, backend_model=BACKEND_MODEL)
    model = assert_client_valid(event)
    assert type(model).__name__ == "SessionStartEvent"
    assert standin.session_problem(event["session"]) is None
    session = event["session"]
    assert session["model"] == "gpt-live-1.1"
    assert session["instructions"] == "Be brief."
    assert session["audio"] == {
        "format": {"type": "audio/pcmu", "rate": 8000},
        "output": {"voice": "marin"},
    }
    delegation = session["delegation"]
    assert delegation["type"] == "responses"
    responses = delegation["responses"]
    assert responses["model"] == BACKEND_MODEL
    assert responses["instructions"] == f"{protocol.BACKEND_INSTRUCTIONS}\n\nBe brief."
    assert responses["tools"] == list(settings.session_tools)
    assert [tool.get("name") or tool.get("server_label") for tool in responses["tools"]] == [
        "lookup_order",
        "end_call",
        "transfer_call",
        "crm",
    ]
    assert responses["tools"][1]["parameters"] == END_CALL_DEFINITION["parameters"]
    assert responses["tools"][3] == {
        "type": "mcp",
        "server_label": "crm",
        "server_url": "https://crm.example.com/mcp",
        "allowed_tools": ["find_customer"],
        "require_approval": "never",
    }
    # Copies: the event does not share (and so cannot change) the settings' tool dicts.
    assert responses["tools"][0] is not settings.session_tools[0]
    assert session["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Where is my order?"}]},  # noqa: E501
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Which order number?"}]},  # noqa: E501
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "427"}]},
    ]  # fmt: skip
    typed = model.session
    assert typed.audio.format.type == "audio/pcmu"
    assert typed.audio.output.voice == "marin"
    assert [item.role for item in typed.input] == ["user", "assistant", "user"]
    assert typed.delegation.responses.model == BACKEND_MODEL


def test_session_start_without_history_or_tools_sends_no_input() -> None:
    event = protocol.session_start(live_settings(), [], backend_model=BACKEND_MODEL)
    assert_client_valid(event)
    assert "input" not in event["session"]
    assert event["session"]["delegation"]["responses"]["tools"] == []
    # Only blank lines so far: still no input.
    blank = [ContextItem("user", " "), ContextItem("assistant", "")]
    event = protocol.session_start(live_settings(), blank, backend_model=BACKEND_MODEL)
    assert "input" not in event["session"]


def test_sdk_check_catches_a_misspelled_session_key() -> None:
    event = protocol.session_start(live_settings(WEBHOOK), [], backend_model=BACKEND_MODEL)
    event["session"]["instruction"] = event["session"].pop("instructions")
    assert unknown_keys(CLIENT.validate_python(event)) == [".session.instruction"]


def test_input_audio_append_is_serialized_by_hand_and_matches_sdk() -> None:
    payload = base64.b64encode(bytes(range(256)) * 2).decode("ascii")
    raw = protocol.input_audio_append(payload)
    assert isinstance(raw, bytes)
    event = orjson.loads(raw)
    assert event == {"type": "session.input_audio.append", "audio": payload}
    model = assert_client_valid(event)
    assert model.audio == payload


def test_silence_frame_is_20_ms_of_mulaw_zero() -> None:
    frame = protocol.silence_frame_b64()
    assert base64.b64decode(frame) == b"\xff" * 160
    assert_client_valid(orjson.loads(protocol.input_audio_append(frame)))


def test_commentary_is_general_context_with_a_null_delegation() -> None:
    text = 'Greet the caller now. Say exactly this: "Hello, ça va?"'
    event = protocol.commentary(text)
    assert event == {"type": "session.commentary.append", "content": text, "delegation_id": None}
    model = assert_client_valid(event)
    assert model.content == text
    assert "delegation_id" in model.model_fields_set  # required, nullable: sent as null


def test_function_call_output_matches_sdk() -> None:
    event = protocol.function_call_output("call_1", '{"status": "shipped"}')
    assert event == {
        "type": "response.item.create",
        "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"status": "shipped"}'},  # noqa: E501
    }  # fmt: skip
    model = assert_client_valid(event)
    assert (model.item.call_id, model.item.output) == ("call_1", '{"status": "shipped"}')


def test_control_events_match_sdk() -> None:
    assert protocol.response_create() == {"type": "response.create"}
    assert protocol.session_close() == {"type": "session.close"}
    assert type(assert_client_valid(protocol.response_create())).__name__ == "ResponseCreateEvent"
    assert type(assert_client_valid(protocol.session_close())).__name__ == "SessionCloseEvent"


# --- history limits ----------------------------------------------------------------------------


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [message["content"][0]["text"] for message in messages]


def test_history_keeps_the_newest_128_messages_in_order() -> None:
    history = [ContextItem("user" if i % 2 else "assistant", f"m{i}") for i in range(130)]
    kept = protocol.history_input(history)
    assert len(kept) == protocol.MAX_HISTORY_MESSAGES == 128
    assert texts(kept) == [f"m{i}" for i in range(2, 130)]
    assert [m["role"] for m in kept] == [
        "assistant" if i % 2 == 0 else "user" for i in range(2, 130)
    ]
    event = protocol.session_start(live_settings(), history, backend_model=BACKEND_MODEL)
    assert_client_valid(event)
    assert standin.session_problem(event["session"]) is None


def test_blank_texts_are_dropped_and_do_not_count_toward_the_limit() -> None:
    history: list[ContextItem] = []
    for i in range(128):
        history += [ContextItem("user", f"m{i}"), ContextItem("assistant", " \n\t ")]
    history.append(ContextItem("user", ""))
    kept = protocol.history_input(history)
    assert texts(kept) == [f"m{i}" for i in range(128)]


def test_history_over_the_token_estimate_keeps_the_newest_that_fit() -> None:
    # 4 tokens a message plus one per 3 characters (rounded up): 12,276 characters is 4,096.
    half = "a" * ((protocol.MAX_HISTORY_TOKENS // 2 - protocol.TOKENS_PER_MESSAGE) * 3)
    assert len(half) == 12276
    history = [
        ContextItem("user", "oldest"),
        ContextItem("assistant", "b" + half[1:]),
        ContextItem("user", half),
    ]
    # Exactly 8,192 tokens: both big ones fit, the oldest does not.
    assert texts(protocol.history_input(history)) == ["b" + half[1:], half]
    # One character more (one token more): only the newest fits, and nothing older than the
    # one that did not fit is sent (the history stays one unbroken stretch).
    history[1] = ContextItem("assistant", "b" + half)
    assert texts(protocol.history_input(history)) == [half]
    event = protocol.session_start(live_settings(), history, backend_model=BACKEND_MODEL)
    assert standin.session_problem(event["session"]) is None


def test_many_mid_sized_messages_stop_at_the_token_estimate() -> None:
    # 3,000 characters: 1,004 tokens each, 8 of them fit in 8,192.
    history = [ContextItem("user", f"{i:03d}" + "x" * 2997) for i in range(20)]
    kept = protocol.history_input(history)
    assert [text[:3] for text in texts(kept)] == [f"{i:03d}" for i in range(12, 20)]


def test_history_messages_use_the_part_type_of_their_role() -> None:
    kept = protocol.history_input(
        [ContextItem("user", " Hello there. "), ContextItem("assistant", "Hi! How can I help?")]
    )
    assert kept == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello there."}]},  # noqa: E501
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi! How can I help?"}]},  # noqa: E501
    ]  # fmt: skip


# --- server events -----------------------------------------------------------------------------


def parse(event: dict[str, Any], responses: dict[str, str] | None = None) -> Any:
    """Check the fixture is a real server event of that shape, then parse it (as bytes, as the
    session receives it)."""
    model = SERVER.validate_python(event)
    assert unknown_keys(model) == [], event["type"]
    if event["type"] == "response.event":
        nested = RESPONSES.validate_python(event["event"])
        assert unknown_keys(nested) == [], event["event"]["type"]
    return protocol.parse_server_message(
        orjson.dumps(event), {} if responses is None else responses
    )


def test_session_started() -> None:
    start = protocol.session_start(
        live_settings(WEBHOOK), [ContextItem("user", "hi")], backend_model=BACKEND_MODEL
    )
    resolved = standin.resolved_session(
        start["session"], session_id="sess_1", expires_at=1767225600
    )
    event = {"type": "session.started", "event_id": "event_1", "session": resolved}
    assert parse(event) == Started(session_id="sess_1", expires_at=1767225600)


@pytest.mark.parametrize(
    ("reason", "seconds"), [("close_requested", 42), ("expired", 3600), ("content", 7)]
)
def test_session_closed_carries_its_reason_and_final_seconds(reason: str, seconds: int) -> None:
    start = protocol.session_start(live_settings(), [], backend_model=BACKEND_MODEL)
    resolved = standin.resolved_session(start["session"], session_id="sess_1", expires_at=1)
    event = {
        "type": "session.closed",
        "event_id": "event_9",
        "reason": reason,
        "session": resolved,
        "usage": {"seconds": seconds},
    }
    parsed = parse(event)
    assert parsed == Closed(reason=reason, seconds=float(seconds))
    assert type(parsed.seconds) is float


def test_usage_updated_is_cumulative_seconds() -> None:
    event = {
        "type": "session.usage.updated",
        "event_id": "event_2",
        "usage": {"seconds": 15},
        "context_window": {"usage_ratio": 0.12},
    }
    assert parse(event) == UsageUpdated(seconds=15.0)


@pytest.mark.parametrize(
    ("event_type", "role"),
    [("session.input_transcript.delta", "user"), ("session.output_transcript.delta", "assistant")],
)
def test_transcript_fragments_keep_their_text_and_timing(event_type: str, role: str) -> None:
    event = {
        "type": event_type,
        "event_id": "event_3",
        "delta": " order",
        "start_ms": 1520,
        "end_ms": 1880,
    }
    assert parse(event) == TranscriptDelta(role=role, text=" order", start_ms=1520, end_ms=1880)


def test_output_audio_is_passed_on_unchanged() -> None:
    event = {"type": "session.output_audio.delta", "delta": "//79/A=="}
    assert parse(event) == OutputAudio(audio_b64="//79/A==")


def test_errors_keep_their_code_and_message() -> None:
    event = {
        **standin.error_event(
            "The session has already started.",
            code="session_already_started",
            client_event_id="ev_c1",
        ),
        "event_id": "event_4",
    }
    assert parse(event) == ModelError(
        code="session_already_started", message="The session has already started."
    )


def wrapped(events: list[dict[str, Any]], delegation_id: str | None) -> list[dict[str, Any]]:
    """Responses stream events as the Live session nests them."""
    return [
        {"type": "response.event", "event_id": f"event_n{i}", "event": event, "delegation_id": delegation_id}  # noqa: E501
        for i, event in enumerate(events)
    ]  # fmt: skip


def planned(name: str, arguments: str, n: int) -> PlannedCall:
    return PlannedCall(name=name, arguments=arguments, call_id=f"call_{n}", item_id=f"fc_{n}")


def test_a_delegated_function_call_carries_the_backends_response_id() -> None:
    response = backend.BackendResponse("dlg_1", "resp_1", BACKEND_MODEL)
    calls = [
        planned("lookup_order", '{"number":"427"}', 1),
        planned("end_call", '{"reason":"done"}', 2),
    ]
    events = backend.function_call_events(response, calls, backend.Tokens(300, 128, 12))
    responses: dict[str, str] = {}
    parsed = [parse(event, responses) for event in wrapped(events, "dlg_1")]
    assert responses == {"dlg_1": "resp_1"}
    assert [event for event in parsed if event is not None] == [
        ToolCallRequested("call_1", "lookup_order", '{"number":"427"}', response_id="resp_1"),
        ToolCallRequested("call_2", "end_call", '{"reason":"done"}', response_id="resp_1"),
        BackendResponseDone(
            "resp_1",
            "completed",
            Usage(input_text_tokens=300, output_text_tokens=12, cached_text_tokens=128),
        ),
    ]


def test_the_backends_text_answer_reports_only_its_end_and_tokens() -> None:
    response = backend.BackendResponse("dlg_1", "resp_2", BACKEND_MODEL)
    events = backend.message_events(
        response, "Your order shipped today.", backend.Tokens(410, 300, 9)
    )
    responses = {"dlg_1": "resp_1"}
    parsed = [parse(event, responses) for event in wrapped(events, "dlg_1")]
    assert responses == {"dlg_1": "resp_2"}  # the delegation's newest response
    assert [event for event in parsed if event is not None] == [
        BackendResponseDone(
            "resp_2",
            "completed",
            Usage(input_text_tokens=410, output_text_tokens=9, cached_text_tokens=300),
        )
    ]


def test_interleaved_delegations_keep_their_own_response_ids() -> None:
    first = backend.function_call_events(
        backend.BackendResponse("dlg_A", "resp_A", BACKEND_MODEL),
        [planned("lookup_order", "{}", 1)],
        backend.Tokens(10, 0, 1),
    )
    second = backend.function_call_events(
        backend.BackendResponse("dlg_B", "resp_B", BACKEND_MODEL),
        [planned("lookup_order", "{}", 2)],
        backend.Tokens(20, 0, 2),
    )
    a, b = wrapped(first, "dlg_A"), wrapped(second, "dlg_B")
    responses: dict[str, str] = {}
    # Both responses are created before either's call is done.
    order = [a[0], b[0], *a[1:], *b[1:]]
    calls = [
        e for e in (parse(event, responses) for event in order) if type(e) is ToolCallRequested
    ]
    assert [(call.call_id, call.response_id) for call in calls] == [
        ("call_1", "resp_A"),
        ("call_2", "resp_B"),
    ]


def test_a_call_whose_response_was_not_seen_is_attributed_to_its_delegation() -> None:
    events = backend.function_call_events(
        backend.BackendResponse("dlg_1", "resp_1", BACKEND_MODEL),
        [planned("lookup_order", "{}", 1)],
        backend.Tokens(10, 0, 1),
    )
    done = next(e for e in events if e["type"] == "response.output_item.done")
    parsed = parse(wrapped([done], "dlg_1")[0], {})
    assert parsed == ToolCallRequested("call_1", "lookup_order", "{}", response_id="dlg_1")


def test_an_mcp_call_the_backend_ran_is_reported_once_done() -> None:
    item = {
        "type": "mcp_call",
        "id": "mcp_1",
        "server_label": "crm",
        "name": "find_customer",
        "arguments": '{"phone": "+14155550123"}',
        "output": '{"name": "Ada"}',
        "error": None,
        "status": "completed",
    }
    event = {
        "type": "response.output_item.done",
        "output_index": 0,
        "item": item,
        "sequence_number": 4,
    }
    assert parse(wrapped([event], "dlg_1")[0], {"dlg_1": "resp_1"}) == ServiceToolCall(
        item_id="mcp_1",
        server_label="crm",
        name="find_customer",
        arguments='{"phone": "+14155550123"}',
        output='{"name": "Ada"}',
        error=None,
    )


@pytest.mark.parametrize("status", ["failed", "incomplete"])
def test_a_backend_response_that_did_not_complete_is_done_with_its_status(status: str) -> None:
    snapshot = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1767225600,
        "model": BACKEND_MODEL,
        "status": status,
        "error": None,
        "instructions": None,
        "output": [],
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "usage": None,
    }
    if status == "failed":
        snapshot["error"] = {"code": "server_error", "message": "The backend failed."}
    event = {"type": f"response.{status}", "response": snapshot, "sequence_number": 3}
    assert parse(wrapped([event], "dlg_1")[0], {"dlg_1": "resp_1"}) == BackendResponseDone(
        "resp_1", status, Usage()
    )


def test_nested_events_the_bridge_has_no_use_for_are_none() -> None:
    response = backend.BackendResponse("dlg_1", "resp_1", BACKEND_MODEL)
    events = backend.message_events(response, "Fine.", backend.Tokens(1, 0, 1))
    ignored = [e for e in events if e["type"] not in ("response.created", "response.completed")]
    assert {e["type"] for e in ignored} >= {"response.in_progress", "response.output_text.delta"}
    responses = {"dlg_1": "resp_1"}
    assert [parse(event, responses) for event in wrapped(ignored, "dlg_1")] == [None] * len(ignored)
    assert responses == {"dlg_1": "resp_1"}


def test_unknown_and_unused_events_are_none() -> None:
    delegation = {
        "type": "session.delegation.created",
        "event_id": "event_5",
        "delegation": {"id": "dlg_1", "target": "responses", "type": "delegation", "response_id": "resp_1"},  # noqa: E501
        "offset_ms": 2400,
    }  # fmt: skip
    commentary = {
        "type": "session.commentary.appended",
        "event_id": "event_6",
        "start_ms": 0,
        "end_ms": 0,
    }
    assert parse(delegation) is None
    assert parse(commentary) is None
    assert protocol.parse_server_message(b'{"type": "session.brand_new", "x": 1}', {}) is None
    assert protocol.parse_server_message(b'{"no": "type"}', {}) is None


@pytest.mark.parametrize(
    "event",
    [
        {"type": "session.input_transcript.delta", "delta": "hi", "start_ms": 0},
        {"type": "session.output_transcript.delta", "delta": "hi", "start_ms": "soon", "end_ms": 5},
        {"type": "session.output_audio.delta"},
        {"type": "session.started", "session": {"expires_at": 1}},
        {"type": "session.usage.updated", "usage": None},
        {"type": "response.event", "delegation_id": "dlg_1", "event": {"type": "response.created"}},
        {
            "type": "response.event",
            "delegation_id": "dlg_1",
            "event": {
                "type": "response.output_item.done",
                "item": {"type": "function_call", "name": "f"},
            },
        },
    ],
    ids=[
        "no-end",
        "bad-start",
        "no-audio",
        "no-session-id",
        "no-usage",
        "no-response",
        "no-call-id",
    ],
)
def test_a_malformed_known_event_is_a_model_error(event: dict[str, Any]) -> None:
    parsed = protocol.parse_server_message(orjson.dumps(event), {})
    assert type(parsed) is ModelError
    assert parsed.code == "malformed_server_event"
    assert parsed.message.startswith(f"{event['type']}: ")


def test_a_message_that_is_not_an_object_is_a_model_error() -> None:
    for raw in (b"[1, 2]", b'"text"', b"null"):
        parsed = protocol.parse_server_message(raw, {})
        assert parsed == ModelError(
            "malformed_server_event", "a server message that is not an object"
        )


def test_a_message_that_is_not_json_is_a_model_error() -> None:
    parsed = protocol.parse_server_message(b"not json", {})
    assert type(parsed) is ModelError
    assert parsed.code == "malformed_server_event"
