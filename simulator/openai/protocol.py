"""OpenAI Realtime protocol facts the stand-in needs: session shapes, formats, errors, usage.

GA is the default; the beta protocol (header `OpenAI-Beta: realtime=v1`) differs in the session
shape (flat `input_audio_format`, `turn_detection`...), in item announcements
(`conversation.item.created` instead of GA's `conversation.item.added`/`.done`) and in the audio
event names (`response.audio.delta` instead of `response.output_audio.delta`).

The field lists below are the `openai` SDK's (the GA `RealtimeResponseCreateParamsParam`, the
turn detection, noise reduction and transcription params, the function and MCP tools and
`tool_choice`; the beta session.update and response.create params), copied rather than imported
because the SDK is a development dependency only; tests/simulator/test_standin_agents.py and
tests/simulator/test_standin_tools.py check they still match it.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

Protocol = Literal["ga", "beta"]
Codec = Literal["pcmu", "pcm"]

REALTIME_PATH = "/v1/realtime"
PCM_RATE = 24000  # the only rate the Realtime API takes for audio/pcm
ULAW_RATE = 8000
# Tokens per second of audio (ARCHITECTURE.md, "Cost"): caller audio in, model audio out.
INPUT_AUDIO_TOKENS_PER_S = 10
OUTPUT_AUDIO_TOKENS_PER_S = 20
SESSION_EXPIRED_MESSAGE = "Your session hit the maximum duration of 60 minutes."
CONVERSATION_ID = "conv_standin"

GA_CODECS: dict[str, Codec] = {"audio/pcmu": "pcmu", "audio/pcm": "pcm"}
BETA_CODECS: dict[str, Codec] = {"g711_ulaw": "pcmu", "pcm16": "pcm"}

# A reply the stand-in speaks from given words (not from its script) lasts this long.
SECONDS_PER_WORD = 0.35
MIN_SPOKEN_S = 0.8

Problem = tuple[str, str, str | None]
"""Why the service refuses a request: (message, code, param), as its `error` event has them."""

# The fields of `response.create`'s `response` (GA RealtimeResponseCreateParamsParam; beta
# ResponseCreateEventParam's Response). Any other key is refused as an unknown parameter.
RESPONSE_FIELDS: dict[Protocol, frozenset[str]] = {
    "ga": frozenset(
        {
            "audio",
            "conversation",
            "input",
            "instructions",
            "max_output_tokens",
            "metadata",
            "output_modalities",
            "parallel_tool_calls",
            "prompt",
            "reasoning",
            "tool_choice",
            "tools",
        }
    ),
    "beta": frozenset(
        {
            "conversation",
            "input",
            "instructions",
            "max_response_output_tokens",
            "metadata",
            "modalities",
            "output_audio_format",
            "temperature",
            "tool_choice",
            "tools",
            "voice",
        }
    ),
}
# Turn detection fields by type. GA has a type per mode (ServerVad, SemanticVad: only server_vad
# has idle_timeout_ms); beta has one TurnDetection type for both modes and no idle timeout.
_BETA_TURN_DETECTION = frozenset(
    {
        "type",
        "create_response",
        "interrupt_response",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "eagerness",
    }
)
TURN_DETECTION_FIELDS: dict[Protocol, dict[str, frozenset[str]]] = {
    "ga": {
        "server_vad": frozenset(
            {
                "type",
                "create_response",
                "interrupt_response",
                "threshold",
                "prefix_padding_ms",
                "silence_duration_ms",
                "idle_timeout_ms",
            }
        ),
        "semantic_vad": frozenset({"type", "create_response", "interrupt_response", "eagerness"}),
    },
    "beta": {"server_vad": _BETA_TURN_DETECTION, "semantic_vad": _BETA_TURN_DETECTION},
}
NOISE_REDUCTION_FIELDS: dict[Protocol, frozenset[str]] = {
    "ga": frozenset({"type", "strength"}),
    "beta": frozenset({"type"}),
}
TRANSCRIPTION_FIELDS: dict[Protocol, frozenset[str]] = {
    "ga": frozenset({"delay", "keywords", "language", "languages", "model", "prompt"}),
    "beta": frozenset({"language", "model", "prompt"}),
}
# Tools (GA RealtimeFunctionToolParam and the Mcp tool of RealtimeToolsConfigUnionParam; beta
# SessionTool): a session or a response offers them in `tools`.
FUNCTION_TOOL_FIELDS = frozenset({"type", "name", "description", "parameters"})
MCP_TOOL_FIELDS = frozenset(
    {
        "type",
        "server_label",
        "server_url",
        "connector_id",
        "tunnel_id",
        "allowed_callers",
        "allowed_tools",
        "authorization",
        "defer_loading",
        "headers",
        "require_approval",
        "server_description",
    }
)
MCP_FILTER_FIELDS = frozenset({"read_only", "tool_names"})
MCP_CONNECTORS = (
    "connector_dropbox",
    "connector_gmail",
    "connector_googlecalendar",
    "connector_googledrive",
    "connector_microsoftteams",
    "connector_outlookcalendar",
    "connector_outlookemail",
    "connector_sharepoint",
)
MCP_CALLERS = ("direct", "programmatic")
APPROVALS = ("always", "never")
TOOL_TYPES: dict[Protocol, tuple[str, ...]] = {"ga": ("function", "mcp"), "beta": ("function",)}
TOOL_CHOICES = ("none", "auto", "required")
# The service's rule for function names.
FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
NOISE_REDUCTION_TYPES = ("near_field", "far_field")
EAGERNESS = ("low", "medium", "high", "auto")
CONVERSATIONS = ("auto", "none")
# What a turn detection of each type says when a field is left out (session.updated shows it).
_TURN_DETECTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "server_vad": {
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "create_response": True,
        "interrupt_response": True,
    },
    "semantic_vad": {"eagerness": "auto", "create_response": True, "interrupt_response": True},
}
# A passage in straight or curly double quotes: what a reply asked for with instructions says.
_QUOTED = re.compile(r'"([^"]*)"|\u201c([^\u201d]*)\u201d')


@dataclass(frozen=True)
class Reply:
    """One scripted model answer: what it says and how long its audio lasts."""

    text: str
    seconds: float


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def error_event(
    message: str, *, code: str | None, param: str | None = None, event_id: str | None = None
) -> dict[str, Any]:
    """An `error` server event; `event_id` names the client event that caused it, if known."""
    return {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
    }


def event_name(protocol: Protocol, ga_name: str) -> str:
    """GA event names; beta spells the audio events without `output_`."""
    if protocol == "ga":
        return ga_name
    return ga_name.replace("response.output_audio", "response.audio")


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """session.update semantics: fields given replace, nested objects merge, null clears.

    An object whose `type` changes (a format, a turn detection) is replaced, not merged: the
    rate of audio/pcm must not cling to audio/pcmu.
    """
    merged = dict(base)
    for key, value in update.items():
        current = merged.get(key)
        if (
            isinstance(value, dict)
            and isinstance(current, dict)
            and value.get("type", current.get("type")) == current.get("type")
        ):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def default_session(protocol: Protocol, model: str) -> dict[str, Any]:
    """The session the service announces in session.created, in the protocol's shape."""
    turn_detection = {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "create_response": True,
        "interrupt_response": True,
    }
    common = {
        "id": new_id("sess"),
        "object": "realtime.session",
        "model": model,
        "expires_at": int(time.time()) + 3600,
        "instructions": "You are a helpful voice assistant.",
        "tools": [],
        "tool_choice": "auto",
    }
    if protocol == "beta":
        return {
            **common,
            "modalities": ["audio", "text"],
            "voice": "alloy",
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "input_audio_transcription": None,
            "turn_detection": turn_detection,
            "input_audio_noise_reduction": None,
            "max_response_output_tokens": "inf",
        }
    pcm = {"type": "audio/pcm", "rate": PCM_RATE}
    return {
        "type": "realtime",
        **common,
        "output_modalities": ["audio"],
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "audio": {
            "input": {
                "format": pcm,
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {**turn_detection, "idle_timeout_ms": None},
            },
            "output": {"format": dict(pcm), "voice": "alloy", "speed": 1.0},
        },
    }


def format_problem(protocol: Protocol, session: dict[str, Any]) -> str | None:
    """Why the session's audio formats are not usable (in the service's words), or None."""
    if protocol == "beta":
        for key in ("input_audio_format", "output_audio_format"):
            if session.get(key) not in BETA_CODECS:
                return f"Invalid value: '{session.get(key)}'. Supported values are: " + ", ".join(
                    f"'{name}'" for name in BETA_CODECS
                )
        return None
    audio = session.get("audio") or {}
    for direction in ("input", "output"):
        fmt = (audio.get(direction) or {}).get("format") or {}
        kind = fmt.get("type")
        if kind not in GA_CODECS:
            return f"Invalid value: '{kind}'. Supported values are: 'audio/pcm', 'audio/pcmu'."
        if kind == "audio/pcm" and fmt.get("rate", PCM_RATE) != PCM_RATE:
            return f"Invalid value: {fmt.get('rate')}. Supported values are: {PCM_RATE}."
    return None


def session_codec(protocol: Protocol, session: dict[str, Any], direction: str) -> Codec:
    """The codec of `direction` ("input" or "output") in a session already validated."""
    if protocol == "beta":
        return BETA_CODECS[session[f"{direction}_audio_format"]]
    return GA_CODECS[session["audio"][direction]["format"]["type"]]


def session_turn_detection(protocol: Protocol, session: dict[str, Any]) -> dict[str, Any] | None:
    if protocol == "beta":
        return session.get("turn_detection")
    return session["audio"]["input"].get("turn_detection")


def session_transcribes(protocol: Protocol, session: dict[str, Any]) -> bool:
    return session_transcription_model(protocol, session) is not None


def session_transcription_model(protocol: Protocol, session: dict[str, Any]) -> str | None:
    """The input transcription model the session asks for, or None if it does not transcribe."""
    if protocol == "beta":
        config = session.get("input_audio_transcription")
    else:
        config = session["audio"]["input"].get("transcription")
    if not config:
        return None
    return str(config.get("model") or "whisper-1") if isinstance(config, dict) else "whisper-1"


def transcription_usage(model: str, audio_ms: float, transcript: str) -> dict[str, Any]:
    """The `usage` of a completed input transcription, billed as its model is.

    whisper-1 is billed by duration; the gpt-4o transcribe models by tokens (audio in, text
    out), as the service reports them.
    """
    if model == "whisper-1":
        return {"type": "duration", "seconds": round(audio_ms / 1000, 3)}
    audio_tokens = round(audio_ms / 1000 * INPUT_AUDIO_TOKENS_PER_S)
    output_tokens = text_tokens(transcript)
    return {
        "type": "tokens",
        "total_tokens": audio_tokens + output_tokens,
        "input_tokens": audio_tokens,
        "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
        "output_tokens": output_tokens,
    }


def transcription_failed_error() -> dict[str, Any]:
    """The `error` of `conversation.item.input_audio_transcription.failed` (the docs' example)."""
    return {
        "type": "transcription_error",
        "code": "audio_unintelligible",
        "message": "The audio could not be transcribed.",
        "param": None,
    }


def codec_rate(codec: Codec) -> int:
    return ULAW_RATE if codec == "pcmu" else PCM_RATE


def text_tokens(text: str) -> int:
    # About four characters a token in English; only the order of magnitude matters here.
    return math.ceil(len(text) / 4) if text else 0


@dataclass(frozen=True)
class InputTokens:
    """A response's input tokens by kind; `cached_*` are the part of each served from cache."""

    text: int
    audio: int
    cached_text: int = 0
    cached_audio: int = 0

    def __post_init__(self) -> None:
        # The service counts cached tokens as a subset of the input tokens of the same kind.
        if not (0 <= self.cached_text <= self.text and 0 <= self.cached_audio <= self.audio):
            raise ValueError(f"cached tokens exceed the input tokens: {self}")

    @property
    def total(self) -> int:
        return self.text + self.audio

    @property
    def cached(self) -> int:
        return self.cached_text + self.cached_audio

    def cached_from(self, previous: InputTokens | None) -> InputTokens:
        """These input tokens with the previous response's input (a prefix of this one's
        context) cached, kind by kind, never more than there is of that kind now."""
        if previous is None:
            return InputTokens(self.text, self.audio)
        return InputTokens(
            self.text,
            self.audio,
            cached_text=min(previous.text, self.text),
            cached_audio=min(previous.audio, self.audio),
        )


def usage(
    protocol: Protocol, *, input_tokens: InputTokens, output_ms: float, transcript: str
) -> dict[str, Any]:
    """A response's `usage` object: input is the whole context, output audio by its length.

    GA splits the cached tokens into text and audio in `cached_tokens_details`; the beta SDK
    types know only `cached_tokens`, so beta sends that alone.
    """
    audio_out = round(output_ms / 1000.0 * OUTPUT_AUDIO_TOKENS_PER_S)
    text_out = text_tokens(transcript)
    input_details: dict[str, Any] = {
        "audio_tokens": input_tokens.audio,
        "text_tokens": input_tokens.text,
        "cached_tokens": input_tokens.cached,
    }
    if protocol == "ga":
        input_details["cached_tokens_details"] = {
            "text_tokens": input_tokens.cached_text,
            "audio_tokens": input_tokens.cached_audio,
        }
    return {
        "total_tokens": input_tokens.total + audio_out + text_out,
        "input_tokens": input_tokens.total,
        "output_tokens": audio_out + text_out,
        "input_token_details": input_details,
        "output_token_details": {"audio_tokens": audio_out, "text_tokens": text_out},
    }


# --- replies asked for with instructions ------------------------------------------------------


def spoken_reply(text: str) -> Reply:
    """A reply saying `text`, its audio as long as speech of that many words would be."""
    seconds = max(MIN_SPOKEN_S, round(len(text.split()) * SECONDS_PER_WORD, 2))
    return Reply(text, seconds)


def quoted_passage(instructions: str) -> str | None:
    """The first non-empty passage of `instructions` in double quotes ("..." or curly), or None.

    The stand-in cannot follow free text, so this is its convention: a reply asked for with
    instructions says exactly the quoted passage when there is one (how the bridge asks for a
    greeting or a goodbye), and the next scripted reply otherwise.
    """
    for match in _QUOTED.finditer(instructions):
        passage = (match.group(1) if match.group(1) is not None else match.group(2)).strip()
        if passage:
            return passage
    return None


# --- validation, in the service's words --------------------------------------------------------


def response_problem(protocol: Protocol, response: object) -> Problem | None:
    """Why the service would refuse `response.create`'s `response` (absent is fine), or None."""
    if response is None:
        return None
    if not isinstance(response, dict):
        return _invalid_type("response", "an object", response)
    for key in response:
        if key not in RESPONSE_FIELDS[protocol]:
            return _unknown_parameter(f"response.{key}")
    instructions = response.get("instructions")
    if "instructions" in response and not isinstance(instructions, str):
        return _invalid_type("response.instructions", "a string", instructions)
    problem = tools_problem(protocol, "response", response)
    if problem is not None:
        return problem
    conversation = response.get("conversation", "auto")
    if not isinstance(conversation, str):
        return _invalid_type("response.conversation", "a string", conversation)
    if conversation not in CONVERSATIONS:
        return _invalid_value("response.conversation", conversation, CONVERSATIONS)
    return _metadata_problem(response.get("metadata"))


def _metadata_problem(metadata: object) -> Problem | None:
    """Metadata is null or an object of strings (it comes back in the response as given)."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return _invalid_type("response.metadata", "an object", metadata)
    for key, value in metadata.items():
        if not isinstance(value, str):
            return _invalid_type(f"response.metadata.{key}", "a string", value)
    return None


def session_problem(protocol: Protocol, session: dict[str, Any]) -> Problem | None:
    """Why the service would refuse the input settings of a merged session (turn detection,
    noise reduction, transcription), or None. Formats are `format_problem`'s."""
    if protocol == "beta":
        prefix, audio_input = "session", session
        keys = ("turn_detection", "input_audio_noise_reduction", "input_audio_transcription")
    else:
        prefix = "session.audio.input"
        audio_input = (session.get("audio") or {}).get("input") or {}
        keys = ("turn_detection", "noise_reduction", "transcription")
    detection, noise, transcription = (audio_input.get(key) for key in keys)
    return (
        _turn_detection_problem(protocol, f"{prefix}.{keys[0]}", detection)
        or _noise_reduction_problem(protocol, f"{prefix}.{keys[1]}", noise)
        or _transcription_problem(protocol, f"{prefix}.{keys[2]}", transcription)
        or tools_problem(protocol, "session", session)
    )


# --- tools ------------------------------------------------------------------------------------


def tools_problem(protocol: Protocol, prefix: str, holder: dict[str, Any]) -> Problem | None:
    """Why the service would refuse the `tools` and `tool_choice` of a session or a response
    (`prefix` "session" or "response"), or None. Absent fields are fine."""
    tools = holder.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return _invalid_type(f"{prefix}.tools", "an array", tools)
        for index, tool in enumerate(tools):
            problem = _tool_problem(protocol, f"{prefix}.tools[{index}]", tool)
            if problem is not None:
                return problem
    if "tool_choice" in holder:
        return _tool_choice_problem(protocol, f"{prefix}.tool_choice", holder["tool_choice"])
    return None


def _tool_problem(protocol: Protocol, path: str, tool: object) -> Problem | None:
    if not isinstance(tool, dict):
        return _invalid_type(path, "an object", tool)
    kind = tool.get("type", "function" if protocol == "beta" else None)
    if kind is None:
        return missing(f"{path}.type")
    if kind not in TOOL_TYPES[protocol]:
        return _invalid_value(f"{path}.type", kind, TOOL_TYPES[protocol])
    if kind == "mcp":
        return _mcp_tool_problem(path, tool)
    return _function_tool_problem(path, tool)


def _function_tool_problem(path: str, tool: dict[str, Any]) -> Problem | None:
    for key in tool:
        if key not in FUNCTION_TOOL_FIELDS:
            return _unknown_parameter(f"{path}.{key}")
    name = tool.get("name")
    if name is None:
        return missing(f"{path}.name")
    if not isinstance(name, str):
        return _invalid_type(f"{path}.name", "a string", name)
    if not FUNCTION_NAME.match(name):
        message = (
            f"Invalid '{path}.name': string does not match pattern. Expected a string that "
            "matches the pattern '^[a-zA-Z0-9_-]+$'."
        )
        return message, "invalid_value", f"{path}.name"
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        return _invalid_type(f"{path}.description", "a string", description)
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        return _invalid_type(f"{path}.parameters", "an object", parameters)
    return None


def _mcp_tool_problem(path: str, tool: dict[str, Any]) -> Problem | None:
    for key in tool:
        if key not in MCP_TOOL_FIELDS:
            return _unknown_parameter(f"{path}.{key}")
    label = tool.get("server_label")
    if label is None:
        return missing(f"{path}.server_label")
    if not isinstance(label, str):
        return _invalid_type(f"{path}.server_label", "a string", label)
    if not any(tool.get(key) for key in ("server_url", "connector_id", "tunnel_id")):
        return missing(f"{path}.server_url")
    for key in ("server_url", "tunnel_id", "authorization", "server_description"):
        if key in tool and not isinstance(tool[key], str):
            return _invalid_type(f"{path}.{key}", "a string", tool[key])
    if "connector_id" in tool and tool["connector_id"] not in MCP_CONNECTORS:
        return _invalid_value(f"{path}.connector_id", tool["connector_id"], MCP_CONNECTORS)
    if "defer_loading" in tool and not isinstance(tool["defer_loading"], bool):
        return _invalid_type(f"{path}.defer_loading", "a boolean", tool["defer_loading"])
    return (
        _string_map_problem(f"{path}.headers", tool.get("headers"))
        or _callers_problem(f"{path}.allowed_callers", tool.get("allowed_callers"))
        or _allowed_tools_problem(f"{path}.allowed_tools", tool.get("allowed_tools"))
        or _approval_problem(f"{path}.require_approval", tool.get("require_approval"))
    )


def _string_map_problem(path: str, value: object) -> Problem | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        return _invalid_type(path, "an object", value)
    for key, item in value.items():
        if not isinstance(item, str):
            return _invalid_type(f"{path}.{key}", "a string", item)
    return None


def _strings_problem(path: str, value: object) -> Problem | None:
    if not isinstance(value, list):
        return _invalid_type(path, "an array", value)
    for index, item in enumerate(value):
        if not isinstance(item, str):
            return _invalid_type(f"{path}[{index}]", "a string", item)
    return None


def _callers_problem(path: str, value: object) -> Problem | None:
    if value is None:
        return None
    problem = _strings_problem(path, value)
    if problem is not None:
        return problem
    assert isinstance(value, list)
    for index, item in enumerate(value):
        if item not in MCP_CALLERS:
            return _invalid_value(f"{path}[{index}]", item, MCP_CALLERS)
    return None


def _filter_problem(path: str, value: object) -> Problem | None:
    """An MCP tool filter: {"read_only": bool, "tool_names": [str]}."""
    if not isinstance(value, dict):
        return _invalid_type(path, "an object", value)
    for key in value:
        if key not in MCP_FILTER_FIELDS:
            return _unknown_parameter(f"{path}.{key}")
    if "read_only" in value and not isinstance(value["read_only"], bool):
        return _invalid_type(f"{path}.read_only", "a boolean", value["read_only"])
    if "tool_names" in value:
        return _strings_problem(f"{path}.tool_names", value["tool_names"])
    return None


def _allowed_tools_problem(path: str, value: object) -> Problem | None:
    if value is None:
        return None
    if isinstance(value, list):
        return _strings_problem(path, value)
    return _filter_problem(path, value)


def _approval_problem(path: str, value: object) -> Problem | None:
    if value is None:
        return None
    if isinstance(value, str):
        return None if value in APPROVALS else _invalid_value(path, value, APPROVALS)
    if not isinstance(value, dict):
        return _invalid_type(path, "a string or an object", value)
    for key, item in value.items():
        if key not in APPROVALS:
            return _unknown_parameter(f"{path}.{key}")
        problem = _filter_problem(f"{path}.{key}", item)
        if problem is not None:
            return problem
    return None


def _tool_choice_problem(protocol: Protocol, path: str, choice: object) -> Problem | None:
    if isinstance(choice, str):
        if protocol == "beta" or choice in TOOL_CHOICES:
            return None  # beta also takes a function's name as a string
        return _invalid_value(path, choice, TOOL_CHOICES)
    if protocol == "beta":
        return _invalid_type(path, "a string", choice)
    if not isinstance(choice, dict):
        return _invalid_type(path, "a string or an object", choice)
    kind = choice.get("type")
    required = {"function": ("type", "name"), "mcp": ("type", "server_label")}
    optional = {"function": (), "mcp": ("name",)}
    if kind not in required:
        return _invalid_value(f"{path}.type", kind, tuple(required))
    for key in choice:
        if key not in required[kind] + optional[kind]:
            return _unknown_parameter(f"{path}.{key}")
    for key in required[kind]:
        if not isinstance(choice.get(key), str):
            return missing(f"{path}.{key}")
    return None


def missing(path: str) -> Problem:
    return f"Missing required parameter: '{path}'.", "missing_required_parameter", path


def unknown_parameter(path: str) -> Problem:
    return _unknown_parameter(path)


def invalid_type(path: str, expected: str, value: object) -> Problem:
    return _invalid_type(path, expected, value)


def with_turn_detection_defaults(protocol: Protocol, session: dict[str, Any]) -> dict[str, Any]:
    """The session with its turn detection's unset fields at their defaults, as the service
    reports them (a new `semantic_vad` says its eagerness, `auto`). A copy: the nested objects
    may be shared with sessions already sent."""
    detection = session_turn_detection(protocol, session)
    if not isinstance(detection, dict):
        return session
    defaults = dict(_TURN_DETECTION_DEFAULTS.get(str(detection.get("type")), {}))
    if protocol == "ga" and detection.get("type") == "server_vad":
        defaults["idle_timeout_ms"] = None
    complete = {**defaults, **detection}
    if protocol == "beta":
        return {**session, "turn_detection": complete}
    audio = session["audio"]
    return {**session, "audio": {**audio, "input": {**audio["input"], "turn_detection": complete}}}


def _turn_detection_problem(protocol: Protocol, path: str, detection: object) -> Problem | None:
    if detection is None:
        return None  # turned off: the client commits and asks for responses itself
    if not isinstance(detection, dict):
        return _invalid_type(path, "an object", detection)
    kind = detection.get("type")
    fields = TURN_DETECTION_FIELDS[protocol]
    if kind not in fields:
        return _invalid_value(f"{path}.type", kind, tuple(fields))
    for key in detection:
        if key not in fields[kind]:
            return _unknown_parameter(f"{path}.{key}")
    for key in ("create_response", "interrupt_response"):
        if key in detection and not isinstance(detection[key], bool):
            return _invalid_type(f"{path}.{key}", "a boolean", detection[key])
    if "eagerness" in detection and detection["eagerness"] not in EAGERNESS:
        return _invalid_value(f"{path}.eagerness", detection["eagerness"], EAGERNESS)
    threshold = detection.get("threshold")
    if threshold is not None and not _is_number(threshold):
        return _invalid_type(f"{path}.threshold", "a decimal", threshold)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        bound = "below minimum" if threshold < 0 else "above maximum"
        code = "decimal_below_min_value" if threshold < 0 else "decimal_above_max_value"
        expected = ">= 0" if threshold < 0 else "<= 1"
        message = (
            f"Invalid '{path}.threshold': decimal {bound} value. Expected a value {expected}, "
            f"but got {threshold} instead."
        )
        return message, code, f"{path}.threshold"
    for key, minimum in (("prefix_padding_ms", 0), ("silence_duration_ms", 0)):
        problem = _integer_problem(f"{path}.{key}", detection.get(key), minimum)
        if problem is not None:
            return problem
    # The product allows 5000 ms and up; the stand-in takes any positive timeout, so tests can
    # wait less than a second for one.
    return _integer_problem(f"{path}.idle_timeout_ms", detection.get("idle_timeout_ms"), 1)


def _noise_reduction_problem(protocol: Protocol, path: str, noise: object) -> Problem | None:
    if noise is None:
        return None  # off
    if not isinstance(noise, dict):
        return _invalid_type(path, "an object", noise)
    for key in noise:
        if key not in NOISE_REDUCTION_FIELDS[protocol]:
            return _unknown_parameter(f"{path}.{key}")
    if noise.get("type") is not None and noise["type"] not in NOISE_REDUCTION_TYPES:
        return _invalid_value(f"{path}.type", noise["type"], NOISE_REDUCTION_TYPES)
    strength = noise.get("strength")
    if strength is not None and not _is_number(strength):
        return _invalid_type(f"{path}.strength", "a decimal", strength)
    return None


def _transcription_problem(protocol: Protocol, path: str, transcription: object) -> Problem | None:
    if transcription is None:
        return None  # off
    if not isinstance(transcription, dict):
        return _invalid_type(path, "an object", transcription)
    for key in transcription:
        if key not in TRANSCRIPTION_FIELDS[protocol]:
            return _unknown_parameter(f"{path}.{key}")
    for key in ("language", "model", "prompt", "delay"):
        value = transcription.get(key)
        if value is not None and not isinstance(value, str):
            return _invalid_type(f"{path}.{key}", "a string", value)
    return None


def _integer_problem(path: str, value: object, minimum: int) -> Problem | None:
    """An optional integer field (absent or null is fine) of at least `minimum`."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        return _invalid_type(path, "an integer", value)
    if value < minimum:
        message = (
            f"Invalid '{path}': integer below minimum value. Expected a value >= {minimum}, "
            f"but got {value} instead."
        )
        return message, "integer_below_min_value", path
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unknown_parameter(path: str) -> Problem:
    return f"Unknown parameter: '{path}'.", "unknown_parameter", path


def _invalid_value(path: str, value: object, supported: tuple[str, ...]) -> Problem:
    names = [f"'{name}'" for name in supported]
    if len(names) <= 2:
        listed = " and ".join(names)
    else:
        listed = ", ".join(names[:-1]) + f", and {names[-1]}"
    return f"Invalid value: '{value}'. Supported values are: {listed}.", "invalid_value", path


def _invalid_type(path: str, expected: str, value: object) -> Problem:
    got = _json_kind(value)
    message = f"Invalid type for '{path}': expected {expected}, but got {got} instead."
    return message, "invalid_type", path


def _json_kind(value: object) -> str:
    """How the service names the JSON type of a value it did not expect."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
