"""Deterministic speech-like audio for the simulated caller and the realtime stand-in.

A voiced source (every harmonic of a slowly drifting pitch, falling off like a glottal pulse
train) is shaped by three formant resonances that move from vowel to vowel, then cut into
syllables by a syllable-rate envelope. One call of `speech()` is one utterance: syllables run
into each other with short dips but no pause long enough for a server VAD (which waits hundreds
of milliseconds of quiet) to end the turn early, so "1.5 s of speech" is one caller turn.

Same arguments, same samples: tests can compare bytes, and nothing needs a recording.
"""

from __future__ import annotations

import numpy as np

# (F1, F2, F3) in Hz and bandwidths in Hz of a few vowels, roughly an adult male voice.
_VOWELS_HZ = (
    (730.0, 1090.0, 2440.0),  # a
    (270.0, 2290.0, 3010.0),  # i
    (300.0, 870.0, 2240.0),  # u
    (530.0, 1840.0, 2480.0),  # e
    (570.0, 840.0, 2410.0),  # o
)
_BANDWIDTHS_HZ = (90.0, 110.0, 170.0)
# Telephone band: nothing above it survives a phone line anyway.
_TOP_HZ = 3600.0
_SYLLABLE_S = (0.14, 0.28)
# Envelope floor between syllables: a dip, not a pause, so one utterance stays one VAD turn.
_DIP_LEVEL = 0.25
_EDGE_S = 0.015


def silence(seconds: float, rate: int = 8000) -> np.ndarray:
    """Digital silence (int16 zeros), what a muted line decodes to."""
    return np.zeros(max(0, round(seconds * rate)), dtype=np.int16)


def speech(
    seconds: float,
    *,
    rate: int = 8000,
    seed: int = 0,
    level_dbfs: float = -18.0,
    f0_hz: float = 120.0,
) -> np.ndarray:
    """`seconds` of one continuous utterance as int16 at `rate`, RMS about `level_dbfs`."""
    n = max(0, round(seconds * rate))
    if n == 0:
        return np.zeros(0, dtype=np.int16)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    f0 = _pitch_contour(t, f0_hz, rng)
    formants = _formant_tracks(n, rate, rng)
    voiced = _harmonic_source(f0, formants, rate)
    # A little breath noise keeps the spectrum from being purely harmonic, as in real voices.
    breath = rng.standard_normal(n) * 0.04 * float(np.std(voiced) or 1.0)
    envelope = _syllable_envelope(n, rate, rng)
    return _to_int16(_fade_edges((voiced + breath) * envelope, rate), level_dbfs)


def _pitch_contour(t: np.ndarray, f0_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Slow intonation drift, a falling phrase ending, and slight vibrato."""
    drift = 0.08 * np.sin(2 * np.pi * 0.6 * t + rng.uniform(0, 2 * np.pi))
    declination = -0.06 * t / max(float(t[-1]), 1e-9)
    vibrato = 0.01 * np.sin(2 * np.pi * 5.0 * t)
    return f0_hz * (1.0 + drift + declination + vibrato)


def _formant_tracks(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """(3, n) formant frequencies gliding from one random vowel to the next per syllable."""
    step = round(0.2 * rate)
    anchors = np.arange(0, n + step, step)
    choices = rng.integers(0, len(_VOWELS_HZ), size=anchors.size)
    targets = np.array([_VOWELS_HZ[c] for c in choices]).T  # (3, anchors)
    positions = np.arange(n)
    return np.vstack([np.interp(positions, anchors, targets[i]) for i in range(3)])


def _harmonic_source(f0: np.ndarray, formants: np.ndarray, rate: int) -> np.ndarray:
    """Sum of harmonics of f0 (1/k glottal tilt), each weighted by the formant response."""
    phase = 2 * np.pi * np.cumsum(f0) / rate
    top = min(_TOP_HZ, rate / 2 - 200.0)
    out = np.zeros(f0.size)
    for k in range(1, int(top / float(f0.min())) + 1):
        freq = k * f0
        gain = np.zeros(f0.size)
        for centre, bandwidth in zip(formants, _BANDWIDTHS_HZ, strict=True):
            gain += 1.0 / np.sqrt(1.0 + ((freq - centre) / bandwidth) ** 2)
        out += np.where(freq < top, gain / k, 0.0) * np.sin(k * phase)
    return out


def _syllable_envelope(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Raised-cosine syllable bumps between a floor of _DIP_LEVEL: about 4-6 syllables/s."""
    envelope = np.full(n, _DIP_LEVEL)
    cursor = 0
    while cursor < n:
        length = round(rng.uniform(*_SYLLABLE_S) * rate)
        stop = min(n, cursor + length)
        bump = np.sin(np.pi * np.arange(stop - cursor) / max(length, 1)) ** 0.6
        envelope[cursor:stop] = _DIP_LEVEL + (1.0 - _DIP_LEVEL) * bump
        cursor = stop
    return envelope


def _fade_edges(signal: np.ndarray, rate: int) -> np.ndarray:
    """Short ramps at both ends so the utterance does not start or stop with a click."""
    edge = min(round(_EDGE_S * rate), signal.size // 2)
    if edge:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(edge) / edge)
        signal[:edge] *= ramp
        signal[signal.size - edge :] *= ramp[::-1]
    return signal


def _to_int16(signal: np.ndarray, level_dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(signal**2))) or 1.0
    target = 32768.0 * 10.0 ** (level_dbfs / 20.0)
    return np.clip(np.rint(signal * (target / rms)), -32768, 32767).astype(np.int16)
