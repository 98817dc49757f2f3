"""Stereo call recording (caller left, agent right) on the call's own timeline.

Timeline. Every position is milliseconds since the Twilio media stream started.

* Caller audio (mu-law 8 kHz) is placed at Twilio's ``media.timestamp``, so a gap in the media
  stream becomes silence rather than pulling later speech earlier. A frame that overlaps audio
  already placed overwrites it (a duplicate frame is harmless). A frame that arrives after its
  region was written to disk ("late") keeps only its part after that point; the dropped
  milliseconds are counted in ``late_caller_ms``. The bridge must report agent events on the
  same clock as the Twilio timestamps.
* Agent audio is placed where the caller heard it: OpenAI delivers it faster than real time and
  Twilio plays it in order, so a chunk sent at ``sent_at_ms`` starts at
  ``max(sent_at_ms, end of the agent audio queued before it)``. ``clear_agent(at_ms)`` (barge-in,
  Twilio ``clear``) deletes everything scheduled after ``at_ms``: the recording never holds agent
  speech the caller did not hear. The cut is sample-exact at the native rate; in the 16 kHz file
  only the resampling filter's decay follows it (under 10.2 ms, below -60 dBFS after 6.2 ms).
  Agent audio whose start would fall inside the region already written (a stale ``sent_at_ms``)
  starts at the written edge instead.

Streaming. Both channels are kept as raw wire bytes at their native rates in a small window
that starts where the file ends. Once the call clock (the newest caller timestamp, send time or
barge-in time seen) is ``LATE_MARGIN_MS`` past the end of the next ``BLOCK_MS`` block, that block
leaves the window. ``add_caller``/``add_agent`` therefore cost a bytearray copy per 20 ms frame,
plus one block write about once per second; memory is the window (about 1.5 s of audio) plus the
agent audio the model has sent ahead of playback. A gap of G seconds costs G blocks of silence
written in the call that crosses it.

Where a block goes depends on the agent's format:

* ``pcmu`` (the bridge's calls: both channels are mu-law 8 kHz on the wire): the block is
  appended as it is, the two channels' bytes interleaved, to a stereo mu-law 8 kHz WAV (the
  *call log*). No decoding, resampling or metering happens during the call, so the media path
  pays only for a 16 KB write a second. ``finalize`` then transcodes the log into the stored
  file (decode, resample to the file rate with one continuous ``StreamResampler`` per channel,
  speech meters, PCM16 WAV) block by block in the caller's thread (the bridge's worker pool),
  and puts it in the log's place.
* ``pcm`` (PCM16 24 kHz agent audio): the channels differ in rate and width, so each block is
  transcoded as it leaves the window, straight into the stored file.

Either way the stored file equals a whole-signal resample of each channel's timeline (no edge
artefacts: the transcoder sees the same blocks in the same order).

Crash recovery. Both files are written straight to the OS from the start (``os.write`` for the
call log; libsndfile has no user-space buffer either) with header sizes that are fixed only at
the end, so a process that dies mid-call leaves a WAV whose header declares 0 data bytes,
followed by every block written so far; at most the unwritten window is lost. ``recover(path)``
makes it the stored file: a call log is transcoded as ``finalize`` would (its length taken from
the file size, a torn final frame dropped); a PCM16 file is reopened read-write through
soundfile, which derives the data length from the file size and rewrites the header on close,
and its speech seconds are re-measured from the file, since the in-memory counters died with the
process. WAV caps a file at 4 GiB, which is 18.6 hours at 16 kHz stereo.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from audio.convert import pcm16_from_bytes
from audio.errors import AudioFormatError
from audio.g711 import ULAW_SILENCE, ulaw_decode
from audio.resample import StreamResampler, check_rate
from audio.vad import SpeechMeter

BLOCK_MS = 1000
LATE_MARGIN_MS = 500
CHANNELS = 2
CALLER_CHANNEL = 0
AGENT_CHANNEL = 1
CALLER_RATE = 8000
AGENT_FORMATS: dict[str, int] = {"pcmu": 8000, "pcm": 24000}
_BYTES_TYPES = (bytes, bytearray, memoryview)


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    path: str
    duration_s: float
    size_bytes: int
    sample_rate: int
    channels: int
    caller_speech_s: float
    agent_speech_s: float


class _Track:
    """One channel's not-yet-written audio, as wire bytes at the channel's native rate.

    ``buf[0]`` is native sample ``base``: everything before ``base`` is already in the file.
    """

    __slots__ = ("base", "buf", "bytes_per_sample", "samples_per_ms", "silence_byte")

    def __init__(self, rate: int, bytes_per_sample: int, silence_byte: int) -> None:
        self.samples_per_ms = rate // 1000
        self.bytes_per_sample = bytes_per_sample
        self.silence_byte = bytes([silence_byte])
        self.buf = bytearray()
        self.base = 0

    @property
    def end_sample(self) -> int:
        return self.base + len(self.buf) // self.bytes_per_sample

    def place(self, start_sample: int, data: bytes | bytearray | memoryview) -> int:
        """Put ``data`` at ``start_sample``; return how many samples were too late to keep."""
        offset = (start_sample - self.base) * self.bytes_per_sample
        late = 0
        if offset < 0:
            late_bytes = min(-offset, len(data))
            late = late_bytes // self.bytes_per_sample
            data = memoryview(data)[late_bytes:]
            offset = 0
        if not data:
            return late
        buf = self.buf
        if offset > len(buf):
            buf += self.silence_byte * (offset - len(buf))
        # Overwrites any overlap and grows the buffer by whatever extends past its end.
        buf[offset : offset + len(data)] = data
        return late

    def truncate(self, sample: int) -> None:
        """Forget everything from ``sample`` on (never what is already written)."""
        offset = max(sample - self.base, 0) * self.bytes_per_sample
        del self.buf[offset:]

    def take(self, n_samples: int) -> bytearray:
        """Remove the next ``n_samples`` as wire bytes (silence past the end)."""
        n_bytes = n_samples * self.bytes_per_sample
        chunk = self.buf[:n_bytes]  # a copy: the window is trimmed next
        del self.buf[:n_bytes]
        if len(chunk) < n_bytes:
            chunk += self.silence_byte * (n_bytes - len(chunk))
        self.base += n_samples
        return chunk


@dataclass(frozen=True, slots=True)
class _WireFormat:
    rate: int
    bytes_per_sample: int
    silence_byte: int
    decode: Callable[[bytes | bytearray | memoryview], np.ndarray]


ULAW_8K = _WireFormat(CALLER_RATE, 1, ULAW_SILENCE, ulaw_decode)
PCM16_24K = _WireFormat(AGENT_FORMATS["pcm"], 2, 0, pcm16_from_bytes)


class _StoredFileWriter:
    """Native-rate blocks of both channels -> the stored stereo PCM16 WAV, with speech meters.

    One continuous resampler per channel, so the file is a whole-signal resample of each
    channel's timeline however the blocks were cut.
    """

    def __init__(self, path: str, rate: int, caller: _WireFormat, agent: _WireFormat) -> None:
        self._rate = rate
        self._formats = (caller, agent)
        self._resamplers = (StreamResampler(caller.rate, rate), StreamResampler(agent.rate, rate))
        self._pending = [np.empty(0, np.int16), np.empty(0, np.int16)]
        self._meters = (SpeechMeter(rate), SpeechMeter(rate))
        self.frames_written = 0
        self._file = sf.SoundFile(
            path, "w", samplerate=rate, channels=CHANNELS, format="WAV", subtype="PCM_16"
        )

    @property
    def buffered_bytes(self) -> int:
        return sum(p.nbytes for p in self._pending)

    def write(
        self, caller: bytes | bytearray | memoryview, agent: bytes | bytearray | memoryview, *,
        last: bool,
    ) -> None:  # fmt: skip
        for channel, audio in ((CALLER_CHANNEL, caller), (AGENT_CHANNEL, agent)):
            pcm = self._formats[channel].decode(audio)
            out = self._resamplers[channel].process(pcm, last=last)
            pending = self._pending[channel]
            self._pending[channel] = np.concatenate((pending, out)) if pending.size else out
        self._write_pending()

    def finish(self, total_frames: int) -> tuple[float, float]:
        """Make the file exactly ``total_frames`` long, close it; return speech seconds."""
        # The two resamplers may round the final length differently; the file must match the
        # call length exactly, so trim or pad each channel to it.
        n_frames = total_frames - self.frames_written
        for channel, pending in enumerate(self._pending):
            if pending.size >= n_frames:
                self._pending[channel] = pending[: max(n_frames, 0)]
            else:
                pad = np.zeros(n_frames - pending.size, np.int16)
                self._pending[channel] = np.concatenate((pending, pad))
        self._write_pending()
        self.close()
        return self._meters[CALLER_CHANNEL].finish(), self._meters[AGENT_CHANNEL].finish()

    def close(self) -> None:
        self._file.close()

    def _write_pending(self) -> None:
        caller, agent = self._pending
        n = min(caller.size, agent.size)
        if n == 0:
            return
        frames = np.empty((n, CHANNELS), np.int16)
        frames[:, CALLER_CHANNEL] = caller[:n]
        frames[:, AGENT_CHANNEL] = agent[:n]
        self._file.write(frames)
        self._meters[CALLER_CHANNEL].feed(caller[:n])
        self._meters[AGENT_CHANNEL].feed(agent[:n])
        self._pending = [caller[n:], agent[n:]]
        self.frames_written += n


# The call log: a stereo mu-law 8 kHz WAV (WAVE_FORMAT_MULAW, an 18-byte fmt chunk as the
# format asks of non-PCM data) whose RIFF and data sizes stay 0 until it is transcoded.
_WAVE_FORMAT_MULAW = 7
_LOG_BLOCK_ALIGN = CHANNELS  # one byte per sample per channel
_LOG_HEADER = (
    b"RIFF" + struct.pack("<I", 0) + b"WAVE"
    + b"fmt " + struct.pack(
        "<IHHIIHHH", 18, _WAVE_FORMAT_MULAW, CHANNELS, CALLER_RATE,
        CALLER_RATE * _LOG_BLOCK_ALIGN, _LOG_BLOCK_ALIGN, 8, 0,
    )
    + b"data" + struct.pack("<I", 0)
)  # fmt: skip
_LOG_BLOCK_BYTES = CALLER_RATE * BLOCK_MS // 1000 * _LOG_BLOCK_ALIGN


class _CallLog:
    """Both mu-law channels, interleaved, appended to the call log a block at a time."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(self._fd, _LOG_HEADER)

    def write(self, caller: bytearray, agent: bytearray) -> None:
        frames = np.empty((len(caller), CHANNELS), np.uint8)
        frames[:, CALLER_CHANNEL] = np.frombuffer(caller, np.uint8)
        frames[:, AGENT_CHANNEL] = np.frombuffer(agent, np.uint8)
        data = frames.tobytes()
        while data:  # os.write may write less than asked (a full disk says so by raising)
            data = data[os.write(self._fd, data) :]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _call_log_data_offset(path: str) -> int | None:
    """Where the audio starts if ``path`` is a call log (stereo mu-law 8 kHz WAV), else None."""
    with open(path, "rb") as handle:
        head = handle.read(len(_LOG_HEADER))
    if len(head) < len(_LOG_HEADER) or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    if head[12:16] != b"fmt " or head[38:42] != b"data":
        return None
    fmt_tag, channels, rate = struct.unpack_from("<HHI", head, 20)
    if fmt_tag != _WAVE_FORMAT_MULAW:
        return None
    if channels != CHANNELS or rate != CALLER_RATE:
        raise AudioFormatError(
            f"{path} is a mu-law WAV with {channels} channel(s) at {rate} Hz; a call log is "
            f"stereo at {CALLER_RATE} Hz"
        )
    return len(_LOG_HEADER)


def _transcode_call_log(path: str, rate: int, total_frames: int | None) -> RecordingInfo:
    """Turn a call log into the stored file, in its place (a crash meanwhile leaves the log).

    ``total_frames``: the stored file's length (default: the log's own length at ``rate``).
    """
    offset = _call_log_data_offset(path)
    if offset is None:
        raise AudioFormatError(f"{path} is not a call log")
    size = os.path.getsize(path) - offset
    size -= size % _LOG_BLOCK_ALIGN  # a torn final frame (the process died mid-write)
    n_samples = size // _LOG_BLOCK_ALIGN
    if total_frames is None:
        total_frames = round(n_samples * rate / CALLER_RATE)
    stored = path + ".transcoding"
    writer = _StoredFileWriter(stored, rate, ULAW_8K, ULAW_8K)
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            remaining = size
            while True:
                block = log.read(min(_LOG_BLOCK_BYTES, remaining))
                remaining -= len(block)
                frames = np.frombuffer(block, np.uint8).reshape(-1, CHANNELS)
                writer.write(
                    np.ascontiguousarray(frames[:, CALLER_CHANNEL]),
                    np.ascontiguousarray(frames[:, AGENT_CHANNEL]),
                    last=remaining <= 0,
                )
                if remaining <= 0:
                    break
        caller_speech, agent_speech = writer.finish(total_frames)
    except BaseException:
        writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stored)
        raise
    os.replace(stored, path)
    return RecordingInfo(
        path=path,
        duration_s=writer.frames_written / rate,
        size_bytes=os.path.getsize(path),
        sample_rate=rate,
        channels=CHANNELS,
        caller_speech_s=caller_speech,
        agent_speech_s=agent_speech,
    )


class CallRecorder:
    """Records one call to a stereo PCM16 WAV: caller on the left, agent on the right."""

    def __init__(
        self, path: str | os.PathLike[str], *, sample_rate: int = 16000, agent_format: str = "pcmu"
    ) -> None:
        if agent_format not in AGENT_FORMATS:
            raise AudioFormatError(
                f"agent_format must be one of {sorted(AGENT_FORMATS)}, got {agent_format!r}"
            )
        self._path = os.fspath(path)
        self._rate = check_rate(sample_rate)
        agent = ULAW_8K if agent_format == "pcmu" else PCM16_24K
        self._caller = _Track(ULAW_8K.rate, ULAW_8K.bytes_per_sample, ULAW_8K.silence_byte)
        self._agent = _Track(agent.rate, agent.bytes_per_sample, agent.silence_byte)
        self._agent_end = 0  # native agent sample where queued playback ends
        self._now_ms = 0.0
        self._flushed_ms = 0.0  # timeline already written out of the window
        self._flush_at_ms = float(BLOCK_MS + LATE_MARGIN_MS)
        self._closed = False
        self._info: RecordingInfo | None = None
        self.late_caller_ms = 0.0
        # Mu-law agents: a call log now, the stored file at the end. PCM agents: the stored
        # file block by block.
        self._log: _CallLog | None = None
        self._writer: _StoredFileWriter | None = None
        if agent is ULAW_8K:
            self._log = _CallLog(self._path)
        else:
            self._writer = _StoredFileWriter(self._path, self._rate, ULAW_8K, agent)

    @property
    def path(self) -> str:
        return self._path

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def agent_played_until_ms(self) -> float:
        """Where the agent audio queued so far finishes playing, on the call timeline."""
        return self._agent_end / self._agent.samples_per_ms

    @property
    def written_ms(self) -> float:
        """Timeline already written (or in the resamplers); later audio is still in memory."""
        return self._flushed_ms

    @property
    def buffered_bytes(self) -> int:
        """Bytes of audio held in memory (the unwritten window and resampled output)."""
        writer = 0 if self._writer is None else self._writer.buffered_bytes
        return len(self._caller.buf) + len(self._agent.buf) + writer

    def add_caller(self, ulaw: bytes | bytearray | memoryview, timestamp_ms: int | str) -> None:
        """Place one Twilio media payload (decoded mu-law bytes) at ``media.timestamp``."""
        self._check_open()
        if not isinstance(ulaw, _BYTES_TYPES):
            raise AudioFormatError(f"caller audio must be bytes, got {type(ulaw).__name__}")
        try:
            start_ms = int(timestamp_ms)  # Twilio sends the timestamp as a string of digits
        except (TypeError, ValueError) as exc:
            raise AudioFormatError(f"invalid caller timestamp {timestamp_ms!r}") from exc
        if start_ms < 0:
            raise AudioFormatError(f"caller timestamp must be >= 0, got {start_ms}")
        # Write out what lies before this frame first (so a long gap is written block by block
        # instead of piling up as silence), place the frame, then let the clock pass its end.
        self._advance_clock(start_ms)
        late = self._caller.place(start_ms * self._caller.samples_per_ms, ulaw)
        if late:
            self.late_caller_ms += late / self._caller.samples_per_ms
        self._advance_clock(start_ms + len(ulaw) / self._caller.samples_per_ms)

    def add_agent(self, audio: bytes | bytearray | memoryview, sent_at_ms: float) -> None:
        """Queue agent audio (in ``agent_format``) that was sent to Twilio at ``sent_at_ms``."""
        self._check_open()
        if not isinstance(audio, _BYTES_TYPES):
            raise AudioFormatError(f"agent audio must be bytes, got {type(audio).__name__}")
        track = self._agent
        if len(audio) % track.bytes_per_sample:
            raise AudioFormatError(
                f"PCM16 agent audio must have an even byte count, got {len(audio)} bytes"
            )
        sent_at_ms = _call_time(sent_at_ms, "agent send time")
        self._advance_clock(sent_at_ms)
        start = max(round(sent_at_ms * track.samples_per_ms), self._agent_end, track.base)
        track.place(start, audio)
        self._agent_end = start + len(audio) // track.bytes_per_sample

    def clear_agent(self, at_ms: float) -> float:
        """Barge-in at ``at_ms``: drop queued agent audio after it; return the ms dropped."""
        self._check_open()
        at_ms = _call_time(at_ms, "barge-in time")
        dropped = self._cut_agent(at_ms)
        self._advance_clock(at_ms)
        return dropped

    def finalize(self, end_ms: float | None = None) -> RecordingInfo:
        """Write everything up to ``end_ms`` (default: the last audio), close, describe the file.

        Both channels end exactly at ``end_ms``: silence pads them, agent audio scheduled past
        it is cut (the caller hung up before hearing it). A second call returns the same info.
        """
        if self._info is not None:
            return self._info
        self._check_open()
        self._closed = True
        writer, log = self._writer, self._log
        try:
            end = self._call_end_ms(end_ms)
            self._cut_agent(end)
            self._caller.truncate(round(end * self._caller.samples_per_ms))
            while self._flushed_ms + BLOCK_MS <= end:
                self._flush_until(self._flushed_ms + BLOCK_MS, last=False)
            self._flush_until(end, last=True)
            total_frames = round(end * self._rate / 1000)
            if log is not None:
                log.close()
                self._info = _transcode_call_log(self._path, self._rate, total_frames)
                return self._info
            assert writer is not None
            caller_speech, agent_speech = writer.finish(total_frames)
        finally:
            if log is not None:
                log.close()
            if writer is not None:
                writer.close()
        self._info = RecordingInfo(
            path=self._path,
            duration_s=writer.frames_written / self._rate,
            size_bytes=os.path.getsize(self._path),
            sample_rate=self._rate,
            channels=CHANNELS,
            caller_speech_s=caller_speech,
            agent_speech_s=agent_speech,
        )
        return self._info

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(
                f"recorder for {self._path} is closed"
                + ("" if self._info is not None else " after a failed finalize; use recover()")
            )

    def _call_end_ms(self, end_ms: float | None) -> float:
        if end_ms is None:
            caller_end = self._caller.end_sample / self._caller.samples_per_ms
            return max(caller_end, self.agent_played_until_ms, self._flushed_ms)
        # What is written cannot be unwritten; a shorter end_ms still ends at the file's end.
        return max(float(end_ms), self._flushed_ms)

    def _cut_agent(self, at_ms: float) -> float:
        track = self._agent
        cut = max(round(at_ms * track.samples_per_ms), track.base)
        if cut >= self._agent_end:
            return 0.0
        dropped = self._agent_end - cut
        track.truncate(cut)
        self._agent_end = cut
        return dropped / track.samples_per_ms

    def _advance_clock(self, now_ms: float) -> None:
        if now_ms <= self._now_ms:
            return
        self._now_ms = now_ms
        if now_ms < self._flush_at_ms:
            return
        # Leave LATE_MARGIN_MS unwritten for caller frames that arrive out of order.
        horizon = now_ms - LATE_MARGIN_MS
        while self._flushed_ms + BLOCK_MS <= horizon:
            self._flush_until(self._flushed_ms + BLOCK_MS, last=False)
        self._flush_at_ms = self._flushed_ms + BLOCK_MS + LATE_MARGIN_MS

    def _flush_until(self, until_ms: float, *, last: bool) -> None:
        caller, agent = self._caller, self._agent
        caller_audio = caller.take(max(round(until_ms * caller.samples_per_ms) - caller.base, 0))
        agent_audio = agent.take(max(round(until_ms * agent.samples_per_ms) - agent.base, 0))
        if self._log is not None:
            self._log.write(caller_audio, agent_audio)
        elif self._writer is not None:
            self._writer.write(caller_audio, agent_audio, last=last)
        self._flushed_ms = until_ms


def _call_time(value: float, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise AudioFormatError(f"invalid {what} {value!r}") from exc


def recover(path: str | os.PathLike[str], *, sample_rate: int = 16000) -> RecordingInfo:
    """Make a recording left by a crashed process the stored WAV and describe it.

    A call log (a mu-law agent's call) is transcoded at ``sample_rate``; a PCM16 file keeps its
    own rate. Safe on a finalized recording too (it only rewrites the same header).
    """
    path = os.fspath(path)
    try:
        if _call_log_data_offset(path) is not None:
            return _transcode_call_log(path, check_rate(sample_rate), None)
    except OSError as exc:
        raise AudioFormatError(f"cannot recover {path}: {exc}") from exc
    try:
        # libsndfile recomputes the data length from the file size and rewrites the header
        # when a read-write handle is closed.
        with sf.SoundFile(path, "r+") as wav:
            if wav.channels != CHANNELS:
                raise AudioFormatError(
                    f"{path} has {wav.channels} channel(s); call recordings are stereo"
                )
    except sf.LibsndfileError as exc:
        raise AudioFormatError(f"cannot recover {path}: {exc}") from exc
    return describe_recording(path)


def describe_recording(path: str | os.PathLike[str]) -> RecordingInfo:
    """Measure a finished recording file (duration, size, speech per channel)."""
    path = os.fspath(path)
    try:
        with sf.SoundFile(path) as wav:
            rate, channels, frames = wav.samplerate, wav.channels, wav.frames
            meters = [SpeechMeter(rate) for _ in range(channels)]
            for block in wav.blocks(blocksize=rate, dtype="int16", always_2d=True):
                for channel, meter in enumerate(meters):
                    meter.feed(block[:, channel])
    except sf.LibsndfileError as exc:
        raise AudioFormatError(f"cannot read recording {path}: {exc}") from exc
    speech = [meter.finish() for meter in meters]
    return RecordingInfo(
        path=path,
        duration_s=frames / rate,
        size_bytes=os.path.getsize(path),
        sample_rate=rate,
        channels=channels,
        caller_speech_s=speech[CALLER_CHANNEL] if channels > CALLER_CHANNEL else 0.0,
        agent_speech_s=speech[AGENT_CHANNEL] if channels > AGENT_CHANNEL else 0.0,
    )
