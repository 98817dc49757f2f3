"""The call store keeps writes through a database outage and lands each of them exactly once.

The outage is real: another connection holds a lock on the database (SQLite: an exclusive
transaction on the file; PostgreSQL: an exclusive table lock), and the writer's own lock
timeout is short, so its writes fail and are retried rather than merely waiting.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from db_faults import database_locked, short_lock_timeout
from django.utils import timezone

from calls.models import Analytics, Transcript
from calls.services import CallOutcome, TranscriptLine
from realtime.store import CallStore, writer_connections_close

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _writer_connection_closed_after():
    yield
    writer_connections_close()  # so the test database can be dropped at the end


def _line(n: int) -> TranscriptLine:
    return TranscriptLine(
        sequence=n, speaker="caller", text=f"line {n}", start_ms=n * 100, end_ms=n * 100 + 50
    )


def _wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_lines_written_during_an_outage_land_once_it_ends(make_call) -> None:
    call = make_call(status="in-progress")
    Analytics.objects.create(call=call)
    call_id = str(call.id)

    async def scenario() -> CallStore:
        store = CallStore(call_id, flush_interval_s=0.05, retry_initial_s=0.05, retry_max_s=0.2)
        store.start()
        store.add_transcript(_line(1))
        await asyncio.sleep(0.5)
        with database_locked():
            for n in range(2, 12):
                store.add_transcript(_line(n))
                store.set_analytics({"interruptions": n})
                await asyncio.sleep(0.1)  # the call goes on while writes fail
            failures_during_outage = store.write_failures
        assert failures_during_outage > 0
        outcome = CallOutcome(end_reason="caller hung up", ended_at=timezone.now())
        assert await store.finalize(outcome, give_up_after_s=20)
        return store

    with short_lock_timeout():
        store = asyncio.run(scenario())

    sequences = list(
        Transcript.objects.filter(call_id=call_id)
        .order_by("sequence")
        .values_list("sequence", flat=True)
    )
    assert sequences == list(range(1, 12))
    assert store.rows_written == 11
    call.refresh_from_db()
    assert call.status == "completed"
    assert call.end_reason == "caller hung up"
    assert Analytics.objects.get(call=call).interruptions == 11


def test_finalize_gives_up_after_its_deadline_and_says_so(make_call, caplog) -> None:
    call = make_call(status="in-progress")

    async def scenario() -> bool:
        store = CallStore(str(call.id), retry_initial_s=0.05, retry_max_s=0.1)
        store.add_transcript(_line(1))
        outcome = CallOutcome(end_reason="caller hung up", ended_at=timezone.now())
        return await store.finalize(outcome, give_up_after_s=1.0)

    with short_lock_timeout(), database_locked():
        assert asyncio.run(scenario()) is False
    assert "gave up finalizing call" in caplog.text
    assert Transcript.objects.count() == 0


def test_postgres_refusing_connections_mid_call_loses_nothing(make_call) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL refusing connections needs PostgreSQL (the CI's second pass)")
    from db_faults import postgres_refusing_connections

    call = make_call(status="in-progress")
    call_id = str(call.id)
    params = connection.get_connection_params()
    own_pid = connection.cursor().connection.info.backend_pid

    async def scenario() -> CallStore:
        store = CallStore(call_id, flush_interval_s=0.05, retry_initial_s=0.05, retry_max_s=0.2)
        store.start()
        store.add_transcript(_line(1))
        await asyncio.sleep(0.5)  # the writer has a connection now
        with postgres_refusing_connections(params, own_pid):
            for n in range(2, 8):
                store.add_transcript(_line(n))
                await asyncio.sleep(0.2)
            assert store.write_failures > 0
        outcome = CallOutcome(end_reason="caller hung up", ended_at=timezone.now())
        assert await store.finalize(outcome, give_up_after_s=20)
        return store

    asyncio.run(scenario())
    sequences = sorted(
        Transcript.objects.filter(call_id=call_id).values_list("sequence", flat=True)
    )
    assert sequences == list(range(1, 8))
