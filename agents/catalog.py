"""What an agent may be configured with: the service's models, voices and transcription models,
the language codes, and the limits of every number staff can set.

The lists mirror the Literal types of the `openai` SDK's realtime and live sessions (tests/
agents/test_catalog.py compares them, so a new SDK that adds or drops a name fails a test instead
of drifting). They are constants here because the SDK is a development dependency only: the product
validates agents without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The model-facing fields of an agent: exactly realtime.model.AgentConfig's fields (a test
# checks), so agents.services.agent_config(...) is what AgentConfig.from_dict reads. Changing
# any of them changes what the model is told, so it bumps the agent's version.
AGENT_CONFIG_FIELDS = (
    "model",
    "backend",
    "instructions",
    "greeting",
    "voice",
    "language",
    "turn_detection",
    "vad_threshold",
    "vad_prefix_padding_ms",
    "vad_silence_duration_ms",
    "vad_eagerness",
    "noise_reduction",
    "idle_timeout_ms",
    "transcription_model",
    "max_call_minutes",
    "tools",
)

# RealtimeSessionCreateRequestParam["model"] (openai.types.realtime).
REALTIME_MODELS = (
    "gpt-realtime",
    "gpt-realtime-1.5",
    "gpt-realtime-2",
    "gpt-realtime-2.1",
    "gpt-realtime-2.1-mini",
    "gpt-realtime-2025-08-28",
    "gpt-realtime-mini",
    "gpt-realtime-mini-2025-10-06",
    "gpt-realtime-mini-2025-12-15",
    "gpt-audio-1.5",
    "gpt-audio-mini",
    "gpt-audio-mini-2025-10-06",
    "gpt-audio-mini-2025-12-15",
    "gpt-4o-realtime-preview",
    "gpt-4o-realtime-preview-2024-10-01",
    "gpt-4o-realtime-preview-2024-12-17",
    "gpt-4o-realtime-preview-2025-06-03",
    "gpt-4o-mini-realtime-preview",
    "gpt-4o-mini-realtime-preview-2024-12-17",
)
DEFAULT_MODEL = "gpt-realtime"

# The built-in output voices (RealtimeAudioConfigOutputParam["voice"]). marin and cedar came
# with the GA models: the gpt-4o-*-realtime-preview models do not have them.
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
GA_ONLY_VOICES = ("marin", "cedar")
PREVIEW_VOICES = tuple(voice for voice in VOICES if voice not in GA_ONLY_VOICES)
DEFAULT_VOICE = "alloy"

# AudioTranscriptionParam["model"].
TRANSCRIPTION_MODELS = (
    "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15",
    "gpt-4o-transcribe",
    "gpt-4o-transcribe-diarize",
    "gpt-transcribe",
    "gpt-live-transcribe",
    "gpt-realtime-whisper",
    "whisper-1",
)
DEFAULT_TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"


def model_is_preview(model: str) -> bool:
    """The gpt-4o realtime previews (the beta generation), by their names."""
    return model.startswith("gpt-4o-") and "realtime-preview" in model


def voices_for_model(model: str) -> tuple[str, ...]:
    return PREVIEW_VOICES if model_is_preview(model) else VOICES


# --- the backends: which OpenAI protocol answers an agent's calls ---------------------------

# realtime.model.Backend. The labels are what staff and the README call them.
BACKENDS = ("realtime", "gpt-live")
BACKEND_LABELS = {"realtime": "OpenAI Realtime API", "gpt-live": "OpenAI GPT-Live"}
DEFAULT_BACKEND = "realtime"

# SessionConfig.model's Literal (openai.types.live).
LIVE_MODELS = ("gpt-live-1", "gpt-live-1.1")
DEFAULT_LIVE_MODEL = "gpt-live-1.1"

# openai.types.live.BuiltInVoice: every realtime voice, and more.
LIVE_VOICES = (
    "alloy", "ash", "ballad", "beacon", "bossa", "cedar", "cinder", "coral", "delta", "echo",
    "gleam", "marin", "meridian", "quartz", "ripple", "sage", "shida", "shimmer", "stone",
    "tempo", "verse", "vesper", "willow",
)  # fmt: skip
DEFAULT_LIVE_VOICE = "marin"  # the service's own default

# Every name an agent's model or voice may have, whichever its backend: the realtime ones first
# (the order the forms and the schema list them in).
MODELS = (*REALTIME_MODELS, *LIVE_MODELS)
LIVE_ONLY_VOICES = tuple(voice for voice in LIVE_VOICES if voice not in VOICES)
ALL_VOICES = (*VOICES, *LIVE_ONLY_VOICES)

# The agent settings GPT-Live has no use for: it listens while it speaks (no turn detection,
# no idle re-prompt) and transcribes both sides itself. A GPT-Live agent keeps what it had
# stored (it applies again if the agent goes back to the Realtime API); the API shows them as
# null and refuses them in a write, the admin hides them.
REALTIME_ONLY_FIELDS = (
    "turn_detection",
    "vad_threshold",
    "vad_prefix_padding_ms",
    "vad_silence_duration_ms",
    "vad_eagerness",
    "noise_reduction",
    "idle_timeout_ms",
    "transcription_model",
)


def backend_label(backend: str) -> str:
    return BACKEND_LABELS.get(backend, backend)


def models_for_backend(backend: str) -> tuple[str, ...]:
    return LIVE_MODELS if backend == "gpt-live" else REALTIME_MODELS


def voices_for_backend(backend: str) -> tuple[str, ...]:
    return LIVE_VOICES if backend == "gpt-live" else VOICES


def default_model(backend: str) -> str:
    return DEFAULT_LIVE_MODEL if backend == "gpt-live" else DEFAULT_MODEL


def default_voice(backend: str) -> str:
    return DEFAULT_LIVE_VOICE if backend == "gpt-live" else DEFAULT_VOICE


def snapshot_backend(snapshot: Mapping[str, Any] | None) -> str:
    """The backend a call was configured with, from its agent snapshot (Call.agent_snapshot).
    Snapshots from before agents had a backend, and calls without one (answered with the
    environment's configuration), were the Realtime API's."""
    agent = (snapshot or {}).get("agent") if isinstance(snapshot, Mapping) else None
    backend = agent.get("backend") if isinstance(agent, Mapping) else None
    return backend if backend in BACKENDS else DEFAULT_BACKEND


# ISO 639-1: the two-letter codes the transcription's `language` hint takes.
_ISO_639_1 = """
    aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu cv cy
    da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu
    hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb
    lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om
    or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw
    ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu
"""
LANGUAGE_CODES = frozenset(_ISO_639_1.split())


@dataclass(frozen=True)
class Range:
    """An inclusive range of a number staff set; the message says it in the field's unit."""

    low: float
    high: float
    unit: str = ""

    def text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.low:g}{unit} to {self.high:g}{unit}"


# The sane ranges (what the service accepts, narrowed to what makes sense on a phone line).
VAD_THRESHOLD = Range(0.0, 1.0)  # speech probability: higher needs louder speech
VAD_PREFIX_PADDING_MS = Range(0, 2000, "ms")  # audio kept from before speech was detected
VAD_SILENCE_DURATION_MS = Range(100, 5000, "ms")  # silence that ends the caller's turn
IDLE_TIMEOUT_MS = Range(5000, 300_000, "ms")  # re-prompt a caller silent this long
MAX_CALL_MINUTES = Range(1, 240, "minutes")  # the call is ended politely at this length
GREETING_MAX_CHARS = 1000
# E.164: "+", a country code not starting with 0, at most 15 digits in all.
E164_PATTERN = r"^\+[1-9]\d{1,14}$"
