"""One-call conversions between the bridge's wire formats, and their streaming forms.

Wire formats:

* Twilio Media Streams: base64 of mu-law (G.711 PCMU) at 8 kHz, mono.
* OpenAI Realtime ``audio/pcm``: base64 of PCM16 little-endian at 24 kHz, mono.
* Storage: int16 numpy array at 16 kHz (what the recorder writes).

The one-call functions treat their payload as a complete signal: fine for a whole clip, but
converting a live stream frame by frame with them restarts the filter at every frame edge. The
live path uses ``TwilioToOpenAIPcm`` / ``OpenAIPcmToTwilio`` (one per call and direction), whose
output concatenates to exactly the one-call result for the whole stream.

Every malformed input (invalid base64, odd PCM16 byte count, wrong type) raises
``AudioFormatError`` with a message that says which payload and why.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from audio.errors import AudioFormatError
from audio.g711 import ulaw_decode, ulaw_encode
from audio.resample import DEFAULT_QUALITY, StreamResampler, resample

TWILIO_RATE = 8000
OPENAI_PCM_RATE = 24000
STORAGE_RATE = 16000
_LITTLE_ENDIAN_INT16 = np.dtype("<i2")


def decode_base64(payload: str | bytes, *, what: str = "payload") -> bytes:
    """Strictly decode base64 (no whitespace, correct padding), else AudioFormatError."""
    try:
        return binascii.a2b_base64(payload, strict_mode=True)
    except binascii.Error as exc:
        raise AudioFormatError(f"{what} is not valid base64: {exc}") from exc
    except (TypeError, ValueError) as exc:
        # TypeError: not str/bytes; ValueError: str with non-ASCII characters.
        raise AudioFormatError(
            f"{what} must be an ASCII base64 string, got {type(payload).__name__}: {exc}"
        ) from exc


def encode_base64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def pcm16_from_bytes(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Read PCM16 little-endian bytes as an int16 array (a view when already aligned)."""
    if len(data) % 2:
        raise AudioFormatError(f"PCM16 data must have an even byte count, got {len(data)} bytes")
    pcm = np.frombuffer(data, dtype=_LITTLE_ENDIAN_INT16)
    # Native int16 so downstream dtype checks pass; no copy on little-endian machines.
    return pcm.astype(np.int16, copy=False)


def pcm16_to_bytes(pcm: np.ndarray) -> bytes:
    return pcm.astype(_LITTLE_ENDIAN_INT16, copy=False).tobytes()


@dataclass(frozen=True, slots=True)
class WireFormat:
    """A mono audio encoding as it appears inside a JSON message."""

    name: str
    rate: int
    decode: Callable[[bytes], np.ndarray]
    encode: Callable[[np.ndarray], bytes]


TWILIO_PCMU = WireFormat("audio/pcmu", TWILIO_RATE, ulaw_decode, ulaw_encode)
OPENAI_PCM = WireFormat("audio/pcm", OPENAI_PCM_RATE, pcm16_from_bytes, pcm16_to_bytes)


def _decode_payload(payload_b64: str, fmt: WireFormat) -> np.ndarray:
    return fmt.decode(decode_base64(payload_b64, what=f"{fmt.name} payload"))


def twilio_to_openai_pcm(payload_b64: str) -> str:
    """Twilio media payload (base64 mu-law 8 kHz) -> OpenAI audio/pcm (base64 PCM16 24 kHz)."""
    pcm = resample(_decode_payload(payload_b64, TWILIO_PCMU), TWILIO_RATE, OPENAI_PCM_RATE)
    return encode_base64(pcm16_to_bytes(pcm))


def openai_pcm_to_twilio(payload_b64: str) -> str:
    """OpenAI audio/pcm (base64 PCM16 24 kHz) -> Twilio media payload (base64 mu-law 8 kHz)."""
    pcm = resample(_decode_payload(payload_b64, OPENAI_PCM), OPENAI_PCM_RATE, TWILIO_RATE)
    return encode_base64(ulaw_encode(pcm))


def twilio_to_storage(payload_b64: str) -> np.ndarray:
    """Twilio media payload -> int16 PCM at the 16 kHz storage rate."""
    return resample(_decode_payload(payload_b64, TWILIO_PCMU), TWILIO_RATE, STORAGE_RATE)


def openai_pcm_to_storage(payload_b64: str) -> np.ndarray:
    """OpenAI audio/pcm payload -> int16 PCM at the 16 kHz storage rate."""
    return resample(_decode_payload(payload_b64, OPENAI_PCM), OPENAI_PCM_RATE, STORAGE_RATE)


class StreamConverter:
    """Per-call, per-direction base64 converter that keeps the resampler state across frames.

    ``convert`` may return an empty string while the resampler fills (see audio.resample);
    skip sending those. Call ``flush()`` at the end of a segment (e.g. the end of an agent
    response) to get the buffered tail, or ``reset()`` to discard it (barge-in).
    """

    __slots__ = ("_dst", "_resampler", "_src")

    def __init__(self, src: WireFormat, dst: WireFormat, *, quality: str = DEFAULT_QUALITY):
        self._src = src
        self._dst = dst
        self._resampler = StreamResampler(src.rate, dst.rate, quality=quality)

    def convert(self, payload_b64: str) -> str:
        pcm = _decode_payload(payload_b64, self._src)
        return self._emit(self._resampler.process(pcm))

    def flush(self) -> str:
        return self._emit(self._resampler.process(np.empty(0, dtype=np.int16), last=True))

    def reset(self) -> None:
        self._resampler.reset()

    def _emit(self, pcm: np.ndarray) -> str:
        if pcm.size == 0:
            return ""
        return encode_base64(self._dst.encode(pcm))


class TwilioToOpenAIPcm(StreamConverter):
    """Caller audio: Twilio mu-law 8 kHz frames -> OpenAI audio/pcm 24 kHz."""

    __slots__ = ()

    def __init__(self, *, quality: str = DEFAULT_QUALITY) -> None:
        super().__init__(TWILIO_PCMU, OPENAI_PCM, quality=quality)


class OpenAIPcmToTwilio(StreamConverter):
    """Agent audio: OpenAI audio/pcm 24 kHz deltas -> Twilio mu-law 8 kHz payloads."""

    __slots__ = ()

    def __init__(self, *, quality: str = DEFAULT_QUALITY) -> None:
        super().__init__(OPENAI_PCM, TWILIO_PCMU, quality=quality)
