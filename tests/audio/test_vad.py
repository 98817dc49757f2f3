"""Energy VAD used for talk-time analytics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio.synth import speech_seconds, voiced_speech
from audio.vad import SpeechMeter


def tone(rate: int, seconds: float, dbfs: float) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    amplitude = 32768 * 10 ** (dbfs / 20) * np.sqrt(2)  # sine RMS = peak / sqrt(2)
    return np.rint(amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def measure(pcm: np.ndarray, rate: int = 16000) -> float:
    meter = SpeechMeter(rate)
    meter.feed(pcm)
    return meter.finish()


@pytest.mark.parametrize(("dbfs", "expected"), [(-20, 1.0), (-38, 1.0), (-42, 0.0), (-70, 0.0)])
def test_threshold_is_minus_40_dbfs(dbfs, expected):
    assert measure(tone(16000, 1.0, dbfs)) == pytest.approx(expected)


def test_digital_silence_is_not_speech():
    assert measure(np.zeros(16000, np.int16)) == 0.0


def test_counts_the_voiced_time_of_synthetic_speech():
    speech, spans = voiced_speech(16000, 20.0, seed=3)
    assert measure(speech) == pytest.approx(speech_seconds(spans), abs=0.5)
    assert measure(speech) < 20.0 * 0.8  # the pauses are not counted


def test_trailing_partial_frame_is_judged_on_its_own():
    pcm = np.concatenate((np.zeros(320, np.int16), tone(16000, 0.005, -20)))  # 20 ms + 5 ms
    assert measure(pcm) == pytest.approx(0.005)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 5000), max_size=15))
def test_result_does_not_depend_on_block_sizes(cuts):
    speech, _ = voiced_speech(16000, 3.0, seed=4)
    meter = SpeechMeter(16000)
    edges = sorted({0, speech.size, *(c % speech.size for c in cuts)})
    for start, stop in itertools.pairwise(edges):
        meter.feed(speech[start:stop])
    assert meter.finish() == measure(speech)
