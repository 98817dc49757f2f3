"""CallRecorder: stereo layout, call timeline, agent playback and barge-in, gaps, recovery.

Most tests compare the file against a reference built directly from the specification: each
channel's native-rate timeline filled sample by sample (caller at its timestamps, agent at
max(sent time, end of queued agent audio), cut at barge-in), then resampled to 16 kHz in one
go. The recorder gets there through a bounded window, 1 s blocks and streaming resamplers, so
equality proves placement, gap handling and frame-edge continuity at once. Model-free checks
(silence where nothing was heard, onsets, durations) back them up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import wave
from dataclasses import dataclass, field

import numpy as np
import pytest
import soundfile as sf

from audio.errors import AudioFormatError
from audio.g711 import ulaw_decode, ulaw_encode
from audio.recorder import (
    AGENT_FORMATS,
    BLOCK_MS,
    LATE_MARGIN_MS,
    CallRecorder,
    describe_recording,
    recover,
)
from audio.resample import resample
from audio.synth import speech_seconds, voiced_speech

OUT_RATE = 16000
FRAME_MS = 20
SILENT_FRAME = ulaw_encode(np.zeros(160, dtype=np.int16))
# The HQ resampling filter is linear-phase: a full-scale impulse at 8 kHz spreads over
# +-10.1 ms of output (24 kHz: +-4.9 ms). Audio can ring that long past a cut, no longer.
RING_MS = 11


def speech_clip(rate: int, seconds: float, seed: int) -> np.ndarray:
    """Synthetic speech starting on its first voiced sample, exactly ``seconds`` long."""
    speech, _ = voiced_speech(rate, seconds + 1.0, seed=seed)
    onset = int(np.flatnonzero(speech)[0])
    return speech[onset : onset + round(rate * seconds)]


def ms_to_frame(ms: float) -> int:
    return round(ms * OUT_RATE / 1000)


@dataclass
class ScriptedCall:
    """Feeds a recorder the way the bridge would, and builds the reference timeline."""

    recorder: CallRecorder
    agent_format: str
    caller_frames: list[tuple[int, bytes]] = field(default_factory=list)
    agent_segments: list[tuple[int, np.ndarray]] = field(default_factory=list)
    agent_end: int = 0  # reference queue end, native agent samples

    @property
    def agent_rate(self) -> int:
        return AGENT_FORMATS[self.agent_format]

    def caller(self, timestamp_ms: int, ulaw: bytes) -> None:
        self.recorder.add_caller(ulaw, timestamp_ms)
        self.caller_frames.append((timestamp_ms, ulaw))

    def caller_stream(self, pcm_8k: np.ndarray, start_ms: int, end_ms: int) -> None:
        """Send 20 ms frames covering [start_ms, end_ms): speech first, then silence."""
        ulaw = ulaw_encode(pcm_8k)
        for ts in range(start_ms, end_ms, FRAME_MS):
            offset = (ts - start_ms) * 8
            frame = ulaw[offset : offset + 160]
            self.caller(ts, frame if len(frame) == 160 else SILENT_FRAME)

    def agent(self, pcm: np.ndarray, sent_at_ms: float) -> None:
        audio = pcm.tobytes() if self.agent_format == "pcm" else ulaw_encode(pcm)
        self.recorder.add_agent(audio, sent_at_ms)
        heard = pcm if self.agent_format == "pcm" else ulaw_decode(audio)
        start = max(round(sent_at_ms * self.agent_rate / 1000), self.agent_end)
        self.agent_segments.append((start, heard))
        self.agent_end = start + heard.size

    def clear(self, at_ms: float) -> float:
        cut = round(at_ms * self.agent_rate / 1000)
        self.agent_segments = [(s, pcm[: max(cut - s, 0)]) for s, pcm in self.agent_segments]
        self.agent_end = min(self.agent_end, cut)
        return self.recorder.clear_agent(at_ms)

    def reference(self, end_ms: float) -> tuple[np.ndarray, np.ndarray]:
        caller = np.zeros(round(end_ms * 8), dtype=np.int16)
        for ts, ulaw in self.caller_frames:
            pcm = ulaw_decode(ulaw)[: max(caller.size - ts * 8, 0)]
            caller[ts * 8 : ts * 8 + pcm.size] = pcm
        agent = np.zeros(round(end_ms * self.agent_rate / 1000), dtype=np.int16)
        for start, pcm in self.agent_segments:
            pcm = pcm[: max(agent.size - start, 0)]
            agent[start : start + pcm.size] = pcm
        n = ms_to_frame(end_ms)
        return (
            _fit(resample(caller, 8000, OUT_RATE), n),
            _fit(resample(agent, self.agent_rate, OUT_RATE), n),
        )


def _fit(pcm: np.ndarray, n: int) -> np.ndarray:
    return pcm[:n] if pcm.size >= n else np.concatenate((pcm, np.zeros(n - pcm.size, np.int16)))


def read_channels(path: os.PathLike[str] | str) -> tuple[np.ndarray, np.ndarray]:
    data, rate = sf.read(path, dtype="int16", always_2d=True)
    assert rate == OUT_RATE
    assert data.shape[1] == 2
    return data[:, 0], data[:, 1]


def send_response(call: ScriptedCall, pcm: np.ndarray, sent_at_ms: float, chunk_ms: int = 100):
    """Agent audio arrives 5x faster than real time: one chunk_ms chunk every chunk_ms / 5."""
    per_chunk = call.agent_rate * chunk_ms // 1000
    for k, offset in enumerate(range(0, pcm.size, per_chunk)):
        call.agent(pcm[offset : offset + per_chunk], sent_at_ms + k * chunk_ms / 5)


@pytest.fixture(params=sorted(AGENT_FORMATS))
def agent_format(request) -> str:
    return request.param


def make_call(tmp_path, agent_format: str = "pcm", name: str = "call.wav") -> ScriptedCall:
    return ScriptedCall(CallRecorder(tmp_path / name, agent_format=agent_format), agent_format)


def test_stereo_layout_timeline_and_agent_queueing(tmp_path, agent_format):
    call = make_call(tmp_path, agent_format)
    rate = call.agent_rate
    caller_speech = speech_clip(8000, 3.0, seed=1)
    answer, follow_up = speech_clip(rate, 2.0, seed=2), speech_clip(rate, 1.0, seed=3)
    # Event-loop order: caller frames keep coming while the agent audio is sent ahead.
    call.caller_stream(caller_speech, 0, 3200)
    send_response(call, answer, 3200)  # plays 3200-5200
    call.caller_stream(np.zeros(0, np.int16), 3200, 4000)
    send_response(call, follow_up, 4000)  # sent while the answer plays: queued to 5200-6200
    assert call.recorder.agent_played_until_ms == 6200
    call.caller_stream(np.zeros(0, np.int16), 4000, 8000)
    info = call.recorder.finalize(8000)

    assert (info.channels, info.sample_rate) == (2, OUT_RATE)
    assert info.duration_s == 8.0
    assert info.size_bytes == os.path.getsize(tmp_path / "call.wav") == 44 + 8 * OUT_RATE * 4
    left, right = read_channels(tmp_path / "call.wav")
    ref_left, ref_right = call.reference(8000)
    np.testing.assert_array_equal(left, ref_left)
    np.testing.assert_array_equal(right, ref_right)

    # Model-free: caller only on the left, agent only on the right, at playback time.
    assert np.flatnonzero(left)[-1] < ms_to_frame(3000 + RING_MS)
    agent_active = np.flatnonzero(right)
    assert agent_active[0] == pytest.approx(ms_to_frame(3200), abs=ms_to_frame(RING_MS))
    assert agent_active[-1] < ms_to_frame(6200 + RING_MS)
    # The follow-up starts right where the answer ends, not when it was sent (4000).
    follow_up_16k = resample(follow_up, rate, OUT_RATE)[:1600]
    at = ms_to_frame(5200)
    corr = np.corrcoef(right[at : at + 1600], follow_up_16k)[0, 1]
    assert corr > 0.9


def test_barge_in_cuts_agent_audio_at_the_clear(tmp_path, agent_format):
    call = make_call(tmp_path, agent_format)
    rate = call.agent_rate
    long_answer = speech_clip(rate, 5.0, seed=4)
    call.caller_stream(np.zeros(0, np.int16), 0, 1000)
    send_response(call, long_answer, 1000)  # would play 1000-6000; all sent by 2000
    call.caller_stream(np.zeros(0, np.int16), 1000, 2500)
    assert call.recorder.agent_played_until_ms == 6000
    dropped = call.clear(2500)
    assert dropped == pytest.approx(3500)
    assert call.recorder.agent_played_until_ms == 2500
    assert call.recorder.clear_agent(2600) == 0.0  # nothing left to cut
    call.caller_stream(np.zeros(0, np.int16), 2500, 3000)
    second = speech_clip(rate, 1.0, seed=5)
    send_response(call, second, 3000)  # plays 3000-4000
    call.caller_stream(np.zeros(0, np.int16), 3000, 7000)
    info = call.recorder.finalize(7000)

    assert info.duration_s == 7.0
    _, right = read_channels(tmp_path / "call.wav")
    np.testing.assert_array_equal(right, call.reference(7000)[1])
    # Nothing the caller did not hear: silence from the cut until the next answer...
    # (the filter also rings up to RING_MS *before* an onset, so stop short of 3000)
    assert not right[ms_to_frame(2500 + RING_MS) : ms_to_frame(3000 - RING_MS)].any()
    # ...and after it, although the first answer had 3.5 s left.
    assert not right[ms_to_frame(4000 + RING_MS) :].any()
    # What was heard before the cut is there: the first 1.5 s of the answer.
    heard = resample(long_answer, rate, OUT_RATE)
    start, stop, offset = ms_to_frame(1100), ms_to_frame(2400), ms_to_frame(1000)
    assert np.corrcoef(right[start:stop], heard[start - offset : stop - offset])[0, 1] > 0.9
    assert info.agent_speech_s < 1.5 + 1.0 + 0.1


def test_gap_in_caller_media_becomes_silence_not_a_shift(tmp_path):
    call = make_call(tmp_path)
    before, after = speech_clip(8000, 2.0, seed=6), speech_clip(8000, 1.5, seed=7)
    call.caller_stream(before, 0, 2000)
    call.caller_stream(after, 4500, 6000)  # 2.5 s with no media at all
    info = call.recorder.finalize()  # ends with the last audio

    assert info.duration_s == 6.0
    left, right = read_channels(tmp_path / "call.wav")
    np.testing.assert_array_equal(left, call.reference(6000)[0])
    assert not left[ms_to_frame(2000 + RING_MS) : ms_to_frame(4500 - RING_MS)].any()
    assert not right.any()
    # The audio after the gap starts at its own timestamp.
    resumed = resample(after, 8000, OUT_RATE)
    at = ms_to_frame(4500)
    assert np.corrcoef(left[at + 160 : at + 8000], resumed[160:8000])[0, 1] > 0.99


def test_out_of_order_and_duplicate_frames_within_the_margin_change_nothing(tmp_path):
    speech = ulaw_encode(speech_clip(8000, 4.0, seed=8))
    frames = [(ts, speech[ts * 8 : ts * 8 + 160]) for ts in range(0, 4000, FRAME_MS)]
    in_order = CallRecorder(tmp_path / "in_order.wav")
    for ts, frame in frames:
        in_order.add_caller(frame, ts)
    in_order.finalize(4000)

    shuffled = CallRecorder(tmp_path / "shuffled.wav")
    jittered = frames.copy()
    # Every seventh frame arrives 120 ms late, some across a block boundary (frame 49 after 55).
    for i in range(0, len(jittered) - 7, 7):
        jittered.insert(i + 6, jittered.pop(i))
    jittered.insert(60, frames[50])  # a duplicate, 200 ms after the original
    for ts, frame in jittered:
        shuffled.add_caller(frame, ts)
    shuffled.finalize(4000)
    assert shuffled.late_caller_ms == 0
    assert (tmp_path / "in_order.wav").read_bytes() == (tmp_path / "shuffled.wav").read_bytes()


def test_frames_later_than_the_written_region_are_dropped_and_counted(tmp_path):
    call = make_call(tmp_path)
    speech = ulaw_encode(speech_clip(8000, 5.0, seed=9))
    held_back = (1000, speech[8000:8160])
    for ts in range(0, 5000, FRAME_MS):
        if ts != held_back[0]:
            call.caller(ts, speech[ts * 8 : ts * 8 + 160])
    assert call.recorder.written_ms >= 2000
    call.recorder.add_caller(held_back[1], held_back[0])  # 4 s late: already on disk
    assert call.recorder.late_caller_ms == 20
    # A frame straddling the written edge keeps its part after the edge.
    edge = int(call.recorder.written_ms)
    straddling = speech[(edge - 10) * 8 : (edge + 10) * 8]
    call.recorder.add_caller(straddling, edge - 10)
    call.caller_frames.append((edge, straddling[80:]))
    assert call.recorder.late_caller_ms == 30
    call.recorder.finalize(5000)
    left, _ = read_channels(tmp_path / "call.wav")
    np.testing.assert_array_equal(left, call.reference(5000)[0])


def test_hangup_cuts_agent_audio_still_queued(tmp_path):
    call = make_call(tmp_path)
    call.caller_stream(np.zeros(0, np.int16), 0, 1000)
    send_response(call, speech_clip(24000, 3.0, seed=10), 1000)
    info = call.recorder.finalize(2000)
    assert info.duration_s == 2.0
    _, right = read_channels(tmp_path / "call.wav")
    assert right.size == ms_to_frame(2000)
    np.testing.assert_array_equal(right, call.reference(2000)[1])


def test_finalize_without_end_uses_the_end_of_agent_playback(tmp_path):
    call = make_call(tmp_path)
    call.caller_stream(np.zeros(0, np.int16), 0, 1000)
    send_response(call, speech_clip(24000, 2.5, seed=11), 900)
    info = call.recorder.finalize()
    assert info.duration_s == 3.4


def test_speech_seconds_per_channel_match_the_voiced_time(tmp_path):
    caller_pcm, caller_spans = voiced_speech(8000, 10.0, seed=12)
    agent_pcm, agent_spans = voiced_speech(24000, 6.0, seed=13)
    call = make_call(tmp_path)
    call.caller_stream(caller_pcm, 0, 10_000)
    send_response(call, agent_pcm, 10_000)
    call.caller_stream(np.zeros(0, np.int16), 10_000, 16_000)
    info = call.recorder.finalize(16_000)
    # Syllable edges ramp over 20 ms, so allow a frame or two per syllable.
    assert info.caller_speech_s == pytest.approx(speech_seconds(caller_spans), abs=0.02 * 30)
    assert info.agent_speech_s == pytest.approx(speech_seconds(agent_spans), abs=0.02 * 20)
    assert 0 < info.agent_speech_s < 6.0 and 0 < info.caller_speech_s < 10.0
    # Measured incrementally while writing, and again from the file: same numbers.
    assert describe_recording(info.path) == info


def test_finalize_is_idempotent_and_closes_the_recorder(tmp_path):
    call = make_call(tmp_path)
    call.caller_stream(speech_clip(8000, 1.0, seed=14), 0, 1500)
    info = call.recorder.finalize()
    content = (tmp_path / "call.wav").read_bytes()
    assert call.recorder.finalize() == info
    assert call.recorder.finalize(99_000) == info
    assert (tmp_path / "call.wav").read_bytes() == content
    with pytest.raises(RuntimeError, match="closed"):
        call.recorder.add_caller(SILENT_FRAME, 2000)
    with pytest.raises(RuntimeError, match="closed"):
        call.recorder.add_agent(b"\x00\x00", 2000)
    with wave.open(str(tmp_path / "call.wav")) as wav:  # an independent WAV reader
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, OUT_RATE, 2)
        assert wav.getnframes() == ms_to_frame(1500)


def test_memory_stays_bounded_over_a_long_call(tmp_path):
    recorder = CallRecorder(tmp_path / "long.wav", agent_format="pcm")
    caller = ulaw_encode(speech_clip(8000, 6.0, seed=15))
    answer = speech_clip(24000, 3.0, seed=16).tobytes()
    chunk = 24000 * 2 // 5  # 200 ms of PCM16 24 kHz
    peaks = []
    for minute in range(10):
        peak = 0
        for ts in range(minute * 60_000, (minute + 1) * 60_000, FRAME_MS):
            offset = ts * 8 % (len(caller) - 160)
            recorder.add_caller(caller[offset : offset + 160], ts)
            phase = ts % 6000
            if phase < 600 and phase % 40 == 0:  # 3 s answer every 6 s, sent 5x real time
                k = phase // 40
                recorder.add_agent(answer[k * chunk : (k + 1) * chunk], ts)
            peak = max(peak, recorder.buffered_bytes)
        peaks.append(peak)
    info = recorder.finalize()
    assert info.duration_s == pytest.approx(600.0, abs=0.02)
    # What is in memory: <= ~1.5 s of the window plus the 3 s answer queued ahead.
    window = (BLOCK_MS + LATE_MARGIN_MS + 500) / 1000 * (8000 + 48000 + 2 * 2 * OUT_RATE)
    assert max(peaks) < window + len(answer)
    # Flat: the peak varies only with where soxr's output bursts fall, not with call length.
    assert max(peaks) - min(peaks) < 4096


def test_crash_state_is_recoverable(tmp_path, agent_format):
    # Blocks go straight to the OS (the call log by os.write, libsndfile unbuffered), so a copy
    # taken mid-call is byte for byte what a killed process leaves behind.
    call = make_call(tmp_path, agent_format)
    speech = speech_clip(8000, 5.0, seed=17)
    call.caller_stream(speech, 0, 5000)
    crashed = tmp_path / "crashed.wav"
    shutil.copyfile(tmp_path / "call.wav", crashed)
    # The header's sizes are not final yet: other readers cannot use the file until recovery.
    with pytest.raises(wave.Error), wave.open(str(crashed)):
        pass

    info = recover(crashed)
    assert 3.5 <= info.duration_s <= 5.0 - LATE_MARGIN_MS / 1000
    with wave.open(str(crashed)) as wav:
        assert wav.getnframes() == round(info.duration_s * OUT_RATE)
    left, _ = read_channels(crashed)
    if agent_format == "pcmu":
        # The call log is transcoded whole: the caller's timeline up to the crash, resampled.
        ref_left, _ = call.reference(info.duration_s * 1000)
    else:
        # The stored file is what the streaming resampler had emitted by then.
        ref_left = call.reference(5000)[0][: left.size]
    np.testing.assert_array_equal(left, ref_left)
    assert info.caller_speech_s > 2.0
    assert describe_recording(crashed) == info
    # The live recording is unaffected and still finalizes.
    assert call.recorder.finalize(5000).duration_s == 5.0


def test_recover_trims_a_torn_final_frame(tmp_path, agent_format):
    call = make_call(tmp_path, agent_format)
    call.caller_stream(speech_clip(8000, 3.0, seed=18), 0, 3000)
    crashed = tmp_path / "torn.wav"
    shutil.copyfile(tmp_path / "call.wav", crashed)
    with crashed.open("ab") as handle:
        handle.write(b"\x01\x02\x03")  # died in the middle of a write
    info = recover(crashed)
    assert info.size_bytes == 44 + round(info.duration_s * OUT_RATE) * 4
    call.recorder.finalize()


def test_recover_of_a_finalized_recording_changes_nothing(tmp_path):
    call = make_call(tmp_path)
    call.caller_stream(speech_clip(8000, 2.0, seed=19), 0, 2000)
    send_response(call, speech_clip(24000, 1.0, seed=20), 2000)
    info = call.recorder.finalize()
    content = (tmp_path / "call.wav").read_bytes()
    assert recover(tmp_path / "call.wav") == info
    assert (tmp_path / "call.wav").read_bytes() == content


CRASHING_CALL = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from audio.g711 import ulaw_encode
    from audio.recorder import CallRecorder
    from audio.synth import voiced_speech

    speech, _ = voiced_speech(8000, 6.0, seed=21)
    ulaw = ulaw_encode(speech)
    agent_format = sys.argv[2]
    recorder = CallRecorder(sys.argv[1], agent_format=agent_format)
    tone = np.full(24000 if agent_format == "pcm" else 8000, 3000, np.int16)
    for ts in range(0, 6000, 20):
        recorder.add_caller(ulaw[ts * 8 : ts * 8 + 160], ts)
        if ts == 1000:
            recorder.add_agent(tone.tobytes() if agent_format == "pcm" else ulaw_encode(tone), ts)
    os._exit(1)  # the process dies: no finalize, no close, no atexit
    """
)


@pytest.mark.slow
def test_recover_after_the_process_was_killed(tmp_path, agent_format):
    path = tmp_path / "killed.wav"
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-c", CRASHING_CALL, str(path), agent_format],
        cwd=repo_root,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr.decode()
    assert path.stat().st_size > 44
    info = recover(path)
    assert (info.channels, info.sample_rate) == (2, OUT_RATE)
    assert 4.5 <= info.duration_s <= 5.5
    _, right = read_channels(path)
    assert info.caller_speech_s > 1.0
    assert info.agent_speech_s == pytest.approx(1.0, abs=0.05)  # the 1 s agent tone
    # (mu-law carries 3000 as 2975)
    assert right[ms_to_frame(1100) : ms_to_frame(1900)].min() > 2900


def test_a_mu_law_call_is_logged_as_wire_bytes_and_stored_as_pcm16_at_the_end(tmp_path):
    call = make_call(tmp_path, "pcmu")
    speech = speech_clip(8000, 3.0, seed=24)
    call.caller_stream(speech, 0, 3000)
    send_response(call, speech_clip(8000, 1.0, seed=25), 3000)
    call.caller_stream(np.zeros(0, np.int16), 3000, 5000)
    # During the call: a stereo mu-law 8 kHz WAV of whole written blocks, nothing decoded.
    written_s = call.recorder.written_ms / 1000
    assert written_s >= 3
    logged = (tmp_path / "call.wav").read_bytes()
    assert len(logged) == 46 + round(written_s * 8000) * 2
    with sf.SoundFile(tmp_path / "call.wav") as log:
        assert (log.format, log.subtype, log.channels, log.samplerate) == ("WAV", "ULAW", 2, 8000)
    interleaved = np.frombuffer(logged[46:], np.uint8).reshape(-1, 2)
    assert interleaved[:8000, 0].tobytes() == ulaw_encode(speech)[:8000]

    info = call.recorder.finalize(5000)
    assert (info.sample_rate, info.channels, info.duration_s) == (OUT_RATE, 2, 5.0)
    left, right = read_channels(tmp_path / "call.wav")
    ref_left, ref_right = call.reference(5000)
    np.testing.assert_array_equal(left, ref_left)
    np.testing.assert_array_equal(right, ref_right)
    assert describe_recording(info.path) == info
    assert sorted(p.name for p in tmp_path.iterdir()) == ["call.wav"]  # no transcoding leftover


def test_a_transcode_that_fails_leaves_the_call_log_for_recovery(tmp_path, monkeypatch):
    call = make_call(tmp_path, "pcmu")
    call.caller_stream(speech_clip(8000, 2.5, seed=26), 0, 2500)
    import audio.recorder as recorder_module

    real_writer = recorder_module._StoredFileWriter

    class FullDisk(real_writer):
        def write(self, *args, **kwargs):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(recorder_module, "_StoredFileWriter", FullDisk)
    with pytest.raises(OSError, match="No space"):
        call.recorder.finalize(2500)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["call.wav"]
    monkeypatch.setattr(recorder_module, "_StoredFileWriter", real_writer)
    info = recover(tmp_path / "call.wav")
    assert info.duration_s == 2.5  # every block was logged before the transcode
    left, _ = read_channels(tmp_path / "call.wav")
    np.testing.assert_array_equal(left, call.reference(2500)[0])


def test_recover_rejects_files_that_are_not_call_recordings(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio")
    with pytest.raises(AudioFormatError, match="cannot recover"):
        recover(junk)
    mono = tmp_path / "mono.wav"
    sf.write(mono, np.zeros(160, np.int16), OUT_RATE)
    with pytest.raises(AudioFormatError, match="stereo"):
        recover(mono)
    mono_ulaw = tmp_path / "mono-ulaw.wav"
    sf.write(mono_ulaw, np.zeros(160, np.int16), 8000, subtype="ULAW")
    with pytest.raises(AudioFormatError, match="stereo"):
        recover(mono_ulaw)


def test_bad_input_raises_audio_format_error(tmp_path):
    with pytest.raises(AudioFormatError, match="agent_format"):
        CallRecorder(tmp_path / "x.wav", agent_format="opus")
    with pytest.raises(AudioFormatError, match="sample rate"):
        CallRecorder(tmp_path / "x.wav", sample_rate=44100)
    recorder = CallRecorder(tmp_path / "x.wav", agent_format="pcm")
    with pytest.raises(AudioFormatError, match="even byte count"):
        recorder.add_agent(b"\x00\x01\x02", 0)
    with pytest.raises(AudioFormatError, match="timestamp"):
        recorder.add_caller(SILENT_FRAME, -20)
    with pytest.raises(AudioFormatError, match="timestamp"):
        recorder.add_caller(SILENT_FRAME, "soon")
    with pytest.raises(AudioFormatError, match="bytes"):
        recorder.add_caller("AAAA", 0)
    with pytest.raises(AudioFormatError, match="agent send time"):
        recorder.add_agent(b"\x00\x00", None)
    with pytest.raises(AudioFormatError, match="barge-in time"):
        recorder.clear_agent("now")
    recorder.add_caller(SILENT_FRAME, "20")  # Twilio's JSON carries the timestamp as a string
    assert recorder.finalize().duration_s == 0.04


def test_recording_at_another_storage_rate(tmp_path):
    recorder = CallRecorder(tmp_path / "8k.wav", sample_rate=8000, agent_format="pcmu")
    speech = ulaw_encode(speech_clip(8000, 2.0, seed=22))
    for ts in range(0, 2000, FRAME_MS):
        recorder.add_caller(speech[ts * 8 : ts * 8 + 160], ts)
    info = recorder.finalize()
    assert (info.sample_rate, info.duration_s) == (8000, 2.0)
    data, _ = sf.read(tmp_path / "8k.wav", dtype="int16")
    np.testing.assert_array_equal(data[:, 0], ulaw_decode(speech))  # same rate: no resampling


def test_a_long_caller_payload_is_placed_whole(tmp_path):
    # One 3 s payload advances the clock past several blocks; none of it may count as late.
    call = make_call(tmp_path)
    speech = ulaw_encode(speech_clip(8000, 3.0, seed=23))
    call.caller(0, speech)
    call.caller(3000, speech[:160])
    assert call.recorder.late_caller_ms == 0
    call.recorder.finalize()
    left, _ = read_channels(tmp_path / "call.wav")
    np.testing.assert_array_equal(left, call.reference(3020)[0])


def test_agent_audio_sent_with_a_stale_time_starts_at_the_written_edge(tmp_path):
    # Documented clamp: audio cannot be placed inside what is already on disk.
    recorder = CallRecorder(tmp_path / "call.wav", agent_format="pcm")
    for ts in range(0, 3000, FRAME_MS):
        recorder.add_caller(SILENT_FRAME, ts)
    edge = recorder.written_ms
    recorder.add_agent(np.full(2400, 1000, np.int16).tobytes(), 100)
    assert recorder.agent_played_until_ms == edge + 100
    recorder.finalize()
