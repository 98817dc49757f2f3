"""Wire-format conversions: one call each, streaming forms, and one error type for bad input."""

from __future__ import annotations

import base64
import binascii

import numpy as np
import pytest

from audio.convert import (
    OpenAIPcmToTwilio,
    TwilioToOpenAIPcm,
    openai_pcm_to_storage,
    openai_pcm_to_twilio,
    pcm16_from_bytes,
    pcm16_to_bytes,
    twilio_to_openai_pcm,
    twilio_to_storage,
)
from audio.errors import AudioFormatError
from audio.g711 import ulaw_decode, ulaw_encode
from audio.resample import resample
from audio.synth import voiced_speech


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@pytest.fixture(scope="module")
def caller_ulaw() -> bytes:
    speech, _ = voiced_speech(8000, 2.0, seed=11)
    return ulaw_encode(speech)


@pytest.fixture(scope="module")
def agent_pcm() -> np.ndarray:
    speech, _ = voiced_speech(24000, 2.0, seed=12)
    return speech


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    ref = reference.astype(np.float64)
    noise = ref - test.astype(np.float64)
    return 10 * np.log10(np.sum(ref**2) / np.sum(noise**2))


def test_twilio_to_openai_is_pcm16_le_at_24k(caller_ulaw):
    out = unb64(twilio_to_openai_pcm(b64(caller_ulaw)))
    assert len(out) == len(caller_ulaw) * 3 * 2
    expected = resample(ulaw_decode(caller_ulaw), 8000, 24000)
    np.testing.assert_array_equal(np.frombuffer(out, dtype="<i2"), expected)


def test_openai_to_twilio_is_mulaw_at_8k(agent_pcm):
    out = unb64(openai_pcm_to_twilio(b64(agent_pcm.astype("<i2").tobytes())))
    assert len(out) == agent_pcm.size // 3
    assert out == ulaw_encode(resample(agent_pcm, 24000, 8000))


def test_both_directions_to_storage_are_int16_at_16k(caller_ulaw, agent_pcm):
    caller = twilio_to_storage(b64(caller_ulaw))
    agent = openai_pcm_to_storage(b64(agent_pcm.tobytes()))
    assert caller.dtype == agent.dtype == np.int16
    assert caller.size == len(caller_ulaw) * 2
    assert agent.size == agent_pcm.size * 2 // 3
    np.testing.assert_array_equal(caller, resample(ulaw_decode(caller_ulaw), 8000, 16000))


def test_round_trip_through_openai_format_keeps_telephone_speech(caller_ulaw):
    back = unb64(openai_pcm_to_twilio(twilio_to_openai_pcm(b64(caller_ulaw))))
    original, returned = ulaw_decode(caller_ulaw), ulaw_decode(back)
    # Only one extra mu-law quantisation (~38 dB SNR on speech) and negligible filter error.
    assert snr_db(original[400:-400], returned[400:-400]) > 30


def test_pcm16_byte_order_is_little_endian():
    assert pcm16_to_bytes(np.array([0x0102, -2], dtype=np.int16)) == b"\x02\x01\xfe\xff"
    np.testing.assert_array_equal(pcm16_from_bytes(b"\x02\x01\xfe\xff"), [0x0102, -2])
    assert pcm16_from_bytes(b"\x02\x01").dtype == np.int16


def test_streaming_twilio_frames_concatenate_to_the_one_call_result(caller_ulaw):
    converter = TwilioToOpenAIPcm()
    frames = [caller_ulaw[i : i + 160] for i in range(0, len(caller_ulaw), 160)]
    outputs = [converter.convert(b64(frame)) for frame in frames]
    outputs.append(converter.flush())
    assert outputs[0] == ""  # soxr buffers before its first burst; the bridge skips these
    streamed = b"".join(unb64(chunk) for chunk in outputs)
    assert streamed == unb64(twilio_to_openai_pcm(b64(caller_ulaw)))


def test_streaming_openai_deltas_concatenate_to_the_one_call_result(agent_pcm):
    converter = OpenAIPcmToTwilio()
    data = agent_pcm.tobytes()
    sizes = [4800, 9600, 2, 1998, 24000]  # OpenAI deltas vary in size
    chunks, cursor = [], 0
    while cursor < len(data):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(data[cursor : cursor + size])
        cursor += size
    outputs = [converter.convert(b64(chunk)) for chunk in chunks] + [converter.flush()]
    streamed = b"".join(unb64(chunk) for chunk in outputs)
    assert streamed == unb64(openai_pcm_to_twilio(b64(data)))


def test_converter_reset_after_barge_in_drops_the_interrupted_tail(agent_pcm):
    converter = OpenAIPcmToTwilio()
    converter.convert(b64(agent_pcm[:12000].tobytes()))
    converter.reset()
    second = agent_pcm[12000:].tobytes()
    streamed = unb64(converter.convert(b64(second))) + unb64(converter.flush())
    assert streamed == unb64(openai_pcm_to_twilio(b64(second)))


def test_converter_starts_a_new_segment_after_flush(caller_ulaw):
    converter = TwilioToOpenAIPcm()
    converter.convert(b64(caller_ulaw[:800]))
    converter.flush()
    again = unb64(converter.convert(b64(caller_ulaw))) + unb64(converter.flush())
    assert again == unb64(twilio_to_openai_pcm(b64(caller_ulaw)))


def test_empty_payload_is_empty_audio():
    assert twilio_to_openai_pcm("") == ""
    assert openai_pcm_to_twilio("") == ""
    assert twilio_to_storage("").size == 0


ONE_CALL_FUNCTIONS = [
    twilio_to_openai_pcm,
    openai_pcm_to_twilio,
    twilio_to_storage,
    openai_pcm_to_storage,
]
BAD_BASE64 = {
    "bad padding": "AAAAA",
    "illegal character": "AAA*",
    "embedded newline": "AAAA\nAAAA",
    "url-safe alphabet": "AA-_",
    "data after padding": "AA==AA==",
    "non-ascii text": "AAAé",
}


@pytest.mark.parametrize("convert", ONE_CALL_FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("payload", BAD_BASE64.values(), ids=BAD_BASE64.keys())
def test_invalid_base64_raises_audio_format_error(convert, payload):
    with pytest.raises(AudioFormatError, match="base64") as caught:
        convert(payload)
    assert not isinstance(caught.value, binascii.Error)


@pytest.mark.parametrize("convert", ONE_CALL_FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("payload", [None, 1234, ["AAAA"]], ids=["None", "int", "list"])
def test_non_string_payload_raises_audio_format_error(convert, payload):
    with pytest.raises(AudioFormatError, match="ASCII base64 string"):
        convert(payload)


@pytest.mark.parametrize("convert", [openai_pcm_to_twilio, openai_pcm_to_storage])
def test_odd_pcm16_byte_count_raises_audio_format_error(convert):
    with pytest.raises(AudioFormatError, match="even byte count, got 3 bytes"):
        convert(b64(b"\x00\x01\x02"))


def test_streaming_converters_raise_the_same_error_type():
    with pytest.raises(AudioFormatError, match="base64"):
        TwilioToOpenAIPcm().convert("not base64!")
    with pytest.raises(AudioFormatError, match="even byte count"):
        OpenAIPcmToTwilio().convert(b64(b"\x00"))
