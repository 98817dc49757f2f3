"""agents.services: the version, the one default agent, numbers, deleting, agent_config."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from agents import services
from agents.catalog import AGENT_CONFIG_FIELDS
from agents.models import Agent, PhoneNumber
from realtime.configuration import agent_snapshot, session_preview
from realtime.model import AgentConfig

pytestmark = pytest.mark.django_db


def numbers_of(agent: Agent) -> list[str]:
    return list(agent.phone_numbers.order_by("created_at", "pk").values_list("number", flat=True))


def default_slug() -> str | None:
    return Agent.objects.filter(is_default=True).values_list("slug", flat=True).first()


# --- create ---------------------------------------------------------------------------------


def test_create_starts_at_version_1_with_its_numbers(agent_body) -> None:
    agent = services.agent_create(
        fields=agent_body(greeting="Hi!", voice="marin"),
        phone_numbers=["+14155550100", " +14155550101 "],
    )
    agent.refresh_from_db()
    assert (agent.version, agent.greeting, agent.voice) == (1, "Hi!", "marin")
    assert numbers_of(agent) == ["+14155550100", "+14155550101"]


def test_the_first_agent_becomes_the_default(agent_body) -> None:
    first = services.agent_create(fields=agent_body(slug="first", is_default=False))
    second = services.agent_create(fields=agent_body(slug="second"))
    assert (first.is_default, second.is_default) == (True, False)
    assert default_slug() == "first"


def test_an_inactive_first_agent_does_not_become_the_default(agent_body) -> None:
    agent = services.agent_create(fields=agent_body(is_active=False))
    assert agent.is_default is False


def test_creating_a_new_default_unsets_the_previous_one(agent_body) -> None:
    services.agent_create(fields=agent_body(slug="old"))
    services.agent_create(fields=agent_body(slug="new", is_default=True))
    assert default_slug() == "new"
    assert Agent.objects.filter(is_default=True).count() == 1


def test_create_validates_every_field(agent_body) -> None:
    with pytest.raises(ValidationError) as refused:
        services.agent_create(
            fields=agent_body(slug="bad slug", voice="nope", vad_threshold=7, instructions="")
        )
    assert {"slug", "voice", "vad_threshold", "instructions"} <= set(refused.value.message_dict)
    assert not Agent.objects.exists()


def test_create_refuses_unknown_fields(agent_body) -> None:
    with pytest.raises(TypeError, match="version"):
        services.agent_create(fields=agent_body(version=9))


# --- update and the version -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("instructions", "Something else entirely."),
        ("greeting", "Hello there."),
        ("voice", "coral"),
        ("model", "gpt-realtime-mini"),
        ("language", "fr"),
        ("turn_detection", "semantic_vad"),
        ("vad_threshold", 0.7),
        ("vad_prefix_padding_ms", 100),
        ("vad_silence_duration_ms", 800),
        ("vad_eagerness", "low"),
        ("noise_reduction", "near_field"),
        ("idle_timeout_ms", 20_000),
        ("transcription_model", "gpt-4o-transcribe"),
        ("max_call_minutes", 10),
    ],
)
def test_changing_what_the_model_is_told_bumps_the_version(make_agent, field, value) -> None:
    agent = make_agent()
    saved = services.agent_update(agent=agent, fields={field: value})
    assert saved.version == 2
    agent.refresh_from_db()
    assert (agent.version, getattr(agent, field)) == (2, value)


def test_other_changes_keep_the_version(make_agent) -> None:
    agent = make_agent(is_default=True)
    other = make_agent()
    saved = services.agent_update(
        agent=other,
        fields={"name": "Renamed", "slug": "renamed", "is_active": False},
        phone_numbers=["+14155550100"],
    )
    assert saved.version == 1
    saved = services.agent_update(agent=agent, fields={"instructions": agent.instructions})
    assert saved.version == 1  # the same value is no change


def test_one_update_of_several_fields_is_one_version(make_agent) -> None:
    agent = make_agent()
    saved = services.agent_update(
        agent=agent, fields={"voice": "ash", "greeting": "Hi", "name": "New name"}
    )
    assert saved.version == 2
    assert services.agent_update(agent=saved, fields={"voice": "echo"}).version == 3


def test_an_update_refused_changes_nothing(make_agent) -> None:
    agent = make_agent(voice="marin")
    with pytest.raises(ValidationError) as refused:
        services.agent_update(agent=agent, fields={"model": "gpt-4o-realtime-preview"})
    assert "voice" in refused.value.message_dict  # marin is not a preview voice
    agent.refresh_from_db()
    assert (agent.model, agent.version) == ("gpt-realtime", 1)


# --- the one default ------------------------------------------------------------------------


def test_set_default_moves_the_flag(make_agent) -> None:
    old = make_agent(is_default=True)
    new = make_agent()
    services.agent_set_default(agent=new)
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.is_default, new.is_default) == (False, True)
    assert (old.version, new.version) == (1, 1)


def test_the_only_default_cannot_be_unset(make_agent) -> None:
    agent = make_agent(is_default=True)
    with pytest.raises(ValidationError) as refused:
        services.agent_update(agent=agent, fields={"is_default": False})
    assert "make another agent the default" in refused.value.message_dict["is_default"][0]
    assert default_slug() == agent.slug


def test_the_default_cannot_be_deactivated(make_agent) -> None:
    agent = make_agent(is_default=True)
    with pytest.raises(ValidationError) as refused:
        services.agent_update(agent=agent, fields={"is_active": False})
    assert "is_active" in refused.value.message_dict


def test_an_inactive_agent_cannot_become_the_default(make_agent) -> None:
    make_agent(is_default=True)
    sleeping = make_agent(is_active=False)
    with pytest.raises(ValidationError):
        services.agent_set_default(agent=sleeping)
    with pytest.raises(ValidationError):
        services.agent_create(
            fields={"name": "x", "slug": "x", "instructions": "x", "is_default": True,
                    "is_active": False}
        )  # fmt: skip
    assert Agent.objects.filter(is_default=True).count() == 1


def test_activating_and_defaulting_at_once_is_fine(make_agent) -> None:
    make_agent(is_default=True)
    sleeping = make_agent(is_active=False)
    services.agent_update(agent=sleeping, fields={"is_active": True, "is_default": True})
    assert default_slug() == sleeping.slug


# --- numbers --------------------------------------------------------------------------------


def test_numbers_are_replaced_as_a_whole(make_agent) -> None:
    agent = make_agent(phone_numbers=("+14155550100", "+14155550101"))
    PhoneNumber.objects.filter(number="+14155550100").update(label="Main line")
    services.agent_update(agent=agent, fields={}, phone_numbers=["+14155550100", "+14155550102"])
    assert numbers_of(agent) == ["+14155550100", "+14155550102"]
    assert PhoneNumber.objects.get(number="+14155550100").label == "Main line"  # kept
    services.agent_update(agent=agent, fields={}, phone_numbers=[])
    assert numbers_of(agent) == []


def test_numbers_are_left_alone_when_not_given(make_agent) -> None:
    agent = make_agent(phone_numbers=("+14155550100",))
    services.agent_update(agent=agent, fields={"name": "x"})
    assert numbers_of(agent) == ["+14155550100"]


def test_a_number_of_another_agent_is_refused_by_name(make_agent) -> None:
    make_agent(slug="sales", phone_numbers=("+14155550100",))
    support = make_agent(slug="support", phone_numbers=("+14155550199",))
    with pytest.raises(ValidationError) as refused:
        services.agent_update(
            agent=support, fields={"greeting": "Hi"}, phone_numbers=["+14155550100"]
        )
    [message] = refused.value.message_dict["phone_numbers"]
    assert "+14155550100" in message and "'sales'" in message
    support.refresh_from_db()
    assert (support.greeting, numbers_of(support)) == ("", ["+14155550199"])


@pytest.mark.parametrize(
    ("numbers", "words"),
    [(["+14155550100", "+14155550100"], "listed twice"), (["0800 123"], "E.164")],
)
def test_bad_number_lists_are_refused(make_agent, numbers, words) -> None:
    with pytest.raises(ValidationError) as refused:
        make_agent(phone_numbers=tuple(numbers))
    assert words in " ".join(refused.value.message_dict["phone_numbers"])
    assert not Agent.objects.exists()


# --- delete ---------------------------------------------------------------------------------


def test_an_agent_without_calls_is_deleted_with_its_numbers(make_agent) -> None:
    make_agent(is_default=True)
    agent = make_agent(phone_numbers=("+14155550100",))
    services.agent_delete(agent=agent)
    assert not Agent.objects.filter(pk=agent.pk).exists()
    assert not PhoneNumber.objects.exists()
    services.agent_delete(agent=agent)  # twice is not an error


def test_an_agent_with_calls_is_not_deleted(make_agent, make_call) -> None:
    make_agent(is_default=True)
    agent = make_agent()
    make_call(agent=agent)
    make_call(agent=agent)
    with pytest.raises(services.AgentHasCalls) as refused:
        services.agent_delete(agent=agent)
    assert refused.value.calls == 2
    assert "deactivate it instead (is_active: false)" in str(refused.value)
    assert Agent.objects.filter(pk=agent.pk).exists()


def test_the_default_agent_is_not_deleted(make_agent) -> None:
    agent = make_agent(is_default=True)
    with pytest.raises(services.AgentIsDefault, match="make another agent the default"):
        services.agent_delete(agent=agent)


# --- what the bridge reads ------------------------------------------------------------------


def test_agent_config_is_what_agentconfig_reads(make_agent) -> None:
    agent = make_agent(
        greeting="Hello, Acme support.",
        voice="cedar",
        language="en",
        turn_detection="semantic_vad",
        vad_eagerness="high",
        noise_reduction="far_field",
        max_call_minutes=15,
    )
    config = services.agent_config(agent=agent)
    assert tuple(config) == AGENT_CONFIG_FIELDS
    parsed = AgentConfig.from_dict(config)
    assert parsed.to_dict() == config
    assert (parsed.greeting, parsed.voice, parsed.vad_eagerness) == (
        "Hello, Acme support.",
        "cedar",
        "high",
    )


def test_the_snapshot_and_preview_are_built_from_agent_config(make_agent) -> None:
    agent = make_agent(instructions="Be Acme.", voice="sage", idle_timeout_ms=15000)
    agent = services.agent_update(agent=agent, fields={"voice": "verse"})
    snapshot = agent_snapshot(services.agent_config(agent=agent), version=agent.version)
    assert snapshot["version"] == 2
    assert snapshot["agent"]["voice"] == "verse"
    assert snapshot["session"] == session_preview(services.agent_config(agent=agent))


def test_a_gpt_live_agents_snapshot_keeps_the_session_start_it_is_sent(
    make_agent, settings
) -> None:
    from openai.types.live import ClientEvent
    from pydantic import TypeAdapter

    settings.LIVE_BACKEND_MODEL = "gpt-5-mini"
    agent = make_agent(backend="gpt-live", instructions="Be Acme.", language="fr")
    snapshot = agent_snapshot(services.agent_config(agent=agent), version=agent.version)
    assert snapshot["agent"]["backend"] == "gpt-live"
    start = snapshot["session"]
    assert start == session_preview(services.agent_config(agent=agent))
    TypeAdapter(ClientEvent).validate_python(start)
    session = start["session"]
    assert (start["type"], session["model"]) == ("session.start", "gpt-live-1.1")
    assert session["audio"] == {
        "format": {"type": "audio/pcmu", "rate": 8000},
        "output": {"voice": "marin"},
    }
    # GPT-Live has no language setting: the agent's is a line of its instructions.
    assert session["instructions"].startswith("Be Acme.")
    assert "'fr'" in session["instructions"]
    assert session["delegation"]["responses"]["model"] == "gpt-5-mini"
    assert "input" not in session  # a first session has no history
