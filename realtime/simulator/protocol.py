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
    return session_transcription_model(protocol, session) is not None


def session_transcription_model(protocol: Protocol, session: dict[str, Any]) -> str | None:
    """The input transcription model the session asks for, or None if it does not transcribe."""
    if protocol == "beta":
        config = session.get("input_audio_transcription")
    else:
        config = session["audio"]["input"].get("transcription")
    if not config:
        return None
    return str(config.get("model") or "whisper-1") if isinstance(config, dict) else "whisper-1"


def transcription_usage(model: str, audio_ms: float, transcript: str) -> dict[str, Any]:
    """The `usage` of a completed input transcription, billed as its model is.

    whisper-1 is billed by duration; the gpt-4o transcribe models by tokens (audio in, text
    out), as the service reports them.
    """
    if model == "whisper-1":
        return {"type": "duration", "seconds": round(audio_ms / 1000, 3)}
    audio_tokens = round(audio_ms / 1000 * INPUT_AUDIO_TOKENS_PER_S)
    output_tokens = text_tokens(transcript)
    return {
        "type": "tokens",
        "total_tokens": audio_tokens + output_tokens,
        "input_tokens": audio_tokens,
        "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
        "output_tokens": output_tokens,
    }


def transcription_failed_error() -> dict[str, Any]:
    """The `error` of `conversation.item.input_audio_transcription.failed` (the docs' example)."""
    return {
        "type": "transcription_error",
        "code": "audio_unintelligible",
        "message": "The audio could not be transcribed.",
        "param": None,
    }


def codec_rate(codec: Codec) -> int:
    return ULAW_RATE if codec == "pcmu" else PCM_RATE


def text_tokens(text: str) -> int:
    # About four characters a token in English; only the order of magnitude matters here.
    return math.ceil(len(text) / 4) if text else 0


@dataclass(frozen=True)
class InputTokens:
    """A response's input tokens by kind; `cached_*` are the part of each served from cache."""

    text: int
    audio: int
    cached_text: int = 0
    cached_audio: int = 0

    def __post_init__(self) -> None:
        # The service counts cached tokens as a subset of the input tokens of the same kind.
        if not (0 <= self.cached_text <= self.text and 0 <= self.cached_audio <= self.audio):
            raise ValueError(f"cached tokens exceed the input tokens: {self}")

    @property
    def total(self) -> int:
        return self.text + self.audio

    @property
    def cached(self) -> int:
        return self.cached_text + self.cached_audio

    def cached_from(self, previous: InputTokens | None) -> InputTokens:
        """These input tokens with the previous response's input (a prefix of this one's
        context) cached, kind by kind, never more than there is of that kind now."""
        if previous is None:
            return InputTokens(self.text, self.audio)
        return InputTokens(
            self.text,
            self.audio,
            cached_text=min(previous.text, self.text),
            cached_audio=min(previous.audio, self.audio),
        )


def usage(
    protocol: Protocol, *, input_tokens: InputTokens, output_ms: float, transcript: str
) -> dict[str, Any]:
    """A response's `usage` object: input is the whole context, output audio by its length.

    GA splits the cached tokens into text and audio in `cached_tokens_details`; the beta SDK
    types know only `cached_tokens`, so beta sends that alone.
    """
    audio_out = round(output_ms / 1000.0 * OUTPUT_AUDIO_TOKENS_PER_S)
    text_out = text_tokens(transcript)
    input_details: dict[str, Any] = {
        "audio_tokens": input_tokens.audio,
        "text_tokens": input_tokens.text,
        "cached_tokens": input_tokens.cached,
    }
    if protocol == "ga":
        input_details["cached_tokens_details"] = {
            "text_tokens": input_tokens.cached_text,
            "audio_tokens": input_tokens.cached_audio,
        }
    return {
        "total_tokens": input_tokens.total + audio_out + text_out,
        "input_tokens": input_tokens.total,
        "output_tokens": audio_out + text_out,
        "input_token_details": input_details,
        "output_token_details": {"audio_tokens": audio_out, "text_tokens": text_out},
    }
