"""The migrations: the default agent seeded from the environment, and the calls of before
agents existed given their agent (or keeping their number) when Call.agent became a key."""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.apps import apps as global_apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from agents.models import Agent, PhoneNumber
from calls.models import Call, CallMetadata

seed = importlib.import_module("agents.migrations.0002_seed_default_agent")

BEFORE = [
    ("agents", "0002_seed_default_agent"),
    ("calls", "0004_transcript_inaudible_cached_token_kinds"),
]
T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


# --- the default agent, seeded -------------------------------------------------------------


@pytest.mark.django_db
def test_a_fresh_database_gets_a_working_default_agent(settings) -> None:
    for name in ("REALTIME_INSTRUCTIONS", "REALTIME_VOICE", "TWILIO_PHONE_NUMBER"):
        setattr(settings, name, "")
    seed.seed_default_agent(global_apps, None)
    agent = Agent.objects.get()
    assert (agent.name, agent.slug, agent.is_default, agent.is_active) == (
        "Default",
        "default",
        True,
        True,
    )
    assert agent.version == 1
    agent.full_clean()  # valid as it stands: it answers calls with no configuration at all
    assert not PhoneNumber.objects.exists()


@pytest.mark.django_db
def test_the_environment_becomes_the_default_agent(settings) -> None:
    settings.REALTIME_INSTRUCTIONS = "You are Acme's assistant."
    settings.REALTIME_VOICE = "sage"
    settings.OPENAI_REALTIME_MODEL = "gpt-realtime-mini"
    settings.REALTIME_TURN_DETECTION = "semantic_vad"
    settings.REALTIME_VAD_THRESHOLD = 0.7
    settings.REALTIME_VAD_PREFIX_PADDING_MS = 200
    settings.REALTIME_VAD_SILENCE_DURATION_MS = 800
    settings.REALTIME_TRANSCRIPTION_MODEL = "gpt-4o-transcribe"
    settings.TWILIO_PHONE_NUMBER = "+14155550100"
    seed.seed_default_agent(global_apps, None)
    agent = Agent.objects.get()
    assert (agent.instructions, agent.voice, agent.model, agent.turn_detection) == (
        "You are Acme's assistant.",
        "sage",
        "gpt-realtime-mini",
        "semantic_vad",
    )
    assert (agent.vad_threshold, agent.vad_prefix_padding_ms, agent.vad_silence_duration_ms) == (
        0.7,
        200,
        800,
    )
    assert agent.transcription_model == "gpt-4o-transcribe"
    assert [p.number for p in agent.phone_numbers.all()] == ["+14155550100"]


@pytest.mark.django_db
def test_odd_environment_values_do_not_stop_migrate(settings) -> None:
    settings.REALTIME_INSTRUCTIONS = "   "
    settings.REALTIME_VOICE = "robot"
    settings.OPENAI_REALTIME_MODEL = "my-own-model"
    settings.REALTIME_TURN_DETECTION = "push_to_talk"
    settings.REALTIME_VAD_THRESHOLD = 7.0
    settings.REALTIME_VAD_PREFIX_PADDING_MS = -5
    settings.REALTIME_VAD_SILENCE_DURATION_MS = 99999
    settings.REALTIME_TRANSCRIPTION_MODEL = "x" * 200
    settings.TWILIO_PHONE_NUMBER = "0800 FLOWERS"
    seed.seed_default_agent(global_apps, None)
    agent = Agent.objects.get()
    # What the database would refuse is brought into range...
    assert agent.turn_detection == "server_vad"
    assert (agent.vad_threshold, agent.vad_prefix_padding_ms, agent.vad_silence_duration_ms) == (
        1.0,
        0,
        5000,
    )
    assert agent.instructions == seed.FALLBACK_INSTRUCTIONS
    # ...the rest is kept as configured, for staff to fix in the admin (it says what is wrong).
    assert (agent.voice, agent.model) == ("robot", "my-own-model")
    assert len(agent.transcription_model) == 64
    assert not PhoneNumber.objects.exists()  # not an E.164 number


@pytest.mark.django_db
def test_the_seed_runs_once_and_never_takes_the_default(settings, make_agent) -> None:
    settings.TWILIO_PHONE_NUMBER = ""
    mine = make_agent(slug="mine", is_default=True)
    seed.seed_default_agent(global_apps, None)
    seed.seed_default_agent(global_apps, None)
    assert Agent.objects.filter(slug="default").count() == 1
    assert list(Agent.objects.filter(is_default=True)) == [mine]


# --- calls: the dialled number becomes the agent --------------------------------------------


@pytest.fixture
def migrated_back() -> Iterator[MigrationExecutor]:
    """The database as it was before Call.agent became a key; migrated forward again after."""
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        yield executor
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def _migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_calls_get_the_agent_of_the_number_they_dialled(migrated_back) -> None:
    old = migrated_back.loader.project_state(BEFORE).apps
    OldAgent = old.get_model("agents", "Agent")
    OldCall = old.get_model("calls", "Call")
    OldMetadata = old.get_model("calls", "CallMetadata")
    sales = OldAgent.objects.create(name="Sales", slug="sales", instructions="x", is_default=True)
    old.get_model("agents", "PhoneNumber").objects.create(agent=sales, number="+18005550100")

    def old_call(n: int, number: str) -> Any:
        return OldCall.objects.create(call_sid=f"CA{n:032x}", agent=number, started_at=T0)

    to_sales = old_call(1, "+18005550100")
    to_sales_too = old_call(2, "+18005550100")
    elsewhere = old_call(3, "+18885550000")
    OldMetadata.objects.create(call=elsewhere, city="Oakland", custom={"webhook": {"a": "1"}})
    no_metadata = old_call(4, "+18885550001")
    no_number = old_call(5, "")

    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())  # today's schema

    calls = {call.call_sid: call for call in Call.objects.select_related("agent")}
    assert calls[to_sales.call_sid].agent.slug == "sales"
    assert calls[to_sales_too.call_sid].agent.slug == "sales"
    for call in (to_sales, to_sales_too):
        assert calls[call.call_sid].agent_version is None  # what they were told was not kept
        assert calls[call.call_sid].agent_snapshot == {}
    assert calls[elsewhere.call_sid].agent is None
    kept = CallMetadata.objects.get(call_id=elsewhere.pk)
    assert kept.custom == {"webhook": {"a": "1"}, "dialled_number": "+18885550000"}
    assert kept.city == "Oakland"
    assert CallMetadata.objects.get(call_id=no_metadata.pk).custom == {
        "dialled_number": "+18885550001"
    }
    assert calls[no_number.call_sid].agent is None
    assert not CallMetadata.objects.filter(call_id=no_number.pk).exists()

    # And back: the numbers return to the old column, the metadata as it was.
    old = _migrate(BEFORE)
    numbers = dict(old.get_model("calls", "Call").objects.values_list("call_sid", "agent"))
    assert numbers == {
        to_sales.call_sid: "+18005550100",
        to_sales_too.call_sid: "+18005550100",
        elsewhere.call_sid: "+18885550000",
        no_metadata.call_sid: "+18885550001",
        no_number.call_sid: "",
    }
    metadata = old.get_model("calls", "CallMetadata").objects.get(call_id=elsewhere.pk)
    assert metadata.custom == {"webhook": {"a": "1"}}
