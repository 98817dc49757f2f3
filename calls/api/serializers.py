"""Serializers: field names as in the schema (calls/models.py); no queries of their own."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.reverse import reverse

from agents import catalog as agent_catalog
from agents.validators import validate_e164
from calls import selectors
from calls.api.fields import (
    GivenMeansNotEmpty,
    NotBlankCharField,
    QueryChoiceField,
    QueryStrictBooleanField,
    QueryUUIDField,
    ScalarField,
    StrictCharField,
    StrictSlugField,
)
from calls.api.filters import (
    INVALID_PERIOD_BOUND,
    PERIOD_BOUND_HELP,
    PERIOD_BOUND_SCHEMA,
    parse_period_bound,
)
from calls.models import (
    LATENCY_DEFINITION,
    NOTE_MAX_CHARS,
    Analytics,
    Call,
    CallMetadata,
    CallNote,
    Recording,
    ToolCall,
    Transcript,
)

# --- errors (for the schema; the body is built in calls.api.exceptions) ---------------------


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable: invalid, not_found, ...")
    message = serializers.CharField(help_text="For people.")
    details = serializers.JSONField(
        allow_null=True, help_text="Per-field messages for invalid input; otherwise mostly null."
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


# --- calls ----------------------------------------------------------------------------------


class CallAgentSerializer(serializers.Serializer):
    """The agent that answered a call, by the names clients filter and show it by."""

    slug = serializers.SlugField(read_only=True, help_text="As in /api/agents/{slug}.")
    name = serializers.CharField(read_only=True)


class AnalyticsSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Analytics
        fields = (
            "sentiment_label",
            "sentiment_score",
            "turns",
            "interruptions",
            "latency_ms_avg",
            "estimated_cost_usd",
        )


class AnalyticsSerializer(serializers.ModelSerializer):
    class Meta:
        model = Analytics
        exclude = ("id", "call")


class CallMetadataSerializer(serializers.ModelSerializer):
    class Meta:
        model = CallMetadata
        exclude = ("id", "call")


class TranscriptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Transcript
        fields = (
            "sequence",
            "speaker",
            "text",
            "confidence",
            "start_ms",
            "end_ms",
            "interrupted",
            "inaudible",
        )


class ToolCallSerializer(serializers.ModelSerializer):
    duration_ms = serializers.IntegerField(read_only=True)
    arguments = serializers.JSONField(
        read_only=True, help_text='As the model wrote them (unparsable ones as {"raw": ...}).'
    )

    class Meta:
        model = ToolCall
        fields = (
            "name",
            "kind",
            "arguments",
            "output",
            "status",
            "start_ms",
            "end_ms",
            "duration_ms",
        )


class RecordingSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Streams the file (Range requests work).")
    download_url = serializers.SerializerMethodField(help_text="The same, as an attachment.")

    class Meta:
        model = Recording
        fields = (
            "id",
            "format",
            "codec",
            "sample_rate",
            "channels",
            "duration_s",
            "size_bytes",
            "created_at",
            "url",
            "download_url",
        )

    def _url(self, recording: Recording, **params: str) -> str:
        base = reverse(
            "api:call-recording",
            kwargs={"pk": recording.call_id},
            request=self.context.get("request"),
        )
        return f"{base}?{urlencode({'recording': str(recording.pk), **params})}"

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, recording: Recording) -> str:
        return self._url(recording)

    @extend_schema_field(OpenApiTypes.URI)
    def get_download_url(self, recording: Recording) -> str:
        return self._url(recording, download="true")


class CallNoteSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.get_username", allow_null=True, read_only=True)

    class Meta:
        model = CallNote
        fields = ("id", "author", "text", "created_at")


CALL_FIELDS = (
    "id",
    "url",
    "call_sid",
    "stream_sid",
    "account_sid",
    "caller",
    "agent",
    "direction",
    "answered_by",
    "status",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_s",
    "end_reason",
    "notes",
    "created_at",
    "updated_at",
)


def _agent_field() -> CallAgentSerializer:
    return CallAgentSerializer(
        read_only=True,
        allow_null=True,
        help_text="Who answered; null for a call no agent answered (then "
        "metadata.custom.dialled_number has the number dialled).",
    )


CALL_FIELD_HELP = {
    "call_sid": "Twilio's CallSid; null only for an outbound call Twilio never took (failed).",
    "caller": "The other party: who called (inbound), or the number dialled (outbound).",
    "answered_by": "Outbound calls with machine detection: human, machine_start, "
    "machine_end_beep / _silence / _other, fax or unknown; empty otherwise.",
}


class CallListSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:call-detail")
    agent = _agent_field()
    has_recording = serializers.BooleanField(read_only=True)
    analytics = AnalyticsSummarySerializer(read_only=True, allow_null=True)

    class Meta:
        model = Call
        fields = (*CALL_FIELDS, "has_recording", "analytics")
        extra_kwargs = {name: {"help_text": text} for name, text in CALL_FIELD_HELP.items()}


class CallDetailSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:call-detail")
    agent = _agent_field()
    agent_version = serializers.IntegerField(
        read_only=True,
        allow_null=True,
        help_text="The agent's version when the call came in (null: no agent).",
    )
    backend = serializers.SerializerMethodField(
        help_text="Which OpenAI service the call was configured with: realtime (the Realtime "
        "API) or gpt-live (GPT-Live), as its agent snapshot says. Calls from before agents had "
        "a backend, and calls without an agent (the environment's configuration), are realtime.",
    )
    agent_snapshot = serializers.JSONField(
        read_only=True,
        help_text='What the model was told, as it was when the call came in: {"version", '
        '"agent": the configuration (its "backend" included, for calls since agents have one), '
        '"session": what the session was started with}, and for an outbound call "outbound": '
        '{"machine_detection", "voicemail_message"}; {} without an agent.',
    )
    transcripts = TranscriptSerializer(many=True, read_only=True)
    tool_calls = ToolCallSerializer(
        many=True, read_only=True, help_text="Every tool the agent used, in call order."
    )
    recordings = RecordingSerializer(many=True, read_only=True)
    analytics = AnalyticsSerializer(read_only=True, allow_null=True)
    metadata = CallMetadataSerializer(read_only=True, allow_null=True)
    note_entries = CallNoteSerializer(many=True, read_only=True)

    class Meta:
        model = Call
        fields = (
            *CALL_FIELDS,
            "agent_version",
            "backend",
            "agent_snapshot",
            "transcripts",
            "tool_calls",
            "recordings",
            "analytics",
            "metadata",
            "note_entries",
        )
        extra_kwargs = {name: {"help_text": text} for name, text in CALL_FIELD_HELP.items()}

    @extend_schema_field(serializers.ChoiceField(choices=agent_catalog.BACKENDS))
    def get_backend(self, call: Call) -> str:
        return agent_catalog.snapshot_backend(call.agent_snapshot)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A reminder call",
            value={
                "to": "+15550009999",
                "agent": "reminders",
                "context": {"name": "Ada", "appointment": "Tuesday at 10:00"},
                "machine_detection": "voicemail",
                "voicemail_message": "Hi {name}, a reminder of your appointment on "
                "{appointment}. Call us back to change it.",
            },
            request_only=True,
        )
    ]
)
class OutboundCallSerializer(serializers.Serializer):
    """POST /api/calls: the agent dials a number (telephony.outbound)."""

    to = StrictCharField(
        max_length=16,
        validators=[validate_e164],
        help_text="The number to call, E.164 (+15550009999).",
    )
    agent = StrictSlugField(
        required=False, max_length=64, help_text="The agent's slug (default: the default agent)."
    )
    from_ = StrictCharField(
        required=False,
        max_length=16,
        validators=[validate_e164],
        help_text="Caller id, one of our numbers (default: the agent's first number, else "
        "TWILIO_PHONE_NUMBER).",
    )
    context = serializers.DictField(
        child=ScalarField(),
        required=False,
        help_text="Values for {placeholders} in the agent's instructions, greeting and the "
        "voicemail message (strings or numbers; every placeholder needs one); kept in the "
        "call's metadata.",
    )
    machine_detection = serializers.ChoiceField(
        choices=("hangup", "voicemail", "off"),
        default="hangup",
        help_text="Answering machine detection: hangup (a machine is hung up on), voicemail (the "
        "agent leaves voicemail_message after the beep), off (the agent speaks at once).",
    )
    voicemail_message = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=1000,
        help_text="What the agent says to a machine (default: its greeting).",
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        # `from` is a Python keyword: the field is declared as from_ and named `from` on the wire.
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class RecordingQuerySerializer(serializers.Serializer):
    recording = QueryUUIDField(
        required=False, help_text="Which recording (default: the call's newest)."
    )
    download = QueryStrictBooleanField(
        default=False, help_text="true: Content-Disposition: attachment, with a file name."
    )


# --- notes ----------------------------------------------------------------------------------


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A note",
            value={"notes": "Called back: the order was delivered on Tuesday."},
            request_only=True,
        )
    ]
)
class NoteCreateSerializer(serializers.Serializer):
    notes = NotBlankCharField(
        max_length=NOTE_MAX_CHARS,
        help_text=f"The note to append (at most {NOTE_MAX_CHARS} characters once trimmed); it is "
        "stamped with its author and time.",
    )


class CallNotesSerializer(serializers.ModelSerializer):
    notes = serializers.CharField(
        read_only=True, help_text="Every note, as the admin shows and edits them."
    )
    note_entries = CallNoteSerializer(many=True, read_only=True)

    class Meta:
        model = Call
        fields = ("id", "notes", "note_entries")


# --- analytics ------------------------------------------------------------------------------


@extend_schema_field(PERIOD_BOUND_SCHEMA)
class PeriodBoundSerializerField(GivenMeansNotEmpty, serializers.Field):
    default_error_messages = {"invalid": INVALID_PERIOD_BOUND}

    def __init__(self, *, end: bool, **kwargs: Any) -> None:
        self.end = end
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dt.datetime:
        try:
            return parse_period_bound(str(data), end=self.end)
        except ValueError:
            self.fail("invalid")

    def to_representation(self, value: dt.datetime) -> str:
        return timezone.localtime(value).isoformat()


# The period when none is given: the week up to now.
DEFAULT_PERIOD = dt.timedelta(days=7)


class AnalyticsQuerySerializer(serializers.Serializer):
    # The parameter names are the API's (camelCase), so are the attributes.
    startDate = PeriodBoundSerializerField(
        end=False, required=False, help_text=f"{PERIOD_BOUND_HELP} Default: endDate - 7 days."
    )
    endDate = PeriodBoundSerializerField(
        end=True, required=False, help_text=f"{PERIOD_BOUND_HELP} Default: now."
    )
    interval = QueryChoiceField(
        choices=selectors.Interval.choices,
        default=selectors.Interval.DAY,
        help_text="Bucket size of the series, in the server's time zone (weeks start Monday).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        end = attrs.get("endDate") or timezone.now()
        start = attrs.get("startDate") or end - DEFAULT_PERIOD
        interval = attrs["interval"]
        if end < start:
            raise serializers.ValidationError({"endDate": ["endDate is before startDate."]})
        buckets = (end - start) / selectors.INTERVAL_LENGTH[interval]
        if buckets > selectors.MAX_BUCKETS:
            raise serializers.ValidationError(
                {
                    "interval": [
                        f"That period has about {int(buckets)} {interval} buckets; at most "
                        f"{selectors.MAX_BUCKETS} are allowed. Use a longer interval or a "
                        "shorter period."
                    ]
                }
            )
        return {"start": start, "end": end, "interval": interval}


class SentimentCountsSerializer(serializers.Serializer):
    positive = serializers.IntegerField()
    neutral = serializers.IntegerField()
    negative = serializers.IntegerField()
    unknown = serializers.IntegerField(help_text="Not scored (yet).")


class CallsByDirectionSerializer(serializers.Serializer):
    inbound = serializers.IntegerField(help_text="Calls to our numbers.")
    outbound = serializers.IntegerField(
        help_text="Calls we placed (direction outbound-api or outbound-dial)."
    )


class AnalyticsMeasuresSerializer(serializers.Serializer):
    calls = serializers.IntegerField()
    calls_by_direction = CallsByDirectionSerializer(
        help_text="The calls split by direction: inbound + outbound = calls."
    )
    completed = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Twilio status failed.")
    unanswered = serializers.IntegerField(help_text="busy, no-answer or canceled.")
    duration_s_avg = serializers.FloatField(allow_null=True)
    duration_s_p95 = serializers.FloatField(
        allow_null=True, help_text="95th percentile (nearest rank) of the calls' durations."
    )
    latency_ms_avg = serializers.FloatField(
        allow_null=True,
        help_text=f"Mean of the calls' average response latency in ms ({LATENCY_DEFINITION}).",
    )
    latency_ms_p95 = serializers.FloatField(
        allow_null=True,
        help_text="95th percentile (nearest rank) of the calls' average response latency in ms "
        f"({LATENCY_DEFINITION}).",
    )
    interruptions_per_call = serializers.FloatField(allow_null=True)
    sentiment = SentimentCountsSerializer()
    caller_talk_s = serializers.FloatField()
    agent_talk_s = serializers.FloatField()
    silence_s = serializers.FloatField()
    input_audio_tokens = serializers.IntegerField()
    output_audio_tokens = serializers.IntegerField()
    estimated_cost_usd = serializers.DecimalField(max_digits=16, decimal_places=6)


class AnalyticsBucketSerializer(AnalyticsMeasuresSerializer):
    bucket = serializers.DateTimeField(help_text="Start of the bucket, in the server's zone.")


class AnalyticsReportSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    interval = serializers.ChoiceField(choices=selectors.Interval.choices)
    timezone = serializers.CharField()
    totals = AnalyticsMeasuresSerializer()
    series = AnalyticsBucketSerializer(many=True, help_text="One entry per bucket, empty or not.")
