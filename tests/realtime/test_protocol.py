"""The Realtime wire format against the official SDK types, GA and beta.

Client events: each one validates against the SDK's client-event union, dumps back to exactly
what we built (nothing coerced or dropped), and leaves no unknown key anywhere in the tree. The
SDK models are `extra="allow"` and keep unknown keys in their dump, so the equality alone would
not catch a misspelled field; the walk over `model_extra` does.

Server events: each fixture first validates against the SDK's server-event union (so the
fixtures are real shapes), then is parsed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from openai.types.beta import realtime as beta
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from openai.types.realtime.realtime_session_create_request import RealtimeSessionCreateRequest
from pydantic import TypeAdapter
from support import unknown_keys

from realtime import protocol
from realtime.model import (
    AgentConfig,
    AgentTranscriptDone,
    AudioDelta,
    CallerTranscriptDone,
    CallerTranscriptFailed,
    ContextItem,
    ModelError,
    RealtimeSettings,
    ResponseDone,
    ResponseStarted,
    ServiceToolCall,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequested,
    Usage,
)

GA_CLIENT = TypeAdapter(RealtimeClientEvent)
BETA_CLIENT = TypeAdapter(beta.RealtimeClientEvent)
GA_SERVER = TypeAdapter(RealtimeServerEvent)
BETA_SERVER = TypeAdapter(beta.RealtimeServerEvent)
ADAPTERS = {"ga": (GA_CLIENT, GA_SERVER), "beta": (BETA_CLIENT, BETA_SERVER)}


def settings(**overrides: Any) -> RealtimeSettings:
    """Deployment settings and agent fields in one call; agent fields go to its AgentConfig."""
    agent_fields = {f.name for f in dataclasses.fields(AgentConfig)}
    agent = {
        "model": "gpt-realtime",
        "instructions": "Be brief.",
        "voice": "marin",
        "transcription_model": "gpt-4o-mini-transcribe",
    }
    agent.update({k: v for k, v in overrides.items() if k in agent_fields})
    deployment = {k: v for k, v in overrides.items() if k not in agent_fields}
    return RealtimeSettings(
        url="wss://api.openai.com/v1/realtime",
        api_key="sk-test",
        agent=AgentConfig(**agent),
        **deployment,
    )


def assert_sdk_valid(adapter: TypeAdapter, event: dict[str, Any]) -> Any:
    model = adapter.validate_python(event)
    assert unknown_keys(model) == []
    assert model.model_dump(exclude_none=True) == event
    return model


# --- client events, GA --------------------------------------------------------------------------


@pytest.mark.parametrize("turn_detection", ["server_vad", "semantic_vad"])
@pytest.mark.parametrize(
    ("audio_format", "wire_format"),
    [("audio/pcmu", {"type": "audio/pcmu"}), ("audio/pcm", {"type": "audio/pcm", "rate": 24000})],
)
def test_ga_session_update_matches_sdk(
    audio_format: str, wire_format: dict[str, Any], turn_detection: str
) -> None:
    event = protocol.session_update(
        settings(audio_format=audio_format, turn_detection=turn_detection)
    )
    model = assert_sdk_valid(GA_CLIENT, event)
    session = model.session
    assert isinstance(session, RealtimeSessionCreateRequest)
    assert session.model == "gpt-realtime"
    assert session.instructions == "Be brief."
    assert session.output_modalities == ["audio"]
    assert event["session"]["audio"]["input"]["format"] == wire_format
    assert event["session"]["audio"]["output"]["format"] == wire_format
    assert session.audio.output.voice == "marin"
    assert session.audio.input.transcription.model == "gpt-4o-mini-transcribe"
    assert session.audio.input.turn_detection.type == turn_detection


def test_sdk_check_catches_misspelled_keys() -> None:
    event = protocol.session_update(settings())
    event["session"]["instruction"] = event["session"].pop("instructions")
    audio_input = event["session"]["audio"]["input"]
    audio_input["turn_detect"] = audio_input.pop("turn_detection")
    model = GA_CLIENT.validate_python(event)
    assert unknown_keys(model) == [".session.instruction", ".session.audio.input.turn_detect"]
    with pytest.raises(AssertionError):
        assert_sdk_valid(GA_CLIENT, event)


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_input_audio_append_is_serialized_and_matches_sdk(wire: str) -> None:
    raw = protocol.input_audio_append("//79/A==")
    assert isinstance(raw, bytes)
    event = orjson.loads(raw)
    assert event == {"type": "input_audio_buffer.append", "audio": "//79/A=="}
    assert_sdk_valid(ADAPTERS[wire][0], event)


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_control_events_match_sdk(wire: str) -> None:
    client = ADAPTERS[wire][0]
    truncate = protocol.item_truncate("item_1", 1234)
    assert truncate["content_index"] == 0
    assert_sdk_valid(client, truncate)
    assert_sdk_valid(client, protocol.response_cancel())
    assert_sdk_valid(client, protocol.response_create())
    assert_sdk_valid(client, protocol.input_audio_commit())


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_server_vad_numbers_are_sent_and_semantic_vad_assumes_no_closing_silence(
    wire: str,
) -> None:
    server = settings(protocol=wire, vad_threshold=0.6, vad_silence_duration_ms=700)
    event = protocol.session_update(server)
    detection = (
        event["session"]["audio"]["input"]["turn_detection"]
        if wire == "ga"
        else event["session"]["turn_detection"]
    )
    assert detection == {
        "type": "server_vad",
        "threshold": 0.6,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 700,
    }
    assert protocol.closing_silence_ms(server.agent) == 700
    assert protocol.closing_silence_ms(settings(turn_detection="semantic_vad").agent) == 0


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_user_text_item_matches_sdk(wire: str) -> None:
    event = protocol.user_text_item("The caller pressed 5.")
    model = assert_sdk_valid(ADAPTERS[wire][0], event)
    assert model.item.role == "user"
    assert model.item.content[0].type == "input_text"
    assert model.item.content[0].text == "The caller pressed 5."


@pytest.mark.parametrize(
    ("wire", "role", "content_type"),
    [
        ("ga", "user", "input_text"),
        ("ga", "assistant", "output_text"),
        ("beta", "user", "input_text"),
        ("beta", "assistant", "text"),
    ],
)
def test_context_item_matches_sdk(wire: str, role: str, content_type: str) -> None:
    event = protocol.context_item(ContextItem(role=role, text="Where is my order?"), wire)
    model = assert_sdk_valid(ADAPTERS[wire][0], event)
    assert model.item.role == role
    assert model.item.content[0].type == content_type
    assert model.item.content[0].text == "Where is my order?"


@pytest.mark.parametrize("wire", ["ga", "beta"])
@pytest.mark.parametrize("turn_detection", ["server_vad", "semantic_vad"])
def test_every_agent_setting_reaches_a_session_update_the_sdk_accepts(
    wire: str, turn_detection: str
) -> None:
    agent = settings(
        protocol=wire,
        turn_detection=turn_detection,
        vad_eagerness="low",
        noise_reduction="far_field",
        language="fr",
        idle_timeout_ms=8000,
        transcription_model="gpt-4o-transcribe",
        greeting="Bonjour !",  # said through a response, not part of the session
    )
    event = protocol.session_update(agent)
    session = assert_sdk_valid(ADAPTERS[wire][0], event).session
    if wire == "ga":
        audio_input = session.audio.input
        assert audio_input.noise_reduction.type == "far_field"
        assert (audio_input.transcription.model, audio_input.transcription.language) == (
            "gpt-4o-transcribe",
            "fr",
        )
        detection = audio_input.turn_detection
    else:
        assert session.input_audio_noise_reduction.type == "far_field"
        assert session.input_audio_transcription.language == "fr"
        detection = session.turn_detection
    if turn_detection == "semantic_vad":
        assert detection.eagerness == "low"
    else:
        # Beta has no idle timeout: not sent there rather than refused by the service.
        expected = 8000 if wire == "ga" else None
        assert getattr(detection, "idle_timeout_ms", None) == expected
    assert "Bonjour" not in orjson.dumps(event).decode()


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_a_reply_with_instructions_matches_sdk(wire: str) -> None:
    event = protocol.response_create('Greet the caller now. Say exactly this: "Hello!"')
    model = assert_sdk_valid(ADAPTERS[wire][0], event)
    assert model.response.instructions.endswith('"Hello!"')


# --- client events, beta ------------------------------------------------------------------------


@pytest.mark.parametrize("turn_detection", ["server_vad", "semantic_vad"])
@pytest.mark.parametrize(
    ("audio_format", "wire_format"), [("audio/pcmu", "g711_ulaw"), ("audio/pcm", "pcm16")]
)
def test_beta_session_update_matches_sdk(
    audio_format: str, wire_format: str, turn_detection: str
) -> None:
    event = protocol.session_update(
        settings(protocol="beta", audio_format=audio_format, turn_detection=turn_detection)
    )
    session = assert_sdk_valid(BETA_CLIENT, event).session
    assert session.modalities == ["audio", "text"]
    assert session.input_audio_format == wire_format
    assert session.output_audio_format == wire_format
    assert session.voice == "marin"
    assert session.instructions == "Be brief."
    assert session.input_audio_transcription.model == "gpt-4o-mini-transcribe"
    assert session.turn_detection.type == turn_detection


# --- server events ------------------------------------------------------------------------------

AUDIO_EVENT = {"ga": "response.output_audio", "beta": "response.audio"}
TRANSCRIPT_DONE = {
    "ga": "response.output_audio_transcript.done",
    "beta": "response.audio_transcript.done",
}


def parse(wire: str, event: dict[str, Any]) -> Any:
    """Check the fixture is a real server event of that shape, then parse it."""
    assert unknown_keys(ADAPTERS[wire][1].validate_python(event)) == []
    return protocol.parse_server_event(event, wire)


def output_ids() -> dict[str, Any]:
    return {
        "event_id": "ev_1",
        "item_id": "item_A",
        "response_id": "resp_1",
        "output_index": 0,
        "content_index": 0,
    }


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_audio_delta_and_done(wire: str) -> None:
    delta = {"type": f"{AUDIO_EVENT[wire]}.delta", "delta": "//79/A==", **output_ids()}
    assert parse(wire, delta) == AudioDelta(
        item_id="item_A", response_id="resp_1", audio_b64="//79/A=="
    )
    done = {"type": f"{AUDIO_EVENT[wire]}.done", **output_ids()}
    assert parse(wire, done) == protocol.AudioDone(item_id="item_A", response_id="resp_1")


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_agent_transcript_done(wire: str) -> None:
    event = {"type": TRANSCRIPT_DONE[wire], "transcript": "Hello there.", **output_ids()}
    assert parse(wire, event) == AgentTranscriptDone(
        item_id="item_A", response_id="resp_1", text="Hello there."
    )


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_caller_transcript_completed(wire: str) -> None:
    event = {
        "type": "conversation.item.input_audio_transcription.completed",
        "event_id": "ev_2",
        "item_id": "item_U",
        "content_index": 0,
        "transcript": "I want to check my order.",
        "usage": {"type": "duration", "seconds": 1.8},
    }
    assert parse(wire, event) == CallerTranscriptDone(
        item_id="item_U", text="I want to check my order."
    )


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_speech_started_and_stopped(wire: str) -> None:
    started = {
        "type": "input_audio_buffer.speech_started",
        "event_id": "ev_3",
        "item_id": "item_U",
        "audio_start_ms": 1520,
    }
    stopped = {
        "type": "input_audio_buffer.speech_stopped",
        "event_id": "ev_4",
        "item_id": "item_U",
        "audio_end_ms": 3040,
    }
    assert parse(wire, started) == SpeechStarted(item_id="item_U", audio_start_ms=1520)
    # The parser leaves the closing silence in; the session takes it off (test_client).
    assert parse(wire, stopped) == SpeechStopped(
        item_id="item_U", audio_end_ms=3040, speech_end_ms=3040
    )


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_caller_transcription_failed(wire: str) -> None:
    event = {
        "type": "conversation.item.input_audio_transcription.failed",
        "event_id": "ev_2f",
        "item_id": "item_U",
        "content_index": 0,
        "error": {"type": "transcription_error", "code": "audio_unintelligible",
                  "message": "Audio could not be transcribed.", "param": None},
    }  # fmt: skip
    assert parse(wire, event) == CallerTranscriptFailed(
        item_id="item_U", message="Audio could not be transcribed."
    )


def assistant_item(status: str, transcript: str | None, wire: str = "ga") -> dict[str, Any]:
    return {
        "id": "item_A",
        "object": "realtime.item",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [
            {"type": "output_audio" if wire == "ga" else "audio", "transcript": transcript}
        ],
    }


@pytest.mark.parametrize("wire", ["ga", "beta"])
@pytest.mark.parametrize(("status", "complete"), [("completed", True), ("incomplete", False)])
def test_output_item_done_carries_the_text_of_a_reply(wire: str, status: str, complete: bool):
    event = {
        "type": "response.output_item.done",
        "event_id": "ev_oi",
        "response_id": "resp_1",
        "output_index": 0,
        "item": assistant_item(status, "Sure, I can", wire),
    }
    assert parse(wire, event) == AgentTranscriptDone(
        item_id="item_A", response_id="resp_1", text="Sure, I can", complete=complete
    )
    event["item"]["content"][0]["transcript"] = None
    assert parse(wire, event) is None  # no text yet: nothing to report
    event["item"] = {"id": "item_F", "type": "function_call", "call_id": "c1", "name": "f",
                     "arguments": "{}", "status": "completed"}  # fmt: skip
    assert parse(wire, event) is None


def test_a_cancelled_response_reports_its_cut_reply_in_response_done() -> None:
    event = {
        "type": "response.done",
        "event_id": "ev_rd",
        "response": {
            "id": "resp_1",
            "object": "realtime.response",
            "status": "cancelled",
            "status_details": {"type": "cancelled", "reason": "turn_detected"},
            "output": [assistant_item("incomplete", "Thanks, I have")],
        },
    }
    assert parse("ga", event) == ResponseDone(
        response_id="resp_1",
        status="cancelled",
        transcripts=(
            AgentTranscriptDone(
                item_id="item_A", response_id="resp_1", text="Thanks, I have", complete=False
            ),
        ),
    )


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_response_created(wire: str) -> None:
    event = {
        "type": "response.created",
        "event_id": "ev_5",
        "response": {"id": "resp_1", "object": "realtime.response", "status": "in_progress"},
    }
    assert parse(wire, event) == ResponseStarted(response_id="resp_1")


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_response_done_extracts_usage(wire: str) -> None:
    event = {
        "type": "response.done",
        "event_id": "ev_6",
        "response": {
            "id": "resp_1",
            "object": "realtime.response",
            "status": "completed",
            "output": [],
            "usage": {
                "total_tokens": 331,
                "input_tokens": 240,
                "output_tokens": 91,
                "input_token_details": {
                    "text_tokens": 180,
                    "audio_tokens": 60,
                    "cached_tokens": 168,
                    "cached_tokens_details": {"text_tokens": 128, "audio_tokens": 40},
                },
                "output_token_details": {"text_tokens": 21, "audio_tokens": 70},
            },
        },
    }
    if wire == "beta":  # beta reports no split: the cached tokens are taken as text first
        del event["response"]["usage"]["input_token_details"]["cached_tokens_details"]
    assert parse(wire, event) == ResponseDone(
        response_id="resp_1",
        status="completed",
        usage=Usage(
            input_audio_tokens=60,
            output_audio_tokens=70,
            input_text_tokens=180,
            output_text_tokens=21,
            cached_audio_tokens=40 if wire == "ga" else 0,
            cached_text_tokens=128 if wire == "ga" else 168,
        ),
    )


def test_cached_tokens_without_their_split_are_text_first_and_never_exceed_the_input() -> None:
    usage = {
        "input_tokens": 240,
        "input_token_details": {"text_tokens": 180, "audio_tokens": 60, "cached_tokens": 200},
        "output_token_details": {"text_tokens": 0, "audio_tokens": 0},
    }
    parsed = protocol.usage_from(usage)
    assert (parsed.cached_text_tokens, parsed.cached_audio_tokens) == (180, 20)
    assert parsed.cached_input_tokens == 200
    usage["input_token_details"]["cached_tokens_details"] = {"text_tokens": 500, "audio_tokens": 90}
    parsed = protocol.usage_from(usage)
    assert (parsed.cached_text_tokens, parsed.cached_audio_tokens) == (180, 60)


def test_response_done_without_usage_counts_zero() -> None:
    event = {
        "type": "response.done",
        "event_id": "ev_7",
        "response": {"id": "resp_2", "status": "cancelled", "usage": None},
    }
    assert parse("ga", event) == ResponseDone(response_id="resp_2", status="cancelled")
    partial = {"input_tokens": 5, "input_token_details": None, "output_token_details": {}}
    assert protocol.usage_from(partial) == Usage()


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_errors_keep_their_code(wire: str) -> None:
    event = {
        "type": "error",
        "event_id": "ev_8",
        "error": {
            "type": "invalid_request_error",
            "code": "session_expired",
            "message": "Your session hit the maximum duration of 60 minutes.",
            "param": None,
            "event_id": None,
        },
    }
    parsed = parse(wire, event)
    assert parsed == ModelError(
        code=protocol.SESSION_EXPIRED,
        message="Your session hit the maximum duration of 60 minutes.",
    )
    event["error"]["code"] = None
    event["error"]["message"] = "Cancellation failed: no active response found"
    assert parse(wire, event) == ModelError(
        code="invalid_request_error", message="Cancellation failed: no active response found"
    )


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_session_events_are_protocol_level(wire: str) -> None:
    session = {"type": "realtime"} if wire == "ga" else {"id": "sess_1"}
    created = {"type": "session.created", "event_id": "ev_9", "session": session}
    updated = {"type": "session.updated", "event_id": "ev_10", "session": session}
    assert parse(wire, created) == protocol.SessionCreated()
    assert parse(wire, updated) == protocol.SessionUpdated()


def test_event_names_of_the_other_shape_are_ignored() -> None:
    ga_delta = {"type": "response.output_audio.delta", "delta": "AA==", **output_ids()}
    beta_delta = {"type": "response.audio.delta", "delta": "AA==", **output_ids()}
    assert protocol.parse_server_event(ga_delta, "beta") is None
    assert protocol.parse_server_event(beta_delta, "ga") is None


def test_unknown_events_are_none() -> None:
    event = {"type": "rate_limits.updated", "event_id": "ev_11", "rate_limits": []}
    assert parse("ga", event) is None
    assert protocol.parse_server_event({"no": "type"}, "ga") is None


def test_known_event_missing_fields_is_a_model_error() -> None:
    parsed = protocol.parse_server_event({"type": "response.output_audio.delta"}, "ga")
    assert isinstance(parsed, ModelError)
    assert parsed.code == protocol.MALFORMED_EVENT
    assert "response.output_audio.delta" in parsed.message


def test_parse_server_message_decodes_bytes_and_rejects_garbage() -> None:
    raw = orjson.dumps({"type": "response.output_audio.delta", "delta": "AA==", **output_ids()})
    assert protocol.parse_server_message(raw, "ga") == AudioDelta("item_A", "resp_1", "AA==")
    for garbage in (b"not json", b"[1, 2]"):
        parsed = protocol.parse_server_message(garbage, "ga")
        assert isinstance(parsed, ModelError)
        assert parsed.code == protocol.MALFORMED_EVENT


# --- tools --------------------------------------------------------------------------------------

FUNCTION_TOOL = {
    "type": "function",
    "name": "lookup_order",
    "description": "Find an order by its number.",
    "parameters": {
        "type": "object",
        "properties": {"number": {"type": "string"}},
        "required": ["number"],
    },
}
MCP_TOOL = {
    "type": "mcp",
    "server_label": "crm",
    "server_url": "https://crm.example.com/mcp",
    "allowed_tools": ["find_customer"],
    "require_approval": "never",
}


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_the_session_offers_the_agents_tools(wire: str) -> None:
    event = protocol.session_update(
        settings(protocol=wire, session_tools=(FUNCTION_TOOL, MCP_TOOL))
    )
    session = assert_sdk_valid(ADAPTERS[wire][0], event).session
    names = [getattr(tool, "name", None) or tool.server_label for tool in session.tools]
    # MCP servers are a GA feature: a beta session is offered the functions only.
    assert names == (["lookup_order", "crm"] if wire == "ga" else ["lookup_order"])
    assert session.tool_choice == "auto"
    assert "tools" not in protocol.session_update(settings(protocol=wire))["session"]


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_a_tool_result_matches_sdk(wire: str) -> None:
    event = protocol.function_call_output("call_1", '{"status": "shipped"}')
    model = assert_sdk_valid(ADAPTERS[wire][0], event)
    assert (model.item.call_id, model.item.output) == ("call_1", '{"status": "shipped"}')


@pytest.mark.parametrize("wire", ["ga", "beta"])
def test_a_function_call_is_parsed_when_its_arguments_are_done(wire: str) -> None:
    event = {
        "type": "response.function_call_arguments.done",
        "event_id": "ev_f",
        "item_id": "item_F",
        "output_index": 1,
        "response_id": "resp_1",
        "call_id": "call_1",
        "name": "lookup_order",
        "arguments": '{"number": "427"}',
    }
    if wire == "beta":  # beta's event does not name the function: response.done does
        del event["name"]
        assert parse(wire, event) is None
        return
    assert parse(wire, event) == ToolCallRequested(
        call_id="call_1", name="lookup_order", arguments='{"number": "427"}', response_id="resp_1"
    )


def test_response_done_lists_every_function_call_it_made() -> None:
    call = {"id": "item_F", "type": "function_call", "status": "completed",
            "call_id": "call_1", "name": "lookup_order", "arguments": "{}"}  # fmt: skip
    event = {
        "type": "response.done",
        "event_id": "ev_rd",
        "response": {
            "id": "resp_1",
            "object": "realtime.response",
            "status": "completed",
            "output": [assistant_item("completed", "One moment."), call, {**call, "call_id": "c2"}],
        },
    }
    done = parse("ga", event)
    assert [c.call_id for c in done.tool_calls] == ["call_1", "c2"]
    assert [t.text for t in done.transcripts] == ["One moment."]


def test_an_mcp_call_the_service_ran_is_reported_once_done() -> None:
    item = {"id": "item_M", "type": "mcp_call", "server_label": "crm", "name": "find_customer",
            "arguments": '{"phone": "+14155550123"}', "output": '{"name": "Ada"}'}  # fmt: skip
    event = {"type": "conversation.item.done", "event_id": "ev_m", "item": item}
    assert parse("ga", event) == ServiceToolCall(
        item_id="item_M",
        server_label="crm",
        name="find_customer",
        arguments='{"phone": "+14155550123"}',
        output='{"name": "Ada"}',
        error=None,
    )
    message = {"type": "conversation.item.done", "event_id": "ev_n", "item": assistant_item(
        "completed", "Hi")}  # fmt: skip
    assert parse("ga", message) is None
