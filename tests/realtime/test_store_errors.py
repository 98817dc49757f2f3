"""The call store tells a row the database refuses for good from a database that is unavailable,
and keeps the recording upload off the writer thread every call's rows go through.

A refused row (SQLite: "Python int too large to convert to SQLite INTEGER"; PostgreSQL: "integer
out of range") is logged in full and dropped, and the rest of its batch and later batches land;
retrying it would only hold them up until the call's finalization gives up.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from db_faults import database_locked, short_lock_timeout
from django.core.files.storage import FileSystemStorage
from django.db import OperationalError, connections
from django.utils import timezone

from calls.models import Analytics, Call, CallMetadata, Recording, Transcript
from calls.services import CallOutcome, RecordingFile, TranscriptLine
from realtime import store as store_module
from realtime.store import CallStore, writer_connections_close

pytestmark = pytest.mark.django_db(transaction=True)

TOO_BIG = 2**70  # refused by SQLite (OverflowError) and PostgreSQL (integer out of range)


@pytest.fixture(autouse=True)
def _writer_connection_closed_after():
    yield
    writer_connections_close()  # so the test database can be dropped at the end


def _line(n: int, **fields: object) -> TranscriptLine:
    values: dict = {"sequence": n, "speaker": "caller", "text": f"line {n}",
                    "start_ms": n * 100, "end_ms": n * 100 + 50}  # fmt: skip
    values.update(fields)
    return TranscriptLine(**values)


def _outcome(**fields: object) -> CallOutcome:
    return CallOutcome(end_reason="caller hung up", ended_at=timezone.now(), **fields)


def _sequences(call: Call) -> list[int]:
    return list(
        Transcript.objects.filter(call=call).order_by("sequence").values_list("sequence", flat=True)
    )


async def _in_thread(query: Callable[[], int]) -> int:
    """A read from the test, on a thread of its own whose connection is closed after."""

    def run() -> int:
        try:
            return query()
        finally:
            connections.close_all()

    return await asyncio.to_thread(run)


async def _until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


# --- rows the database refuses for good ---------------------------------------------------------


def test_a_refused_line_is_logged_and_dropped_and_the_rest_land(make_call, caplog) -> None:
    call = make_call(status="in-progress")

    async def scenario() -> tuple[CallStore, bool]:
        store = CallStore(str(call.id), flush_interval_s=0.05, retry_initial_s=0.05)
        store.start()
        for line in (_line(1), _line(2, end_ms=TOO_BIG), _line(3)):  # one batch
            store.add_transcript(line)
        await asyncio.sleep(0.5)
        store.add_transcript(_line(4))
        await asyncio.sleep(0.3)
        store.add_transcript(_line(5))
        closed = await store.finalize(_outcome(), give_up_after_s=5)
        return store, closed

    store, closed = asyncio.run(scenario())
    assert closed
    assert _sequences(call) == [1, 3, 4, 5]
    assert store.rows_written == 4
    assert store.write_failures == 1  # refused once, then split: never retried
    refused = [r for r in caplog.records if r.levelname == "ERROR" and "refused" in r.message]
    assert len(refused) == 1
    # Every field of the dropped line is in the log, so an operator can restore it.
    for part in ("sequence=2", "speaker='caller'", "text='line 2'", "start_ms=200",
                 f"end_ms={TOO_BIG}", "item_id=''", "interrupted=False"):  # fmt: skip
        assert part in refused[0].message
    call.refresh_from_db()
    assert call.status == "completed"


def test_control_characters_never_reach_the_database(make_call) -> None:
    """PostgreSQL refuses NUL in text (and in JSON as \\u0000); SQLite stores it. Either way a
    keypad tone or escape sequence is not speech: removed, newline and tab kept."""
    call = make_call(status="in-progress")

    async def scenario() -> None:
        store = CallStore(str(call.id), flush_interval_s=0.05)
        store.start()
        store.stream_started(
            stream_sid="MZ\x001", custom_parameters={"ref\x00": "a\x00b"}, tracks=["inbound"]
        )
        store.add_transcript(_line(1, text="[DTMF \x00]"))
        store.add_transcript(_line(2, text="one\ttwo\nthree\r\x1b[31mred\x7f\x00"))
        assert await store.finalize(_outcome(), give_up_after_s=5)

    asyncio.run(scenario())
    texts = list(Transcript.objects.filter(call=call).order_by("sequence").values_list("text"))
    assert texts == [("[DTMF ]",), ("one\ttwo\nthree[31mred",)]
    call.refresh_from_db()
    assert call.stream_sid == "MZ1"
    custom = CallMetadata.objects.get(call=call).custom["stream"]["custom_parameters"]
    assert custom == {"ref": "ab"}


@pytest.fixture
def writer_fault() -> Iterator[dict[str, int]]:
    """Make the writer thread's next transcript insert after `arm` fail as if the database were
    locked: the database's answer is faked, at the database API, nothing of the store is."""
    state = {"armed": 0, "failed": 0}

    def wrapper(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if state["armed"] and sql.startswith('INSERT INTO "calls_transcript"'):
            state["armed"] -= 1
            if state["armed"] == 0:
                state["failed"] += 1
                raise OperationalError("database is locked")
        return execute(sql, params, many, context)

    def install() -> None:
        connections["default"].execute_wrappers.append(wrapper)

    def remove() -> None:
        connections["default"].execute_wrappers.remove(wrapper)

    store_module._WRITER.submit(install).result()
    yield state
    store_module._WRITER.submit(remove).result()


def test_an_outage_while_a_refused_batch_is_split_keeps_what_is_left(
    make_call, writer_fault
) -> None:
    call = make_call(status="in-progress")

    async def scenario() -> CallStore:
        store = CallStore(str(call.id), flush_interval_s=0.05, retry_initial_s=0.05)
        # Insert 1: the whole batch (refused); 2: line 1 alone; 3: the bad line; 4: line 3,
        # when the database goes away.
        writer_fault["armed"] = 4
        store.start()
        for line in (_line(1), _line(2, end_ms=TOO_BIG), _line(3), _line(4)):
            store.add_transcript(line)
        await asyncio.sleep(0.5)
        assert await store.finalize(_outcome(), give_up_after_s=5)
        return store

    store = asyncio.run(scenario())
    assert writer_fault["failed"] == 1
    assert store.write_failures == 2  # the refused batch, then the outage
    assert _sequences(call) == [1, 3, 4]
    assert store.rows_written == 3


def test_a_final_write_refused_for_good_closes_the_call_without_the_bad_values(
    make_call, caplog
) -> None:
    call = make_call(status="in-progress")
    Analytics.objects.create(call=call)
    outcome = _outcome(
        analytics={"turns": TOO_BIG, "interruptions": 3, "latency_ms_avg": 420.0},
        network={"frames_missing": TOO_BIG, "frames_late": 2},
    )

    async def scenario() -> bool:
        store = CallStore(str(call.id), retry_initial_s=0.05)
        store.add_transcript(_line(1))
        # 900 s is the production deadline: a retry of the same values would use all of it.
        return await asyncio.wait_for(store.finalize(outcome, give_up_after_s=900), 10)

    assert asyncio.run(scenario()) is True
    call.refresh_from_db()
    assert (call.status, call.end_reason) == ("completed", "caller hung up")
    assert call.ended_at is not None
    analytics = Analytics.objects.get(call=call)
    assert (analytics.turns, analytics.interruptions, analytics.latency_ms_avg) == (0, 3, 420.0)
    metadata = CallMetadata.objects.get(call=call)
    assert (metadata.frames_missing, metadata.frames_late) == (0, 2)
    assert _sequences(call) == [1]
    errors = "\n".join(r.message for r in caplog.records if r.levelname == "ERROR")
    assert "final analytics.turns refused for good" in errors
    assert "final network.frames_missing refused for good" in errors
    assert str(TOO_BIG) in errors


# --- the recording upload, off the writer thread ------------------------------------------------


class GatedStorage(FileSystemStorage):
    """Storage whose save() waits for the test to open the gate (a slow object store)."""

    gate = threading.Event()
    entered = threading.Event()
    saves = 0

    def _save(self, name, content):  # type: ignore[no-untyped-def]
        type(self).saves += 1
        type(self).entered.set()
        if not type(self).gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        return super()._save(name, content)


@pytest.fixture
def gated_storage(settings, tmp_path: Path) -> Iterator[type[GatedStorage]]:
    GatedStorage.gate = threading.Event()
    GatedStorage.entered = threading.Event()
    GatedStorage.saves = 0
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": f"{__name__}.GatedStorage",
            "OPTIONS": {"location": str(tmp_path / "storage")},
        },
    }
    yield GatedStorage
    GatedStorage.gate.set()  # never leave an upload thread waiting


def _recording(tmp_path: Path, name: str) -> RecordingFile:
    path = tmp_path / f"{name}.wav"
    path.write_bytes(b"RIFF" + bytes(4000))
    return RecordingFile(path=path, duration_s=1.0, size_bytes=4004, sample_rate=16000, channels=2)


def _stored_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "storage").rglob("*") if p.is_file()]


def test_a_slow_recording_upload_does_not_hold_up_other_calls_writes(
    make_call, gated_storage, tmp_path: Path
) -> None:
    call_a = make_call(status="in-progress")
    call_b = make_call(status="in-progress")
    outcome_a = _outcome(recording=_recording(tmp_path, "a"), analytics={"turns": 2})

    async def scenario() -> tuple[bool, bool]:
        store_a = CallStore(str(call_a.id), flush_interval_s=0.05)
        store_b = CallStore(str(call_b.id), flush_interval_s=0.05)
        store_b.start()
        store_a.add_transcript(_line(1))
        finalizing_a = asyncio.create_task(store_a.finalize(outcome_a, give_up_after_s=30))
        try:
            assert await _until(gated_storage.entered.is_set, 5), "A's upload never started"
            for n in (1, 2, 3):
                store_b.add_transcript(_line(n))
            landed = await _until(lambda: store_b.rows_written == 3, 5)
            b_rows = await _in_thread(lambda: Transcript.objects.filter(call=call_b).count())
            a_still_blocked = not finalizing_a.done() and not gated_storage.gate.is_set()
        finally:
            gated_storage.gate.set()
            closed_a = await finalizing_a
        assert landed and b_rows == 3, "call B's lines waited for call A's upload"
        assert a_still_blocked
        return closed_a, await store_b.finalize(_outcome(), give_up_after_s=5)

    closed_a, closed_b = asyncio.run(scenario())
    assert closed_a and closed_b
    call_a.refresh_from_db()
    assert call_a.status == "completed"
    recording = Recording.objects.get(call=call_a)
    assert recording.file.name.endswith(f"{call_a.id}.wav")
    assert (recording.sample_rate, recording.size_bytes) == (16000, 4004)
    assert _stored_files(tmp_path) == [tmp_path / "storage" / recording.file.name]
    assert gated_storage.saves == 1
    assert Analytics.objects.get(call=call_a).turns == 2


def test_rows_failing_after_the_upload_are_retried_without_uploading_again(
    make_call, gated_storage, tmp_path: Path
) -> None:
    call = make_call(status="in-progress")
    Analytics.objects.create(call=call)
    outcome = _outcome(recording=_recording(tmp_path, "a"), analytics={"turns": 2})

    async def scenario() -> bool:
        store = CallStore(str(call.id), retry_initial_s=0.05, retry_max_s=0.2)
        store.add_transcript(_line(1))
        finalizing = asyncio.create_task(store.finalize(outcome, give_up_after_s=30))
        try:
            assert await _until(gated_storage.entered.is_set, 5)
            with database_locked():
                gated_storage.gate.set()  # the upload completes, the rows cannot be written
                assert await _until(lambda: store.write_failures >= 2, 10)
        finally:
            gated_storage.gate.set()
        return await finalizing

    with short_lock_timeout():
        assert asyncio.run(scenario()) is True
    assert gated_storage.saves == 1
    recording = Recording.objects.get(call=call)
    assert _stored_files(tmp_path) == [tmp_path / "storage" / recording.file.name]
    call.refresh_from_db()
    assert call.status == "completed"
    assert _sequences(call) == [1]


def test_a_recording_already_stored_is_not_stored_again(
    make_call, gated_storage, tmp_path: Path
) -> None:
    call = make_call(status="in-progress")
    Recording.objects.create(call=call, file="recordings/earlier.wav")
    gated_storage.gate.set()

    async def scenario() -> bool:
        store = CallStore(str(call.id))
        outcome = _outcome(recording=_recording(tmp_path, "a"))
        return await store.finalize(outcome, give_up_after_s=5)

    assert asyncio.run(scenario()) is True
    assert gated_storage.saves == 0
    assert list(Recording.objects.filter(call=call).values_list("file", flat=True)) == [
        "recordings/earlier.wav"
    ]
    call.refresh_from_db()
    assert call.status == "completed"


def test_a_recording_gone_from_disk_does_not_keep_the_call_open(
    make_call, gated_storage, tmp_path: Path, caplog
) -> None:
    call = make_call(status="in-progress")
    recording = _recording(tmp_path, "a")
    recording.path.unlink()
    gated_storage.gate.set()

    async def scenario() -> bool:
        store = CallStore(str(call.id), retry_initial_s=0.05)
        return await asyncio.wait_for(
            store.finalize(_outcome(recording=recording), give_up_after_s=900), 10
        )

    assert asyncio.run(scenario()) is True
    call.refresh_from_db()
    assert call.status == "completed"
    assert not Recording.objects.filter(call=call).exists()
    assert "is missing; closed without it" in caplog.text
