"""OpenAI GPT-Live wire format: client events built as dicts, server events parsed.

Pure functions, no I/O. Field names follow the SDK types in `openai.types.live`;
tests/realtime/test_live_protocol.py validates every event built here against `ClientEvent`.
Only `realtime.live.session` imports this module: the bridge sees `realtime.model` events.

What differs from the Realtime API, as far as this module is concerned: the whole
configuration goes in the first event (`session.start`), with the conversation so far as
`input` (text messages only); audio is one continuous track each way; transcripts are timed
fragments with no item ids and no done events; tools are delegated to a Responses model whose
stream arrives nested in `response.event`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from realtime.model import (
    AgentConfig,
    ContextItem,
    ModelError,
    RealtimeSettings,
    Role,
    ServiceToolCall,
    ToolCallRequested,
    Usage,
)

# Twilio's media as it is, both ways: no transcoding anywhere on the call.
PCMU_8K: dict[str, Any] = {"type": "audio/pcmu", "rate": 8000}
# `session.start`'s `input`: "at most 128 messages and a configured rendered-token limit (8,192
# by default)" (SessionConfig.input). The newest messages are kept.
MAX_HISTORY_MESSAGES = 128
MAX_HISTORY_TOKENS = 8192
# No tokenizer here: a token is taken as 3 characters (English runs about 4), plus a few per
# message for its framing, so the estimate errs on the side of sending less.
CHARS_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 4
# When the caller hangs up, the line carries this much silence to the model (mu-law's zero is
# 0xFF), so its turn detection ends their last turn and that turn is transcribed: GPT-Live
# has no commit. A second: more than any turn detection waits.
HANG_UP_SILENCE_FRAMES = 50
_SILENCE_FRAME_B64 = base64.b64encode(b"\xff" * 160).decode("ascii")
# The Responses model's standing orders when the agent delegates to it.
BACKEND_INSTRUCTIONS = (
    "You act for a voice agent on a phone call. Use the tools you are given to do what the "
    "caller asked, then answer in one or two short sentences the agent can say aloud."
)

# --- client events --------------------------------------------------------------------------------


def session_start(
    settings: RealtimeSettings,
    history: list[ContextItem],
    *,
    backend_model: str,
) -> dict[str, Any]:
    """The first event of every session: the agent's whole configuration (fixed for the
    session), the conversation so far, and the Responses backend its tools are delegated to."""
    agent = settings.agent
    session: dict[str, Any] = {
        "model": agent.model,
        "instructions": live_instructions(agent),
        "audio": {"format": dict(PCMU_8K), "output": {"voice": agent.voice}},
        "delegation": {
            "type": "responses",
            "responses": {
                "model": backend_model,
                "instructions": f"{BACKEND_INSTRUCTIONS}\n\n{agent.instructions}",
                "tools": [dict(tool) for tool in settings.session_tools],
            },
        },
    }
    messages = history_input(history)
    if messages:
        session["input"] = messages
    return {"type": "session.start", "session": session}


def live_instructions(agent: AgentConfig) -> str:
    """The agent's instructions; GPT-Live has no language setting, so the agent's language (a
    transcription hint for the Realtime API) becomes a line of them."""
    if not agent.language:
        return agent.instructions
    return (
        f"{agent.instructions}\n\nThe caller speaks the language with ISO-639-1 code "
        f"'{agent.language}': speak it too."
    )


def history_input(history: list[ContextItem]) -> list[dict[str, Any]]:
    """The conversation as `input` messages: the newest that fit the service's limits."""
    kept: list[dict[str, Any]] = []
    tokens = 0
    for item in reversed(history):
        text = item.text.strip()
        if not text:
            continue
        cost = TOKENS_PER_MESSAGE + -(-len(text) // CHARS_PER_TOKEN)
        if len(kept) == MAX_HISTORY_MESSAGES or tokens + cost > MAX_HISTORY_TOKENS:
            break
        tokens += cost
        kept.append(_message(item))
    kept.reverse()
    return kept


def _message(item: ContextItem) -> dict[str, Any]:
    part_type = "output_text" if item.role == "assistant" else "input_text"
    return {
        "type": "message",
        "role": item.role,
        "content": [{"type": part_type, "text": item.text.strip()}],
    }


_APPEND_PREFIX = b'{"type":"session.input_audio.append","audio":"'


def input_audio_append(audio_b64: str) -> bytes:
    """Caller audio, serialized by hand: base64 needs no escaping and this runs per frame."""
    return _APPEND_PREFIX + audio_b64.encode("ascii") + b'"}'


def silence_frame_b64() -> str:
    """20 ms of mu-law silence, as Twilio would send it."""
    return _SILENCE_FRAME_B64


def commentary(text: str) -> dict[str, Any]:
    """Something the model should say now (a greeting, a goodbye): general context, so
    `delegation_id` is null (the SDK marks it required, nullable)."""
    return {"type": "session.commentary.append", "content": text, "delegation_id": None}


def function_call_output(call_id: str, output: str) -> dict[str, Any]:
    return {
        "type": "response.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    }


def response_create() -> dict[str, Any]:
    return {"type": "response.create"}


def session_close() -> dict[str, Any]:
    return {"type": "session.close"}


# --- server events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    session_id: str
    expires_at: int  # Unix seconds


@dataclass(frozen=True, slots=True)
class Closed:
    reason: str  # close_requested, expired, content, remote_hangup, connection_lost
    seconds: float


@dataclass(frozen=True, slots=True)
class UsageUpdated:
    seconds: float  # cumulative for this session


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    role: Role
    text: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class BackendResponseDone:
    """A nested Responses response finished: its status and tokens."""

    response_id: str
    status: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class OutputAudio:
    audio_b64: str


LiveEvent = (
    Started
    | Closed
    | UsageUpdated
    | TranscriptDelta
    | OutputAudio
    | BackendResponseDone
    | ToolCallRequested
    | ServiceToolCall
    | ModelError
)


def parse_server_message(raw: bytes | str, responses: dict[str, str]) -> LiveEvent | None:
    """One server message; None for events the bridge has no use for. `responses` maps each
    delegation to its Responses response under way (a nested output item does not name it)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return ModelError("malformed_server_event", f"a server message that is not JSON: {exc}")
    if not isinstance(data, dict):
        return ModelError("malformed_server_event", "a server message that is not an object")
    kind = data.get("type")
    try:
        if kind == "session.output_audio.delta":
            return OutputAudio(data["delta"])
        if kind == "session.input_transcript.delta":
            return _transcript("user", data)
        if kind == "session.output_transcript.delta":
            return _transcript("assistant", data)
        if kind == "response.event":
            return _nested(data, responses)
        if kind == "session.usage.updated":
            return UsageUpdated(float(data["usage"]["seconds"]))
        if kind == "session.started":
            return Started(str(data["session"]["id"]), int(data["session"]["expires_at"]))
        if kind == "session.closed":
            return Closed(str(data["reason"]), float((data.get("usage") or {}).get("seconds", 0)))
        if kind == "error":
            error = data.get("error") or {}
            return ModelError(str(error.get("code") or "error"), str(error.get("message") or ""))
    except (KeyError, TypeError, ValueError) as exc:
        return ModelError("malformed_server_event", f"{kind}: {type(exc).__name__}: {exc}")
    return None


def _transcript(role: Role, data: dict[str, Any]) -> TranscriptDelta:
    return TranscriptDelta(role, str(data["delta"]), int(data["start_ms"]), int(data["end_ms"]))


def _nested(data: dict[str, Any], responses: dict[str, str]) -> LiveEvent | None:
    """The Responses backend's stream: its function calls (to run and answer), the tools it
    ran itself (MCP), and each response's end with its tokens."""
    event = data.get("event")
    if not isinstance(event, dict):
        return None
    delegation = str(data.get("delegation_id") or "")
    kind = event.get("type")
    if kind == "response.created":
        responses[delegation] = str(event["response"]["id"])
        return None
    if kind == "response.output_item.done":
        item = event.get("item") or {}
        if item.get("type") == "function_call":
            return ToolCallRequested(
                call_id=str(item["call_id"]),
                name=str(item["name"]),
                arguments=str(item.get("arguments") or ""),
                response_id=responses.get(delegation, delegation),
            )
        if item.get("type") == "mcp_call":
            return ServiceToolCall(
                item_id=str(item.get("id") or ""),
                server_label=str(item.get("server_label") or ""),
                name=str(item.get("name") or ""),
                arguments=str(item.get("arguments") or ""),
                output=item.get("output"),
                error=item.get("error"),
            )
        return None
    if kind in ("response.completed", "response.failed", "response.incomplete"):
        response = event.get("response") or {}
        response_id = str(response.get("id") or responses.get(delegation, delegation))
        return BackendResponseDone(
            response_id, str(response.get("status") or "completed"), _tokens(response.get("usage"))
        )
    return None


def _tokens(usage: Any) -> Usage:
    """A Responses usage as the bridge's: the backend reads and writes text only."""
    if not isinstance(usage, dict):
        return Usage()
    details = usage.get("input_tokens_details") or {}
    return Usage(
        input_text_tokens=int(usage.get("input_tokens") or 0),
        output_text_tokens=int(usage.get("output_tokens") or 0),
        cached_text_tokens=int(details.get("cached_tokens") or 0),
    )
