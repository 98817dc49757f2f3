"""Synthetic voiced speech for tests and the benchmark (no recordings to ship).

A harmonic-rich "vowel" (a glottal-like pulse train: all harmonics of a drifting f0 up to
3.4 kHz, shaped by three formant resonances) is cut into syllables with raised-cosine attack and
release, grouped into words separated by pauses. It exercises codec, resampler and VAD the way
speech does (a 1/f-ish spectrum up to telephone bandwidth, strong syllable-rate modulation),
and the syllable spans it returns tell tests exactly where the speech is.
"""

from __future__ import annotations

import numpy as np

_FORMANTS_HZ = ((700.0, 130.0), (1220.0, 70.0), (2600.0, 160.0))
_TOP_HZ = 3400.0
_EDGE_S = 0.02


def _formant_gain(freq_hz: np.ndarray) -> np.ndarray:
    gain = np.zeros_like(freq_hz)
    for centre, bandwidth in _FORMANTS_HZ:
        gain += 1.0 / np.sqrt(1.0 + ((freq_hz - centre) / bandwidth) ** 2)
    return gain


def voiced_speech(
    rate: int,
    duration_s: float,
    *,
    seed: int = 0,
    level_dbfs: float = -20.0,
    f0_hz: float = 120.0,
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Return ``(int16 samples, [(start_s, end_s) of each syllable])`` for ``duration_s``."""
    rng = np.random.default_rng(seed)
    n = round(rate * duration_s)
    t = np.arange(n) / rate
    # Slow intonation drift plus a little vibrato, like a speaking voice.
    f0 = f0_hz * (1.0 + 0.12 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6.28)))
    f0 *= 1.0 + 0.01 * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = np.zeros(n)
    for k in range(1, int(_TOP_HZ // (f0_hz * 0.88)) + 1):
        harmonic_hz = k * f0
        audible = harmonic_hz < min(_TOP_HZ, rate / 2 - 200)
        voice += np.where(audible, _formant_gain(harmonic_hz) / k, 0.0) * np.sin(k * phase)

    envelope = np.zeros(n)
    spans: list[tuple[float, float]] = []
    cursor = rng.uniform(0.05, 0.2)
    while True:
        for _ in range(rng.integers(1, 4)):  # syllables in a word
            length = rng.uniform(0.12, 0.3)
            if cursor + length > duration_s:
                return _scale(voice * envelope, level_dbfs), spans
            start, stop = round(cursor * rate), round((cursor + length) * rate)
            envelope[start:stop] = _syllable_envelope(stop - start, rate)
            spans.append((cursor, cursor + length))
            cursor += length + rng.uniform(0.03, 0.08)
        cursor += rng.uniform(0.25, 0.6)  # pause between words


def _syllable_envelope(length: int, rate: int) -> np.ndarray:
    edge = min(round(_EDGE_S * rate), length // 2)
    env = np.ones(length)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(edge) / edge)
    env[:edge] = ramp
    env[length - edge :] = ramp[::-1]
    return env


def _scale(signal: np.ndarray, level_dbfs: float) -> np.ndarray:
    active = signal[np.abs(signal) > 0]
    rms = float(np.sqrt(np.mean(active**2))) if active.size else 1.0
    target = 32768.0 * 10.0 ** (level_dbfs / 20.0)
    return np.clip(np.rint(signal * (target / rms)), -32768, 32767).astype(np.int16)


def speech_seconds(spans: list[tuple[float, float]]) -> float:
    return sum(stop - start for start, stop in spans)
