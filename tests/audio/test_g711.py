"""G.711 mu-law: bit-exact against CPython's audioop as an independent oracle."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from audio.errors import AudioFormatError
from audio.g711 import DECODE_TABLE, ENCODE_TABLE, ulaw_decode, ulaw_encode

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop", reason="Python >= 3.13 needs the audioop-lts package")

ALL_CODES = bytes(range(256))
ALL_PCM16 = np.arange(-32768, 32768, dtype=np.int16)


def test_decode_matches_audioop_for_all_256_codes():
    expected = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), dtype=np.int16)
    decoded = ulaw_decode(ALL_CODES)
    assert decoded.dtype == np.int16
    np.testing.assert_array_equal(decoded, expected)


def test_encode_matches_audioop_for_every_int16_value():
    expected = audioop.lin2ulaw(ALL_PCM16.tobytes(), 2)
    assert ulaw_encode(ALL_PCM16) == expected


@given(hnp.arrays(np.int16, st.integers(0, 2000)))
def test_encode_matches_audioop_on_random_pcm16(pcm):
    assert ulaw_encode(pcm) == audioop.lin2ulaw(pcm.tobytes(), 2)


@given(st.binary(max_size=2000))
def test_decode_matches_audioop_on_random_bytes(data):
    expected = np.frombuffer(audioop.ulaw2lin(data, 2), dtype=np.int16)
    np.testing.assert_array_equal(ulaw_decode(data), expected)


def test_every_decoded_level_encodes_back_to_a_code_with_the_same_level():
    # G.711 reconstruction levels are fixed points of decode(encode(.)); 0xFF and 0x7F both
    # decode to 0, so compare levels rather than codes.
    levels = ulaw_decode(ALL_CODES)
    np.testing.assert_array_equal(ulaw_decode(ulaw_encode(levels)), levels)


def test_encode_is_monotonic_in_the_decoded_domain():
    levels = ulaw_decode(ulaw_encode(ALL_PCM16)).astype(np.int32)
    assert np.all(np.diff(levels) >= 0)


def _g191_ulaw_compress(pcm: np.ndarray) -> np.ndarray:
    """ITU-T G.191 STL ulaw_compress, vectorised: one's complement magnitude for negatives."""
    lin = pcm.astype(np.int32)
    absno = np.where(lin < 0, (~lin) >> 2, lin >> 2) + 33
    absno = np.minimum(absno, 0x1FFF)
    segno = 1 + np.frexp(absno >> 6)[1]  # 1 + bit length of absno >> 6
    low = 0x0F - ((absno >> segno) & 0x0F)
    code = ((8 - segno) << 4) | low
    return np.where(lin >= 0, code | 0x80, code).astype(np.uint8)


def test_documented_difference_from_the_itu_g191_reference_encoder():
    # The module docstring claims: same as G.191 for every non-negative sample; for negative
    # samples 508 inputs differ, each by one quantisation step (adjacent codes).
    ours = np.frombuffer(ulaw_encode(ALL_PCM16), dtype=np.uint8)
    g191 = _g191_ulaw_compress(ALL_PCM16)
    differ = ours != g191
    assert not differ[ALL_PCM16 >= 0].any()
    assert int(differ.sum()) == 508
    ours_level = ulaw_decode(ours[differ].tobytes()).astype(np.int32)
    g191_level = ulaw_decode(g191[differ].tobytes()).astype(np.int32)
    all_levels = np.unique(ulaw_decode(ALL_CODES).astype(np.int32))
    rank = np.searchsorted(all_levels, ours_level) - np.searchsorted(all_levels, g191_level)
    assert np.all(np.abs(rank) == 1)


def test_tables_are_read_only_and_sized_for_direct_indexing():
    assert DECODE_TABLE.shape == (256,) and DECODE_TABLE.dtype == np.int16
    assert ENCODE_TABLE.shape == (65536,) and ENCODE_TABLE.dtype == np.uint8
    with pytest.raises(ValueError):
        DECODE_TABLE[0] = 1


def test_decode_accepts_bytearray_and_memoryview():
    data = bytes([0x00, 0x7F, 0x80, 0xFF])
    expected = ulaw_decode(data)
    np.testing.assert_array_equal(ulaw_decode(bytearray(data)), expected)
    np.testing.assert_array_equal(ulaw_decode(memoryview(data)), expected)


def test_encode_of_a_strided_view_matches_a_contiguous_copy():
    pcm = ALL_PCM16[::7]
    assert ulaw_encode(pcm) == ulaw_encode(pcm.copy())


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(4, dtype=np.float32),
        np.zeros(4, dtype=np.int32),
        np.zeros((2, 2), dtype=np.int16),
        [1, 2, 3],
        b"\x00\x01",
    ],
    ids=["float32", "int32", "2-D", "list", "bytes"],
)
def test_encode_rejects_anything_but_1d_int16(bad):
    with pytest.raises(AudioFormatError, match="1-D int16"):
        ulaw_encode(bad)


@pytest.mark.parametrize("bad", ["text", 42, None], ids=["str", "int", "None"])
def test_decode_rejects_non_bytes(bad):
    with pytest.raises(AudioFormatError, match="bytes-like"):
        ulaw_decode(bad)
