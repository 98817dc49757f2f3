"""Audio for the Twilio <-> OpenAI Realtime bridge: pure Python + numpy, no Django.

* ``g711``: mu-law codec with lookup tables, bit-exact with CPython's audioop.
* ``resample``: soxr resampling between 8, 16 and 24 kHz, whole-signal and streaming.
* ``convert``: one-call and streaming conversions between Twilio and OpenAI payloads.
* ``recorder``: stereo call recording on the call timeline, crash-recoverable.
* ``bench``: ``python -m audio.bench [--smoke]``.
"""

from __future__ import annotations

from audio.convert import (
    OPENAI_PCM,
    OPENAI_PCM_RATE,
    STORAGE_RATE,
    TWILIO_PCMU,
    TWILIO_RATE,
    OpenAIPcmToTwilio,
    StreamConverter,
    TwilioToOpenAIPcm,
    WireFormat,
    decode_base64,
    encode_base64,
    openai_pcm_to_storage,
    openai_pcm_to_twilio,
    pcm16_from_bytes,
    pcm16_to_bytes,
    twilio_to_openai_pcm,
    twilio_to_storage,
)
from audio.errors import AudioFormatError
from audio.g711 import ulaw_decode, ulaw_encode
from audio.recorder import CallRecorder, RecordingInfo, describe_recording, recover
from audio.resample import SUPPORTED_RATES, StreamResampler, resample
from audio.vad import SpeechMeter

__all__ = [
    "OPENAI_PCM",
    "OPENAI_PCM_RATE",
    "STORAGE_RATE",
    "SUPPORTED_RATES",
    "TWILIO_PCMU",
    "TWILIO_RATE",
    "AudioFormatError",
    "CallRecorder",
    "OpenAIPcmToTwilio",
    "RecordingInfo",
    "SpeechMeter",
    "StreamConverter",
    "StreamResampler",
    "TwilioToOpenAIPcm",
    "WireFormat",
    "decode_base64",
    "describe_recording",
    "encode_base64",
    "openai_pcm_to_storage",
    "openai_pcm_to_twilio",
    "pcm16_from_bytes",
    "pcm16_to_bytes",
    "recover",
    "resample",
    "twilio_to_openai_pcm",
    "twilio_to_storage",
    "ulaw_decode",
    "ulaw_encode",
]
