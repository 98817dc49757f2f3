"""OpenAI Realtime wire format: client events built as dicts, server events parsed to model events.

Pure functions, no I/O. Two shapes of the same protocol are supported: `ga` (the generally
available API, `session.type = "realtime"`, nested `audio` config, `response.output_audio.*`
events) and `beta` (the `OpenAI-Beta: realtime=v1` preview, flat session fields and
`response.audio.*` events). Field names follow the SDK types in `openai.types.realtime` and
`openai.types.beta.realtime`; tests/realtime/test_protocol.py validates every event built here
against them.

Nothing outside `realtime.client` should import this module: the bridge sees only
`realtime.model` events, so another model API can replace this one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from realtime.model import (
    AgentConfig,
    AgentTranscriptDone,
    AudioDelta,
    CallerIdle,
    CallerTranscriptDone,
    CallerTranscriptFailed,
    ContextItem,
    ModelError,
    ModelEvent,
    RealtimeSettings,
    ResponseDone,
    ResponseStarted,
    ServiceToolCall,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequested,
    Usage,
)

WireProtocol = Literal["ga", "beta"]

# The `error` code the service sends shortly before it closes a session at its time limit.
SESSION_EXPIRED = "session_expired"
# Stands in for `error.code` when a known event arrives without the fields we read.
MALFORMED_EVENT = "malformed_server_event"


# --- protocol-level events the client consumes itself (never reach the bridge) -------------------


@dataclass(frozen=True, slots=True)
class SessionCreated:
    """The socket is open and the service created a session with its defaults."""


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    """The service applied our session.update: the session is configured."""


@dataclass(frozen=True, slots=True)
class AudioDone:
    """The last audio delta of an item was sent (in pcm mode the converter is flushed here)."""

    item_id: str
    response_id: str


ServerEvent = ModelEvent | SessionCreated | SessionUpdated | AudioDone


# --- client events --------------------------------------------------------------------------------


def session_update(settings: RealtimeSettings) -> dict[str, Any]:
    """The session.update that configures a fresh session (sent again after every reconnect)."""
    if settings.protocol == "beta":
        return {"type": "session.update", "session": _beta_session(settings)}
    return {"type": "session.update", "session": _ga_session(settings)}


def _ga_audio_format(settings: RealtimeSettings) -> dict[str, Any]:
    if settings.audio_format == "audio/pcm":
        # The service accepts only 24 kHz PCM; saying so keeps the session explicit.
        return {"type": "audio/pcm", "rate": 24000}
    return {"type": "audio/pcmu"}


def _ga_session(settings: RealtimeSettings) -> dict[str, Any]:
    agent = settings.agent
    audio_format = _ga_audio_format(settings)
    audio_input: dict[str, Any] = {
        "format": audio_format,
        "transcription": _transcription(agent),
        "turn_detection": turn_detection(agent, idle_timeout=True),
    }
    if agent.noise_reduction:
        audio_input["noise_reduction"] = {"type": agent.noise_reduction}
    session: dict[str, Any] = {
        "type": "realtime",
        "model": agent.model,
        "instructions": agent.instructions,
        # GA allows one output modality; audio responses carry their transcript anyway.
        "output_modalities": ["audio"],
        "audio": {
            "input": audio_input,
            "output": {"format": audio_format, "voice": agent.voice},
        },
    }
    return _with_tools(session, settings.session_tools)


def _with_tools(session: dict[str, Any], tools: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    if tools:
        session["tools"] = [dict(tool) for tool in tools]
        session["tool_choice"] = "auto"
    return session


def _transcription(agent: AgentConfig) -> dict[str, Any]:
    transcription = {"model": agent.transcription_model}
    if agent.language:
        transcription["language"] = agent.language
    return transcription


def _beta_session(settings: RealtimeSettings) -> dict[str, Any]:
    agent = settings.agent
    audio_format = "pcm16" if settings.audio_format == "audio/pcm" else "g711_ulaw"
    session: dict[str, Any] = {
        # Beta needs both modalities for spoken answers; ["audio"] alone is rejected.
        "modalities": ["audio", "text"],
        "instructions": agent.instructions,
        "voice": agent.voice,
        "input_audio_format": audio_format,
        "output_audio_format": audio_format,
        "input_audio_transcription": _transcription(agent),
        # Beta has no idle timeout: a silent caller is not re-prompted there.
        "turn_detection": turn_detection(agent, idle_timeout=False),
    }
    if agent.noise_reduction:
        session["input_audio_noise_reduction"] = {"type": agent.noise_reduction}
    # Beta knows function tools only: an MCP server is a GA feature.
    functions = tuple(tool for tool in settings.session_tools if tool.get("type") == "function")
    return _with_tools(session, functions)


def turn_detection(agent: AgentConfig, *, idle_timeout: bool) -> dict[str, Any]:
    """Nearly the same shape in GA and beta; server_vad's numbers are always sent, so the
    silence that closes a turn is known here rather than assumed to be the service's default."""
    if agent.turn_detection == "semantic_vad":
        return {"type": "semantic_vad", "eagerness": agent.vad_eagerness}
    detection: dict[str, Any] = {
        "type": "server_vad",
        "threshold": agent.vad_threshold,
        "prefix_padding_ms": agent.vad_prefix_padding_ms,
        "silence_duration_ms": agent.vad_silence_duration_ms,
    }
    if idle_timeout and agent.idle_timeout_ms:
        detection["idle_timeout_ms"] = agent.idle_timeout_ms
    return detection


def closing_silence_ms(agent: AgentConfig) -> int:
    """How much silence `speech_stopped.audio_end_ms` includes: server_vad's configured
    silence; semantic_vad ends turns on meaning, after no fixed silence, so none is assumed."""
    return agent.vad_silence_duration_ms if agent.turn_detection == "server_vad" else 0


def input_audio_append(audio_b64: str) -> bytes:
    """Serialized input_audio_buffer.append (the same in both shapes): the per-frame hot path."""
    return orjson.dumps({"type": "input_audio_buffer.append", "audio": audio_b64})


def input_audio_commit() -> dict[str, Any]:
    """End the caller's turn now: the buffer becomes a user item and is transcribed (a commit
    never asks for a response, even with server VAD)."""
    return {"type": "input_audio_buffer.commit"}


def function_call_output(call_id: str, output: str) -> dict[str, Any]:
    """A tool's output, into the conversation (the same in both shapes)."""
    return {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    }


def item_truncate(item_id: str, audio_end_ms: int) -> dict[str, Any]:
    """Cut an assistant item's audio at what the caller heard (content_index is always 0)."""
    return {
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": audio_end_ms,
    }


def response_cancel() -> dict[str, Any]:
    return {"type": "response.cancel"}


def response_create(instructions: str = "") -> dict[str, Any]:
    """Ask for a reply; `instructions` steer this one reply only (a greeting, a goodbye)."""
    if instructions:
        return {"type": "response.create", "response": {"instructions": instructions}}
    return {"type": "response.create"}


def user_text_item(text: str) -> dict[str, Any]:
    """A user text message added to the conversation (the same in both shapes)."""
    return _message_item("user", "input_text", text)


def context_item(item: ContextItem, protocol: WireProtocol) -> dict[str, Any]:
    """One line of the conversation replayed into a fresh session after a reconnect.

    Assistant lines are replayed as text: neither shape lets a client create assistant audio.
    """
    if item.role == "user":
        return _message_item("user", "input_text", item.text)
    return _message_item("assistant", "output_text" if protocol == "ga" else "text", item.text)


def _message_item(role: str, content_type: str, text: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": role,
            "content": [{"type": content_type, "text": text}],
        },
    }


# --- server events --------------------------------------------------------------------------------


def parse_server_event(data: dict[str, Any], protocol: WireProtocol) -> ServerEvent | None:
    """Map one decoded server event to a typed event; None for events the bridge does not use.

    A known event missing a field we read becomes a ModelError rather than an exception, so one
    odd message cannot end the receive loop of a live call.
    """
    parser = _PARSERS[protocol].get(data.get("type"))  # type: ignore[arg-type]
    if parser is None:
        return None
    try:
        return parser(data)
    except (KeyError, TypeError, AttributeError) as exc:
        return ModelError(code=MALFORMED_EVENT, message=f"{data.get('type')}: {exc!r}"[:300])


def _audio_delta(data: dict[str, Any]) -> AudioDelta:
    return AudioDelta(
        item_id=data["item_id"], response_id=data["response_id"], audio_b64=data["delta"]
    )


def _audio_done(data: dict[str, Any]) -> AudioDone:
    return AudioDone(item_id=data["item_id"], response_id=data["response_id"])


def _agent_transcript(data: dict[str, Any]) -> AgentTranscriptDone:
    return AgentTranscriptDone(
        item_id=data["item_id"], response_id=data["response_id"], text=data["transcript"]
    )


def _caller_transcript(data: dict[str, Any]) -> CallerTranscriptDone:
    return CallerTranscriptDone(item_id=data["item_id"], text=data["transcript"])


def _caller_transcript_failed(data: dict[str, Any]) -> CallerTranscriptFailed:
    error = data.get("error") or {}
    message = error.get("message") or error.get("code") or "transcription failed"
    return CallerTranscriptFailed(item_id=data["item_id"], message=str(message)[:300])


def _output_transcript(item: Any, response_id: str) -> AgentTranscriptDone | None:
    """An assistant message's transcript from an output item (None for other items, or while
    the service has no transcript for it). A status other than completed means cut short."""
    if not isinstance(item, dict) or item.get("type") != "message":
        return None
    if item.get("role") != "assistant":
        return None
    texts = [
        part["transcript"]
        for part in item.get("content") or []
        if isinstance(part, dict) and isinstance(part.get("transcript"), str)
    ]
    if not texts:
        return None
    return AgentTranscriptDone(
        item_id=item["id"],
        response_id=response_id,
        text="".join(texts),
        complete=item.get("status") == "completed",
    )


def _output_item_done(data: dict[str, Any]) -> AgentTranscriptDone | None:
    return _output_transcript(data["item"], data["response_id"])


def _tool_call(data: dict[str, Any]) -> ToolCallRequested | None:
    if "name" not in data:
        return None  # beta names the function only in the output item (response.done)
    return ToolCallRequested(
        call_id=data["call_id"],
        name=data["name"],
        arguments=data["arguments"],
        response_id=data["response_id"],
    )


def _output_tool_call(item: Any, response_id: str) -> ToolCallRequested | None:
    if not isinstance(item, dict) or item.get("type") != "function_call":
        return None
    return ToolCallRequested(
        call_id=item["call_id"],
        name=item["name"],
        arguments=item.get("arguments") or "",
        response_id=response_id,
    )


def _item_done(data: dict[str, Any]) -> ServiceToolCall | None:
    """conversation.item.done: only an MCP call the service finished matters here."""
    item = data["item"]
    if item.get("type") != "mcp_call":
        return None
    error = item.get("error")
    if isinstance(error, dict):
        error = error.get("message") or error.get("type") or "error"
    return ServiceToolCall(
        item_id=item["id"],
        server_label=item.get("server_label") or "",
        name=item.get("name") or "",
        arguments=item.get("arguments") or "",
        output=item.get("output"),
        error=str(error) if error else None,
    )


def _speech_started(data: dict[str, Any]) -> SpeechStarted:
    return SpeechStarted(item_id=data["item_id"], audio_start_ms=int(data["audio_start_ms"]))


def _speech_stopped(data: dict[str, Any]) -> SpeechStopped:
    """speech_end_ms is audio_end_ms here; the session knows the closing silence and takes it
    off (realtime.client), since this parser sees no session settings."""
    end = int(data["audio_end_ms"])
    return SpeechStopped(item_id=data["item_id"], audio_end_ms=end, speech_end_ms=end)


def _caller_idle(data: dict[str, Any]) -> CallerIdle:
    return CallerIdle(item_id=data["item_id"])


def _response_created(data: dict[str, Any]) -> ResponseStarted:
    return ResponseStarted(response_id=data["response"]["id"])


def _response_done(data: dict[str, Any]) -> ResponseDone:
    response = data["response"]
    output = response.get("output") or []
    transcripts = (_output_transcript(item, response["id"]) for item in output)
    calls = (_output_tool_call(item, response["id"]) for item in output)
    return ResponseDone(
        response_id=response["id"],
        status=response.get("status") or "unknown",
        usage=usage_from(response.get("usage")),
        transcripts=tuple(t for t in transcripts if t is not None),
        tool_calls=tuple(c for c in calls if c is not None),
    )


def usage_from(usage: dict[str, Any] | None) -> Usage:
    """Token counts of a response.done (same shape in GA and beta; any part may be null).

    Cached tokens are a subset of the input tokens, split by kind in `cached_tokens_details`.
    Without that split, the cached tokens are taken as text first: the instructions open
    every session's context, so they are the prefix a cache holds first.
    """
    if not usage:
        return Usage()
    given = usage.get("input_token_details") or {}
    produced = usage.get("output_token_details") or {}
    audio_in = given.get("audio_tokens") or 0
    text_in = given.get("text_tokens") or 0
    cached = given.get("cached_tokens") or 0
    split = given.get("cached_tokens_details")
    if split:
        cached_text = split.get("text_tokens") or 0
        cached_audio = split.get("audio_tokens") or 0
    else:
        cached_text = min(cached, text_in)
        cached_audio = cached - cached_text
    return Usage(
        input_audio_tokens=audio_in,
        output_audio_tokens=produced.get("audio_tokens") or 0,
        input_text_tokens=text_in,
        output_text_tokens=produced.get("text_tokens") or 0,
        # Never more cached than there was input of that kind: a cached token billed as
        # uncached input as well would be counted twice.
        cached_audio_tokens=min(cached_audio, audio_in),
        cached_text_tokens=min(cached_text, text_in),
    )


def _error(data: dict[str, Any]) -> ModelError:
    error = data.get("error") or {}
    return ModelError(
        code=error.get("code") or error.get("type") or "error",
        message=error.get("message") or "",
    )


def _session_created(data: dict[str, Any]) -> SessionCreated:
    return SessionCreated()


def _session_updated(data: dict[str, Any]) -> SessionUpdated:
    return SessionUpdated()


_Parser = Callable[[dict[str, Any]], ServerEvent | None]

_COMMON: dict[str, _Parser] = {
    "conversation.item.input_audio_transcription.completed": _caller_transcript,
    "conversation.item.input_audio_transcription.failed": _caller_transcript_failed,
    "response.output_item.done": _output_item_done,
    "response.function_call_arguments.done": _tool_call,
    "input_audio_buffer.speech_started": _speech_started,
    "input_audio_buffer.speech_stopped": _speech_stopped,
    "input_audio_buffer.timeout_triggered": _caller_idle,
    "response.created": _response_created,
    "response.done": _response_done,
    "error": _error,
    "session.created": _session_created,
    "session.updated": _session_updated,
}

_PARSERS: dict[str, dict[str, _Parser]] = {
    "ga": {
        **_COMMON,
        "conversation.item.done": _item_done,
        "response.output_audio.delta": _audio_delta,
        "response.output_audio.done": _audio_done,
        "response.output_audio_transcript.done": _agent_transcript,
    },
    "beta": {
        **_COMMON,
        "response.audio.delta": _audio_delta,
        "response.audio.done": _audio_done,
        "response.audio_transcript.done": _agent_transcript,
    },
}


def parse_server_message(raw: str | bytes, protocol: WireProtocol) -> ServerEvent | None:
    """Decode and parse one frame from the socket (the receive loop's single entry point)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return ModelError(code=MALFORMED_EVENT, message=f"not JSON: {exc}"[:300])
    if type(data) is not dict:
        return ModelError(code=MALFORMED_EVENT, message=f"not an object: {type(data).__name__}")
    return parse_server_event(data, protocol)
