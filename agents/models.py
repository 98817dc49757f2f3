"""Who answers and how: an Agent (what the model is told) and the PhoneNumbers that reach it.

Writes go through agents.services, which keeps the rules a single row cannot: exactly one
default agent, the version bumped when what the model is told changes, numbers replaced as a
whole. The model's validators and `clean` are the rules both edges (admin forms, API
serializers) apply before a service is called; the check constraints are the database's
last word on the same ranges.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from agents import catalog, validators
from agents.tools import validate_tools


class Backend(models.TextChoices):
    REALTIME = "realtime", catalog.BACKEND_LABELS["realtime"]
    GPT_LIVE = "gpt-live", catalog.BACKEND_LABELS["gpt-live"]


class TurnDetection(models.TextChoices):
    SERVER_VAD = "server_vad", "Server VAD (a set silence ends the caller's turn)"
    SEMANTIC_VAD = "semantic_vad", "Semantic VAD (the model judges when the caller is done)"


class Eagerness(models.TextChoices):
    LOW = "low", "Low (let the caller finish)"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High (answer as soon as possible)"
    AUTO = "auto", "Auto"


class NoiseReduction(models.TextChoices):
    OFF = "", "Off"
    NEAR_FIELD = "near_field", "Near field (handsets, headsets)"
    FAR_FIELD = "far_field", "Far field (speakerphones, laptops)"


def _range_check(name: str, bounds: catalog.Range, *, nullable: bool) -> models.CheckConstraint:
    within = Q(**{f"{name}__gte": bounds.low, f"{name}__lte": bounds.high})
    return models.CheckConstraint(
        condition=(Q(**{f"{name}__isnull": True}) | within) if nullable else within,
        name=f"agent_{name}_range",
    )


class Agent(models.Model):
    # --- who ---
    name = models.CharField(max_length=100)
    slug = models.SlugField(
        max_length=50, unique=True, help_text="Names the agent in the API and in call filters."
    )
    is_default = models.BooleanField(
        default=False,
        help_text="Answers every number that has no agent of its own. Exactly one agent is the "
        "default; making this one the default unsets the previous one.",
    )
    is_active = models.BooleanField(
        default=True,
        help_text="An inactive agent answers no calls (its numbers go to the default agent); "
        "its calls keep it. Deactivate an agent rather than delete it.",
    )
    # --- what it says ---
    instructions = models.TextField(
        validators=[validators.validate_instructions],
        help_text="The system prompt: who the agent is, what it may do, how it speaks. At most "
        "AGENT_INSTRUCTIONS_MAX_CHARS characters (16,000 by default).",
    )
    greeting = models.TextField(
        blank=True,
        default="",
        max_length=catalog.GREETING_MAX_CHARS,
        validators=[validators.validate_greeting],
        help_text="Said first, as soon as the call is connected. Empty: the agent waits for the "
        f"caller to speak. At most {catalog.GREETING_MAX_CHARS} characters.",
    )
    backend = models.CharField(
        max_length=16,
        choices=Backend.choices,
        default=Backend.REALTIME,
        help_text="Which OpenAI service answers the calls. GPT-Live listens while it speaks and "
        "transcribes both sides itself: the turn detection, noise reduction, idle timeout and "
        "transcription settings do not apply to it (they are kept for the Realtime API).",
    )
    model = models.CharField(
        max_length=64,
        default=catalog.DEFAULT_MODEL,
        validators=[validators.validate_model],
        help_text="The model that listens and speaks: one of the backend's (gpt-realtime... for "
        "the Realtime API, gpt-live-1 or gpt-live-1.1 for GPT-Live).",
    )
    voice = models.CharField(
        max_length=32,
        default=catalog.DEFAULT_VOICE,
        validators=[validators.validate_voice],
        help_text="One of the backend's voices: GPT-Live has more than the Realtime API, whose "
        "marin and cedar need a gpt-realtime model (not a gpt-4o-*-realtime-preview).",
    )
    language = models.CharField(
        max_length=2,
        blank=True,
        default="",
        validators=[validators.validate_language],
        help_text="The caller's language as an ISO-639-1 code (en, es, fr...), a hint for the "
        "transcription. Empty: detected.",
    )
    # --- how it listens ---
    turn_detection = models.CharField(
        max_length=16, choices=TurnDetection.choices, default=TurnDetection.SERVER_VAD
    )
    vad_threshold = models.FloatField(
        default=0.5,
        validators=[validators.validate_vad_threshold],
        help_text="server_vad: how sure the service must be that it hears speech, 0 to 1. "
        "Raise it on noisy lines.",
    )
    vad_prefix_padding_ms = models.PositiveIntegerField(
        default=300,
        validators=[validators.validate_vad_prefix_padding_ms],
        help_text="server_vad: audio kept from before speech was detected, 0 to 2000 ms.",
    )
    vad_silence_duration_ms = models.PositiveIntegerField(
        default=500,
        validators=[validators.validate_vad_silence_duration_ms],
        help_text="server_vad: the silence that ends the caller's turn, 100 to 5000 ms. Shorter "
        "answers sooner and interrupts more.",
    )
    vad_eagerness = models.CharField(
        max_length=8,
        choices=Eagerness.choices,
        default=Eagerness.AUTO,
        help_text="semantic_vad only: how soon the agent takes its turn.",
    )
    noise_reduction = models.CharField(
        max_length=16, choices=NoiseReduction.choices, blank=True, default=NoiseReduction.OFF
    )
    idle_timeout_ms = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[validators.validate_idle_timeout_ms],
        help_text="server_vad only: re-prompt a caller silent this long, 5000 to 300000 ms. "
        "Empty: never.",
    )
    transcription_model = models.CharField(
        max_length=64,
        default=catalog.DEFAULT_TRANSCRIPTION_MODEL,
        validators=[validators.validate_transcription_model],
        help_text="Transcribes the caller for the record (the model hears the audio itself).",
    )
    max_call_minutes = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[validators.validate_max_call_minutes],
        help_text="The agent ends the call politely at this length, 1 to 240 minutes. Empty: "
        "no limit.",
    )
    tools = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_tools],
        help_text='What the agent can do during a call, e.g. [{"type": "end_call"}, {"type": '
        '"transfer_call", "targets": {"sales": "+15550003333"}}]: see the README, "Tools".',
    )
    # Bumped by agents.services whenever a field in catalog.AGENT_CONFIG_FIELDS changes; each
    # call keeps the version (and the configuration) it was answered with.
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            # At most one default here; agents.services makes it exactly one (a new default
            # replaces the old one in the same transaction; the default cannot be unset).
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="agent_one_default"
            ),
            models.CheckConstraint(
                condition=Q(is_default=False) | Q(is_active=True), name="agent_default_is_active"
            ),
            models.CheckConstraint(
                condition=Q(backend__in=Backend.values), name="agent_backend_valid"
            ),
            models.CheckConstraint(
                condition=Q(turn_detection__in=TurnDetection.values),
                name="agent_turn_detection_valid",
            ),
            models.CheckConstraint(
                condition=Q(vad_eagerness__in=Eagerness.values), name="agent_eagerness_valid"
            ),
            models.CheckConstraint(
                condition=Q(noise_reduction__in=NoiseReduction.values),
                name="agent_noise_reduction_valid",
            ),
            _range_check("vad_threshold", catalog.VAD_THRESHOLD, nullable=False),
            _range_check("vad_prefix_padding_ms", catalog.VAD_PREFIX_PADDING_MS, nullable=False),
            _range_check(
                "vad_silence_duration_ms", catalog.VAD_SILENCE_DURATION_MS, nullable=False
            ),
            _range_check("idle_timeout_ms", catalog.IDLE_TIMEOUT_MS, nullable=True),
            _range_check("max_call_minutes", catalog.MAX_CALL_MINUTES, nullable=True),
            models.CheckConstraint(condition=Q(version__gte=1), name="agent_version_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = validators.agent_cross_field_errors(
            {field.name: getattr(self, field.attname) for field in self._meta.concrete_fields}
        )
        if not self.is_default and self.pk and self._default_in_database():
            errors["is_default"] = [
                "There must be a default agent: make another agent the default instead "
                "(that unsets this one)."
            ]
        if errors:
            raise ValidationError(errors)

    def _default_in_database(self) -> bool:
        return Agent.objects.filter(pk=self.pk, is_default=True).exists()

    def validate_constraints(self, exclude: Any = None) -> None:
        # The one-default constraint is kept by agents.services, which moves the flag from the
        # old default to the new one in one transaction: checked here, before the move, it
        # would refuse the very change that moves it. (The default-is-active rule it shares
        # the field with is checked in `clean`.) The database still enforces both.
        super().validate_constraints(exclude={*(exclude or ()), "is_default"})


class PhoneNumber(models.Model):
    """A number callers dial; it reaches one agent (a number is on at most one agent)."""

    number = models.CharField(
        max_length=16,
        unique=True,
        validators=[validators.validate_e164],
        error_messages={"unique": "This number already reaches another agent: remove it there."},
        help_text="E.164: +, country code and number (+14155550100).",
    )
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="phone_numbers")
    label = models.CharField(max_length=100, blank=True, default="", help_text="e.g. Sales line")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return self.number
