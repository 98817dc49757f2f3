"""Twilio Media Streams messages: lenient parsing in, exact shapes out.

Twilio sends numbers (sequenceNumber, chunk, timestamp) as strings. Anything that does not
parse raises MalformedMessage, which the bridge counts and logs; it never ends the call.
Only text frames go to Twilio (it rejects binary frames with error 31950).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


class MalformedMessage(ValueError):
    """A frame that is not a Twilio Media Streams message we can use."""


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: list[str]
    custom_parameters: dict[str, str]
    encoding: str
    sample_rate: int


@dataclass(frozen=True, slots=True)
class Media:
    payload: str
    timestamp_ms: int
    chunk: int
    track: str


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class Stop:
    reason: str


TwilioMessage = Connected | Start | Media | Mark | Dtmf | Stop


def _str(mapping: dict, key: str) -> str:
    value = mapping[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def _media(data: dict) -> Media:
    media = data["media"]
    return Media(
        payload=_str(media, "payload"),
        timestamp_ms=int(media.get("timestamp", 0)),
        chunk=int(media.get("chunk", 0)),
        track=str(media.get("track", "inbound")),
    )


def _start(data: dict) -> Start:
    start = data["start"]
    media_format = start.get("mediaFormat") or {}
    custom = start.get("customParameters") or {}
    if not isinstance(custom, dict):
        raise TypeError("customParameters must be an object")
    return Start(
        stream_sid=_str(start, "streamSid") if "streamSid" in start else _str(data, "streamSid"),
        call_sid=_str(start, "callSid"),
        account_sid=str(start.get("accountSid", "")),
        tracks=[str(track) for track in start.get("tracks", ["inbound"])],
        custom_parameters={str(k): str(v) for k, v in custom.items()},
        encoding=str(media_format.get("encoding", "audio/x-mulaw")),
        sample_rate=int(media_format.get("sampleRate", 8000)),
    )


# Twilio's keypad digits. Anything else is not a key press: it must not reach the transcript
# (a NUL there is refused by PostgreSQL) or the model.
_DTMF_DIGITS = frozenset("0123456789*#ABCD")


def _dtmf(data: dict) -> Dtmf:
    digit = _str(data["dtmf"], "digit")
    if digit not in _DTMF_DIGITS:
        raise ValueError(f"not a DTMF digit: {digit[:8]!r}")
    return Dtmf(digit=digit)


def _stop(data: dict) -> Stop:
    stop = data.get("stop") or {}
    return Stop(reason=str(stop.get("reason", "")) if isinstance(stop, dict) else "")


_PARSERS = {
    "media": _media,
    "start": _start,
    "mark": lambda data: Mark(name=_str(data["mark"], "name")),
    "dtmf": _dtmf,
    "stop": _stop,
    "connected": lambda data: Connected(protocol=str(data.get("protocol", ""))),
}


def parse_message(text: str | bytes) -> TwilioMessage:
    try:
        data = orjson.loads(text)
        parser = _PARSERS[data["event"]]
        return parser(data)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedMessage(f"{type(exc).__name__}: {exc}"[:200]) from None


def media_message(stream_sid: str, payload_b64: str) -> str:
    return orjson.dumps(
        {"event": "media", "streamSid": stream_sid, "media": {"payload": payload_b64}}
    ).decode()


def mark_message(stream_sid: str, name: str) -> str:
    return orjson.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}).decode()


def clear_message(stream_sid: str) -> str:
    return orjson.dumps({"event": "clear", "streamSid": stream_sid}).decode()
