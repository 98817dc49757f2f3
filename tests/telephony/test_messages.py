"""Twilio media-stream message parsing (lenient) and building (exact)."""

from __future__ import annotations

import contextlib
import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephony import messages as tw


def test_media_fields_arrive_as_strings_and_are_parsed() -> None:
    text = orjson.dumps(
        {
            "event": "media",
            "sequenceNumber": "4",
            "media": {"track": "inbound", "chunk": "3", "timestamp": "40", "payload": "/w=="},
            "streamSid": "MZ1",
        }
    )
    assert tw.parse_message(text) == tw.Media(
        payload="/w==", timestamp_ms=40, chunk=3, track="inbound"
    )


def test_start_carries_custom_parameters() -> None:
    text = orjson.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": "AC1",
                "streamSid": "MZ1",
                "callSid": "CA1",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": {"callId": "abc", "token": "t"},
            },
            "streamSid": "MZ1",
        }
    )
    start = tw.parse_message(text)
    assert isinstance(start, tw.Start)
    assert start.custom_parameters == {"callId": "abc", "token": "t"}
    assert (start.stream_sid, start.call_sid, start.sample_rate) == ("MZ1", "CA1", 8000)


@pytest.mark.parametrize(
    "text",
    [
        b"not json",
        b"[]",
        b'{"event": "media"}',
        b'{"event": "media", "media": {"payload": 5}}',
        b'{"event": "media", "media": {"payload": "x", "timestamp": "soon"}}',
        b'{"event": "unknown"}',
        b'{"event": "mark", "mark": "x"}',
    ],
)
def test_malformed_frames_raise_one_exception_type(text: bytes) -> None:
    with pytest.raises(tw.MalformedMessage):
        tw.parse_message(text)


def _dtmf(digit: object) -> bytes:
    return orjson.dumps(
        {"event": "dtmf", "streamSid": "MZ1", "sequenceNumber": "5",
         "dtmf": {"track": "inbound_track", "digit": digit}}
    )  # fmt: skip


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_every_keypad_digit_parses(digit: str) -> None:
    assert tw.parse_message(_dtmf(digit)) == tw.Dtmf(digit=digit)


@pytest.mark.parametrize("digit", ["\x00", "", "12", "5\x00", "a", "E", "w", " ", "\u0661", 5])
def test_anything_but_a_keypad_digit_is_malformed(digit: object) -> None:
    """A NUL would reach the transcript (refused by PostgreSQL) and the model; "12" is not one
    key press, so it is not cut to "1" either."""
    with pytest.raises(tw.MalformedMessage, match=r"DTMF digit|must be a string"):
        tw.parse_message(_dtmf(digit))


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_any_json_either_parses_or_raises_malformed(value: object) -> None:
    with contextlib.suppress(tw.MalformedMessage):
        tw.parse_message(json.dumps(value))


def test_outgoing_messages_have_twilio_shapes() -> None:
    assert orjson.loads(tw.media_message("MZ1", "AAA=")) == {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": "AAA="},
    }
    assert orjson.loads(tw.mark_message("MZ1", "m1")) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": "m1"},
    }
    assert orjson.loads(tw.clear_message("MZ1")) == {"event": "clear", "streamSid": "MZ1"}


def test_sending_to_a_caller_who_already_left_is_not_an_error() -> None:
    """uvicorn raises ClientDisconnected (an OSError) for a send racing the caller's close;
    seen under load in a soak. The consumer stops sending; the disconnect ends the call."""
    import asyncio

    from uvicorn.protocols.utils import ClientDisconnected

    from telephony.consumer import MediaStreamConsumer

    async def gone(message: dict) -> None:
        raise ClientDisconnected

    consumer = MediaStreamConsumer()
    consumer.base_send = gone
    asyncio.run(consumer.send_text('{"event": "clear", "streamSid": "MZ1"}'))
    assert consumer._closed
    asyncio.run(consumer.send_text("{}"))  # later sends are skipped quietly
