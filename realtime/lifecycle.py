"""A bridge process's start and end: nothing is left "in progress" by a stop or a crash.

- Each live call holds an exclusive `flock` on `in-progress/<call_id>.lock` beside its growing
  WAV. The kernel drops the lock when the process dies, however it dies, so at start-up any
  in-progress recording whose lock can be taken belongs to a dead process: its WAV is
  recovered (audio.recorder.recover), stored, and its call closed as interrupted.
  Several processes may start (and recover) at once (`make run WORKERS=N`): whoever holds the
  lock recovers, and a WAV gone by the time its lock is taken was finished by its owner or a
  sibling, so it is skipped, and the lock file that taking it created is removed.
- On SIGTERM (ASGI lifespan shutdown) every call in flight is ended and its finalization
  (recording stored, rows written, status set) awaited up to a deadline before exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from audio.errors import AudioFormatError
from audio.recorder import recover
from calls import services
from calls.models import ACTIVE_STATUSES, Call, CallStatus
from calls.services import CallOutcome, RecordingFile

logger = logging.getLogger(__name__)

INTERRUPTED_REASON = "interrupted: the bridge process stopped before the call ended"
SHUTDOWN_REASON = "server shutting down"


def in_progress_dir() -> Path:
    folder = Path(settings.RECORDING_STORAGE_PATH) / "in-progress"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def recording_path(call_id: str) -> Path:
    """Where a call's WAV grows while it is in progress (moved to storage at the end)."""
    return in_progress_dir() / f"{call_id}.wav"


class RecordingLease:
    """Proof that a live process owns an in-progress recording (an exclusive flock)."""

    def __init__(self, call_id: str) -> None:
        self.path = in_progress_dir() / f"{call_id}.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)  # closing drops the lock
        self._fd = -1


def _is_file_at(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is still the file named `path` (not unlinked or replaced)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _take_orphan_lock(lock_path: Path) -> int | None:
    """The lock's fd if no live process holds it (its owner died), else None.

    flock locks the open file, not the name: a sibling may have unlinked the file we opened
    (it finished that recording) before we got its lock. Such a lock guards nothing, so it
    counts as not taken: whoever unlinks a lock file has removed its WAV first."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    if not _is_file_at(fd, lock_path):
        os.close(fd)
        return None
    return fd


def _drop_lock(fd: int, lock_path: Path) -> None:
    """Remove a lock file we hold (unlink first: the lock still guards the name meanwhile)."""
    lock_path.unlink(missing_ok=True)
    os.close(fd)


def _recover_one(wav: Path) -> bool:
    call_id = wav.stem
    try:
        info = recover(wav)
    except AudioFormatError:
        logger.exception("in-progress recording %s cannot be recovered; left in place", wav)
        return False
    outcome = CallOutcome(
        end_reason=INTERRUPTED_REASON,
        ended_at=timezone.now(),
        analytics={
            "caller_talk_s": round(info.caller_speech_s, 2),
            "agent_talk_s": round(info.agent_speech_s, 2),
        },
        recording=RecordingFile(
            path=wav,
            duration_s=info.duration_s,
            size_bytes=info.size_bytes,
            sample_rate=info.sample_rate,
            channels=info.channels,
        ),
    )
    if not Call.objects.filter(pk=call_id).exists():
        logger.error("in-progress recording %s has no call in this database; left in place", wav)
        return False
    services.call_finalize(call_id=call_id, outcome=outcome)
    wav.unlink()
    logger.warning("recovered call %s left in progress by a dead process", call_id)
    return True


def recover_orphaned_calls() -> list[str]:
    """Close the calls whose bridge process died; returns their ids. Run at start-up."""
    recovered = []
    for wav in sorted(in_progress_dir().glob("*.wav")):
        lock_path = wav.with_suffix(".lock")
        fd = _take_orphan_lock(lock_path)
        if fd is None:
            continue  # a live process (this one or a sibling) is recording or recovering it
        if not wav.exists():
            # Finished (stored by its call, or recovered by a sibling) since the glob; the lock
            # file is one our open just created.
            _drop_lock(fd, lock_path)
            continue
        try:
            done = _recover_one(wav)
        except BaseException:
            os.close(fd)  # a database error: never hold the lock for the process's lifetime
            raise
        if done:
            recovered.append(wav.stem)
            _drop_lock(fd, lock_path)
        else:
            os.close(fd)  # left in place, lock file included, for the next start to retry
    return recovered


def stale_calls_close(*, older_than: timedelta) -> int:
    """Close calls still "active" long after any call could last (their end was never seen:
    no stream ever connected, or it connected to a host whose files we cannot see)."""
    cutoff = timezone.now() - older_than
    stale = Call.objects.filter(status__in=ACTIVE_STATUSES, started_at__lt=cutoff)
    return stale.update(
        status=CallStatus.COMPLETED,
        end_reason=f"stale: no end seen within {older_than}",
        ended_at=timezone.now(),
        updated_at=timezone.now(),
    )


def startup_recovery() -> None:
    recovered = recover_orphaned_calls()
    closed = stale_calls_close(older_than=timedelta(hours=settings.STALE_CALL_AFTER_HOURS))
    if recovered or closed:
        logger.warning(
            "start-up: %d call(s) recovered, %d stale call(s) closed", len(recovered), closed
        )


async def shutdown_bridges(*, deadline_s: float) -> int:
    """End every call in flight and wait (up to deadline_s) for their finalization."""
    from realtime.bridge import ACTIVE_BRIDGES
    from realtime.store import PENDING_FINALIZATIONS

    bridges = list(ACTIVE_BRIDGES.values())
    for bridge in bridges:
        await bridge.end(SHUTDOWN_REASON, close_twilio=True)
    pending = list(PENDING_FINALIZATIONS)
    if pending:
        _, not_done = await asyncio.wait(pending, timeout=deadline_s)
        if not_done:
            logger.error("shutdown deadline: %d call(s) not finalized", len(not_done))
    return len(bridges)


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI lifespan: recover at start-up, finish calls on shutdown (uvicorn --lifespan on)."""
    from asgiref.sync import sync_to_async

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await sync_to_async(startup_recovery, thread_sensitive=True)()
            except Exception:
                # A broken database at start-up must not stop the server from serving calls.
                logger.exception("start-up recovery failed; will retry at the next start")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown_bridges(deadline_s=settings.SHUTDOWN_DEADLINE_S)
            await send({"type": "lifespan.shutdown.complete"})
            return
