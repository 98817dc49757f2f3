"""Validation of an agent and its numbers (what both the admin and the API apply), and what the
database itself refuses."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from agents.models import Agent, PhoneNumber

pytestmark = pytest.mark.django_db


def errors_of(**fields: Any) -> dict[str, list[str]]:
    """The full_clean errors of an unsaved agent with these fields over valid ones."""
    values: dict[str, Any] = {
        "name": "Support",
        "slug": "support",
        "instructions": "You are the support assistant.",
    }
    values.update(fields)
    try:
        Agent(**values).full_clean()
    except ValidationError as error:
        return error.message_dict
    return {}


def test_a_valid_agent_has_no_errors() -> None:
    assert errors_of() == {}
    full = errors_of(
        greeting="Hello!",
        voice="cedar",
        model="gpt-realtime-mini",
        language="es",
        noise_reduction="far_field",
        idle_timeout_ms=5000,
        max_call_minutes=240,
        vad_threshold=1.0,
        vad_prefix_padding_ms=0,
        vad_silence_duration_ms=5000,
        transcription_model="whisper-1",
    )
    assert full == {}


def test_instructions_are_required() -> None:
    assert "instructions" in errors_of(instructions="")
    assert "Instructions are required." in errors_of(instructions="   \n ")["instructions"]


def test_instructions_have_a_configurable_maximum(settings) -> None:
    settings.AGENT_INSTRUCTIONS_MAX_CHARS = 50
    assert errors_of(instructions="x" * 50) == {}
    [message] = errors_of(instructions="x" * 51)["instructions"]
    assert "at most 50 characters" in message and "AGENT_INSTRUCTIONS_MAX_CHARS" in message


def test_the_default_instructions_maximum_is_16000(settings) -> None:
    del settings.AGENT_INSTRUCTIONS_MAX_CHARS
    assert errors_of(instructions="x" * 16000) == {}
    assert "instructions" in errors_of(instructions="x" * 16001)


def test_a_greeting_is_optional_and_at_most_1000_characters() -> None:
    assert errors_of(greeting="") == {}
    assert errors_of(greeting="x" * 1000) == {}
    assert "at most 1000" in errors_of(greeting="x" * 1001)["greeting"][0]


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("model", "gpt-5-turbo-realtime", "Unknown model"),
        ("voice", "darth", "Unknown voice"),
        ("transcription_model", "speech-o-matic", "Unknown transcription model"),
        ("language", "english", "ISO-639-1"),
        ("language", "EN", "ISO-639-1"),
        ("language", "xx", "ISO-639-1"),
        ("turn_detection", "push_to_talk", "not a valid choice"),
        ("vad_eagerness", "eager", "not a valid choice"),
        ("noise_reduction", "studio", "not a valid choice"),
    ],
)
def test_names_come_from_known_lists(field: str, value: str, words: str) -> None:
    assert words in " ".join(errors_of(**{field: value})[field])


@pytest.mark.parametrize(
    ("field", "low", "high"),
    [
        ("vad_threshold", 0.0, 1.0),
        ("vad_prefix_padding_ms", 0, 2000),
        ("vad_silence_duration_ms", 100, 5000),
        ("idle_timeout_ms", 5000, 300_000),
        ("max_call_minutes", 1, 240),
    ],
)
def test_numbers_have_sane_ranges(field: str, low: float, high: float) -> None:
    assert errors_of(**{field: low}) == {}
    assert errors_of(**{field: high}) == {}
    step = 0.01 if isinstance(low, float) else 1
    below = errors_of(**{field: low - step})
    above = errors_of(**{field: high + step})
    assert field in below and field in above
    assert "Must be from" in above[field][0]


def test_idle_timeout_and_call_limit_may_be_off() -> None:
    assert errors_of(idle_timeout_ms=None, max_call_minutes=None) == {}


def test_the_voice_must_be_one_the_model_has() -> None:
    [message] = errors_of(model="gpt-4o-realtime-preview", voice="marin")["voice"]
    assert "not available with gpt-4o-realtime-preview" in message
    assert errors_of(model="gpt-4o-realtime-preview", voice="verse") == {}
    assert errors_of(model="gpt-realtime", voice="marin") == {}


def test_an_idle_timeout_needs_server_vad() -> None:
    errors = errors_of(turn_detection="semantic_vad", idle_timeout_ms=10_000)
    assert "server_vad" in errors["idle_timeout_ms"][0]
    assert errors_of(turn_detection="semantic_vad", vad_eagerness="low") == {}


def test_the_default_agent_must_be_active() -> None:
    assert "is_active" in errors_of(is_default=True, is_active=False)
    assert errors_of(is_default=False, is_active=False) == {}


def test_a_saved_default_cannot_simply_be_unset(make_agent) -> None:
    agent = make_agent(is_default=True)
    agent.is_default = False
    with pytest.raises(ValidationError) as refused:
        agent.full_clean()
    assert "make another agent the default" in refused.value.message_dict["is_default"][0]


def test_making_another_agent_default_is_not_refused_by_validation(make_agent) -> None:
    # The one-default constraint is kept by the services (they move the flag), so validating
    # the new default before the move must not refuse it.
    make_agent(is_default=True)
    other = make_agent()
    other.is_default = True
    other.full_clean()


def test_slugs_are_unique(make_agent) -> None:
    make_agent(slug="sales")
    assert "slug" in errors_of(slug="sales")
    assert "slug" in errors_of(slug="not a slug!")


@pytest.mark.parametrize("number", ["+14155550100", "+442071838750", "+12", "+123456789012345"])
def test_e164_numbers_are_accepted(number: str, make_agent) -> None:
    PhoneNumber(agent=make_agent(), number=number).full_clean()


@pytest.mark.parametrize(
    "number",
    ["14155550100", "+04155550100", "+1 415 555 0100", "+1-415-555-0100", "+1234567890123456", "+"],
)
def test_other_numbers_are_refused(number: str, make_agent) -> None:
    with pytest.raises(ValidationError) as refused:
        PhoneNumber(agent=make_agent(), number=number).full_clean()
    assert "E.164" in refused.value.message_dict["number"][0]


def test_a_number_reaches_one_agent(make_agent) -> None:
    make_agent(phone_numbers=("+14155550100",))
    other = make_agent()
    with pytest.raises(ValidationError) as refused:
        PhoneNumber(agent=other, number="+14155550100").full_clean()
    assert "already reaches another agent" in refused.value.message_dict["number"][0]
    with pytest.raises(IntegrityError), transaction.atomic():
        PhoneNumber.objects.create(agent=other, number="+14155550100")


# --- what the database refuses, whatever the code above it does ------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"vad_threshold": 1.5},
        {"vad_silence_duration_ms": 50},
        {"vad_prefix_padding_ms": 5000},
        {"idle_timeout_ms": 1000},
        {"max_call_minutes": 0},
        {"turn_detection": "push_to_talk"},
        {"vad_eagerness": "eager"},
        {"noise_reduction": "studio"},
        {"is_default": True, "is_active": False},
        {"version": 0},
    ],
)
def test_the_database_refuses_out_of_range_rows(fields: dict[str, Any]) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.create(name="x", slug="x", instructions="x", **fields)


def test_the_database_allows_one_default_only(make_agent) -> None:
    make_agent(is_default=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.create(name="x", slug="x", instructions="x", is_default=True)
    Agent.objects.create(name="y", slug="y", instructions="y", is_default=False)


def test_deleting_an_agent_takes_its_numbers(make_agent) -> None:
    agent = make_agent(is_default=False, phone_numbers=("+14155550100", "+14155550101"))
    make_agent(is_default=True)
    Agent.objects.filter(pk=agent.pk).delete()
    assert not PhoneNumber.objects.exists()


def test_an_agent_that_answered_calls_is_protected(make_agent, make_call) -> None:
    from django.db.models import ProtectedError

    agent = make_agent()
    make_call(agent=agent)
    with pytest.raises(ProtectedError):
        agent.delete()
