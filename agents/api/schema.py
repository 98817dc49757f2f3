"""The agent's schema, as strict as the checks: what drf-spectacular cannot see for itself.

The model's validators are functions (agents.validators), so the generator knows none of their
ranges, lengths or codes; the rules between fields live in `agent_cross_field_errors`. This
postprocessing hook writes both into the Agent components from agents.catalog, the single
source the validators read, so a schema-valid agent is one the API accepts (contract/run.py
holds the two together). The rules of an agent's backend are among them: its model and voice,
and the Realtime API's settings a GPT-Live agent refuses (`realtime_only_errors`), which the
Agent (read) component also shows as nullable: a GPT-Live agent reads them as null.
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


def _is(name: str, values: list[Any]) -> dict[str, Any]:
    """JSON Schema: the request sets `name`, to one of `values`."""
    return {"required": [name], "properties": {name: {"enum": values}}}


def _both(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": [*first["required"], *second["required"]],
        "properties": {**first["properties"], **second["properties"]},
    }


def _cross_field_rules(*, create: bool) -> list[dict[str, Any]]:
    """validators.agent_cross_field_errors and realtime_only_errors on the fields of one
    request, as JSON Schema. A new agent without `backend` is a Realtime API agent; a change
    without it is judged against the stored backend (a 409, which the schema cannot know)."""
    ga_only = list(catalog.GA_ONLY_VOICES)
    previews = [model for model in catalog.REALTIME_MODELS if catalog.model_is_preview(model)]
    live, realtime = _is("backend", ["gpt-live"]), _is("backend", ["realtime"])
    live_models, realtime_models = list(catalog.LIVE_MODELS), list(catalog.REALTIME_MODELS)
    live_only_voices = list(catalog.LIVE_ONLY_VOICES)
    rules: list[dict[str, Any]] = [
        # marin and cedar are not voices of the gpt-4o-*-realtime-preview models
        {"not": _both(_is("model", previews), _is("voice", ga_only))},
        # the Realtime API's models have none of GPT-Live's own voices
        {"not": _both(_is("model", realtime_models), _is("voice", live_only_voices))},
        # a GPT-Live agent has a GPT-Live model
        {"not": _both(live, _is("model", realtime_models))},
    ]
    if create:  # no backend: the Realtime API
        rules += [
            {"not": {**_is("model", live_models), "not": live}},
            {"not": {**_is("voice", live_only_voices), "not": live}},
        ]
    else:
        rules += [
            {"not": _both(realtime, _is("model", live_models))},
            {"not": _both(realtime, _is("voice", live_only_voices))},
        ]
    rules += [
        {  # the Realtime API's settings are not GPT-Live's
            "not": {
                **live,
                "anyOf": [{"required": [name]} for name in catalog.REALTIME_ONLY_FIELDS],
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
    return rules


NULL_ENUM = {"$ref": "#/components/schemas/NullEnum"}
NOT_FOR_LIVE = "null for a GPT-Live agent (backend gpt-live): the setting does not apply to it."


def _nullable(field: dict[str, Any]) -> None:
    """The field may be null too, the way drf-spectacular writes it (OpenAPI 3.0)."""
    if "type" in field:
        field["nullable"] = True
    elif "oneOf" in field:
        if NULL_ENUM not in field["oneOf"]:
            field["oneOf"].append(NULL_ENUM)
    elif "$ref" in field:
        field["oneOf"] = [{"$ref": field.pop("$ref")}, NULL_ENUM]
    elif "allOf" in field and len(field["allOf"]) == 1:
        field["oneOf"] = [field.pop("allOf")[0], NULL_ENUM]
    else:  # pragma: no cover - a shape this hook does not know: fail the schema's build
        raise ValueError(f"cannot make {field} nullable")
    description = field.get("description", "")
    field["description"] = f"{description}\n\n{NOT_FOR_LIVE}".strip()


def _realtime_only_nullable(properties: dict[str, Any], components: dict[str, Any]) -> None:
    """A GPT-Live agent reads its realtime-only settings as null (AgentSerializer)."""
    for name in catalog.REALTIME_ONLY_FIELDS:
        _nullable(properties[name])
    components.setdefault("NullEnum", {"enum": [None]})


def agent_schema_constraints(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook (SPECTACULAR_SETTINGS): ranges, lengths, codes and the rules
    between fields on the Agent components; the realtime-only settings nullable as read."""
    components = result.get("components", {}).get("schemas", {})
    for name in AGENT_COMPONENTS:
        if name in components:
            _field_constraints(components[name]["properties"])
    if "Agent" in components:
        _realtime_only_nullable(components["Agent"]["properties"], components)
    for name in WRITE_COMPONENTS:
        if name in components:
            _request_constraints(components[name]["properties"])
            components[name]["allOf"] = _cross_field_rules(create=name == "AgentRequest")
    return result
