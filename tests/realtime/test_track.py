"""The agent's continuous track as the caller hears it (realtime.track.TrackPlayback), and the
cheap per-delta speech test it relies on (audio.g711.ulaw_is_audible)."""

from __future__ import annotations

import numpy as np
import pytest

from audio.g711 import AUDIBLE_MIN_BYTES, ULAW_SILENCE, ulaw_encode, ulaw_is_audible
from realtime.track import REPLY_GAP_MS, ULAW_BYTES_PER_MS, TrackPlayback
from simulator.speech import speech

FRAME_BYTES = 160  # 20 ms at 8 kHz
SILENT_FRAME = bytes([ULAW_SILENCE]) * FRAME_BYTES


def tone(ms: int, level_dbfs: float = -18.0) -> np.ndarray:
    """A 440 Hz sine at `level_dbfs` RMS, int16 at 8 kHz."""
    t = np.arange(ms * 8) / 8000.0
    amplitude = 32768.0 * 10 ** (level_dbfs / 20) * np.sqrt(2)
    return np.round(amplitude * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)


SPEECH_FRAME = ulaw_encode(tone(20))


def frames(data: bytes) -> list[bytes]:
    return [data[i : i + FRAME_BYTES] for i in range(0, len(data), FRAME_BYTES)]


# --- ulaw_is_audible ----------------------------------------------------------------------------


def test_mulaw_silence_of_either_sign_is_not_audible() -> None:
    assert not ulaw_is_audible(b"\xff" * FRAME_BYTES)
    assert not ulaw_is_audible(b"\x7f" * FRAME_BYTES)
    assert not ulaw_is_audible(b"")
    # Digital silence as the codec writes it.
    assert ulaw_encode(np.zeros(FRAME_BYTES, dtype=np.int16)) == SILENT_FRAME


def test_speech_at_minus_18_dbfs_is_audible() -> None:
    utterance = ulaw_encode(speech(1.0, rate=8000, seed=7, level_dbfs=-18.0))
    assert len(utterance) == 8000
    assert [ulaw_is_audible(frame) for frame in frames(utterance)] == [True] * 50
    assert ulaw_is_audible(SPEECH_FRAME)


def test_a_hiss_in_the_quietest_segment_is_not_audible() -> None:
    rng = np.random.default_rng(3)
    hiss = rng.integers(-120, 121, size=FRAME_BYTES).astype(np.int16)  # -48.7 dBFS peak
    assert not ulaw_is_audible(ulaw_encode(hiss))


@pytest.mark.parametrize(
    ("loud", "audible"), [(1, False), (AUDIBLE_MIN_BYTES - 1, False), (AUDIBLE_MIN_BYTES, True)]
)
def test_a_few_loud_bytes_under_the_minimum_are_not_audible(loud: int, audible: bool) -> None:
    assert AUDIBLE_MIN_BYTES == 16
    frame = bytearray(SILENT_FRAME)
    frame[40 : 40 + loud] = SPEECH_FRAME[40 : 40 + loud]
    assert sum(1 for byte in frame[40 : 40 + loud] if byte & 0x70 != 0x70) == loud  # all loud
    assert ulaw_is_audible(bytes(frame)) is audible


def test_a_hiss_under_minus_48_dbfs_is_silence_and_louder_is_sound() -> None:
    """Quiet is mu-law segment 0: |sample| <= 123 of 32767, about -48.5 dBFS."""
    rng = np.random.default_rng(3)
    hiss = rng.integers(-120, 121, size=FRAME_BYTES).astype(np.int16)
    assert 20 * np.log10(np.abs(hiss).max() / 32768) < -48
    assert not ulaw_is_audible(ulaw_encode(hiss))
    louder = rng.integers(-260, 261, size=FRAME_BYTES).astype(np.int16)  # peak -42 dBFS
    assert ulaw_is_audible(ulaw_encode(louder))


# --- TrackPlayback: arrival -> heard ----------------------------------------------------------


def test_before_the_first_delta_audio_is_heard_as_it_arrives() -> None:
    track = TrackPlayback()
    assert ULAW_BYTES_PER_MS == 8
    assert track.heard_at(0.0) == 0.0
    assert track.heard_at(1234.5) == 1234.5
    assert track.speech_until_ms is None


def test_a_steady_stream_is_heard_at_one_lag() -> None:
    track = TrackPlayback()
    for i in range(10):  # each delta queued 30 ms behind what was still playing
        track.add(SILENT_FRAME, 1000.0 + 20 * i, 1030.0 + 20 * i)
    assert track.heard_at(1000.0) == 1030.0
    assert track.heard_at(1055.0) == 1085.0
    assert track.heard_at(5000.0) == 5030.0  # later arrivals: the lag as it last was
    assert track.heard_at(999.0) == 999.0  # before the track: no lag known


def test_a_late_delta_changes_the_lag_from_then_on() -> None:
    track = TrackPlayback()
    for i in range(10):
        track.add(SPEECH_FRAME, 1000.0 + 20 * i, 1000.0 + 20 * i)  # played as it came
    # Then the queue built up: a burst plays 100 ms behind its arrival.
    track.add(SPEECH_FRAME, 1200.0, 1300.0)
    track.add(SPEECH_FRAME, 1220.0, 1320.0)
    assert track.heard_at(1100.0) == 1100.0
    assert track.heard_at(1199.0) == 1199.0
    assert track.heard_at(1200.0) == 1300.0
    assert track.heard_at(1250.0) == 1350.0
    track.add(SPEECH_FRAME, 2000.0, 2000.0)  # caught up again
    assert track.heard_at(1250.0) == 1350.0  # each stretch keeps its own lag
    assert track.heard_at(2010.0) == 2010.0


def test_sub_millisecond_changes_of_the_lag_are_jitter() -> None:
    track = TrackPlayback()
    track.add(SILENT_FRAME, 1000.0, 1010.0)
    track.add(SILENT_FRAME, 1020.0, 1030.4)  # lag 10.4: within half a millisecond
    assert track.heard_at(1020.0) == 1030.0
    track.add(SILENT_FRAME, 1040.0, 1050.6)  # lag 10.6: a new lag
    assert track.heard_at(1040.0) == 1050.6


# --- TrackPlayback: replies ---------------------------------------------------------------------


def test_the_first_speech_begins_a_reply_and_continued_speech_does_not() -> None:
    track = TrackPlayback()
    assert track.add(SILENT_FRAME, 0.0, 0.0) is False
    assert track.speech_until_ms is None
    assert track.add(SPEECH_FRAME, 20.0, 20.0) is True
    assert track.speech_until_ms == 40.0
    assert track.add(SPEECH_FRAME, 40.0, 40.0) is False
    assert track.speech_until_ms == 60.0
    # Silence is never a reply's start, and does not move where the speech heard ends.
    assert track.add(SILENT_FRAME, 60.0, 60.0) is False
    assert track.speech_until_ms == 60.0


def test_the_sessions_verdict_on_a_delta_is_taken_as_given() -> None:
    # GPT-Live's session has already tested each delta; the track does not test it again.
    track = TrackPlayback()
    assert track.add(SPEECH_FRAME, 0.0, 0.0, audible=False) is False
    assert track.speech_until_ms is None
    assert track.add(SILENT_FRAME, 20.0, 20.0, audible=True) is True
    assert track.speech_until_ms == 40.0


@pytest.mark.parametrize(
    ("pause_ms", "new_reply"),
    [(REPLY_GAP_MS - 20, False), (REPLY_GAP_MS, False), (REPLY_GAP_MS + 20, True)],
)
def test_speech_after_a_pause_longer_than_the_reply_gap_begins_a_reply(
    pause_ms: float, new_reply: bool
) -> None:
    assert REPLY_GAP_MS == 800.0
    track = TrackPlayback()
    assert track.add(SPEECH_FRAME, 0.0, 0.0) is True
    at = 20.0
    while at < 20.0 + pause_ms:
        assert track.add(SILENT_FRAME, at, at) is False
        at += 20.0
    assert track.add(SPEECH_FRAME, at, at) is new_reply
    assert track.speech_until_ms == at + 20.0


def test_a_pause_counts_on_the_call_timeline_including_an_underrun() -> None:
    track = TrackPlayback()
    assert track.add(SPEECH_FRAME, 0.0, 0.0) is True
    # The next speech is the very next piece of the track, but it came 900 ms late: the
    # caller heard a pause longer than the reply gap.
    assert track.add(SPEECH_FRAME, 920.0, 920.0) is True
    assert track.speech_until_ms == 940.0


def test_speech_until_ms_is_the_end_of_the_last_speech_heard() -> None:
    track = TrackPlayback()
    track.add(SPEECH_FRAME * 5, 1000.0, 1000.0)  # 100 ms of speech
    assert track.speech_until_ms == 1100.0
    track.add(SILENT_FRAME * 10, 1100.0, 1100.0)
    assert track.speech_until_ms == 1100.0
    track.add(SPEECH_FRAME[:80], 1300.0, 1300.0)  # 10 ms, after a 200 ms underrun
    assert track.speech_until_ms == 1310.0
