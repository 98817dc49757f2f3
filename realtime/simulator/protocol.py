"""OpenAI Realtime protocol facts the stand-in needs: session shapes, formats, errors, usage.

GA is the default; the beta protocol (header `OpenAI-Beta: realtime=v1`) differs in the session
shape (flat `input_audio_format`, `turn_detection`...), in item announcements
(`conversation.item.created` instead of GA's `conversation.item.added`/`.done`) and in the audio
event names (`response.audio.delta` instead of `response.output_audio.delta`).
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

Protocol = Literal["ga", "beta"]
Codec = Literal["pcmu", "pcm"]

REALTIME_PATH = "/v1/realtime"
PCM_RATE = 24000  # the only rate the Realtime API takes for audio/pcm
ULAW_RATE = 8000
# Tokens per second of audio (ARCHITECTURE.md, "Cost"): caller audio in, model audio out.
INPUT_AUDIO_TOKENS_PER_S = 10
OUTPUT_AUDIO_TOKENS_PER_S = 20
SESSION_EXPIRED_MESSAGE = "Your session hit the maximum duration of 60 minutes."
CONVERSATION_ID = "conv_standin"

GA_CODECS: dict[str, Codec] = {"audio/pcmu": "pcmu", "audio/pcm": "pcm"}
BETA_CODECS: dict[str, Codec] = {"g711_ulaw": "pcmu", "pcm16": "pcm"}


@dataclass(frozen=True)
class Reply:
    """One scripted model answer: what it says and how long its audio lasts."""

    text: str
    seconds: float


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def error_event(
    message: str, *, code: str | None, param: str | None = None, event_id: str | None = None
) -> dict[str, Any]:
    """An `error` server event; `event_id` names the client event that caused it, if known."""
    return {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
    }


def event_name(protocol: Protocol, ga_name: str) -> str:
    """GA event names; beta spells the audio events without `output_`."""
    if protocol == "ga":
        return ga_name
    return ga_name.replace("response.output_audio", "response.audio")


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """session.update semantics: fields given replace, nested objects merge, null clears.

    An object whose `type` changes (a format, a turn detection) is replaced, not merged: the
    rate of audio/pcm must not cling to audio/pcmu.
    """
    merged = dict(base)
    for key, value in update.items():
        current = merged.get(key)
        if (
            isinstance(value, dict)
            and isinstance(current, dict)
            and value.get("type", current.get("type")) == current.get("type")
        ):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def default_session(protocol: Protocol, model: str) -> dict[str, Any]:
    """The session the service announces in session.created, in the protocol's shape."""
    turn_detection = {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "create_response": True,
        "interrupt_response": True,
    }
    common = {
        "id": new_id("sess"),
        "object": "realtime.session",
        "model": model,
        "expires_at": int(time.time()) + 3600,
        "instructions": "You are a helpful voice assistant.",
        "tools": [],
        "tool_choice": "auto",
    }
    if protocol == "beta":
        return {
            **common,
            "modalities": ["audio", "text"],
            "voice": "alloy",
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "input_audio_transcription": None,
            "turn_detection": turn_detection,
            "max_response_output_tokens": "inf",
        }
    pcm = {"type": "audio/pcm", "rate": PCM_RATE}
    return {
        "type": "realtime",
        **common,
        "output_modalities": ["audio"],
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "audio": {
            "input": {
                "format": pcm,
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {**turn_detection, "idle_timeout_ms": None},
            },
            "output": {"format": dict(pcm), "voice": "alloy", "speed": 1.0},
        },
    }


def format_problem(protocol: Protocol, session: dict[str, Any]) -> str | None:
    """Why the session's audio formats are not usable (in the service's words), or None."""
    if protocol == "beta":
        for key in ("input_audio_format", "output_audio_format"):
            if session.get(key) not in BETA_CODECS:
                return f"Invalid value: '{session.get(key)}'. Supported values are: " + ", ".join(
                    f"'{name}'" for name in BETA_CODECS
                )
        return None
    audio = session.get("audio") or {}
    for direction in ("input", "output"):
        fmt = (audio.get(direction) or {}).get("format") or {}
        kind = fmt.get("type")
        if kind not in GA_CODECS:
            return f"Invalid value: '{kind}'. Supported values are: 'audio/pcm', 'audio/pcmu'."
        if kind == "audio/pcm" and fmt.get("rate", PCM_RATE) != PCM_RATE:
            return f"Invalid value: {fmt.get('rate')}. Supported values are: {PCM_RATE}."
    return None


def session_codec(protocol: Protocol, session: dict[str, Any], direction: str) -> Codec:
    """The codec of `direction` ("input" or "output") in a session already validated."""
    if protocol == "beta":
        return BETA_CODECS[session[f"{direction}_audio_format"]]
    return GA_CODECS[session["audio"][direction]["format"]["type"]]


def session_turn_detection(protocol: Protocol, session: dict[str, Any]) -> dict[str, Any] | None:
    if protocol == "beta":
        return session.get("turn_detection")
    return session["audio"]["input"].get("turn_detection")


def session_transcribes(protocol: Protocol, session: dict[str, Any]) -> bool:
    if protocol == "beta":
        return bool(session.get("input_audio_transcription"))
    return bool(session["audio"]["input"].get("transcription"))


def codec_rate(codec: Codec) -> int:
    return ULAW_RATE if codec == "pcmu" else PCM_RATE


def text_tokens(text: str) -> int:
    # About four characters a token in English; only the order of magnitude matters here.
    return math.ceil(len(text) / 4) if text else 0


def usage(
    *, audio_in: int, text_in: int, cached: int, output_ms: float, transcript: str
) -> dict[str, Any]:
    """A response's `usage` object: input is the whole context, output audio by its length."""
    input_tokens = audio_in + text_in
    audio_out = round(output_ms / 1000.0 * OUTPUT_AUDIO_TOKENS_PER_S)
    text_out = text_tokens(transcript)
    return {
        "total_tokens": input_tokens + audio_out + text_out,
        "input_tokens": input_tokens,
        "output_tokens": audio_out + text_out,
        "input_token_details": {
            "audio_tokens": audio_in,
            "text_tokens": text_in,
            "cached_tokens": min(cached, input_tokens),
        },
        "output_token_details": {"audio_tokens": audio_out, "text_tokens": text_out},
    }
