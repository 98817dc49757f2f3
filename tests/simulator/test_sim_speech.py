from __future__ import annotations

import numpy as np

from audio.g711 import ulaw_decode, ulaw_encode
from audio.vad import SpeechMeter
from simulator.openai.vad import EnergyVad
from simulator.speech import silence, speech


def _frame_levels_dbfs(pcm: np.ndarray, rate: int, frame_ms: int = 20) -> np.ndarray:
    size = rate * frame_ms // 1000
    frames = pcm[: pcm.size // size * size].astype(np.float64).reshape(-1, size)
    return 10 * np.log10(np.mean(frames**2, axis=1) / 32768.0**2 + 1e-12)


def test_speech_is_deterministic_int16_at_the_requested_length_and_level():
    first = speech(1.5, seed=3)
    assert first.dtype == np.int16
    assert first.size == 12000
    assert np.array_equal(first, speech(1.5, seed=3))
    assert not np.array_equal(first, speech(1.5, seed=4))
    rms = np.sqrt(np.mean(first.astype(np.float64) ** 2)) / 32768.0
    assert abs(20 * np.log10(rms) - -18.0) < 0.5
    assert speech(0.5, rate=24000).size == 12000


def test_speech_trips_an_energy_vad_in_every_frame_and_silence_in_none():
    # The bridge's recorder VAD (-40 dBFS on 20 ms frames), after the mu-law round trip.
    pcm = ulaw_decode(ulaw_encode(speech(2.0, seed=1)))
    meter = SpeechMeter(8000)
    meter.feed(pcm)
    assert meter.finish() > 1.9
    assert _frame_levels_dbfs(pcm, 8000)[1:-1].min() > -35.0  # dips, never pauses

    quiet = SpeechMeter(8000)
    quiet.feed(ulaw_decode(ulaw_encode(silence(2.0))))
    assert quiet.finish() == 0.0


def test_speech_is_voice_like_modulated_at_syllable_rate_with_energy_in_the_voice_band():
    pcm = speech(4.0, seed=2).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm))
    freqs = np.fft.rfftfreq(pcm.size, 1 / 8000)
    voice_band = spectrum[(freqs > 100) & (freqs < 3500)].sum()
    assert voice_band / spectrum.sum() > 0.95
    levels = _frame_levels_dbfs(speech(4.0, seed=2), 8000)
    assert levels.max() - levels.min() > 6.0  # syllables rise and fall


def test_the_standin_vad_starts_and_stops_once_per_utterance():
    vad = EnergyVad(start_ms=100)
    pcm = np.concatenate([silence(0.5), speech(1.5, seed=5), silence(1.0)])
    changes = vad.feed(pcm, 8000)
    assert [c.started for c in changes] == [True, False]
    assert abs(changes[0].at_ms - (500 - 300)) <= 30  # onset minus prefix padding
    assert abs(changes[1].at_ms - (2000 + 500)) <= 30  # end plus the silence duration
    assert vad.feed(silence(2.0), 8000) == []
