"""The call record: one Call with its recordings, transcript lines, analytics and metadata."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class CallStatus(models.TextChoices):
    """Twilio's call statuses, verbatim, so status callbacks map one to one."""

    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"


ACTIVE_STATUSES = (CallStatus.QUEUED, CallStatus.RINGING, CallStatus.IN_PROGRESS)
TERMINAL_STATUSES = (
    CallStatus.COMPLETED,
    CallStatus.BUSY,
    CallStatus.FAILED,
    CallStatus.NO_ANSWER,
    CallStatus.CANCELED,
)


class CallDirection(models.TextChoices):
    INBOUND = "inbound"
    OUTBOUND_API = "outbound-api"
    OUTBOUND_DIAL = "outbound-dial"


class AnsweredBy(models.TextChoices):
    """Twilio's answering machine detection results (AnsweredBy), verbatim."""

    HUMAN = "human"
    MACHINE_START = "machine_start"
    MACHINE_END_BEEP = "machine_end_beep"
    MACHINE_END_SILENCE = "machine_end_silence"
    MACHINE_END_OTHER = "machine_end_other"
    FAX = "fax"
    UNKNOWN = "unknown"


class Call(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Null only for an outbound call Twilio has not (or never) given a CallSid: the row is
    # created before Twilio is asked to dial, so a refusal is on the record too.
    call_sid = models.CharField(max_length=64, unique=True, null=True, blank=True)
    stream_sid = models.CharField(max_length=64, blank=True, default="")
    account_sid = models.CharField(max_length=64, blank=True, default="")
    caller = models.CharField(max_length=64, blank=True, default="")
    # Who answered, and what the model was told: the configuration as it was when the call
    # came in (realtime.configuration.agent_snapshot: {"version", "agent", "session"}, plus
    # "outbound" for a call we placed: telephony.outbound), so
    # editing the agent later never rewrites what this call was told. PROTECT: an agent that
    # answered calls is deactivated, not deleted. A call without an agent (none configured,
    # or from before agents existed) keeps the number dialled in metadata.custom.
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.PROTECT, null=True, blank=True, related_name="calls"
    )
    agent_version = models.PositiveIntegerField(null=True, blank=True)
    agent_snapshot = models.JSONField(default=dict, blank=True)
    direction = models.CharField(
        max_length=16, choices=CallDirection.choices, default=CallDirection.INBOUND
    )
    # Outbound calls with answering machine detection: what Twilio says answered.
    answered_by = models.CharField(
        max_length=24, choices=AnsweredBy.choices, blank=True, default=""
    )
    status = models.CharField(max_length=16, choices=CallStatus.choices, default=CallStatus.RINGING)
    # Twilio's SequenceNumber of the last status callback applied (they can arrive out of order).
    status_sequence = models.IntegerField(default=-1)
    started_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    end_reason = models.CharField(max_length=200, blank=True, default="")
    notes = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["-started_at"], name="call_started_at_idx"),
            models.Index(fields=["caller", "-started_at"], name="call_caller_idx"),
            models.Index(fields=["agent", "-started_at"], name="call_agent_idx"),
            models.Index(fields=["status", "-started_at"], name="call_status_idx"),
            models.Index(fields=["direction", "-started_at"], name="call_direction_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(duration_s__isnull=True) | Q(duration_s__gte=0),
                name="call_duration_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(status__in=CallStatus.values), name="call_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=models.F("started_at")),
                name="call_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        agent = self.agent.name if self.agent_id is not None else "unknown"
        if self.direction == CallDirection.INBOUND:
            return f"{self.caller or 'unknown'} -> {agent} ({self.call_sid})"
        return f"{agent} -> {self.caller or 'unknown'} ({self.call_sid or 'not dialled'})"


class OutboundRequest(models.Model):
    """An `Idempotency-Key` sent with POST /api/calls: a retry with the same key (same user)
    returns the call the first request placed instead of dialling again. Keys are kept for
    OUTBOUND_IDEMPOTENCY_TTL_S; `fingerprint` (a hash of the body) catches a key reused for
    another request."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="outbound_requests")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="outbound_request_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.key} -> {self.call_id}"


# One note appended through the API; long enough for a paragraph, short enough to stay a note.
NOTE_MAX_CHARS = 4000


class CallNote(models.Model):
    """One appended note: who wrote what, and when.

    `Call.notes` stays the single document staff read and the admin edits freely; appending a
    note adds a dated, signed paragraph to it and keeps this row as the record of authorship,
    which survives later edits of the text.
    """

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="note_entries")
    # A note outlives its author's account: the rendered text keeps the name.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    text = models.TextField(max_length=NOTE_MAX_CHARS)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["call", "created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(text=""), name="call_note_not_empty"),
        ]

    def __str__(self) -> str:
        return f"note on {self.call_id} by {self.author_id or 'unknown'}"


class Recording(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="recordings")
    file = models.FileField(upload_to="recordings/%Y/%m/%d/", max_length=300)
    format = models.CharField(max_length=16, default="wav")
    codec = models.CharField(max_length=16, default="pcm_s16le")
    sample_rate = models.PositiveIntegerField(default=16000)
    channels = models.PositiveSmallIntegerField(default=2)
    duration_s = models.FloatField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(sample_rate__gt=0), name="recording_rate_positive"),
            models.CheckConstraint(
                condition=Q(channels__gte=1) & Q(channels__lte=2), name="recording_channels_1_or_2"
            ),
            models.CheckConstraint(
                condition=Q(duration_s__gte=0) & Q(size_bytes__gte=0),
                name="recording_sizes_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.file.name} ({self.duration_s:.1f} s)"


class Speaker(models.TextChoices):
    CALLER = "caller"
    AGENT = "agent"
    SYSTEM = "system"


class Transcript(models.Model):
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="transcripts")
    sequence = models.PositiveIntegerField()
    speaker = models.CharField(max_length=8, choices=Speaker.choices)
    text = models.TextField()
    confidence = models.FloatField(null=True, blank=True)
    start_ms = models.PositiveIntegerField(help_text="Offset from the start of the call")
    end_ms = models.PositiveIntegerField(help_text="Offset from the start of the call")
    # The realtime conversation item this line came from; writes are retried, so it is the
    # idempotency key that keeps a retried batch from duplicating lines.
    item_id = models.CharField(max_length=64, blank=True, default="")
    interrupted = models.BooleanField(default=False)
    # The caller spoke but the service could not transcribe the turn: the text is a placeholder
    # ("[inaudible]") so the turn still has its place on the timeline.
    inaudible = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Lines are numbered as they are written, which is not always the order they were
        # spoken (a caller's transcription can arrive after the agent answered).
        ordering = ["call", "start_ms", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["call", "sequence"], name="transcript_sequence_unique"),
            models.UniqueConstraint(
                fields=["call", "item_id"],
                condition=~Q(item_id=""),
                name="transcript_item_unique_per_call",
            ),
            models.CheckConstraint(
                condition=Q(end_ms__gte=models.F("start_ms")), name="transcript_ends_after_start"
            ),
            models.CheckConstraint(
                condition=Q(speaker__in=Speaker.values), name="transcript_speaker_valid"
            ),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True)
                | (Q(confidence__gte=0) & Q(confidence__lte=1)),
                name="transcript_confidence_0_1",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.speaker}: {self.text[:60]}"


class ToolCallStatus(models.TextChoices):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"


class ToolCall(models.Model):
    """One use of a tool during the call: what the model asked, what it was answered, when."""

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="tool_calls")
    # The model's call_id (or the service's item id for an MCP call): a retried write of the
    # same call is recognised by it.
    call_ref = models.CharField(max_length=64)
    name = models.CharField(max_length=64)
    kind = models.CharField(
        max_length=16, help_text="end_call, transfer_call, webhook, python, mcp, or unknown"
    )
    arguments = models.JSONField(default=dict, blank=True)
    output = models.TextField(blank=True, default="")
    status = models.CharField(max_length=8, choices=ToolCallStatus.choices)
    start_ms = models.PositiveIntegerField(help_text="Offset from the start of the call")
    end_ms = models.PositiveIntegerField(help_text="Offset from the start of the call")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["call", "start_ms", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["call", "call_ref"], name="tool_call_ref_unique"),
            models.CheckConstraint(
                condition=Q(end_ms__gte=models.F("start_ms")), name="tool_call_ends_after_start"
            ),
            models.CheckConstraint(
                condition=Q(status__in=ToolCallStatus.values), name="tool_call_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


class Sentiment(models.TextChoices):
    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"


# What every response latency in the record means (the model, the API and the admin say so).
LATENCY_DEFINITION = (
    "from the end of the caller's speech to the moment the agent's first audio of the reply "
    "reaches the caller, on the call timeline"
)
LATENCY_HELP = f"Response latency in ms, as the caller lived it: {LATENCY_DEFINITION}."


class Analytics(models.Model):
    call = models.OneToOneField(Call, on_delete=models.CASCADE, related_name="analytics")
    sentiment_label = models.CharField(
        max_length=8, choices=Sentiment.choices, blank=True, default="", db_index=True
    )
    sentiment_score = models.FloatField(null=True, blank=True)
    caller_talk_s = models.FloatField(default=0)
    agent_talk_s = models.FloatField(default=0)
    silence_s = models.FloatField(default=0)
    turns = models.PositiveIntegerField(default=0)
    interruptions = models.PositiveIntegerField(default=0)
    # Response latency, as the caller lived it: from the end of the caller's speech (the VAD's
    # end of turn less the silence that closed it) to the moment the agent's first audio of the
    # reply reaches the caller (playback start), both on the call timeline.
    latency_ms_avg = models.FloatField(null=True, blank=True, help_text=LATENCY_HELP)
    latency_ms_p50 = models.FloatField(null=True, blank=True, help_text=LATENCY_HELP)
    latency_ms_p95 = models.FloatField(null=True, blank=True, help_text=LATENCY_HELP)
    latency_ms_max = models.FloatField(null=True, blank=True, help_text=LATENCY_HELP)
    reconnects = models.PositiveIntegerField(default=0)
    frames_missing = models.PositiveIntegerField(default=0)
    frames_malformed = models.PositiveIntegerField(default=0)
    model_errors = models.PositiveIntegerField(default=0, help_text="error events from the model")
    tool_calls = models.PositiveIntegerField(default=0, help_text="tools the agent used")
    tool_errors = models.PositiveIntegerField(
        default=0, help_text="tool calls that failed or timed out"
    )
    input_audio_tokens = models.PositiveIntegerField(default=0)
    output_audio_tokens = models.PositiveIntegerField(default=0)
    input_text_tokens = models.PositiveIntegerField(default=0)
    output_text_tokens = models.PositiveIntegerField(default=0)
    cached_input_tokens = models.PositiveIntegerField(
        default=0, help_text="input tokens served from the cache (a subset of the input tokens)"
    )
    cached_audio_tokens = models.PositiveIntegerField(
        default=0, help_text="cached input audio tokens (a subset of input_audio_tokens)"
    )
    cached_text_tokens = models.PositiveIntegerField(
        default=0, help_text="cached input text tokens (a subset of input_text_tokens)"
    )
    model_seconds = models.FloatField(
        default=0,
        help_text="seconds of model session billed (GPT-Live bills per minute; 0 for the "
        "Realtime API, billed by tokens)",
    )
    estimated_cost_usd = models.DecimalField(max_digits=10, decimal_places=6, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "analytics"
        constraints = [
            models.CheckConstraint(
                condition=Q(sentiment_score__isnull=True)
                | (Q(sentiment_score__gte=-1) & Q(sentiment_score__lte=1)),
                name="analytics_sentiment_score_range",
            ),
            models.CheckConstraint(
                condition=Q(caller_talk_s__gte=0) & Q(agent_talk_s__gte=0) & Q(silence_s__gte=0),
                name="analytics_talk_time_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"analytics of {self.call_id}"


class CallMetadata(models.Model):
    call = models.OneToOneField(Call, on_delete=models.CASCADE, related_name="metadata")
    language = models.CharField(max_length=16, blank=True, default="")
    country = models.CharField(max_length=64, blank=True, default="")
    state = models.CharField(max_length=64, blank=True, default="")
    city = models.CharField(max_length=128, blank=True, default="")
    caller_name = models.CharField(max_length=128, blank=True, default="")
    device = models.CharField(max_length=128, blank=True, default="")
    jitter_ms = models.FloatField(null=True, blank=True)
    frames_missing = models.PositiveIntegerField(default=0)
    frames_late = models.PositiveIntegerField(default=0)
    custom = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "call metadata"

    def __str__(self) -> str:
        return f"metadata of {self.call_id}"
