"""The agent's schema, as strict as the checks: what drf-spectacular cannot see for itself.

The model's validators are functions (agents.validators), so the generator knows none of their
ranges, lengths or codes; the rules between fields live in `agent_cross_field_errors`. This
postprocessing hook writes both into the Agent components from agents.catalog, the single
source the validators read, so a schema-valid agent is one the API accepts (contract/run.py
holds the two together).
"""

from __future__ import annotations

from typing import Any

from agents import catalog, validators
from calls.api.fields import NOT_BLANK_PATTERN

AGENT_COMPONENTS = ("Agent", "AgentRequest", "PatchedAgentRequest")
WRITE_COMPONENTS = ("AgentRequest", "PatchedAgentRequest")
RANGES = {
    "vad_threshold": catalog.VAD_THRESHOLD,
    "vad_prefix_padding_ms": catalog.VAD_PREFIX_PADDING_MS,
    "vad_silence_duration_ms": catalog.VAD_SILENCE_DURATION_MS,
    "idle_timeout_ms": catalog.IDLE_TIMEOUT_MS,
    "max_call_minutes": catalog.MAX_CALL_MINUTES,
}


def _number(value: float, schema: dict[str, Any]) -> float | int:
    return int(value) if schema.get("type") == "integer" else value


def _field_constraints(properties: dict[str, Any]) -> None:
    """What every stored agent satisfies too (the database or the validators keep it)."""
    for name, bounds in RANGES.items():
        field = properties[name]
        field["minimum"] = _number(bounds.low, field)
        field["maximum"] = _number(bounds.high, field)
        field.pop("format", None)  # int64 or double says nothing the range does not
    properties["greeting"]["maxLength"] = catalog.GREETING_MAX_CHARS
    properties["language"]["enum"] = ["", *sorted(catalog.LANGUAGE_CODES)]
    properties["phone_numbers"]["uniqueItems"] = True


def _request_constraints(properties: dict[str, Any]) -> None:
    """What is checked on writes only: a stored agent may predate a lower
    AGENT_INSTRUCTIONS_MAX_CHARS, or come from the environment (the default agent)."""
    properties["instructions"]["maxLength"] = validators.instructions_max_chars()
    for name in ("name", "instructions"):
        # Trimmed, then required: white space alone is refused.
        properties[name]["pattern"] = NOT_BLANK_PATTERN


def _cross_field_rules() -> list[dict[str, Any]]:
    """validators.agent_cross_field_errors on the fields of one request, as JSON Schema."""
    ga_only = list(catalog.GA_ONLY_VOICES)
    previews = [model for model in catalog.REALTIME_MODELS if catalog.model_is_preview(model)]
    return [
        {  # marin and cedar are not voices of the gpt-4o-*-realtime-preview models
            "not": {
                "required": ["model", "voice"],
                "properties": {"model": {"enum": previews}, "voice": {"enum": ga_only}},
            }
        },
        {  # an idle timeout needs server_vad
            "not": {
                "required": ["turn_detection", "idle_timeout_ms"],
                "properties": {
                    "turn_detection": {"enum": ["semantic_vad"]},
                    "idle_timeout_ms": {"type": "integer"},
                },
            }
        },
        {  # the default agent is active
            "not": {
                "required": ["is_default", "is_active"],
                "properties": {"is_default": {"enum": [True]}, "is_active": {"enum": [False]}},
            }
        },
    ]


def agent_schema_constraints(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook (SPECTACULAR_SETTINGS): ranges, lengths, codes and the rules
    between fields on the Agent components."""
    components = result.get("components", {}).get("schemas", {})
    for name in AGENT_COMPONENTS:
        if name in components:
            _field_constraints(components[name]["properties"])
    for name in WRITE_COMPONENTS:
        if name in components:
            _request_constraints(components[name]["properties"])
            components[name]["allOf"] = _cross_field_rules()
    return result
