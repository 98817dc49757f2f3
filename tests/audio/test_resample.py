"""soxr resampling: quality, exact stream/whole-signal equivalence, rate validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio.errors import AudioFormatError
from audio.resample import SUPPORTED_RATES, StreamResampler, resample
from audio.synth import voiced_speech

RATE_PAIRS = [(a, b) for a, b in itertools.permutations(sorted(SUPPORTED_RATES), 2)]


def tone(rate: int, hz: float, seconds: float = 1.0, amplitude: float = 10000.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def rms_dbfs(pcm: np.ndarray) -> float:
    power = float(np.mean(pcm.astype(np.float64) ** 2))
    return 10 * np.log10(power / 32768.0**2) if power else -np.inf


def speech_with_burst(rate: int, seconds: float = 2.0) -> np.ndarray:
    """Speech plus a full-scale burst, so clipping at the int16 limits is exercised too."""
    speech, _ = voiced_speech(rate, seconds, seed=rate)
    signal = speech.copy()
    start = signal.size // 4
    burst = np.where(np.arange(min(rate // 10, start)) % 8 < 4, 32767, -32768)
    signal[start : start + burst.size] = burst
    return signal


def stream_in_chunks(resampler: StreamResampler, pcm: np.ndarray, cuts: list[int]) -> np.ndarray:
    edges = [0, *sorted(cuts), pcm.size]
    parts = [
        resampler.process(pcm[a:b], last=(i == len(edges) - 2))
        for i, (a, b) in enumerate(itertools.pairwise(edges))
    ]
    return np.concatenate(parts)


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS)
def test_20ms_frames_concatenate_to_exactly_the_whole_signal_resample(src, dst):
    pcm = speech_with_burst(src)
    frame = src // 50
    streamed = stream_in_chunks(StreamResampler(src, dst), pcm, list(range(frame, pcm.size, frame)))
    whole = resample(pcm, src, dst)
    assert whole.dtype == streamed.dtype == np.int16
    assert whole.size == round(pcm.size * dst / src)
    # Equality, not a tolerance: frame edges leave no trace at all.
    np.testing.assert_array_equal(streamed, whole)


def test_resampling_frames_independently_would_click_at_every_edge():
    # The sensitivity check for the test above: without carried state every 20 ms edge is
    # a discontinuity thousands of LSB large.
    pcm = tone(8000, 440, seconds=0.5)
    naive = np.concatenate([resample(pcm[i : i + 160], 8000, 24000) for i in range(0, 4000, 160)])
    assert np.abs(naive.astype(np.int32) - resample(pcm, 8000, 24000)).max() > 1000


@settings(max_examples=40, deadline=None)
@given(
    pair=st.sampled_from(RATE_PAIRS),
    cuts=st.lists(st.integers(0, 4800), max_size=12),
)
def test_any_chunking_gives_exactly_the_whole_signal_resample(pair, cuts):
    src, dst = pair
    pcm = speech_with_burst(src, seconds=0.2)
    streamed = stream_in_chunks(StreamResampler(src, dst), pcm, [c % pcm.size for c in cuts])
    np.testing.assert_array_equal(streamed, resample(pcm, src, dst))


def test_stream_restarts_cleanly_after_last_chunk():
    resampler = StreamResampler(24000, 8000)
    first, second = speech_with_burst(24000, 0.5), speech_with_burst(24000, 0.7)[::-1].copy()
    stream_in_chunks(resampler, first, [480, 960])
    again = stream_in_chunks(resampler, second, [480, 4000])
    np.testing.assert_array_equal(again, resample(second, 24000, 8000))


def test_reset_discards_buffered_audio():
    resampler = StreamResampler(24000, 8000)
    resampler.process(speech_with_burst(24000, 0.3))
    assert resampler.pending_output_samples() > 0
    resampler.reset()
    fresh = speech_with_burst(24000, 0.1)
    streamed = stream_in_chunks(resampler, fresh, [480])
    np.testing.assert_array_equal(streamed, resample(fresh, 24000, 8000))


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS)
@pytest.mark.parametrize("hz", [300, 1000, 3000, 3400])
def test_telephone_band_tone_comes_out_at_the_same_level_and_shape(src, dst, hz):
    out = resample(tone(src, hz), src, dst)
    ideal = tone(dst, hz)
    margin = dst // 20  # skip the filter's start/end transients
    error = out[margin:-margin].astype(np.int32) - ideal[margin:-margin]
    # Linear interpolation would leave errors around -40 dBFS at 3 kHz.
    assert rms_dbfs(error) < -85
    assert abs(rms_dbfs(out[margin:-margin]) - rms_dbfs(ideal[margin:-margin])) < 0.01


@pytest.mark.parametrize("hz", [4300, 6000, 9000])
def test_downsampling_removes_content_above_the_new_nyquist_instead_of_aliasing_it(hz):
    out = resample(tone(24000, hz), 24000, 8000)
    assert rms_dbfs(out[800:-800]) < -90


def test_upsampling_adds_no_images_above_the_old_nyquist():
    out = resample(tone(8000, 1000), 8000, 24000)[2400:-2400].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size))) ** 2
    freqs = np.fft.rfftfreq(out.size, 1 / 24000)
    assert 10 * np.log10(spectrum[freqs > 4200].sum() / spectrum.sum()) < -90


def test_full_scale_input_saturates_instead_of_wrapping_around():
    square = np.where(np.arange(8000) % 40 < 20, 32767, -32768).astype(np.int16)
    out = resample(square, 8000, 24000).astype(np.int32)
    ideal_sign = np.sign(resample(square // 2, 8000, 24000).astype(np.int32))
    loud = np.abs(out) > 20000
    assert np.all(np.sign(out[loud]) == ideal_sign[loud])


def test_same_rate_is_a_copy():
    pcm = tone(16000, 500, 0.1)
    out = resample(pcm, 16000, 16000)
    np.testing.assert_array_equal(out, pcm)
    assert out is not pcm
    np.testing.assert_array_equal(StreamResampler(8000, 8000).process(pcm), pcm)


def test_empty_input_gives_empty_output():
    empty = np.empty(0, dtype=np.int16)
    assert resample(empty, 8000, 24000).size == 0
    assert StreamResampler(8000, 24000).process(empty).size == 0


@pytest.mark.parametrize("rate", [0, 11025, 22050, 44100, 48000, 16000.5])
def test_unsupported_rates_raise_audio_format_error(rate):
    pcm = np.zeros(160, dtype=np.int16)
    with pytest.raises(AudioFormatError, match="unsupported sample rate"):
        resample(pcm, rate, 16000)
    with pytest.raises(AudioFormatError, match="unsupported sample rate"):
        resample(pcm, 8000, rate)
    with pytest.raises(AudioFormatError, match="unsupported sample rate"):
        StreamResampler(rate, 8000)


def test_unknown_quality_and_wrong_dtype_raise_audio_format_error():
    with pytest.raises(AudioFormatError, match="quality"):
        StreamResampler(8000, 16000, quality="ultra")
    with pytest.raises(AudioFormatError, match="1-D int16"):
        resample(np.zeros(10, dtype=np.float32), 8000, 16000)
    with pytest.raises(AudioFormatError, match="1-D int16"):
        StreamResampler(8000, 16000).process(np.zeros((10, 2), dtype=np.int16))
