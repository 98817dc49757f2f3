"""The model session's configuration: the deployment's settings plus the answering agent's.

A call's agent configuration comes from its snapshot (taken when the call came in: see
`agent_snapshot`); the environment's REALTIME_* values are the configuration of last resort,
used when a call has no snapshot (the database could not be read at the stream's start).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from agents.tools import session_tool
from realtime import protocol
from realtime.live import protocol as live_protocol
from realtime.model import AgentConfig, RealtimeSettings

# Sent to the local stand-in when no OpenAI key is configured (development only: production
# refuses to start without a key).
STANDIN_API_KEY = "local-standin"


def environment_agent_config() -> AgentConfig:
    """The agent the REALTIME_* settings describe (they seed the default agent at migrate)."""
    return AgentConfig(
        model=settings.OPENAI_REALTIME_MODEL,
        instructions=settings.REALTIME_INSTRUCTIONS,
        voice=settings.REALTIME_VOICE,
        turn_detection=settings.REALTIME_TURN_DETECTION,
        vad_threshold=settings.REALTIME_VAD_THRESHOLD,
        vad_prefix_padding_ms=settings.REALTIME_VAD_PREFIX_PADDING_MS,
        vad_silence_duration_ms=settings.REALTIME_VAD_SILENCE_DURATION_MS,
        transcription_model=settings.REALTIME_TRANSCRIPTION_MODEL,
    )


def realtime_settings(agent: AgentConfig | None = None) -> RealtimeSettings:
    """The session settings of an agent: its backend's URL, the deployment's connection
    settings, the agent's configuration and its tools as the session offers them."""
    agent = agent or environment_agent_config()
    live = agent.backend == "gpt-live"
    return RealtimeSettings(
        url=settings.OPENAI_LIVE_URL if live else settings.OPENAI_REALTIME_URL,
        api_key=settings.OPENAI_API_KEY or STANDIN_API_KEY,
        agent=agent,
        session_tools=tuple(session_tool(tool) for tool in agent.tools),
        protocol=settings.REALTIME_PROTOCOL,
        audio_format=settings.REALTIME_AUDIO_FORMAT,
        max_reconnects=settings.REALTIME_MAX_RECONNECTS,
        connect_timeout_s=settings.REALTIME_CONNECT_TIMEOUT_S,
        replay_audio_s=settings.REALTIME_REPLAY_AUDIO_S,
    )


def session_preview(agent_config: dict[str, Any]) -> dict[str, Any]:
    """What this deployment sends to configure a session for an agent configuration (as a
    dict from agents.services.agent_config): the Realtime API's session.update, or GPT-Live's
    session.start (without history). The admin shows it and each call's snapshot keeps it."""
    return _session_event(AgentConfig.from_dict(agent_config))


def _session_event(config: AgentConfig) -> dict[str, Any]:
    if config.backend == "gpt-live":
        return live_protocol.session_start(
            realtime_settings(config), [], backend_model=settings.LIVE_BACKEND_MODEL
        )
    return protocol.session_update(realtime_settings(config))


def agent_snapshot(agent_config: dict[str, Any], *, version: int) -> dict[str, Any]:
    """What a call keeps of its agent: the configuration, its version, and the exact
    session.update it produces. The bridge configures the call's session from this, never from
    the agent row, so an edit mid-call changes only the calls that come after it. The backend
    is in the configuration ("backend"): which API answered the call."""
    config = AgentConfig.from_dict(agent_config)
    return {
        "version": version,
        "agent": config.to_dict(),
        "session": _session_event(config),
    }
