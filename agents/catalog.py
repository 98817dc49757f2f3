"""What an agent may be configured with: the service's models, voices and transcription models,
the language codes, and the limits of every number staff can set.

The lists mirror the Literal types of the `openai` SDK's realtime session (tests/agents/
test_catalog.py compares them, so a new SDK that adds or drops a name fails a test instead of
drifting). They are constants here because the SDK is a development dependency only: the product
validates agents without it.
"""

from __future__ import annotations

from dataclasses import dataclass

# The model-facing fields of an agent: exactly realtime.model.AgentConfig's fields (a test
# checks), so agents.services.agent_config(...) is what AgentConfig.from_dict reads. Changing
# any of them changes what the model is told, so it bumps the agent's version.
AGENT_CONFIG_FIELDS = (
    "model",
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
