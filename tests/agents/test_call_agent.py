"""Calls keep their agent: call_create stores it with the snapshot, retries change nothing,
and the stream claim hands the snapshot to the bridge."""

from __future__ import annotations

import pytest

from agents import services as agent_services
from calls import services
from calls.models import Call, CallMetadata, CallStatus
from realtime.configuration import agent_snapshot

pytestmark = pytest.mark.django_db

PARAMS = {
    "CallSid": "CA" + "1" * 32,
    "AccountSid": "AC" + "2" * 32,
    "From": "+14155550123",
    "To": "+18005550100",
    "CallStatus": "ringing",
    "Direction": "inbound",
}


def snapshot_of(agent) -> dict:
    return agent_snapshot(agent_services.agent_config(agent=agent), version=agent.version)


def test_call_create_keeps_the_agent_and_its_snapshot(make_agent) -> None:
    agent = make_agent(greeting="Hello from sales.", phone_numbers=("+18005550100",))
    agent = agent_services.agent_update(agent=agent, fields={"voice": "coral"})
    snapshot = snapshot_of(agent)
    call = services.call_create(params=PARAMS, agent=agent, agent_snapshot=snapshot)
    call.refresh_from_db()
    assert (call.agent, call.agent_version) == (agent, 2)
    assert call.agent_snapshot == snapshot
    assert call.agent_snapshot["agent"]["greeting"] == "Hello from sales."
    assert "dialled_number" not in call.metadata.custom


def test_a_retried_webhook_keeps_the_first_snapshot(make_agent) -> None:
    agent = make_agent()
    first = services.call_create(params=PARAMS, agent=agent, agent_snapshot=snapshot_of(agent))
    edited = agent_services.agent_update(agent=agent, fields={"instructions": "Changed."})
    again = services.call_create(params=PARAMS, agent=edited, agent_snapshot=snapshot_of(edited))
    assert again.pk == first.pk
    again.refresh_from_db()
    assert again.agent_version == 1
    assert again.agent_snapshot["agent"]["instructions"] != "Changed."
    assert Call.objects.count() == 1 and CallMetadata.objects.count() == 1


def test_editing_the_agent_never_rewrites_a_calls_snapshot(make_agent) -> None:
    agent = make_agent()
    call = services.call_create(params=PARAMS, agent=agent, agent_snapshot=snapshot_of(agent))
    agent_services.agent_update(agent=agent, fields={"greeting": "New greeting", "voice": "ash"})
    call.refresh_from_db()
    assert call.agent_version == 1
    assert call.agent_snapshot["agent"]["greeting"] == ""


def test_a_call_without_agent_keeps_the_number_dialled() -> None:
    call = services.call_create(params=PARAMS)
    call.refresh_from_db()
    assert (call.agent, call.agent_version, call.agent_snapshot) == (None, None, {})
    assert call.metadata.custom["dialled_number"] == "+18005550100"


def test_the_stream_claim_hands_over_the_snapshot(make_agent) -> None:
    agent = make_agent()
    snapshot = snapshot_of(agent)
    call = services.call_create(params=PARAMS, agent=agent, agent_snapshot=snapshot)
    assert (
        services.call_stream_claim(call_id=str(call.pk), stream_sid="MZ1", call_sid=call.call_sid)
        == snapshot
    )
    call.refresh_from_db()
    assert call.stream_sid == "MZ1"
    # A second stream for the same call is refused.
    assert (
        services.call_stream_claim(call_id=str(call.pk), stream_sid="MZ2", call_sid=call.call_sid)
        is None
    )


def test_the_stream_claim_of_a_call_without_snapshot_is_an_empty_dict() -> None:
    call = services.call_create(params=PARAMS)
    assert (
        services.call_stream_claim(call_id=str(call.pk), stream_sid="MZ1", call_sid=call.call_sid)
        == {}
    )


def test_the_stream_claim_is_refused_for_a_call_over_or_missing(make_call) -> None:
    over = make_call(status=CallStatus.COMPLETED)
    assert (
        services.call_stream_claim(call_id=str(over.pk), stream_sid="MZ1", call_sid=over.call_sid)
        is None
    )
    missing = "00000000-0000-0000-0000-000000000000"
    assert services.call_stream_claim(call_id=missing, stream_sid="MZ1", call_sid="CA1") is None


def test_the_stream_claim_is_refused_for_another_twilio_call(make_agent) -> None:
    call = services.call_create(params=PARAMS, agent=make_agent(), agent_snapshot={})
    assert (
        services.call_stream_claim(call_id=str(call.pk), stream_sid="MZ1", call_sid="CA2") is None
    )
