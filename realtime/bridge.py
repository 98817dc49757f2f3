"""CallBridge: one caller's Twilio media stream joined to one model session.

Plain Python, one object per call, no ORM objects: persistence goes through the CallStore's
queue, so nothing on the per-frame path awaits the database or the filesystem.

The call timeline is milliseconds since the Twilio `start` message (Twilio's media timestamps
count from the same moment). Agent audio is tracked as the caller hears it: Twilio plays it at
real time from when we send it, queued behind earlier audio, and echoes each `mark` when
playback reaches it; a `clear` flushes what was not played yet. Marks go out every
TWILIO_MARK_INTERVAL_MS of audio and at the end of each reply, not after every delta: each one
is two more WebSocket messages, and between marks playback advances at real time anyway.

The model's events do not arrive in spoken order: the caller's transcription lands after the
reply has started (often after it ended), and a reply cut short has its text only in the
response's closing events. Lines are therefore placed by their start on the call timeline, not
by arrival, and the conversation replayed after a reconnect is ordered the same way.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from django.conf import settings
from django.utils import timezone

from agents.tools import END_CALL, TRANSFER_CALL, tool_name
from audio.errors import AudioFormatError
from audio.recorder import CallRecorder, RecordingInfo
from bridge_project.logging import bind_call_context
from calls.sentiment import sentiment_of
from calls.services import CallOutcome, RecordingFile, ToolCallLine, TranscriptLine
from realtime import model as m
from realtime.lifecycle import RecordingLease
from realtime.store import PENDING_FINALIZATIONS, CallStore
from realtime.tools import CallInfo, ToolOutcome, error_output, run_tool
from realtime.track import ULAW_BYTES_PER_MS, TrackPlayback
from telephony import messages as tw
from telephony import rest
from telephony.twiml import (
    AGENT_ENDED_REASON,
    AGENT_PARAMETER,
    CALLER_PARAMETER,
    DIALLED_PARAMETER,
    FAX_REASON,
    TIME_LIMIT_REASON,
    VOICEMAIL_LEFT_REASON,
    VOICEMAIL_REASON,
    transfer_twiml,
    whisper_url,
)

logger = logging.getLogger(__name__)

# Errors the service answers to requests that raced its own actions: harmless, not counted.
#  - response.cancel after the service had already cancelled (server VAD does on speech);
#  - the hang-up commit after the VAD had already closed the turn (an empty buffer).
BENIGN_MODEL_ERRORS = frozenset({"response_cancel_not_active", "input_audio_buffer_commit_empty"})
# Twilio stamps media on the stream's clock, which starts with `start` as ours does; a frame
# stamped further ahead of our clock than this cannot be Twilio's and would make the recorder
# write that much silence at once.
MAX_MEDIA_LEAD_MS = 5_000.0
# The line of a caller turn the service heard but could not transcribe.
INAUDIBLE_TEXT = "[inaudible]"
# How long the bridge waits, at the time limit, for a reply in flight to finish and then for
# the goodbye to be said and heard, before it hangs up anyway.
FAREWELL_WAIT_S = 15.0
# The calls this process is bridging, by call id (one media stream per call).
ACTIVE_BRIDGES: dict[str, CallBridge] = {}
# An outbound call waits for answering machine detection at most Twilio's own timeout
# (OUTBOUND_AMD_TIMEOUT_S) plus this, then goes on as if a person answered; the result is read
# from the call's record (the AMD webhook may reach another process) this often.
AMD_GRACE_S = 3.0
AMD_POLL_S = 0.25
# A continuous track (GPT-Live) has no end of reply: a reply has been heard once the track has
# played this long without speech after it.
TRACK_QUIET_MS = 700.0


@dataclass(frozen=True)
class OutboundPlan:
    """What an outbound call does about who answers (its snapshot's "outbound" entry, from
    telephony.outbound): machine_detection hangup | voicemail | off, and the message to leave."""

    machine_detection: str = "off"
    voicemail_message: str = ""

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any]) -> OutboundPlan | None:
        values = snapshot.get("outbound")
        if not isinstance(values, Mapping):
            return None
        return cls(
            machine_detection=str(values.get("machine_detection") or "off"),
            voicemail_message=str(values.get("voicemail_message") or ""),
        )

    @property
    def detects_machines(self) -> bool:
        return self.machine_detection in ("hangup", "voicemail")


class TwilioSocket(Protocol):
    async def send_text(self, text: str) -> None: ...

    async def close(self, code: int = 1000) -> None: ...


@dataclass
class AgentItem:
    """One assistant audio item as the caller hears it.

    Audio is counted in bytes (8 per ms), not ms: deltas are not whole milliseconds, and the
    echo of the reply's last mark must compare equal to what was sent, exactly.
    """

    item_id: str
    play_start_ms: float
    sent_bytes: int = 0
    marked_bytes: int = 0  # sent_bytes as of the last mark sent
    confirmed_ms: float = 0.0  # played, per the last echoed mark
    confirmed_at_ms: float | None = None  # when that mark came back
    transcript: str | None = None
    interrupted: bool = False
    heard_ms: float | None = None  # set where the caller cut it (barge-in, hang-up)
    written: bool = False

    @property
    def sent_ms(self) -> float:
        return self.sent_bytes / ULAW_BYTES_PER_MS


@dataclass
class CallerSpan:
    """One caller turn on the call timeline, from speech start to the end of their voice."""

    start_ms: float
    end_ms: float | None = None  # set when the turn is closed (VAD or hang-up commit)


@dataclass(frozen=True, order=True)
class ContextLine:
    """A line of the conversation, sortable into spoken order (start on the call timeline)."""

    start_ms: float
    sequence: int
    item: m.ContextItem = field(compare=False)


USAGE_KEYS = (
    "input_audio_tokens",
    "output_audio_tokens",
    "input_text_tokens",
    "output_text_tokens",
    "cached_audio_tokens",
    "cached_text_tokens",
)


@dataclass
class Measures:
    interruptions: int = 0
    turns: int = 0
    reconnects: int = 0
    frames_missing: int = 0
    frames_late: int = 0
    frames_malformed: int = 0
    model_errors: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    # Response latency per reply: end of the caller's speech to the reply's first audio
    # reaching the caller (see CallBridge._on_audio_delta).
    latencies_ms: list[float] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USAGE_KEYS, 0))


def estimated_cost_usd(usage: Mapping[str, int], prices_per_m: Mapping[str, float]) -> float:
    """The list price of the usage the service reported.

    Each kind of input at its own rate, and its cached part at the cached rate of that kind:
    cached tokens are a subset of the input tokens of their kind, so they come off the
    full-rate count rather than being billed twice.
    """
    cached_audio = min(usage["cached_audio_tokens"], usage["input_audio_tokens"])
    cached_text = min(usage["cached_text_tokens"], usage["input_text_tokens"])
    total = (
        (usage["input_audio_tokens"] - cached_audio) * prices_per_m["input_audio"]
        + cached_audio * prices_per_m["cached_input_audio"]
        + (usage["input_text_tokens"] - cached_text) * prices_per_m["input_text"]
        + cached_text * prices_per_m["cached_input_text"]
        + usage["output_audio_tokens"] * prices_per_m["output_audio"]
        + usage["output_text_tokens"] * prices_per_m["output_text"]
    )
    return total / 1_000_000


def live_cost_usd(
    billed_seconds: float,
    usage: Mapping[str, int],
    per_minute_usd: float,
    backend_prices_per_m: Mapping[str, float],
) -> float:
    """GPT-Live's list price: the session's seconds, plus the tokens of the Responses model
    tool calls were delegated to (text only; cached input is part of the input)."""
    cached = min(usage["cached_text_tokens"], usage["input_text_tokens"])
    tokens = (
        (usage["input_text_tokens"] - cached) * backend_prices_per_m["input_text"]
        + cached * backend_prices_per_m["cached_input_text"]
        + usage["output_text_tokens"] * backend_prices_per_m["output_text"]
    )
    return billed_seconds / 60.0 * per_minute_usd + tokens / 1_000_000


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class CallBridge:
    def __init__(
        self,
        *,
        call_id: str,
        start: tw.Start,
        twilio: TwilioSocket,
        model_factory: Callable[[m.ContextProvider, m.AgentConfig], m.ModelSession],
        recorder: CallRecorder,
        agent: m.AgentConfig,
        store: CallStore,
        lease: RecordingLease | None = None,
        clock: Callable[[], float] = time.monotonic,
        outbound: OutboundPlan | None = None,
    ) -> None:
        self.call_id = call_id
        self.stream_sid = start.stream_sid
        self.call_sid = start.call_sid
        self.start_message = start
        self.twilio = twilio
        self.agent = agent
        self.model = model_factory(self.context, agent)
        # GPT-Live: one continuous agent track per session, lines from timed fragments.
        self.continuous = self.model.continuous_track
        self._track: TrackPlayback | None = None  # the current session's track
        self._caller_line_unanswered_end_ms: float | None = None  # for the next reply's latency
        self.recorder = recorder
        self.store = store
        self.lease = lease
        self.clock = clock
        self.mark_interval_ms: float = settings.TWILIO_MARK_INTERVAL_MS
        self.t0 = clock()
        self.measures = Measures()
        self.ended = False  # no more caller frames are taken; the call is being finished
        self.finalization: asyncio.Task[None] | None = None
        self._ending: asyncio.Task[None] | None = None
        self._model_task: asyncio.Task[None] | None = None  # connect, then consume events
        self._model_up = False  # a session is configured and its socket has not dropped
        self._model_changed = asyncio.Event()  # set per model event (waits re-check on it)
        self._time_limit: asyncio.Task[None] | None = None
        # Outbound: until answering machine detection says who answered, the model hears
        # nothing (it would answer a machine's greeting) and says nothing.
        self.outbound = outbound
        self._holding_caller_audio = outbound is not None and outbound.detects_machines
        self._answering: asyncio.Task[None] | None = None
        self._idle_items: set[str] = set()  # silent turns the service committed at idle
        # Tools: the agent's by the name the model calls them, a task per call (by call_id),
        # and per finished response the calls still unanswered (its reply waits for them).
        self._tools = {tool_name(tool): tool for tool in agent.tools}
        self._tool_tasks: dict[str, asyncio.Task[None]] = {}
        self._answered: set[str] = set()
        self._unanswered: dict[str, set[str]] = {}
        self.call_info = CallInfo(
            id=call_id,
            call_sid=start.call_sid,
            caller=start.custom_parameters.get(CALLER_PARAMETER, ""),
            agent=start.custom_parameters.get(AGENT_PARAMETER, ""),
        )
        self._dialled = start.custom_parameters.get(DIALLED_PARAMETER, "")
        self._sequence = 0
        self._context: list[ContextLine] = []
        self._last_chunk = 0
        # Model-side bookkeeping.
        self._session_origin_ms: float | None = None  # call time of the session's first audio
        self._caller_audio_end_ms = 0.0  # call time where the last caller frame sent ends
        self._caller_spans: dict[str, CallerSpan] = {}  # turns not transcribed yet
        self._awaiting_reply_since_ms: float | None = None  # end of the caller's last speech
        self._response_in_progress = False
        self._turn_unanswered = False  # the caller finished a turn no reply has completed
        # Playback bookkeeping.
        self._items: dict[str, AgentItem] = {}
        self._current_item: AgentItem | None = None
        self._playback_end_ms = 0.0
        self._outstanding_marks: set[str] = set()
        self._cleared_marks: set[str] = set()

    # --- lifecycle --------------------------------------------------------------------------------

    def now_ms(self) -> float:
        return (self.clock() - self.t0) * 1000.0

    def context(self) -> list[m.ContextItem]:
        """The conversation so far in spoken order, replayed into a fresh model session after a
        reconnect (lines arrive out of order: see the module docstring)."""
        return [line.item for line in sorted(self._context)]

    async def start(self) -> None:
        """Start bridging. The model session connects in the background: the caller's frames
        keep being read meanwhile (and wait for the session in its backlog), so a slow connect
        neither stalls the media stream nor makes its frames arrive later as a burst."""
        bind_call_context(call_sid=self.call_sid, stream_sid=self.stream_sid)
        self.store.start()
        self.store.stream_started(
            stream_sid=self.stream_sid,
            custom_parameters={
                k: v for k, v in self.start_message.custom_parameters.items() if k != "token"
            },
            tracks=self.start_message.tracks,
        )
        self._model_task = asyncio.create_task(self._run_model(), name=f"model-{self.call_id}")
        if self.agent.max_call_minutes:
            self._time_limit = asyncio.create_task(
                self._end_at_time_limit(self.agent.max_call_minutes * 60.0)
            )

    async def _run_model(self) -> None:
        try:
            await self.model.connect()
        except m.ModelUnavailable as exc:
            logger.error("model unavailable at call start: %s", exc)
            await self.end(f"model unavailable: {exc}"[:200], close_twilio=True)
            return
        logger.info("call bridged")
        await self._consume_model_events()

    async def end(
        self,
        reason: str,
        *,
        close_twilio: bool = False,
        settle: bool = False,
        hang_up: bool = False,
        handed_over: bool = False,
    ) -> None:
        """Finish the call once; a later call waits for the first to hand over to finalization.

        `settle` (the caller hung up): the turn they were speaking is committed, and pending
        transcriptions and the agent's last line get up to CALL_END_SETTLE_S to arrive, so the
        last words before a hang-up are on the record. `close_twilio` hands the call back to
        Twilio, which asks /twilio/stream-ended how to go on: the fallback (message, human).
        `hang_up` (the bridge ends the call on purpose): the reason is recorded first, then the
        call is hung up through Twilio's REST API, or, where that is not available, by closing
        the stream (/twilio/stream-ended then answers a hang-up for that reason).
        `handed_over` (a transfer): the call goes on at Twilio without us; its status
        callback, not this end, closes it.
        """
        if self._ending is None:
            self.ended = True
            self._ending = asyncio.create_task(
                self._end(
                    reason,
                    close_twilio=close_twilio,
                    settle=settle,
                    hang_up=hang_up,
                    handed_over=handed_over,
                )
            )
        await asyncio.shield(self._ending)

    async def _end(
        self, reason: str, *, close_twilio: bool, settle: bool, hang_up: bool, handed_over: bool
    ) -> None:
        end_ms = self.now_ms()
        self._cut_playback(end_ms)
        if settle:
            await self._settle_model()
        for line in self.model.finish_lines():
            if type(line) is m.TimedLine:
                self._on_timed_line(line)
        self._settle_agent_lines(force=True)
        tasks = (self._model_task, self._time_limit, self._answering, *self._tool_tasks.values())
        for task in tasks:
            if task is not None and task is not asyncio.current_task() and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.model.close()
        if hang_up:
            await self.store.end_reason_note(reason)
            close_twilio = not await self._hang_up_through_rest()
        if close_twilio:
            with contextlib.suppress(Exception):
                await self.twilio.close(1000)
        self.finalization = asyncio.create_task(self._finalize(reason, end_ms, handed_over))
        PENDING_FINALIZATIONS.add(self.finalization)
        self.finalization.add_done_callback(PENDING_FINALIZATIONS.discard)
        logger.info("call ended: %s", reason)

    async def _end_at_time_limit(self, limit_s: float) -> None:
        """The agent's max_call_minutes: let a reply in flight finish, have the agent say
        goodbye, let the caller hear it, then hang up (each wait bounded)."""
        await asyncio.sleep(max(0.0, limit_s - self.now_ms() / 1000.0))
        if self.ended:
            return
        logger.info("call time limit of %.0f min reached: saying goodbye", limit_s / 60)
        await self._wait_for(lambda: not self._response_in_progress, FAREWELL_WAIT_S)
        replies_before = self.measures.turns
        await self._say("The call has reached its time limit.", settings.CALL_TIME_LIMIT_GOODBYE)

        await self._wait_for(
            lambda: self.measures.turns > replies_before and self._reply_heard(), FAREWELL_WAIT_S
        )
        await self.end(TIME_LIMIT_REASON, hang_up=True)

    def _reply_heard(self) -> bool:
        """No reply in flight, and all the agent's audio sent has played to the caller. On a
        continuous track: its last speech has played and the track has been quiet since."""
        if self.continuous:
            track = self._track
            if track is None or track.speech_until_ms is None:
                return True
            return self.now_ms() >= track.speech_until_ms + TRACK_QUIET_MS
        return not self._response_in_progress and self._playback_end_ms <= self.now_ms()

    async def _say(self, occasion: str, words: str) -> None:
        """Ask for one reply that says `words` as written (quoted, so the model, and the
        stand-in, know exactly what to say)."""
        quoted = words.replace('"', "'")
        await self.model.instruct(f'{occasion} Say exactly this, nothing more: "{quoted}"')

    async def _wait_for(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until `condition()` holds (re-checked on each model event and every 100 ms,
        since playback advances with time, not events); False after timeout_s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._model_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._model_changed.wait(), min(0.1, remaining))
        return True

    def _cut_playback(self, end_ms: float) -> None:
        """Agent audio the caller had not heard when the call ended, they never will."""
        item = self._current_item
        if item is None or item.interrupted or self._playback_end_ms <= end_ms:
            return
        item.interrupted = True
        item.play_start_ms = min(item.play_start_ms, end_ms)
        item.heard_ms = self.heard_ms(item, end_ms)

    async def _settle_model(self) -> None:
        """The caller hung up: end the turn they were speaking, stop the reply nobody will hear,
        and wait (bounded) for the transcriptions and the reply's text still on their way."""
        if settings.CALL_END_SETTLE_S <= 0 or not self._model_up:
            return
        with contextlib.suppress(Exception):  # the socket may be going down too
            if self._response_in_progress:
                await self.model.cancel_response()
            if self.continuous:
                await self.model.commit_audio()  # no turn events: the line falls silent
            elif open_turn := next(
                (s for s in self._caller_spans.values() if s.end_ms is None), None
            ):
                open_turn.end_ms = max(open_turn.start_ms, self._caller_audio_end_ms)
                await self.model.commit_audio()
        settled = await self._wait_for(self._settled, settings.CALL_END_SETTLE_S)
        if not settled and not self.continuous:
            logger.info("call end: gave up waiting for the model's last events")

    def _settled(self) -> bool:
        """Nothing more to wait for: no reply in flight, every closed caller turn transcribed,
        every agent item that reached the caller has its text. A continuous-track model never
        says a transcript is complete: the whole CALL_END_SETTLE_S is given to it."""
        if not self._model_up:
            return True
        if self.continuous:
            return False
        if self._response_in_progress:
            return False
        if any(span.end_ms is not None for span in self._caller_spans.values()):
            return False
        return all(item.transcript is not None for item in self._items.values() if item.sent_bytes)

    async def _hang_up_through_rest(self) -> bool:
        try:
            await asyncio.to_thread(rest.call_hang_up, call_sid=self.call_sid)
        except rest.RestUnavailable as exc:
            logger.info("hanging up by closing the stream: %s", exc)
            return False
        return True

    async def _finalize(self, reason: str, end_ms: float, handed_over: bool = False) -> None:
        info: RecordingInfo | None = None
        try:
            info = await asyncio.to_thread(self.recorder.finalize, end_ms)
        except Exception:
            logger.exception("recording could not be finalized; the call is kept without it")
        try:
            analytics = await asyncio.to_thread(self._final_analytics, info)
        except Exception:
            # Nothing computed here may keep the call from being closed.
            logger.exception("final analytics failed; the call is closed with its live measures")
            analytics = self._live_analytics()
        outcome = CallOutcome(
            end_reason=reason,
            ended_at=timezone.now(),
            analytics=analytics,
            recording=_recording_file(info),
            network={
                "frames_missing": self.measures.frames_missing,
                "frames_late": self.measures.frames_late,
            },
            handed_over=handed_over,
        )
        saved = await self.store.finalize(outcome, give_up_after_s=settings.CALL_FINALIZE_GIVE_UP_S)
        if saved and info is not None:
            # The storage backend has its own copy now.
            with contextlib.suppress(OSError):
                await asyncio.to_thread(os.unlink, info.path)
        if saved and self.lease is not None:
            # Unsaved, the lease stays held until this process exits; then the next start
            # recovers the recording (realtime.lifecycle).
            self.lease.release()

    # --- Twilio side (the hot path) ------------------------------------------------------------

    async def on_twilio_text(self, text: str) -> None:
        if self.ended:
            return  # Twilio may still send after `stop`; the recorder is being finalized
        try:
            message = tw.parse_message(text)
        except tw.MalformedMessage as exc:
            self._count_malformed(exc)
            return
        if type(message) is tw.Media:
            await self._on_media(message)
        elif type(message) is tw.Mark:
            self._on_mark(message.name)
        elif type(message) is tw.Dtmf:
            await self._on_dtmf(message.digit)
        elif type(message) is tw.Stop:
            await self.end("caller hung up", settle=True)

    def _count_malformed(self, exc: Exception) -> None:
        self.measures.frames_malformed += 1
        # Log the first few, then every 100th: a broken peer must not flood the log.
        count = self.measures.frames_malformed
        if count <= 5 or count % 100 == 0:
            logger.warning("malformed Twilio frame #%d ignored: %s", count, exc)

    async def _on_media(self, media: tw.Media) -> None:
        try:
            audio = binascii.a2b_base64(media.payload, strict_mode=True)
        except binascii.Error as exc:
            self._count_malformed(exc)
            return
        if media.timestamp_ms > self.now_ms() + MAX_MEDIA_LEAD_MS:
            self._count_malformed(
                AudioFormatError(f"media timestamp {media.timestamp_ms} ms is ahead of the call")
            )
            return
        chunk = media.chunk
        if chunk:
            if chunk > self._last_chunk + 1 and self._last_chunk:
                self.measures.frames_missing += chunk - self._last_chunk - 1
            elif chunk <= self._last_chunk:
                self.measures.frames_late += 1
            self._last_chunk = max(chunk, self._last_chunk)
        self._caller_audio_end_ms = media.timestamp_ms + len(audio) / ULAW_BYTES_PER_MS
        if not self._holding_caller_audio:
            if self._session_origin_ms is None:
                self._session_origin_ms = float(media.timestamp_ms)
            # Forward first: about once a second the recorder writes a block (resampling,
            # file write), and the frame that triggers it should not wait for it.
            await self.model.send_audio(media.payload)
        try:
            self.recorder.add_caller(audio, media.timestamp_ms)
        except AudioFormatError as exc:  # e.g. a negative timestamp: keep the audio flowing
            self._count_malformed(exc)

    def _on_mark(self, name: str) -> None:
        self._outstanding_marks.discard(name)
        if name in self._cleared_marks:
            # Twilio echoes pending marks when it clears its buffer: cleared, not played.
            self._cleared_marks.discard(name)
            return
        item_id, _, played = name.rpartition("@")
        item = self._items.get(item_id)
        if item is None or item.interrupted:
            return
        with contextlib.suppress(ValueError):
            item.confirmed_ms = float(played)
            item.confirmed_at_ms = self.now_ms()
        if item.confirmed_ms >= item.sent_ms and not self._response_in_progress:
            self._write_agent_line(item)  # the caller heard it to the end

    async def _on_dtmf(self, digit: str) -> None:
        now = self.now_ms()
        self._add_line("caller", f"[DTMF {digit}]", now, now, item_id="")
        await self.model.send_text(f"The caller pressed {digit} on the keypad.")

    # --- model side ---------------------------------------------------------------------------

    async def _consume_model_events(self) -> None:
        try:
            async for event in self.model.events():
                await self._on_model_event(event)
                self._model_changed.set()  # waits for the model's next move re-check now
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("model event handling failed; ending the call")
            await self.end("bridge error", close_twilio=True)

    async def _on_model_event(self, event: m.ModelEvent) -> None:
        kind = type(event)
        if kind is m.AudioDelta:
            await self._on_audio_delta(event)  # type: ignore[arg-type]
        elif kind is m.SpeechStarted:
            await self._on_speech_started(event)  # type: ignore[arg-type]
        elif kind is m.SpeechStopped:
            self._on_speech_stopped(event)  # type: ignore[arg-type]
        elif kind is m.CallerTranscriptDone:
            self._on_caller_transcript(event)  # type: ignore[arg-type]
        elif kind is m.CallerTranscriptFailed:
            self._on_caller_transcript_failed(event)  # type: ignore[arg-type]
        elif kind is m.CallerIdle:
            self._idle_items.add(event.item_id)  # type: ignore[union-attr]
            logger.info("caller silent past the idle timeout: the agent re-prompts")
        elif kind is m.AgentTranscriptDone:
            self._on_agent_transcript(event)  # type: ignore[arg-type]
        elif kind is m.ResponseStarted:
            await self._on_response_started()
        elif kind is m.ResponseDone:
            await self._on_response_done(event)  # type: ignore[arg-type]
        elif kind is m.ToolCallRequested:
            self._on_tool_call(event)  # type: ignore[arg-type]
        elif kind is m.ServiceToolCall:
            self._on_service_tool_call(event)  # type: ignore[arg-type]
        elif kind is m.TimedLine:
            self._on_timed_line(event)  # type: ignore[arg-type]
        elif kind is m.SessionReady:
            await self._on_session_ready(event)  # type: ignore[arg-type]
        elif kind is m.Disconnected:
            self._model_up = False
            logger.warning("model socket dropped (%s); reconnecting", event.reason)  # type: ignore[union-attr]
        elif kind is m.ModelError:
            self._on_model_error(event)  # type: ignore[arg-type]
        elif kind is m.SessionFailed:
            self._model_up = False
            await self.end(f"model unavailable: {event.reason}"[:200], close_twilio=True)  # type: ignore[union-attr]

    def _on_model_error(self, event: m.ModelError) -> None:
        if event.code in BENIGN_MODEL_ERRORS:
            logger.debug("model request raced the service: %s", event.code)
            return
        self.measures.model_errors += 1
        logger.warning("model error %s: %s", event.code, event.message)

    async def _on_session_ready(self, event: m.SessionReady) -> None:
        self._model_up = True
        # A session's input-audio clock starts with the first caller audio it gets: audio sent
        # to it before live audio resumed (what the caller said while it connected, or the
        # replay after a drop) ends where the last frame sent ends. With none, the next frame.
        if event.replayed_audio_ms:
            self._session_origin_ms = self._caller_audio_end_ms - event.replayed_audio_ms
        else:
            self._session_origin_ms = None
        self._track = None  # a new session's track starts at 0
        if event.renewal:
            logger.info("model session renewed before it expired; the conversation goes on")
            return
        if not event.reconnect_attempt:
            if self.outbound is not None and self.outbound.detects_machines:
                self._answering = asyncio.create_task(self._act_on_who_answered(self.outbound))
            else:
                await self._open_conversation()
            return
        self.measures.reconnects += 1
        # A new session has no response in flight, and the old one's turns will never be
        # transcribed: the replayed audio makes them turns of the new session.
        self._response_in_progress = False
        self._caller_spans.clear()
        self.store.set_analytics(self._live_analytics())
        logger.info("model session restored after %d attempt(s)", event.reconnect_attempt)
        await self._mark_unmarked_audio()  # the dead session's reply will see no ResponseDone
        spoken = self.context()
        if self._turn_unanswered and spoken and spoken[-1].role == "user":
            # The drop took the reply to the caller's last turn with it; the replayed context
            # ends with that turn, so ask the new session to answer it rather than leave the
            # caller waiting in silence.
            await self.model.request_response()

    async def _open_conversation(self) -> None:
        """Speak first: the greeting is a reply like any other (heard, recorded, transcribed),
        asked for as soon as the session is ready. An outbound call with no greeting still
        opens with the agent (it called), in its own words."""
        if self.agent.greeting:
            await self._say("Greet the caller now.", self.agent.greeting)
        elif self.outbound is not None:
            await self.model.request_response()

    async def _act_on_who_answered(self, plan: OutboundPlan) -> None:
        """Outbound, with machine detection: wait (bounded) for Twilio's answer, then talk to
        a person (or an unknown: better a greeting than silence), hang up on a machine or a
        fax, or leave the voicemail message once the machine's greeting and beep are over
        (DetectMessageEnd answers after the beep)."""
        answered_by = await self._answered_by(settings.OUTBOUND_AMD_TIMEOUT_S + AMD_GRACE_S)
        if self.ended:
            return
        logger.info("outbound call answered by %s", answered_by or "unknown (no answer in time)")
        if answered_by == "fax":
            await self.end(FAX_REASON, hang_up=True)
        elif not answered_by.startswith("machine"):
            self._holding_caller_audio = False
            await self._open_conversation()
        elif plan.machine_detection == "hangup":
            await self.end(VOICEMAIL_REASON, hang_up=True)
        else:
            replies_before = self.measures.turns
            await self._say("You reached a voicemail box.", plan.voicemail_message)
            await self._wait_for(
                lambda: self.measures.turns > replies_before and self._reply_heard(),
                FAREWELL_WAIT_S,
            )
            await self.end(VOICEMAIL_LEFT_REASON, hang_up=True)

    async def _answered_by(self, timeout_s: float) -> str:
        """AnsweredBy from the call's record once the AMD webhook has stored it; "" when it
        did not come in time (or the database could not say)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.ended and loop.time() < deadline:
            with contextlib.suppress(Exception):  # a database blip: ask again
                answered_by = await self.store.answered_by()
                if answered_by:
                    return answered_by
            await asyncio.sleep(AMD_POLL_S)
        return ""

    async def _on_response_started(self) -> None:
        self._response_in_progress = True
        if self.ended:
            # A reply begun after the caller hung up (the VAD closed their last turn): nobody
            # will hear it.
            await self.model.cancel_response()
            return
        self.measures.turns += 1
        self._settle_agent_lines(force=False)

    async def _on_audio_delta(self, event: m.AudioDelta) -> None:
        if self.ended:
            return  # the caller is gone; what they heard is settled
        item = self._items.get(event.item_id)
        if item is not None and item.interrupted:
            return  # a late delta of an item the caller cut off
        audio = event.audio
        if audio is None:
            try:
                audio = binascii.a2b_base64(event.audio_b64)
            except binascii.Error:
                self.measures.model_errors += 1
                return
        now = self.now_ms()
        plays_at = max(now, self._playback_end_ms)
        if self.continuous:
            self._on_track_audio(audio, event.audible, now, plays_at)
        if item is None:
            item = AgentItem(event.item_id, play_start_ms=plays_at)
            self._items[event.item_id] = item
            self._current_item = item
            if self._awaiting_reply_since_ms is not None:
                # Latency as the caller lives it, on the call timeline: from the end of their
                # speech to the moment this reply starts playing to them (now, or once the
                # audio queued before it has played).
                latency = item.play_start_ms - self._awaiting_reply_since_ms
                self.measures.latencies_ms.append(max(0.0, latency))
                self._awaiting_reply_since_ms = None
        self._playback_end_ms = max(now, self._playback_end_ms) + len(audio) / ULAW_BYTES_PER_MS
        item.sent_bytes += len(audio)
        await self.twilio.send_text(tw.media_message(self.stream_sid, event.audio_b64))
        if item.sent_bytes - item.marked_bytes >= self.mark_interval_ms * ULAW_BYTES_PER_MS:
            await self._send_mark(item)
        self.recorder.add_agent(audio, now)

    def _on_track_audio(
        self, audio: bytes, audible: bool | None, arrived_ms: float, plays_at_ms: float
    ) -> None:
        """A continuous track: keep when it plays; a reply's first sound is a turn."""
        if self._track is None:
            self._track = TrackPlayback()
        if self._track.add(audio, arrived_ms, plays_at_ms, audible=audible):
            self.measures.turns += 1

    def _on_timed_line(self, line: m.TimedLine) -> None:
        """A finished line of a continuous-track session, placed on the call timeline from the
        session's (which runs with the caller's audio): the caller's as they spoke it, the
        agent's as the caller heard it (its audio arrived then, and played after what was
        queued). A reply's latency runs from the end of the caller's line it follows to its
        first word heard; an agent line the caller spoke over is an interruption."""
        text = line.text.strip()
        if not text:
            return
        origin = self._session_origin_ms or 0.0
        start, end = origin + line.start_ms, origin + line.end_ms
        if line.role == "user":
            self._add_line("caller", text, start, end, item_id="")
            self._remember("user", text, start)
            self._caller_line_unanswered_end_ms = end
            return
        if self._track is not None:
            start, end = self._track.heard_at(start), self._track.heard_at(end)
        if self._caller_line_unanswered_end_ms is not None:
            self.measures.latencies_ms.append(max(0.0, start - self._caller_line_unanswered_end_ms))
            self._caller_line_unanswered_end_ms = None
        if line.interrupted:
            self.measures.interruptions += 1
        self._add_line("agent", text, start, end, item_id="", interrupted=line.interrupted)
        self._remember("assistant", text, start)
        self.store.set_analytics(self._live_analytics())

    async def _send_mark(self, item: AgentItem) -> None:
        """Ask Twilio to tell us when playback reaches everything sent of this item so far.

        The name carries the ms sent, exactly (bytes / 8 has at most three decimals), so the
        echo of a reply's last mark compares equal to its length."""
        item.marked_bytes = item.sent_bytes
        mark = f"{item.item_id}@{item.sent_ms:.3f}"
        self._outstanding_marks.add(mark)
        await self.twilio.send_text(tw.mark_message(self.stream_sid, mark))

    async def _mark_unmarked_audio(self) -> None:
        """End-of-reply marks: the echo of the last one says the caller heard the reply out."""
        for item in self._items.values():
            if not item.interrupted and item.sent_bytes > item.marked_bytes:
                await self._send_mark(item)

    def heard_ms(self, item: AgentItem, now_ms: float) -> float:
        """What the caller heard of an item: confirmed by marks, plus real time since, capped."""
        if item.confirmed_at_ms is not None:
            heard = item.confirmed_ms + (now_ms - item.confirmed_at_ms)
        else:
            heard = now_ms - item.play_start_ms
        return max(0.0, min(item.sent_ms, heard))

    async def _on_speech_started(self, event: m.SpeechStarted) -> None:
        if self.ended:
            return
        now = self.now_ms()
        origin = self._session_origin_ms or 0.0
        self._caller_spans[event.item_id] = CallerSpan(origin + event.audio_start_ms)
        item = self._current_item
        if item is not None and not item.interrupted and self._playback_end_ms > now:
            await self._barge_in(item, now)
        self._settle_agent_lines(force=False)

    async def _barge_in(self, item: AgentItem, now: float) -> None:
        heard = self.heard_ms(item, now)
        item.interrupted = True
        item.heard_ms = heard
        self.measures.interruptions += 1
        self._playback_end_ms = now
        self._cleared_marks |= self._outstanding_marks
        self._outstanding_marks.clear()
        await self.twilio.send_text(tw.clear_message(self.stream_sid))
        self.recorder.clear_agent(now)
        await self.model.truncate(item.item_id, int(heard))
        if self._response_in_progress:
            await self.model.cancel_response()
            self._response_in_progress = False
        self.store.set_analytics(self._live_analytics())

    def _on_speech_stopped(self, event: m.SpeechStopped) -> None:
        origin = self._session_origin_ms or 0.0
        end = origin + event.speech_end_ms
        span = self._caller_spans.setdefault(event.item_id, CallerSpan(end))
        span.end_ms = max(span.start_ms, end)
        if not self.ended:
            self._awaiting_reply_since_ms = span.end_ms
            self._turn_unanswered = True

    def _take_caller_span(self, item_id: str) -> tuple[float, float]:
        """Where a transcribed caller turn lies on the call timeline."""
        span = self._caller_spans.pop(item_id, None)
        if span is None:
            # Not a turn we saw start and stop (a commit may name its own item): the oldest
            # closed turn still waiting for its text is the one.
            closed = [(s.start_ms, key) for key, s in self._caller_spans.items() if s.end_ms]
            if closed:
                span = self._caller_spans.pop(min(closed)[1])
        now = self.now_ms()
        if span is None:
            return now, now
        return span.start_ms, span.end_ms if span.end_ms is not None else now

    def _on_caller_transcript(self, event: m.CallerTranscriptDone) -> None:
        if event.item_id in self._idle_items:
            return  # the silence an idle timeout committed: the caller said nothing
        start, end = self._take_caller_span(event.item_id)
        text = event.text.strip()
        if text:
            self._add_line("caller", text, start, end, item_id=event.item_id)
            self._remember("user", text, start)

    def _on_caller_transcript_failed(self, event: m.CallerTranscriptFailed) -> None:
        """The caller said something the service could not make out: the turn keeps its place
        on the timeline, marked; the model heard the audio, so nothing is replayed as text."""
        if event.item_id in self._idle_items:
            return
        start, end = self._take_caller_span(event.item_id)
        logger.info("caller turn not transcribed: %s", event.message)
        self._add_line("caller", INAUDIBLE_TEXT, start, end, item_id=event.item_id, inaudible=True)

    def _on_agent_transcript(self, event: m.AgentTranscriptDone) -> None:
        item = self._items.get(event.item_id)
        if item is not None and item.transcript is not None:
            return  # already known: a response repeats an item's text in its closing events
        if item is None:
            if self.ended:
                return  # a reply the caller never heard any of (it began after they left)
            # Text without audio: the response was cut before any audio was sent.
            now = self.now_ms()
            item = AgentItem(event.item_id, play_start_ms=now, interrupted=True, heard_ms=0.0)
            self._items[event.item_id] = item
        item.transcript = event.text.strip()
        if not event.complete and not item.interrupted:
            # Cut short in the model (the service stopped the response) after all that was
            # sent had been played or was still to play: the caller hears it all, no more.
            item.interrupted = True
        self._remember("assistant", item.transcript, item.play_start_ms)
        # The line itself waits until playback settles it (or is written now if it was cut).
        if item.interrupted:
            self._write_agent_line(item)

    async def _on_response_done(self, event: m.ResponseDone) -> None:
        for transcript in event.transcripts:
            self._on_agent_transcript(transcript)
        self._response_in_progress = False
        self._turn_unanswered = False
        if not self.ended:
            await self._mark_unmarked_audio()
        usage = self.measures.usage
        for key in USAGE_KEYS:
            usage[key] += getattr(event.usage, key)
        self.store.set_analytics(self._live_analytics())
        if event.tool_calls:
            # The reply this response leads to waits until every call in it is answered.
            for call in event.tool_calls:
                self._on_tool_call(call)
            called = {call.call_id for call in event.tool_calls}
            self._unanswered[event.response_id] = called - self._answered
            await self._reply_after_tools(event.response_id)

    # --- tools ---------------------------------------------------------------------------------

    def _on_tool_call(self, event: m.ToolCallRequested) -> None:
        """Run each call once, as a task: caller audio keeps flowing while it runs. A call is
        reported when its arguments are done and again in its response's output."""
        if event.call_id in self._tool_tasks or self.ended:
            return
        self._tool_tasks[event.call_id] = asyncio.create_task(
            self._run_tool_call(event), name=f"tool-{event.name}"
        )

    async def _run_tool_call(self, event: m.ToolCallRequested) -> None:
        started = self.now_ms()
        tool = self._tools.get(event.name)
        arguments, problem = _arguments(event.arguments)
        kind = tool["type"] if tool is not None else "unknown"
        if tool is None:
            outcome = ToolOutcome(error_output(f"there is no tool named {event.name!r}"), "error")
        elif problem is not None:
            outcome = ToolOutcome(error_output(problem), "error")
        elif kind == END_CALL:
            await self._agent_hangs_up(event, arguments, started)
            return
        elif kind == TRANSFER_CALL:
            outcome = await self._agent_transfers(event, tool, arguments, started)
            if outcome is None:
                return  # transferred: the call is in other hands
        else:
            outcome = await run_tool(tool, arguments, self.call_info)
        self._record_tool(event, kind, arguments, outcome, started)
        await self.model.tool_result(event.call_id, outcome.output)
        self._answered.add(event.call_id)
        await self._reply_after_tools(event.response_id)

    async def _reply_after_tools(self, response_id: str) -> None:
        """Ask for the next reply once the response is done and all its calls are answered.
        A reply the caller started meanwhile (they spoke) already sees the outputs."""
        waiting = self._unanswered.get(response_id)
        if waiting is None:
            return  # the response is still streaming: its response.done checks again
        waiting -= self._answered
        if waiting:
            return
        del self._unanswered[response_id]
        if not self.ended and not self._response_in_progress:
            await self.model.request_response()

    def _record_tool(
        self,
        event: m.ToolCallRequested,
        kind: str,
        arguments: dict[str, Any],
        outcome: ToolOutcome,
        started_ms: float,
    ) -> None:
        self.measures.tool_calls += 1
        self.measures.tool_errors += outcome.status != "ok"
        self.store.add_tool_call(
            ToolCallLine(
                call_ref=event.call_id,
                name=event.name,
                kind=kind,
                arguments=arguments,
                output=outcome.output,
                status=outcome.status,
                start_ms=int(started_ms),
                end_ms=int(self.now_ms()),
            )
        )
        self.store.set_analytics(self._live_analytics())
        if outcome.status != "ok":
            logger.warning("tool %s: %s (%s)", event.name, outcome.status, outcome.output[:200])

    def _on_service_tool_call(self, event: m.ServiceToolCall) -> None:
        """An MCP server the service called itself: on the record, nothing to answer."""
        now = self.now_ms()
        failed = event.error is not None
        outcome = ToolOutcome(event.error or event.output or "", "error" if failed else "ok")
        arguments, _ = _arguments(event.arguments)
        request = m.ToolCallRequested(event.item_id, f"{event.server_label}.{event.name}", "", "")
        self._record_tool(request, "mcp", arguments, outcome, now)

    async def _agent_hangs_up(
        self, event: m.ToolCallRequested, arguments: dict[str, Any], started_ms: float
    ) -> None:
        """end_call: the goodbye comes in the reply that made the call; once it has been heard
        (bounded), the call is hung up with the model's reason."""
        await self._wait_for(self._reply_heard, FAREWELL_WAIT_S)
        reason = str(arguments.get("reason") or "").strip()
        self._record_tool(event, END_CALL, arguments, ToolOutcome("call ended", "ok"), started_ms)
        ended = f"{AGENT_ENDED_REASON}: {reason}" if reason else AGENT_ENDED_REASON
        await self.end(ended[:200], hang_up=True)

    async def _agent_transfers(
        self,
        event: m.ToolCallRequested,
        tool: dict[str, Any],
        arguments: dict[str, Any],
        started_ms: float,
    ) -> ToolOutcome | None:
        """transfer_call: once the agent's words about it are heard, the live call is sent to
        the person (<Dial>, showing the number the caller dialled); None when it went. A
        refusal goes back to the model, which can tell the caller."""
        target = str(arguments.get("target") or "")
        number = tool["targets"].get(target)
        if number is None:
            known = ", ".join(sorted(tool["targets"]))
            return ToolOutcome(error_output(f"no one named {target!r}; choose: {known}"), "error")
        summary = str(arguments.get("summary") or "").strip()
        twiml = transfer_twiml(
            number=number,
            caller_id=self._dialled,
            whisper_url=whisper_url(self.call_id, summary) if tool.get("warm") else None,
        )
        await self._wait_for(self._reply_heard, FAREWELL_WAIT_S)
        try:
            await asyncio.to_thread(rest.call_redirect, call_sid=self.call_sid, twiml=twiml)
        except rest.RestUnavailable as exc:
            return ToolOutcome(error_output(f"the transfer failed: {exc}"), "error")
        outcome = ToolOutcome(f"transferred to {target} ({number})", "ok")
        self._record_tool(event, TRANSFER_CALL, arguments, outcome, started_ms)
        await self.end(f"transferred to {target}", handed_over=True)
        return None

    # --- transcript lines -------------------------------------------------------------------

    def _add_line(
        self,
        speaker: str,
        text: str,
        start_ms: float,
        end_ms: float,
        *,
        item_id: str,
        interrupted: bool = False,
        inaudible: bool = False,
    ) -> None:
        self._sequence += 1
        self.store.add_transcript(
            TranscriptLine(
                sequence=self._sequence,
                speaker=speaker,
                text=text,
                start_ms=int(start_ms),
                end_ms=int(max(start_ms, end_ms)),
                item_id=item_id,
                interrupted=interrupted,
                inaudible=inaudible,
            )
        )

    def _remember(self, role: m.Role, text: str, start_ms: float) -> None:
        """Keep a line for the conversation a new session is given after a reconnect."""
        self._sequence += 1
        self._context.append(ContextLine(start_ms, self._sequence, m.ContextItem(role, text)))

    def _write_agent_line(self, item: AgentItem) -> None:
        if item.written or not item.transcript:
            return
        item.written = True
        played = item.heard_ms if item.interrupted and item.heard_ms is not None else item.sent_ms
        self._add_line(
            "agent",
            item.transcript,
            item.play_start_ms,
            item.play_start_ms + played,
            item_id=item.item_id,
            interrupted=item.interrupted,
        )

    def _settle_agent_lines(self, *, force: bool) -> None:
        """Write agent lines whose fate is known: interrupted, finished playing, or call over."""
        now = self.now_ms()
        for item in self._items.values():
            if item.written or item.transcript is None:
                continue
            if force or item.interrupted or item.play_start_ms + item.sent_ms <= now:
                self._write_agent_line(item)

    # --- analytics ------------------------------------------------------------------------------

    def _live_analytics(self) -> dict[str, Any]:
        measures = self.measures
        usage = measures.usage
        values: dict[str, Any] = {
            "interruptions": measures.interruptions,
            "turns": measures.turns,
            "reconnects": measures.reconnects,
            "frames_missing": measures.frames_missing,
            "frames_malformed": measures.frames_malformed,
            "model_errors": measures.model_errors,
            "tool_calls": measures.tool_calls,
            "tool_errors": measures.tool_errors,
            **usage,
            "cached_input_tokens": usage["cached_audio_tokens"] + usage["cached_text_tokens"],
            "estimated_cost_usd": self._estimated_cost_usd(),
        }
        if self.continuous:
            values["model_seconds"] = round(self.model.billed_seconds, 1)
        latencies = measures.latencies_ms
        if latencies:
            values.update(
                latency_ms_avg=round(statistics.fmean(latencies), 1),
                latency_ms_p50=round(_percentile(latencies, 0.5), 1),
                latency_ms_p95=round(_percentile(latencies, 0.95), 1),
                latency_ms_max=round(max(latencies), 1),
            )
        return values

    def _estimated_cost_usd(self) -> float:
        usage = self.measures.usage
        if self.continuous:
            return live_cost_usd(
                self.model.billed_seconds,
                usage,
                settings.LIVE_PRICE_PER_MINUTE_USD,
                settings.LIVE_BACKEND_PRICES_PER_M,
            )
        return estimated_cost_usd(usage, settings.REALTIME_PRICES_PER_M)

    def _final_analytics(self, info: RecordingInfo | None) -> dict[str, Any]:
        values = self._live_analytics()
        if info is not None:
            values["caller_talk_s"] = round(info.caller_speech_s, 2)
            values["agent_talk_s"] = round(info.agent_speech_s, 2)
            values["silence_s"] = round(
                max(0.0, info.duration_s - info.caller_speech_s - info.agent_speech_s), 2
            )
        caller_text = " ".join(item.text for item in self.context() if item.role == "user")
        sentiment = sentiment_of(caller_text)
        if sentiment is not None:
            values["sentiment_label"], values["sentiment_score"] = sentiment
        return values


def _recording_file(info: RecordingInfo | None) -> RecordingFile | None:
    if info is None:
        return None
    return RecordingFile(
        path=Path(info.path),
        duration_s=info.duration_s,
        size_bytes=info.size_bytes,
        sample_rate=info.sample_rate,
        channels=info.channels,
    )


def _arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    """A tool call's arguments as the model wrote them: a JSON object, or why not."""
    try:
        value = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        return {"raw": raw[:1000]}, "the arguments are not valid JSON"
    if not isinstance(value, dict):
        return {"raw": raw[:1000]}, "the arguments must be a JSON object"
    return value, None
