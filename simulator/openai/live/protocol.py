"""GPT-Live protocol facts the stand-in needs: the path, formats, the session resource, and
the checks of client events, in the service's words.

Client events are parsed with the `openai` SDK's own types (`openai.types.live.ClientEvent`):
the SDK is a development dependency, and so is this stand-in (`make run` installs both). The
SDK's models accept unknown keys, but the service's configuration is strict (it "rejects
unknown fields"), so every key a model only took as an extra is refused as an unknown
parameter. What the types cannot say (a rate G.711 does not have, a voice that does not exist,
more history than the service takes) is checked here too.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from openai.types.live import BuiltInVoice, ClientEvent
from pydantic import BaseModel, TypeAdapter, ValidationError

from simulator.openai import protocol as rt
from simulator.openai.protocol import Problem

LIVE_PATH = "/v1/live/sessions"
MODEL_PREFIX = "gpt-live"
DEFAULT_VOICE = "marin"
# The guide's example format, and what a session without audio.format gets here.
DEFAULT_FORMAT: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}
G711_RATE = 8000
# `input` history: "at most 128 messages and a configured rendered-token limit (8,192 by
# default)" (SessionConfig.input).
MAX_INPUT_MESSAGES = 128
MAX_INPUT_TOKENS = 8192
VOICES: frozenset[str] = frozenset(get_args(BuiltInVoice))
CloseReason = Literal["close_requested", "expired", "content", "remote_hangup", "connection_lost"]
Codec = Literal["pcmu", "pcm"]

# pydantic's error types, as the service names the JSON type it expected.
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


@dataclass(frozen=True)
class AudioFormat:
    """A session's audio format, both directions (GPT-Live has one format for both)."""

    codec: Codec
    rate: int

    @property
    def sample_bytes(self) -> int:
        return 1 if self.codec == "pcmu" else 2


@functools.cache
def _client_events() -> TypeAdapter[Any]:
    # Built once: the union holds every Responses input item, slow to build.
    return TypeAdapter(ClientEvent)


def parse_client_event(payload: dict[str, Any]) -> tuple[BaseModel | None, Problem | None]:
    """The SDK's model of a client event, or why the service would refuse it."""
    try:
        model = _client_events().validate_python(payload)
    except ValidationError as exc:
        return None, _validation_problem(exc, payload)
    extra = _first_unknown_key(model)
    if extra is not None:
        return None, rt.unknown_parameter(extra)
    return model, None


def _validation_problem(exc: ValidationError, payload: dict[str, Any]) -> Problem:
    error = exc.errors()[0]
    kind = str(error["type"])
    path, value = _payload_path(payload, error["loc"], missing=kind == "missing")
    if kind in ("union_tag_not_found", "missing"):
        return rt.missing(path or "type")
    if kind == "union_tag_invalid":
        return f"Invalid value: '{payload.get('type')}'.", "invalid_value", "type"
    if kind in _EXPECTED:
        return rt.invalid_type(path, _EXPECTED[kind], value)
    return f"Invalid value for '{path}': {error['msg']}.", "invalid_value", path


def _payload_path(
    payload: dict[str, Any], loc: tuple[int | str, ...], *, missing: bool
) -> tuple[str, Any]:
    """The dotted path (as the service names params) of a pydantic error location, and the
    value there. pydantic puts union branch names (tags, types) among the keys: only the
    steps that exist in the payload are kept, and a missing key at the end."""
    path: list[str] = []
    current: Any = payload
    for step in loc:
        if isinstance(current, Mapping) and step in current:
            path.append(str(step))
            current = current[step]
        elif isinstance(current, list) and isinstance(step, int) and step < len(current):
            if path:
                path[-1] += f"[{step}]"
            else:
                path.append(f"[{step}]")
            current = current[step]
    if missing and loc and isinstance(current, Mapping) and loc[-1] not in current:
        path.append(str(loc[-1]))
    return ".".join(path), current


def _first_unknown_key(model: BaseModel, path: str = "") -> str | None:
    """The first key, as a dotted path, that a model accepted only as an extra."""
    for key in model.model_extra or {}:
        return f"{path}.{key}".lstrip(".")
    for name in type(model).model_fields:
        found = _unknown_in(getattr(model, name), f"{path}.{name}")
        if found is not None:
            return found
    return None


def _unknown_in(value: Any, path: str) -> str | None:
    if isinstance(value, BaseModel):
        return _first_unknown_key(value, path)
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _unknown_in(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


# --- session.start ------------------------------------------------------------------------------


def session_problem(session: dict[str, Any]) -> Problem | None:
    """What the service refuses in a session.start configuration that the SDK's types let
    through (the types have already been checked)."""
    model = str(session.get("model") or "")
    if not model.startswith(MODEL_PREFIX):
        return (
            f"The model '{model}' does not exist or you do not have access to it.",
            "model_not_found",
            "session.model",
        )
    return (
        _format_problem(_audio(session).get("format"))
        or _voice_problem(_audio(session).get("output"))
        or _input_problem(session.get("input"))
    )


def _audio(session: Mapping[str, Any]) -> dict[str, Any]:
    audio = session.get("audio")
    return audio if isinstance(audio, dict) else {}


def _format_problem(audio_format: object) -> Problem | None:
    if not isinstance(audio_format, dict):
        return None
    kind = audio_format.get("type")
    if kind in ("audio/pcmu", "audio/pcma") and audio_format.get("rate") != G711_RATE:
        path = "session.audio.format.rate"
        return f"Invalid value for '{path}': G.711 audio uses 8000 Hz.", "invalid_value", path
    if kind == "audio/pcma":
        # The stand-in has no A-law codec (the bridge speaks mu-law): refused plainly.
        return (
            "The GPT-Live stand-in does not support audio/pcma; use audio/pcmu or audio/pcm.",
            "unsupported_value",
            "session.audio.format.type",
        )
    return None


def _voice_problem(output: object) -> Problem | None:
    voice = output.get("voice") if isinstance(output, dict) else None
    if isinstance(voice, str) and voice not in VOICES:
        path = "session.audio.output.voice"
        return (
            f"Invalid value: '{voice}'. Supported values are the built-in voices.",
            ("invalid_value"),
            path,
        )
    return None


def _input_problem(history: object) -> Problem | None:
    if not isinstance(history, list):
        return None
    if len(history) > MAX_INPUT_MESSAGES:
        message = f"'session.input' has {len(history)} messages; at most 128 are allowed."
        return message, "invalid_value", "session.input"
    tokens = 0
    for index, item in enumerate(history):
        content = item.get("content") or []
        if len(content) != 1:
            path = f"session.input[{index}].content"
            return f"'{path}' must have exactly one text part.", "invalid_value", path
        tokens += rt.text_tokens(str(content[0].get("text") or ""))
    if tokens > MAX_INPUT_TOKENS:
        message = f"'session.input' renders to {tokens} tokens; at most 8192 are allowed."
        return message, "invalid_value", "session.input"
    return None


def audio_format(session: Mapping[str, Any]) -> AudioFormat:
    """The session's (resolved) audio format."""
    chosen = _audio(session).get("format") or DEFAULT_FORMAT
    codec: Codec = "pcmu" if chosen["type"] == "audio/pcmu" else "pcm"
    return AudioFormat(codec, int(chosen["rate"]))


def resolved_session(session: dict[str, Any], *, session_id: str, expires_at: int) -> dict:
    """The session resource the service answers with: the configuration as given, server
    defaults filled in (format, voice), the id, the expiry and the status."""
    audio = _audio(session)
    output = audio.get("output") if isinstance(audio.get("output"), dict) else {}
    resolved = {
        **session,
        "id": session_id,
        "expires_at": expires_at,
        "status": "active",
        "audio": {
            **audio,
            "format": audio.get("format") or dict(DEFAULT_FORMAT),
            "output": {**output, "voice": output.get("voice") or DEFAULT_VOICE},
        },
    }
    resolved.setdefault("store", False)
    return resolved


def expires_at(limit_s: float) -> int:
    """session.started's `expires_at`: Unix seconds, rounded up so it is never early."""
    return math.ceil(time.time() + limit_s)


# --- session.update -----------------------------------------------------------------------------


def merge_update(
    current: dict[str, Any], update: dict[str, Any]
) -> tuple[dict | None, Problem | None]:
    """The session after a session.update (delegation and triggers only: the SDK's types
    refuse anything else as unknown), or why the service refuses it."""
    merged = dict(current)
    if "triggers" in update:
        merged["triggers"] = update["triggers"]
    if "delegation" not in update:
        return merged, None
    wanted = update["delegation"]
    existing = current.get("delegation")
    existing_type = existing.get("type") if isinstance(existing, dict) else None
    wanted_type = wanted.get("type") if isinstance(wanted, dict) else None
    if wanted_type != existing_type:
        path = "session.delegation.type"
        return None, (
            f"The delegation type cannot change (it is {existing_type or 'null'}).",
            "invalid_value",
            path,
        )
    if isinstance(wanted, dict) and isinstance(existing, dict):
        merged["delegation"] = _merge_delegation(existing, wanted)
    return merged, None


def _merge_delegation(existing: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    # "Omitted settings retain their current values", one level into the backend's settings.
    merged = {
        **existing,
        **{k: v for k, v in wanted.items() if k not in ("responses", "decisions")},
    }
    for backend in ("responses", "decisions"):
        if isinstance(wanted.get(backend), dict):
            merged[backend] = {**(existing.get(backend) or {}), **wanted[backend]}
    return merged


# --- server events ------------------------------------------------------------------------------


def error_event(
    message: str, *, code: str, param: str | None = None, client_event_id: str | None = None
) -> dict[str, Any]:
    """An `error` server event (Live's shape: `client_event_id`, not Realtime's `event_id`)."""
    error: dict[str, Any] = {"type": "invalid_request_error", "code": code, "message": message}
    if param is not None:
        error["param"] = param
    event: dict[str, Any] = {"type": "error", "error": error}
    if client_event_id is not None:
        error["client_event_id"] = client_event_id
        event["client_event_id"] = client_event_id
    return event


def delegation_tools(session: Mapping[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """The Responses backend's tools and tool_choice, or ([], "none") without Responses
    delegation (client or Decisions delegation: the stand-in never delegates to those)."""
    delegation = session.get("delegation")
    if not isinstance(delegation, dict) or delegation.get("type") != "responses":
        return [], "none"
    responses = delegation.get("responses") or {}
    tools = [tool for tool in responses.get("tools") or [] if isinstance(tool, dict)]
    return tools, responses.get("tool_choice") or "auto"


def backend_model(session: Mapping[str, Any]) -> str:
    delegation = session.get("delegation") or {}
    return str((delegation.get("responses") or {}).get("model") or "")


def backend_instructions(session: Mapping[str, Any]) -> str:
    delegation = session.get("delegation") or {}
    return str((delegation.get("responses") or {}).get("instructions") or "")
