"""Field validators of agents and phone numbers, shared by the model, the admin forms and the
API serializers: one message per rule, whichever edge the bad value came in by.

Module-level functions (not lambdas), so migrations can name them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator

from agents import catalog

DEFAULT_INSTRUCTIONS_MAX_CHARS = 16000

validate_e164 = RegexValidator(
    catalog.E164_PATTERN,
    message="Enter the number in E.164 form: +, country code and number, digits only "
    "(e.g. +14155550100).",
    code="invalid_e164",
)


def instructions_max_chars() -> int:
    """AGENT_INSTRUCTIONS_MAX_CHARS, read when validating (tests and deployments change it)."""
    return int(getattr(settings, "AGENT_INSTRUCTIONS_MAX_CHARS", DEFAULT_INSTRUCTIONS_MAX_CHARS))


def validate_instructions(value: str) -> None:
    limit = instructions_max_chars()
    if len(value) > limit:
        raise ValidationError(
            f"Instructions have at most {limit} characters (this has {len(value)}); "
            "AGENT_INSTRUCTIONS_MAX_CHARS sets the limit.",
            code="max_length",
        )
    if not value.strip():
        # Not "blank": Django would put its own message in place of this one.
        raise ValidationError("Instructions are required.", code="instructions_blank")


def validate_greeting(value: str) -> None:
    if len(value) > catalog.GREETING_MAX_CHARS:
        raise ValidationError(
            f"A greeting has at most {catalog.GREETING_MAX_CHARS} characters "
            f"(this has {len(value)}).",
            code="max_length",
        )


def validate_realtime_model(value: str) -> None:
    """Kept for migration 0001 (the model field now takes either backend's: validate_model)."""
    if value not in catalog.REALTIME_MODELS:
        raise ValidationError(
            f"Unknown realtime model {value!r}. Use one of: {', '.join(catalog.REALTIME_MODELS)}.",
            code="unknown_model",
        )


def validate_model(value: str) -> None:
    """A known model of either backend (which backend has it is checked with the backend:
    agent_cross_field_errors)."""
    if value not in catalog.MODELS:
        raise ValidationError(
            f"Unknown model {value!r}. The OpenAI Realtime API has: "
            f"{', '.join(catalog.REALTIME_MODELS)}; OpenAI GPT-Live has: "
            f"{', '.join(catalog.LIVE_MODELS)}.",
            code="unknown_model",
        )


def validate_voice(value: str) -> None:
    """A known voice at all (which backend and model have it is checked with them:
    agent_cross_field_errors)."""
    if value not in catalog.ALL_VOICES:
        raise ValidationError(
            f"Unknown voice {value!r}. Use one of: {', '.join(catalog.ALL_VOICES)}.",
            code="unknown_voice",
        )


def validate_transcription_model(value: str) -> None:
    if value not in catalog.TRANSCRIPTION_MODELS:
        raise ValidationError(
            f"Unknown transcription model {value!r}. Use one of: "
            f"{', '.join(catalog.TRANSCRIPTION_MODELS)}.",
            code="unknown_transcription_model",
        )


def validate_language(value: str) -> None:
    if value and value not in catalog.LANGUAGE_CODES:
        raise ValidationError(
            f"{value!r} is not an ISO-639-1 language code: use two lowercase letters such as "
            "en, es or fr, or leave it empty to let the service detect the language.",
            code="invalid_language",
        )


def _range_validator(name: str, bounds: catalog.Range) -> Any:
    def validate(value: float | None) -> None:
        if value is not None and not bounds.low <= value <= bounds.high:
            raise ValidationError(
                f"Must be from {bounds.text()} (got {value:g}).", code="out_of_range"
            )

    validate.__name__ = validate.__qualname__ = name
    return validate


validate_vad_threshold = _range_validator("validate_vad_threshold", catalog.VAD_THRESHOLD)
validate_vad_prefix_padding_ms = _range_validator(
    "validate_vad_prefix_padding_ms", catalog.VAD_PREFIX_PADDING_MS
)
validate_vad_silence_duration_ms = _range_validator(
    "validate_vad_silence_duration_ms", catalog.VAD_SILENCE_DURATION_MS
)
validate_idle_timeout_ms = _range_validator("validate_idle_timeout_ms", catalog.IDLE_TIMEOUT_MS)
validate_max_call_minutes = _range_validator("validate_max_call_minutes", catalog.MAX_CALL_MINUTES)


def _backend_errors(values: Mapping[str, Any]) -> dict[str, list[str]]:
    """The model and the voice against the backend (and the voice against a realtime model),
    each judged only when the values it needs are there and known."""
    errors: dict[str, list[str]] = {}
    backend, model, voice = values.get("backend"), values.get("model"), values.get("voice")
    label = catalog.backend_label(str(backend))
    if backend in catalog.BACKENDS and model in catalog.MODELS:
        models = catalog.models_for_backend(backend)
        if model not in models:
            errors["model"] = [
                f"{model} is not a model of {label} (backend {backend}). Use one of: "
                f"{', '.join(models)}."
            ]
    if voice not in catalog.ALL_VOICES:
        return errors
    if backend in catalog.BACKENDS and voice not in catalog.voices_for_backend(backend):
        errors["voice"] = [
            f"The voice {voice!r} is not one of {label} (backend {backend}). Use one of: "
            f"{', '.join(catalog.voices_for_backend(backend))}."
        ]
    elif model in catalog.REALTIME_MODELS and backend != "gpt-live":
        voices = catalog.voices_for_model(model)
        if voice not in voices:
            errors["voice"] = [
                f"The voice {voice!r} is not available with {model}. Use one of: "
                f"{', '.join(voices)}."
            ]
    return errors


def agent_cross_field_errors(values: Mapping[str, Any]) -> dict[str, list[str]]:
    """The rules that read two fields at once, by the field to fix: the model must be one of
    the backend's, the voice one the backend and the model have, an idle timeout needs
    server_vad (semantic_vad has none), the default agent must be active. Values that are
    missing or already invalid on their own are not judged again."""
    errors = _backend_errors(values)
    if values.get("idle_timeout_ms") is not None and values.get("turn_detection") == "semantic_vad":
        errors["idle_timeout_ms"] = [
            "An idle timeout works with server_vad turn detection only: clear it, or use "
            "server_vad."
        ]
    if values.get("is_default") and values.get("is_active") is False:
        errors["is_active"] = [
            "The default agent must be active: make another agent the default first."
        ]
    return errors


def realtime_only_errors(backend: str | None, given: Iterable[str]) -> dict[str, list[str]]:
    """A write that sets settings GPT-Live has no use for, for an agent whose backend is (or
    becomes) gpt-live: one error per such field. (Not a rule of the stored row: a GPT-Live
    agent keeps the values it had, unused. Only a write that sets them is refused.)"""
    if backend != "gpt-live":
        return {}
    return {
        name: [
            f"{name} does not apply to GPT-Live agents (backend gpt-live), which take turns "
            "and transcribe by themselves: leave it out."
        ]
        for name in catalog.REALTIME_ONLY_FIELDS
        if name in given
    }
