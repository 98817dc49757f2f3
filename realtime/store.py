"""The call store: a per-call write queue drained in batches by a writer task.

The hot-path rule (ARCHITECTURE.md): nothing on the per-frame path awaits the database. The
bridge only appends to in-memory lists (`put_nowait` style); a writer task wakes every
`flush_interval_s`, hands the batch to a dedicated writer thread, and on any database error
keeps the batch, backs off and retries, so a database outage delays rows but loses none.
The call itself never waits for the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import close_old_connections, connections

from calls import services
from calls.events import CALL_ENDED, CALL_STARTED, CALL_UPDATED, call_event_publish
from calls.services import CallOutcome, TranscriptLine

logger = logging.getLogger(__name__)
T = TypeVar("T")

# One thread for every call's writes: writes serialize (what SQLite wants anyway) and never
# occupy Django's shared sync thread, which request handling and /health need.
_WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="call-writer")
# Finalizations still retrying after their call's socket closed (kept for shutdown to await).
PENDING_FINALIZATIONS: set[asyncio.Task[None]] = set()


def writer_connections_close() -> None:
    """Close the writer thread's database connections (at shutdown, or between tests)."""
    _WRITER.submit(connections.close_all).result()


def _in_writer_thread(work: Callable[[], T]) -> Callable[[], T]:
    def run() -> T:
        close_old_connections()  # drop connections that are broken or past CONN_MAX_AGE
        try:
            return work()
        except Exception:
            # A failed connection must not be reused by the retry.
            connections.close_all()
            raise

    return run


@dataclass
class _Pending:
    stream: dict[str, Any] | None = None
    transcripts: list[TranscriptLine] = field(default_factory=list)
    analytics: dict[str, Any] | None = None

    def empty(self) -> bool:
        return self.stream is None and not self.transcripts and self.analytics is None


class CallStore:
    def __init__(
        self,
        call_id: str,
        *,
        flush_interval_s: float = 0.5,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 5.0,
    ) -> None:
        self.call_id = call_id
        self.flush_interval_s = flush_interval_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.write_failures = 0
        self.rows_written = 0
        self._pending = _Pending()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # --- called by the bridge: never awaits ---------------------------------------------------

    def stream_started(
        self, *, stream_sid: str, custom_parameters: dict[str, str], tracks: list[str]
    ) -> None:
        self._pending.stream = {
            "stream_sid": stream_sid,
            "custom_parameters": custom_parameters,
            "tracks": tracks,
        }
        self._wake.set()

    def add_transcript(self, line: TranscriptLine) -> None:
        self._pending.transcripts.append(line)
        self._wake.set()

    def set_analytics(self, values: dict[str, Any]) -> None:
        self._pending.analytics = dict(values)  # latest measures win; no need to write older ones

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"call-store-{self.call_id}")

    # --- the writer ---------------------------------------------------------------------------

    def _take(self) -> _Pending:
        batch, self._pending = self._pending, _Pending()
        return batch

    def _put_back(self, batch: _Pending) -> None:
        """A failed batch goes back in front of anything queued since."""
        newer = self._pending
        batch.transcripts.extend(newer.transcripts)
        self._pending = _Pending(
            stream=newer.stream or batch.stream,
            transcripts=batch.transcripts,
            analytics=newer.analytics or batch.analytics,
        )

    def _write(self, batch: _Pending) -> int:
        from django.db import transaction

        with transaction.atomic():
            if batch.stream is not None:
                services.call_stream_started(call_id=self.call_id, **batch.stream)
            written = services.transcripts_add(call_id=self.call_id, lines=batch.transcripts)
            if batch.analytics is not None:
                services.analytics_update(call_id=self.call_id, values=batch.analytics)
        return written

    async def _flush_once(self) -> bool:
        batch = self._take()
        if batch.empty():
            return True
        loop = asyncio.get_running_loop()
        try:
            self.rows_written += await loop.run_in_executor(
                _WRITER, _in_writer_thread(lambda: self._write(batch))
            )
        except Exception as exc:
            self._put_back(batch)
            self.write_failures += 1
            logger.warning(
                "call store write failed (%s); %d transcript lines kept for retry",
                type(exc).__name__,
                len(self._pending.transcripts),
            )
            return False
        await self._publish_written(batch)
        return True

    async def _publish_written(self, batch: _Pending) -> None:
        """Tell the live feed what just reached the database (after, never before, the write)."""
        if batch.stream is not None:
            await call_event_publish(
                kind=CALL_STARTED, call_id=self.call_id, stream_sid=batch.stream["stream_sid"]
            )
        if batch.transcripts:
            lines = [
                {"speaker": line.speaker, "text": line.text, "start_ms": line.start_ms,
                 "end_ms": line.end_ms, "interrupted": line.interrupted}
                for line in batch.transcripts
            ]  # fmt: skip
            await call_event_publish(kind=CALL_UPDATED, call_id=self.call_id, transcripts=lines)

    async def _run(self) -> None:
        delay = self.retry_initial_s
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            self._wake.clear()
            if self._stopping:
                return
            if await self._flush_once():
                delay = self.retry_initial_s
                continue
            with contextlib.suppress(TimeoutError):  # back off, unless finalize wakes us
                await asyncio.wait_for(self._wake.wait(), delay)
            delay = min(delay * 2, self.retry_max_s)

    # --- the end of the call --------------------------------------------------------------------

    async def finalize(self, outcome: CallOutcome, *, give_up_after_s: float) -> bool:
        """Flush everything and close the call, retrying through database outages.

        Returns False only if the database stayed unavailable for give_up_after_s; the data
        is then logged so an operator can see what was lost.
        """
        if self._task is not None:
            # Not cancel(): a write already handed to the writer thread would finish there
            # with nobody to put its batch back if it failed. Let the loop stop by itself.
            self._stopping = True
            self._wake.set()
            await self._task
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after_s
        delay = self.retry_initial_s
        while True:
            if await self._flush_once():
                try:
                    await loop.run_in_executor(
                        _WRITER,
                        _in_writer_thread(
                            lambda: services.call_finalize(call_id=self.call_id, outcome=outcome)
                        ),
                    )
                except Exception as exc:
                    self.write_failures += 1
                    logger.warning("call finalize failed (%s); retrying", type(exc).__name__)
                else:
                    summary = {
                        key: outcome.analytics.get(key)
                        for key in ("interruptions", "turns", "latency_ms_avg", "sentiment_label")
                    }
                    await call_event_publish(
                        kind=CALL_ENDED, call_id=self.call_id, reason=outcome.end_reason, **summary
                    )
                    return True
            if loop.time() + delay > deadline:
                logger.error(
                    "gave up finalizing call %s after %.0f s; unsaved: %d transcript lines; %s",
                    self.call_id,
                    give_up_after_s,
                    len(self._pending.transcripts),
                    outcome,
                )
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max_s)
