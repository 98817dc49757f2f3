"""The call store: a per-call write queue drained in batches by a writer task.

The hot-path rule (ARCHITECTURE.md): nothing on the per-frame path awaits the database. The
bridge only appends to in-memory lists (`put_nowait` style); a writer task wakes every
`flush_interval_s` and hands the batch to a dedicated writer thread. When the database is
unavailable (locked, down, restarting) the batch is kept, and retried after a back-off, so an
outage delays rows but loses none. When the database refuses a row for good (a value out of
range, text it cannot store) retrying cannot help and would hold up every row behind it: the
batch is written part by part instead, and only the refused part is dropped, logged in full.
The call itself never waits for the writer.

At the end of the call the recording is uploaded on an upload thread, not the writer thread,
so a slow storage backend delays only that call's finalization, never other calls' writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import close_old_connections, connections, transaction

from calls import selectors, services
from calls.events import CALL_ENDED, CALL_STARTED, CALL_TOOL, CALL_UPDATED, call_event_publish
from calls.services import CallOutcome, RecordingFile, ToolCallLine, TranscriptLine

logger = logging.getLogger(__name__)
T = TypeVar("T")

# One thread for every call's writes: writes serialize (what SQLite wants anyway) and never
# occupy Django's shared sync thread, which request handling and /health need.
_WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="call-writer")
# Recordings go to storage (possibly a remote object store) on threads of their own: an
# upload takes as long as the file and the network make it, and on the writer thread it would
# hold up every other call's rows. No database access happens on these threads.
_UPLOADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="call-upload")
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
        except Exception as exc:
            # A failed connection must not be reused by the retry. (A refused row leaves the
            # connection sound: its transaction was rolled back.)
            if not services.write_error_is_permanent(exc):
                connections.close_all()
            raise

    return run


def _recording_upload(call_id: str, recording: RecordingFile) -> str | None:
    """(An upload thread.) The recording's storage name, or None if the local file is gone."""
    if not recording.path.exists():
        return None
    return services.recording_file_store(call_id=call_id, recording=recording)


async def call_stream_claim(
    *, call_id: str, stream_sid: str, call_sid: str
) -> dict[str, Any] | None:
    """services.call_stream_claim on the writer thread (once per call, never per frame): the
    call's agent snapshot once its stream is claimed, None when the claim is refused. A
    database that cannot answer refuses nothing: the call goes on with no snapshot ({})."""
    loop = asyncio.get_running_loop()
    claim = _in_writer_thread(
        lambda: services.call_stream_claim(
            call_id=call_id, stream_sid=stream_sid, call_sid=call_sid
        )
    )
    try:
        return await loop.run_in_executor(_WRITER, claim)
    except Exception as exc:
        logger.warning("stream claim for call %s unanswered (%s)", call_id, type(exc).__name__)
        return {}


@dataclass
class _Pending:
    stream: dict[str, Any] | None = None
    transcripts: list[TranscriptLine] = field(default_factory=list)
    tool_calls: list[ToolCallLine] = field(default_factory=list)
    analytics: dict[str, Any] | None = None

    def empty(self) -> bool:
        return (
            self.stream is None
            and not self.transcripts
            and not self.tool_calls
            and self.analytics is None
        )


@dataclass
class _Written:
    """What reached the database from a batch written part by part."""

    parts: _Pending = field(default_factory=_Pending)
    rows: int = 0


@dataclass
class _Closing:
    """The end of a call, kept across finalize's retries so no step is done twice."""

    outcome: CallOutcome
    recording_name: str | None = None  # None: not stored yet; "": none to store
    refused: bool = False  # the final write was refused for good: write it part by part


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
        clean = services.text_clean  # caller-chosen values: PostgreSQL's JSON refuses \u0000
        self._pending.stream = {
            "stream_sid": clean(stream_sid),
            "custom_parameters": {clean(k): clean(v) for k, v in custom_parameters.items()},
            "tracks": tracks,
        }
        self._wake.set()

    def add_transcript(self, line: TranscriptLine) -> None:
        # Cleaned here, before it can share a batch with other lines (a NUL from a keypad
        # tone would otherwise get the line refused).
        self._pending.transcripts.append(services.transcript_line_clean(line=line))
        self._wake.set()

    def add_tool_call(self, call: ToolCallLine) -> None:
        self._pending.tool_calls.append(call)
        self._wake.set()

    def set_analytics(self, values: dict[str, Any]) -> None:
        self._pending.analytics = dict(values)  # latest measures win; no need to write older ones

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"call-store-{self.call_id}")

    async def end_reason_note(self, reason: str, *, timeout_s: float = 2.0) -> bool:
        """Record why the call ends now, ahead of finalization: Twilio asks how to go on
        (/twilio/stream-ended) the moment the stream closes, from any process, and the answer
        depends on it. Bounded: False (the caller gets the fallback) if it cannot be written."""
        loop = asyncio.get_running_loop()
        note = _in_writer_thread(
            lambda: services.call_end_reason_set(call_id=self.call_id, reason=reason)
        )
        try:
            await asyncio.wait_for(loop.run_in_executor(_WRITER, note), timeout_s)
        except Exception as exc:
            logger.warning("end reason not recorded before the stream closed (%s)", exc)
            return False
        return True

    async def answered_by(self) -> str:
        """The call's AnsweredBy (answering machine detection), "" until Twilio has said."""
        return await self._on_writer(lambda: selectors.call_answered_by(call_id=self.call_id))

    # --- the writer ---------------------------------------------------------------------------

    def _take(self) -> _Pending:
        batch, self._pending = self._pending, _Pending()
        return batch

    def _put_back(self, batch: _Pending) -> None:
        """A failed batch goes back in front of anything queued since."""
        newer = self._pending
        batch.transcripts.extend(newer.transcripts)
        batch.tool_calls.extend(newer.tool_calls)
        self._pending = _Pending(
            stream=newer.stream or batch.stream,
            transcripts=batch.transcripts,
            tool_calls=batch.tool_calls,
            analytics=newer.analytics or batch.analytics,
        )

    async def _on_writer(self, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_WRITER, _in_writer_thread(work))

    def _write(self, batch: _Pending) -> int:
        with transaction.atomic():
            if batch.stream is not None:
                services.call_stream_started(call_id=self.call_id, **batch.stream)
            written = services.transcripts_add(call_id=self.call_id, lines=batch.transcripts)
            written += services.tool_calls_add(call_id=self.call_id, lines=batch.tool_calls)
            if batch.analytics is not None:
                services.analytics_update(call_id=self.call_id, values=batch.analytics)
        return written

    def _drop_refused(self, exc: Exception, what: str, value: object) -> None:
        """Drop a part refused for good, logged in full so an operator can restore it;
        any other error is re-raised (the database is unavailable: keep it for retry)."""
        if not services.write_error_is_permanent(exc):
            raise exc
        logger.error(
            "call %s: the database refused %s for good (%s: %s); dropped: %r",
            self.call_id,
            what,
            type(exc).__name__,
            exc,
            value,
        )

    def _write_each(self, left: _Pending, done: _Written) -> None:
        """Write a refused batch part by part (writer thread), each in its own transaction.

        Parts leave `left` as they land (into `done`) or are dropped; if the database becomes
        unavailable meanwhile, the error propagates and `left` is what is still to write.
        """
        if left.stream is not None:
            try:
                with transaction.atomic():
                    services.call_stream_started(call_id=self.call_id, **left.stream)
                done.parts.stream = left.stream
            except Exception as exc:
                self._drop_refused(exc, "the stream's details", left.stream)
            left.stream = None
        while left.transcripts:
            line = left.transcripts[0]
            try:
                with transaction.atomic():
                    done.rows += services.transcripts_add(call_id=self.call_id, lines=[line])
                done.parts.transcripts.append(line)
            except Exception as exc:
                self._drop_refused(exc, "a transcript line", line)
            left.transcripts.pop(0)
        while left.tool_calls:
            call = left.tool_calls[0]
            try:
                with transaction.atomic():
                    done.rows += services.tool_calls_add(call_id=self.call_id, lines=[call])
                done.parts.tool_calls.append(call)
            except Exception as exc:
                self._drop_refused(exc, "a tool call", call)
            left.tool_calls.pop(0)
        if left.analytics is not None:
            refused = services.analytics_update_by_field(
                call_id=self.call_id, values=left.analytics
            )
            for part, (value, exc) in refused.items():
                self._drop_refused(exc, part, value)
            left.analytics = None

    async def _flush_once(self) -> bool:
        batch = self._take()
        if batch.empty():
            return True
        try:
            self.rows_written += await self._on_writer(lambda: self._write(batch))
        except Exception as exc:
            self.write_failures += 1
            if not services.write_error_is_permanent(exc):
                self._put_back(batch)
                logger.warning(
                    "call store write failed (%s); %d transcript lines kept for retry",
                    type(exc).__name__,
                    len(self._pending.transcripts),
                )
                return False
            return await self._flush_each(batch, exc)
        await self._publish_written(batch)
        return True

    async def _flush_each(self, batch: _Pending, exc: Exception) -> bool:
        """The database refused something in the batch for good: find it by writing the parts
        one by one, so the good rows land now and later ones are not held up behind it."""
        logger.warning(
            "call store batch refused (%s: %s); writing its parts one by one",
            type(exc).__name__,
            exc,
        )
        done = _Written()
        try:
            await self._on_writer(lambda: self._write_each(batch, done))
        except Exception as transient:
            self.write_failures += 1
            self._put_back(batch)  # only what had not landed yet
            logger.warning(
                "call store write failed (%s); %d transcript lines kept for retry",
                type(transient).__name__,
                len(self._pending.transcripts),
            )
            return False
        finally:
            self.rows_written += done.rows
            await self._publish_written(done.parts)
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
        for call in batch.tool_calls:
            await call_event_publish(
                kind=CALL_TOOL,
                call_id=self.call_id,
                name=call.name,
                tool_kind=call.kind,
                status=call.status,
                start_ms=call.start_ms,
                end_ms=call.end_ms,
            )

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

        Returns True once the call is closed. False if the database stayed unavailable for
        give_up_after_s (the data is then logged so an operator can see what was lost, and the
        local recording is kept for start-up recovery), or at once if the call's own row
        cannot be written at all (its call deleted). Values the database refuses for good are
        logged and left out; they never keep the call in progress.
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
        closing = _Closing(outcome)
        while True:
            if await self._flush_once():
                try:
                    closed = await self._close(closing)
                except Exception as exc:
                    self.write_failures += 1
                    logger.warning("call finalize failed (%s); retrying", type(exc).__name__)
                else:
                    if closed:
                        await self._publish_ended(outcome)
                    return closed
            if loop.time() + delay > deadline:
                # A recording already uploaded stays in storage (its row may even have been
                # committed by an attempt whose answer was lost): named here, never deleted.
                logger.error(
                    "gave up finalizing call %s after %.0f s; unsaved: %d transcript lines; "
                    "recording in storage: %r; %s",
                    self.call_id,
                    give_up_after_s,
                    len(self._pending.transcripts),
                    closing.recording_name or None,
                    outcome,
                )
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max_s)

    async def _close(self, closing: _Closing) -> bool:
        """Store the recording (once), then write the rows; True once the call is closed.

        Raises on a transient failure; the next attempt skips what is already done, and a
        stored recording is kept so only the rows are retried.
        """
        if closing.recording_name is None:
            closing.recording_name = await self._recording_store(closing.outcome)
        name = closing.recording_name
        if not closing.refused:
            try:
                await self._on_writer(
                    lambda: services.call_finalize_rows(
                        call_id=self.call_id, outcome=closing.outcome, recording_name=name
                    )
                )
                return True
            except Exception as exc:
                if not services.write_error_is_permanent(exc):
                    raise
                # Retrying the same values would fail the same way for 15 minutes.
                logger.error(
                    "call %s: the database refused the final write for good (%s: %s); "
                    "writing it part by part. Outcome: %r; recording stored as %r",
                    self.call_id,
                    type(exc).__name__,
                    exc,
                    closing.outcome,
                    name,
                )
                closing.refused = True
        refused = await self._on_writer(
            lambda: services.call_finalize_parts(
                call_id=self.call_id, outcome=closing.outcome, recording_name=name
            )
        )
        for part, (value, exc) in refused.items():
            logger.error(
                "call %s: final %s refused for good (%s: %s); left out: %r",
                self.call_id,
                part,
                type(exc).__name__,
                exc,
                value,
            )
        return "call" not in refused

    async def _recording_store(self, outcome: CallOutcome) -> str:
        """Upload the recording on an upload thread; its storage name, or "" for none."""
        recording = outcome.recording
        if recording is None:
            return ""
        stored = await self._on_writer(lambda: services.recording_stored_name(call_id=self.call_id))
        if stored is not None:
            return ""  # stored by an earlier finalization: not again
        loop = asyncio.get_running_loop()
        try:
            name = await loop.run_in_executor(_UPLOADS, _recording_upload, self.call_id, recording)
        except Exception as exc:
            logger.warning("call %s: recording upload failed (%s: %s)", self.call_id,
                           type(exc).__name__, exc)  # fmt: skip
            raise
        if name is None:
            # Gone for good: no retry brings it back, so the call is closed without it.
            logger.error("call %s: recording %r is missing; closed without it", self.call_id,
                         recording)  # fmt: skip
            return ""
        return name

    async def _publish_ended(self, outcome: CallOutcome) -> None:
        summary = {
            key: outcome.analytics.get(key)
            for key in ("interruptions", "turns", "latency_ms_avg", "sentiment_label")
        }
        await call_event_publish(
            kind=CALL_ENDED, call_id=self.call_id, reason=outcome.end_reason, **summary
        )
