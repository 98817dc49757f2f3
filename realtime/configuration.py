"""The model session's configuration, read from Django settings."""

from __future__ import annotations

from django.conf import settings

from realtime.model import RealtimeSettings

# Sent to the local stand-in when no OpenAI key is configured (development only: production
# refuses to start without a key).
STANDIN_API_KEY = "local-standin"


def realtime_settings() -> RealtimeSettings:
    return RealtimeSettings(
        url=settings.OPENAI_REALTIME_URL,
        model=settings.OPENAI_REALTIME_MODEL,
        api_key=settings.OPENAI_API_KEY or STANDIN_API_KEY,
        protocol=settings.REALTIME_PROTOCOL,
        audio_format=settings.REALTIME_AUDIO_FORMAT,
        instructions=settings.REALTIME_INSTRUCTIONS,
        voice=settings.REALTIME_VOICE,
        turn_detection=settings.REALTIME_TURN_DETECTION,
        vad_threshold=settings.REALTIME_VAD_THRESHOLD,
        vad_prefix_padding_ms=settings.REALTIME_VAD_PREFIX_PADDING_MS,
        vad_silence_duration_ms=settings.REALTIME_VAD_SILENCE_DURATION_MS,
        transcription_model=settings.REALTIME_TRANSCRIPTION_MODEL,
        max_reconnects=settings.REALTIME_MAX_RECONNECTS,
        connect_timeout_s=settings.REALTIME_CONNECT_TIMEOUT_S,
        replay_audio_s=settings.REALTIME_REPLAY_AUDIO_S,
    )
