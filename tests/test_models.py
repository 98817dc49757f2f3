"""Constraints of the call schema: what the database itself refuses."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from calls.models import Analytics, Call, CallMetadata, Recording, Transcript

pytestmark = pytest.mark.django_db


def test_call_has_uuid_primary_key(make_call) -> None:
    call = make_call()
    assert isinstance(call.pk, uuid.UUID)


def test_call_sid_is_unique(make_call) -> None:
    make_call(call_sid="CAdup")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_call(call_sid="CAdup")


def test_call_status_must_be_a_twilio_status(make_call) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        make_call(status="talking")


def test_call_duration_cannot_be_negative(make_call) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        make_call(duration_s=-1)


def test_call_cannot_end_before_it_started(make_call) -> None:
    call = make_call()
    call.ended_at = call.started_at - timedelta(seconds=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        call.save()


def _line(call: Call, sequence: int, **fields: object) -> Transcript:
    values: dict[str, object] = {
        "speaker": "caller",
        "text": "hello",
        "start_ms": 0,
        "end_ms": 500,
    }
    values.update(fields)
    return Transcript.objects.create(call=call, sequence=sequence, **values)


def test_transcript_sequence_is_unique_per_call(make_call) -> None:
    call = make_call()
    _line(call, 1)
    with pytest.raises(IntegrityError), transaction.atomic():
        _line(call, 1)
    _line(make_call(), 1)  # the same sequence on another call is fine


def test_transcript_item_id_is_unique_per_call_but_blank_repeats(make_call) -> None:
    call = make_call()
    _line(call, 1, item_id="item_a")
    _line(call, 2)
    _line(call, 3)
    with pytest.raises(IntegrityError), transaction.atomic():
        _line(call, 4, item_id="item_a")


def test_transcript_cannot_end_before_it_starts(make_call) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        _line(make_call(), 1, start_ms=900, end_ms=100)


def test_transcript_speaker_is_constrained(make_call) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        _line(make_call(), 1, speaker="robot")


def test_one_analytics_and_one_metadata_row_per_call(make_call) -> None:
    call = make_call()
    Analytics.objects.create(call=call)
    CallMetadata.objects.create(call=call)
    with pytest.raises(IntegrityError), transaction.atomic():
        Analytics.objects.create(call=call)
    with pytest.raises(IntegrityError), transaction.atomic():
        CallMetadata.objects.create(call=call)


def test_sentiment_score_is_between_minus_one_and_one(make_call) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Analytics.objects.create(call=make_call(), sentiment_score=1.5)


def test_recording_channels_and_rate_are_checked(make_call) -> None:
    call = make_call()
    with pytest.raises(IntegrityError), transaction.atomic():
        Recording.objects.create(call=call, file="r.wav", channels=3)
    with pytest.raises(IntegrityError), transaction.atomic():
        Recording.objects.create(call=call, file="r.wav", sample_rate=0)


def test_deleting_a_call_removes_everything_it_owns(make_call) -> None:
    call = make_call()
    _line(call, 1)
    Analytics.objects.create(call=call)
    CallMetadata.objects.create(call=call, custom={"From": "+1"})
    Recording.objects.create(call=call, file="r.wav")
    call.delete()
    assert Transcript.objects.count() == 0
    assert Analytics.objects.count() == 0
    assert CallMetadata.objects.count() == 0
    assert Recording.objects.count() == 0


def test_a_call_keeps_its_agent_version_and_snapshot(make_call, make_agent) -> None:
    agent = make_agent(name="Sales")
    call = make_call(agent=agent, agent_version=2, agent_snapshot={"version": 2})
    call.refresh_from_db()
    assert (call.agent, call.agent_version, call.agent_snapshot) == (agent, 2, {"version": 2})
    assert str(call).startswith("+15005550006 -> Sales (")
    bare = make_call()
    assert (bare.agent, bare.agent_version, bare.agent_snapshot) == (None, None, {})
    assert " -> unknown (" in str(bare)


def test_an_agent_that_answered_calls_cannot_be_deleted(make_call, make_agent) -> None:
    from django.db.models import ProtectedError

    agent = make_agent()
    make_call(agent=agent)
    with pytest.raises(ProtectedError):
        agent.delete()


def test_filtered_columns_are_indexed() -> None:
    indexed = {tuple(index.fields) for index in Call._meta.indexes}
    assert ("-started_at",) in indexed
    for column in ("caller", "agent", "status"):
        assert (column, "-started_at") in indexed
    assert Analytics._meta.get_field("sentiment_label").db_index
