"""Start-up recovery when several processes start at once (`make run WORKERS=N`): every orphaned
recording is recovered exactly once, nothing is logged as an error, no lock file is left.

The race: worker A recovers a WAV and unlinks it and its lock; worker B, which globbed the WAV
before, then opens (so creates) a new lock file, takes it and must see that the WAV is gone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support import REPO_ROOT, base_env, manage_ok

ORPHANS = 12

# A bridge process that dies mid-call, once per call id: its recorder has written a few blocks
# and is never finalized (the recording format is audio.recorder's, whatever it is).
CRASHING_CALLS = textwrap.dedent(
    """
    import os, sys
    from audio.recorder import CallRecorder

    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    recorders = []
    for call_id in sys.argv[2:]:
        recorder = CallRecorder(os.path.join(folder, call_id + ".wav"))
        for ts in range(0, 1500, 20):
            recorder.add_caller(bytes(range(96, 256)), ts)
        recorders.append(recorder)
    os._exit(1)  # no finalize, no close
    """
)


def make_orphans(folder: Path, call_ids: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CRASHING_CALLS, str(folder), *call_ids],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr.decode()
    assert len(list(folder.glob("*.wav"))) == len(call_ids)


# --- In one process: two threads, each with its own lock fds, the race forced ----------------


@pytest.mark.django_db(transaction=True)
def test_a_recording_recovered_by_a_sibling_meanwhile_is_skipped_without_error(
    bridge_settings: Path, settings: Any, error_log: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connection
    from django.utils import timezone

    from calls.models import Call, CallStatus
    from realtime import lifecycle

    calls = [
        Call.objects.create(
            call_sid=f"CA{i:032x}",
            caller="+15005550006",
            started_at=timezone.now(),
            status=CallStatus.IN_PROGRESS,
        )
        for i in range(4)
    ]
    folder = lifecycle.in_progress_dir()
    make_orphans(folder, [str(call.pk) for call in calls])

    # B globs every WAV, then waits until A has recovered them all before it takes any lock.
    b_globbed, a_done = threading.Event(), threading.Event()
    take = lifecycle._take_orphan_lock

    def take_after_a(lock_path: Path) -> int | None:
        if threading.current_thread().name == "B":
            b_globbed.set()
            assert a_done.wait(60)
        return take(lock_path)

    monkeypatch.setattr(lifecycle, "_take_orphan_lock", take_after_a)
    results: dict[str, list[str]] = {}

    def worker(name: str, done: threading.Event | None) -> None:
        try:
            results[name] = lifecycle.recover_orphaned_calls()
        finally:
            connection.close()
            if done is not None:
                done.set()

    b = threading.Thread(target=worker, args=("B", None), name="B")
    b.start()
    assert b_globbed.wait(30)
    a = threading.Thread(target=worker, args=("A", a_done), name="A")
    a.start()
    a.join(60)
    b.join(60)

    assert sorted(results["A"]) == sorted(str(call.pk) for call in calls)
    assert results["B"] == []
    assert [record.getMessage() for record in error_log.records] == []
    assert list(folder.iterdir()) == []  # no WAV, no stray lock file
    for call in calls:
        call.refresh_from_db()
        assert call.status == CallStatus.COMPLETED
        assert call.end_reason == lifecycle.INTERRUPTED_REASON


# --- Two real processes started together over the same folder and database ------------------

CREATE_CALLS = """
import uuid
from django.utils import timezone
from calls.models import Call, CallStatus
for i in range({n}):
    call = Call.objects.create(call_sid=f"CA{{i:032x}}", caller="+15005550006",
                               started_at=timezone.now(), status=CallStatus.IN_PROGRESS)
    print(call.pk)
"""

# Each process sets Django up, says it is ready, waits for its sibling, then recovers at once.
RECOVER = textwrap.dedent(
    """
    import json, os, sys, time
    import django
    django.setup()
    from realtime.lifecycle import recover_orphaned_calls

    ready, sibling = sys.argv[1], sys.argv[2]
    open(ready, "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(sibling) and time.monotonic() < deadline:
        time.sleep(0.005)
    print(json.dumps(recover_orphaned_calls()))
    """
)


def _call_rows(database: Path) -> dict[str, tuple[str, str, int]]:
    import sqlite3

    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT c.id, c.status, c.end_reason, count(r.id) FROM calls_call c "
            "LEFT JOIN calls_recording r ON r.call_id = c.id GROUP BY c.id"
        ).fetchall()
    return {str(uuid.UUID(row[0])): (row[1], row[2], row[3]) for row in rows}


@pytest.mark.slow
def test_two_processes_recovering_together_recover_each_call_exactly_once(tmp_path: Path) -> None:
    from realtime.lifecycle import INTERRUPTED_REASON

    database = tmp_path / "server.sqlite3"
    env = base_env(
        DJANGO_ENV="development",
        DJANGO_SETTINGS_MODULE="bridge_project.settings",
        DATABASE_URL=f"sqlite:///{database}",
        RECORDING_STORAGE_PATH=str(tmp_path / "recordings"),
        SECRET_KEY="test-only-secret-key-for-the-recovery-race-000000000000",
    )
    manage_ok(env, "migrate", "--noinput", "-v0")
    output = manage_ok(env, "shell", "-c", CREATE_CALLS.format(n=ORPHANS))
    call_ids = [line.strip() for line in output.splitlines() if line.strip()][-ORPHANS:]
    in_progress = tmp_path / "recordings" / "in-progress"
    make_orphans(in_progress, [str(uuid.UUID(call_id)) for call_id in call_ids])

    flags = [str(tmp_path / "ready-a"), str(tmp_path / "ready-b")]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RECOVER, mine, sibling],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mine, sibling in (flags, flags[::-1])
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
        assert "ERROR" not in stderr and "Traceback" not in stderr, stderr

    recovered = Counter(
        call_id for stdout, _ in outputs for call_id in json.loads(stdout.splitlines()[-1])
    )
    expected = {str(uuid.UUID(call_id)) for call_id in call_ids}
    assert set(recovered) == expected
    assert max(recovered.values()) == 1  # exactly once
    assert list(in_progress.iterdir()) == []  # no WAV, no stray lock file
    rows = _call_rows(database)
    assert {rows[call_id] for call_id in expected} == {("completed", INTERRUPTED_REASON, 1)}
