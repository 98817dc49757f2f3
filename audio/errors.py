"""The one exception type the audio package raises for bad input."""

from __future__ import annotations


class AudioFormatError(ValueError):
    """Audio input that cannot be decoded or converted.

    Raised for invalid base64, PCM16 payloads with an odd byte count, arrays of the wrong
    dtype or shape, and unsupported sample rates, so callers on the hot path can catch a single
    type instead of binascii, numpy and soxr errors.
    """


def describe(value: object) -> str:
    """Short description of a bad argument for error messages (dtype and shape for arrays)."""
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    if dtype is not None and shape is not None:
        return f"{type(value).__name__}(dtype={dtype}, shape={shape})"
    return type(value).__name__
