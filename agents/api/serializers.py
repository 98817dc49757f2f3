"""The agent as the API reads and writes it: the model's fields and rules (agents.validators),
its numbers as a list of E.164 strings, and the version, which only the services move.

A GPT-Live agent's realtime-only settings (catalog.REALTIME_ONLY_FIELDS) read as null: they
do not apply to it (the stored values are kept, unused, for a switch back to the Realtime API),
and a write that sets them for a GPT-Live agent is refused."""

from __future__ import annotations

from typing import Any

from django.db import models
from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from agents import catalog, validators
from agents.catalog import AGENT_CONFIG_FIELDS
from agents.models import Agent, PhoneNumber
from agents.tools import tools_json_schema, validate_tools
from calls.api.fields import (
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    StrictSlugField,
)

# The numbers one request may give an agent (a bound on the work one request can cause).
PHONE_NUMBERS_MAX = 100

AGENT_EXAMPLE = {
    "slug": "support",
    "name": "Support line",
    "is_default": False,
    "is_active": True,
    "phone_numbers": ["+14155550100"],
    "instructions": "You are the support assistant of Acme. Be brief; ask for the order number.",
    "greeting": "Hello, this is Acme support. How can I help?",
    "voice": "marin",
    "model": "gpt-realtime",
    "backend": "realtime",
    "language": "en",
    "turn_detection": "server_vad",
    "vad_threshold": 0.6,
    "vad_prefix_padding_ms": 300,
    "vad_silence_duration_ms": 600,
    "vad_eagerness": "auto",
    "noise_reduction": "near_field",
    "idle_timeout_ms": 15000,
    "transcription_model": "gpt-4o-mini-transcribe",
    "max_call_minutes": 30,
}


class PhoneNumbersField(serializers.ListField):
    """The agent's numbers as E.164 strings, oldest first; writing replaces them all."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            # Not trimmed: " +14155550100" does not match the schema's pattern, so it is refused.
            child=StrictCharField(validators=[validators.validate_e164], trim_whitespace=False),
            max_length=PHONE_NUMBERS_MAX,
            **kwargs,
        )

    def to_representation(self, data: Any) -> list[str]:
        numbers: list[PhoneNumber] = list(data.all())  # prefetched by agents.selectors
        return [phone.number for phone in numbers]


@extend_schema_field(tools_json_schema())
class ToolsField(serializers.JSONField):
    """The agent's tools: a list of tool objects, checked by agents.tools.validate_tools."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validators=[validate_tools], **kwargs)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A support agent that greets the caller",
            value=AGENT_EXAMPLE,
            request_only=True,
        ),
        OpenApiExample(
            "A GPT-Live agent",
            value={
                key: value
                for key, value in AGENT_EXAMPLE.items()
                if key not in catalog.REALTIME_ONLY_FIELDS
            }
            | {
                "slug": "support-live",
                "phone_numbers": ["+14155550101"],
                "backend": "gpt-live",
                "model": "gpt-live-1.1",
            },
            request_only=True,
        ),
        OpenApiExample(
            "An agent, as read",
            value={
                **AGENT_EXAMPLE,
                "url": "https://voice.example.com/api/agents/support",
                "version": 3,
                "created_at": "2026-11-02T09:30:00Z",
                "updated_at": "2026-11-28T16:05:12Z",
            },
            response_only=True,
        ),
        OpenApiExample(
            "A GPT-Live agent, as read (the Realtime API's settings are null)",
            value={
                **AGENT_EXAMPLE,
                **dict.fromkeys(catalog.REALTIME_ONLY_FIELDS),
                "slug": "support-live",
                "phone_numbers": ["+14155550101"],
                "backend": "gpt-live",
                "model": "gpt-live-1.1",
                "url": "https://voice.example.com/api/agents/support-live",
                "version": 1,
                "created_at": "2026-12-01T09:30:00Z",
                "updated_at": "2026-12-01T09:30:00Z",
            },
            response_only=True,
        ),
    ]
)
class AgentSerializer(serializers.ModelSerializer):
    # JSON types only: 0 is not the name "0", "true" not a boolean (calls.api.fields).
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.SlugField: StrictSlugField,
        models.BooleanField: StrictBooleanField,
        models.FloatField: StrictFloatField,
        models.PositiveIntegerField: StrictIntegerField,
        models.PositiveSmallIntegerField: StrictIntegerField,
    }

    url = serializers.HyperlinkedIdentityField(view_name="api:agent-detail", lookup_field="slug")
    tools = ToolsField(
        required=False,
        help_text='What the agent can do during a call, e.g. [{"type": "end_call"}, {"type": '
        '"transfer_call", "targets": {"sales": "+15550003333"}, "warm": true}, {"type": '
        '"webhook", "name", "description", "parameters" (JSON Schema), "url", "timeout_s"}, '
        '{"type": "mcp", "server_label", "server_url", "allowed_tools"}, {"type": "python", '
        '"name"}]. Each is checked when saved; a list given replaces them all.',
    )
    # Declared rather than derived: derived, the one-default constraint would become a
    # uniqueness check refusing any new default, where the services move the flag instead.
    is_default = StrictBooleanField(
        required=False,
        help_text="Answers every number without an agent of its own. Setting it unsets the "
        "previous default; unsetting it is refused (make another agent the default).",
    )
    phone_numbers = PhoneNumbersField(
        required=False,
        help_text="E.164 numbers that reach this agent; a list given replaces them all. A number "
        "already on another agent is refused.",
    )
    # Choice fields: the schema lists the names of both backends; the model and the voice are
    # checked against the backend (and the voice against the model) below.
    model = serializers.ChoiceField(
        choices=catalog.MODELS,
        required=False,
        help_text="One of the backend's models: the Realtime API's gpt-realtime... (default "
        "gpt-realtime), or GPT-Live's gpt-live-1 and gpt-live-1.1 (default gpt-live-1.1).",
    )
    voice = serializers.ChoiceField(
        choices=catalog.ALL_VOICES,
        required=False,
        help_text="One of the backend's voices (default alloy; marin for GPT-Live). The Realtime "
        "API has alloy to cedar, and marin and cedar need a gpt-realtime model, not a "
        "gpt-4o-*-realtime-preview; GPT-Live has those and more (beacon, bossa, ... willow).",
    )
    transcription_model = serializers.ChoiceField(
        choices=catalog.TRANSCRIPTION_MODELS,
        required=False,
        help_text="Transcribes the caller (default gpt-4o-mini-transcribe).",
    )
    greeting = StrictCharField(
        required=False,
        allow_blank=True,
        validators=[validators.validate_greeting],
        help_text="Said first, as soon as the call is connected; empty: wait for the caller. At "
        f"most {catalog.GREETING_MAX_CHARS} characters.",
    )
    language = StrictCharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,  # " en" is not a code, as the schema's enum says
        validators=[validators.validate_language],
        help_text="ISO-639-1 code of the caller's language (en, es...), a transcription hint; "
        "empty: detected.",
    )

    class Meta:
        model = Agent
        fields = (
            "slug",
            "url",
            "name",
            "is_default",
            "is_active",
            "version",
            "phone_numbers",
            *AGENT_CONFIG_FIELDS,
            "created_at",
            "updated_at",
        )
        read_only_fields = ("version", "created_at", "updated_at")
        # No uniqueness check here: a slug another agent has is a conflict with the stored
        # agents (409, agents.api.views), not a malformed request (400).
        extra_kwargs = {"slug": {"validators": [], "trim_whitespace": False}}

    def validate_phone_numbers(self, numbers: list[str]) -> list[str]:
        # In the request itself, so a 400 (the schema says uniqueItems); a number another agent
        # has is a 409 (agents.api.views).
        repeated = sorted({number for number in numbers if numbers.count(number) > 1})
        if repeated:
            raise serializers.ValidationError([f"{number} is listed twice." for number in repeated])
        return numbers

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The rules between the fields this request sets (the schema states them too, as
        `not` clauses); a new agent's backend is the Realtime API unless the request says
        otherwise. With the agent's stored fields they are checked by the view: a conflict
        with what is stored is a 409, not a malformed request."""
        values = attrs if self.partial else {"backend": catalog.DEFAULT_BACKEND, **attrs}
        errors = {
            **validators.agent_cross_field_errors(values),
            **validators.realtime_only_errors(values.get("backend"), attrs),
        }
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def to_representation(self, instance: Agent) -> dict[str, Any]:
        data = super().to_representation(instance)
        if instance.backend == "gpt-live":
            # The schema says these may be null (agents.api.schema): not this agent's settings.
            data.update(dict.fromkeys(catalog.REALTIME_ONLY_FIELDS))
        return data
