"""The lists agents are validated against are the `openai` SDK's, and the fields agents hand
to the bridge are realtime.model.AgentConfig's: neither can drift without a test failing."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from agents import catalog
from realtime.model import AgentConfig

# A development dependency: the product runs without it, the check needs it.
openai_realtime = pytest.importorskip("openai.types.realtime")


def literal_values(annotation: object) -> set[str]:
    """Every string of the Literal types inside a (possibly nested) Union."""
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    values: set[str] = set()
    for argument in typing.get_args(annotation):
        values |= literal_values(argument)
    return values


def field_type(typed_dict: type, name: str) -> object:
    return typing.get_type_hints(typed_dict)[name]


def test_the_models_are_the_sdk_session_models() -> None:
    sdk = literal_values(field_type(openai_realtime.RealtimeSessionCreateRequestParam, "model"))
    assert sdk, "the SDK no longer types the session's model as a Literal"
    assert set(catalog.REALTIME_MODELS) == sdk, (
        "agents/catalog.py REALTIME_MODELS differs from the openai SDK: "
        f"missing {sorted(sdk - set(catalog.REALTIME_MODELS))}, "
        f"unknown to the SDK {sorted(set(catalog.REALTIME_MODELS) - sdk)}"
    )
    assert len(catalog.REALTIME_MODELS) == len(set(catalog.REALTIME_MODELS))


def test_the_voices_are_the_sdk_output_voices() -> None:
    from openai.types.realtime.realtime_audio_config_output_param import (
        RealtimeAudioConfigOutputParam,
    )

    sdk = literal_values(field_type(RealtimeAudioConfigOutputParam, "voice"))
    assert set(catalog.VOICES) == sdk
    assert set(catalog.GA_ONLY_VOICES) <= sdk


def test_the_transcription_models_are_the_sdk_ones() -> None:
    sdk = literal_values(field_type(openai_realtime.AudioTranscriptionParam, "model"))
    assert set(catalog.TRANSCRIPTION_MODELS) == sdk


def test_the_defaults_are_in_the_lists() -> None:
    defaults = AgentConfig()
    assert defaults.model == catalog.DEFAULT_MODEL in catalog.REALTIME_MODELS
    assert defaults.voice == catalog.DEFAULT_VOICE in catalog.VOICES
    assert defaults.transcription_model == catalog.DEFAULT_TRANSCRIPTION_MODEL
    assert catalog.DEFAULT_TRANSCRIPTION_MODEL in catalog.TRANSCRIPTION_MODELS


@pytest.mark.parametrize(
    ("model", "has_marin"),
    [
        ("gpt-realtime", True),
        ("gpt-realtime-mini-2025-12-15", True),
        ("gpt-audio-1.5", True),
        ("gpt-4o-realtime-preview", False),
        ("gpt-4o-mini-realtime-preview-2024-12-17", False),
    ],
)
def test_the_preview_models_lack_marin_and_cedar(model: str, has_marin: bool) -> None:
    voices = catalog.voices_for_model(model)
    assert ("marin" in voices, "cedar" in voices) == (has_marin, has_marin)
    assert "alloy" in voices


def test_every_preview_model_in_the_list_is_recognised() -> None:
    previews = {m for m in catalog.REALTIME_MODELS if "preview" in m}
    assert previews and all(catalog.model_is_preview(m) for m in previews)


def test_the_model_facing_fields_are_agent_configs_fields() -> None:
    assert tuple(f.name for f in dataclasses.fields(AgentConfig)) == catalog.AGENT_CONFIG_FIELDS


def test_agent_config_defaults_match_the_agent_model_defaults() -> None:
    from agents.models import Agent

    defaults = AgentConfig().to_dict()  # JSON-shaped, as the agent's fields are
    for name in catalog.AGENT_CONFIG_FIELDS:
        field = Agent._meta.get_field(name)
        if field.has_default():
            assert field.get_default() == defaults[name], name


def test_language_codes_are_iso_639_1() -> None:
    assert len(catalog.LANGUAGE_CODES) == 183
    assert {"en", "es", "fr", "de", "zh", "ja", "pt"} <= catalog.LANGUAGE_CODES
    assert all(len(code) == 2 and code.islower() for code in catalog.LANGUAGE_CODES)


# --- GPT-Live ----------------------------------------------------------------------------------


def test_the_live_models_are_the_sdk_session_models() -> None:
    from openai.types.live.session_config import SessionConfig

    # Union[str, Literal[...]]: the Literal's names are the ones the SDK knows.
    sdk = literal_values(SessionConfig.model_fields["model"].annotation)
    assert sdk, "the SDK no longer names GPT-Live's models"
    assert set(catalog.LIVE_MODELS) == sdk, (
        "agents/catalog.py LIVE_MODELS differs from the openai SDK: "
        f"missing {sorted(sdk - set(catalog.LIVE_MODELS))}, "
        f"unknown to the SDK {sorted(set(catalog.LIVE_MODELS) - sdk)}"
    )
    assert catalog.DEFAULT_LIVE_MODEL == "gpt-live-1.1" in catalog.LIVE_MODELS


def test_the_live_voices_are_the_sdk_built_in_voices() -> None:
    from openai.types.live import BuiltInVoice

    sdk = literal_values(BuiltInVoice)
    assert set(catalog.LIVE_VOICES) == sdk
    assert len(catalog.LIVE_VOICES) == len(sdk)
    assert catalog.DEFAULT_LIVE_VOICE == "marin" in catalog.LIVE_VOICES


def test_the_backends_are_agent_configs() -> None:
    assert set(catalog.BACKENDS) == literal_values(typing.get_type_hints(AgentConfig)["backend"])
    assert AgentConfig().backend == catalog.DEFAULT_BACKEND == "realtime"
    assert catalog.BACKEND_LABELS == {
        "realtime": "OpenAI Realtime API",
        "gpt-live": "OpenAI GPT-Live",
    }


def test_each_backend_has_its_own_models_and_voices() -> None:
    assert not set(catalog.REALTIME_MODELS) & set(catalog.LIVE_MODELS)
    assert (*catalog.REALTIME_MODELS, *catalog.LIVE_MODELS) == catalog.MODELS
    # Every realtime voice is a GPT-Live voice too; GPT-Live has more.
    assert set(catalog.VOICES) < set(catalog.LIVE_VOICES) == set(catalog.ALL_VOICES)
    assert not set(catalog.LIVE_ONLY_VOICES) & set(catalog.VOICES)
    assert (catalog.models_for_backend("gpt-live"), catalog.voices_for_backend("gpt-live")) == (
        catalog.LIVE_MODELS,
        catalog.LIVE_VOICES,
    )
    assert (catalog.default_model("gpt-live"), catalog.default_voice("gpt-live")) == (
        "gpt-live-1.1",
        "marin",
    )
    assert (catalog.default_model("realtime"), catalog.default_voice("realtime")) == (
        "gpt-realtime",
        "alloy",
    )


def test_the_realtime_only_settings_are_agent_settings() -> None:
    assert set(catalog.REALTIME_ONLY_FIELDS) < set(catalog.AGENT_CONFIG_FIELDS)
    assert {
        "model",
        "backend",
        "voice",
        "instructions",
        "greeting",
        "max_call_minutes",
        "tools",
    }.isdisjoint(catalog.REALTIME_ONLY_FIELDS)


@pytest.mark.parametrize(
    ("snapshot", "backend"),
    [
        ({"version": 2, "agent": {"backend": "gpt-live", "voice": "marin"}}, "gpt-live"),
        ({"version": 2, "agent": {"backend": "realtime"}}, "realtime"),
        ({"version": 1, "agent": {"voice": "marin"}}, "realtime"),  # before backends
        ({}, "realtime"),  # no agent: the environment's configuration
        (None, "realtime"),
        ({"agent": "odd"}, "realtime"),
    ],
)
def test_a_snapshots_backend(snapshot, backend) -> None:
    assert catalog.snapshot_backend(snapshot) == backend
