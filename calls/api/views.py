"""REST endpoints: thin; reads through calls.selectors, writes through calls.services."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http.response import HttpResponseBase
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.throttling import BaseThrottle, UserRateThrottle
from rest_framework.views import APIView

from calls import selectors, services
from calls.api.exceptions import Refused
from calls.api.filters import CallFilter, StrictOrderingFilter
from calls.api.pagination import CallPagination
from calls.api.recordings import recording_response
from calls.api.schema import error_example, error_responses
from calls.api.serializers import (
    AnalyticsQuerySerializer,
    AnalyticsReportSerializer,
    CallDetailSerializer,
    CallListSerializer,
    CallNotesSerializer,
    NoteCreateSerializer,
    OutboundCallSerializer,
    RecordingQuerySerializer,
)
from calls.models import Call
from telephony.outbound import OutboundCall, OutboundRefused, outbound_call_place

UUID_PATTERN = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"

RANGE_HEADER = OpenApiParameter(
    "Range",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="One byte range: bytes=0-1023, bytes=1024- or bytes=-500. Several ranges, or "
    "a malformed header, get the whole file (200).",
)

# Sent with every recording response (200 and 206), and Content-Range with a part.
RECORDING_HEADERS = [
    OpenApiParameter(
        "Accept-Ranges",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description="bytes",
        response=[200, 206],
        required=True,
    ),
    OpenApiParameter(
        "ETag",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description="The recording's identity and size: send it back in If-Range.",
        response=[200, 206],
        required=True,
    ),
    OpenApiParameter(
        "Content-Range",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description="bytes <first>-<last>/<size>",
        response=[206],
        required=True,
    ),
]
NOTES_EXAMPLE = OpenApiExample(
    "The notes after one was added",
    value={
        "id": "5b0f6a8e-7a2c-4d8e-9d8f-2f4b8f1c9a10",
        "notes": "[2026-11-30 15:02 UTC] alice: Called back: the order was delivered on Tuesday.",
        "note_entries": [
            {
                "id": 7,
                "author": "alice",
                "text": "Called back: the order was delivered on Tuesday.",
                "created_at": "2026-11-30T15:02:11Z",
            }
        ],
    },
    response_only=True,
)


IDEMPOTENCY_KEY_MAX = 255
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX},
    OpenApiParameter.HEADER,
    description="Any unique string (at most 255 characters, e.g. a UUID): a retry with the same "
    "key, from the same user, within OUTBOUND_IDEMPOTENCY_TTL_S, returns the call the first "
    "request placed (Idempotent-Replayed: true) instead of dialling again.",
)


class OutboundCallThrottle(UserRateThrottle):
    """POST /api/calls dials phones: its own per-user rate (API_THROTTLE_OUTBOUND_CALLS)."""

    scope = "outbound_calls"


def _refused(exc: OutboundRefused) -> Exception:
    """The service's refusal in the API's error shape."""
    if exc.status == 400 and exc.field and exc.code in ("invalid", "invalid_e164"):
        return serializers.ValidationError({exc.field: [str(exc)]})
    if exc.status == 404:
        return NotFound(str(exc))
    if exc.status == 429 and exc.retry_after_s is not None:
        throttled = Throttled(wait=exc.retry_after_s, detail=str(exc), code=exc.code)
        throttled.details = exc.details  # type: ignore[attr-defined]
        return throttled
    details = dict(exc.details)
    if exc.field:
        details["field"] = exc.field
    return Refused(exc.status, str(exc), code=exc.code, details=details or None)


class CallViewSet(viewsets.ReadOnlyModelViewSet):
    """Calls, newest first, with their transcripts, recordings, analytics and notes; POST
    places an outbound call."""

    lookup_value_regex = UUID_PATTERN
    pagination_class = CallPagination
    filter_backends = (DjangoFilterBackend, StrictOrderingFilter)
    filterset_class = CallFilter
    ordering_fields = ("started_at", "ended_at", "duration_s", "caller", "agent", "status")
    ordering_aliases = {"agent": "agent__name"}  # sorting by agent sorts by its name
    ordering = ("-started_at",)

    def get_queryset(self) -> QuerySet[Call]:
        if self.action == "list":
            return selectors.call_list()
        if self.action == "retrieve":
            return selectors.call_detail_list()
        return Call.objects.all()

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return CallDetailSerializer if self.action in ("retrieve", "create") else CallListSerializer

    def get_throttles(self) -> list[BaseThrottle]:
        throttles = super().get_throttles()
        if self.action == "create":
            throttles.append(OutboundCallThrottle())
        return throttles

    def filter_queryset(self, queryset: QuerySet[Call]) -> QuerySet[Call]:
        # The list's filters must not turn /calls/<id>?status=... into a 404.
        return super().filter_queryset(queryset) if self.action == "list" else queryset

    @extend_schema(
        responses={
            200: OpenApiResponse(
                CallListSerializer, description="A page of calls, newest first by default."
            ),
            **error_responses(400, 401, 403, 404, 429),
        }
    )
    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        responses={
            200: OpenApiResponse(
                CallDetailSerializer,
                description="The call with its transcript, recordings, analytics and notes.",
            ),
            **error_responses(401, 403, 404, 429),
        }
    )
    def retrieve(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Place an outbound call: the agent dials a number",
        request=OutboundCallSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: OpenApiResponse(
                CallDetailSerializer,
                description="The call, queued with Twilio (its call_sid set). It then moves "
                "through ringing and in-progress to its end, as GET /api/calls/{id} shows.",
            ),
            **error_responses(
                400,
                401,
                403,
                404,
                413,
                415,
                422,
                429,
                502,
                examples={
                    400: [
                        error_example(400),
                        OpenApiExample(
                            "twilio_refused",
                            value={
                                "error": {
                                    "code": "twilio_refused",
                                    "message": "Twilio refused the call (400, code 21211): The "
                                    "phone number you are attempting to call, +15005550001, is "
                                    "not valid.",
                                    "details": {
                                        "call_id": "2f1c8a0e-5b7d-4c3e-9a6f-0d8e7b6a5c4d",
                                        "twilio_status": 400,
                                        "twilio_code": 21211,
                                        "twilio_message": "The phone number you are "
                                        "attempting to call, +15005550001, is not valid.",
                                    },
                                }
                            },
                            response_only=True,
                        ),
                    ]
                },
            ),
        },
    )
    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > IDEMPOTENCY_KEY_MAX:
            raise serializers.ValidationError(
                {"Idempotency-Key": [f"At most {IDEMPOTENCY_KEY_MAX} characters."]}
            )
        body = OutboundCallSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        outbound = OutboundCall(
            to=data["to"],
            agent=data.get("agent", ""),
            from_=data.get("from", ""),
            context=data.get("context", {}),
            machine_detection=data["machine_detection"],
            voicemail_message=data.get("voicemail_message", ""),
        )
        try:
            placed = outbound_call_place(outbound, user=request.user, idempotency_key=key)
        except OutboundRefused as exc:
            raise _refused(exc) from None
        call = selectors.call_detail_list().get(pk=placed.call.pk)
        headers = {"Location": reverse("api:call-detail", args=[call.pk], request=request)}
        if placed.replayed:
            headers["Idempotent-Replayed"] = "true"
        data = CallDetailSerializer(call, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_201_CREATED, headers=headers)

    @extend_schema(
        summary="Stream a recording (WAV), with Range support",
        parameters=[RecordingQuerySerializer, RANGE_HEADER, *RECORDING_HEADERS],
        responses={
            (200, "audio/wav"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The whole file; Accept-Ranges: bytes."
            ),
            (206, "audio/wav"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The range asked for; Content-Range set."
            ),
            **error_responses(400, 401, 403, 404, 416, 429),
        },
    )
    @action(detail=True, methods=["get"])
    def recording(self, request: Request, pk: str | None = None) -> HttpResponseBase:
        call = self.get_object()
        params = RecordingQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        recording = selectors.recording_for_call(
            call=call, recording_id=params.validated_data.get("recording")
        )
        if recording is None:
            raise NotFound("This call has no recording.")
        return recording_response(
            request=request._request,
            call=call,
            recording=recording,
            as_attachment=params.validated_data["download"],
        )

    @extend_schema(
        summary="Append a note (kept with its author and time)",
        request=NoteCreateSerializer,
        responses={
            201: OpenApiResponse(
                CallNotesSerializer,
                description="The call's notes with the new one last.",
                examples=[NOTES_EXAMPLE],
            ),
            **error_responses(400, 401, 403, 404, 413, 415, 429),
        },
    )
    @action(detail=True, methods=["post"])
    def notes(self, request: Request, pk: str | None = None) -> Response:
        call = self.get_object()
        body = NoteCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            services.call_note_add(
                call_id=str(call.pk), author=request.user, text=body.validated_data["notes"]
            )
        except DjangoValidationError as error:
            raise serializers.ValidationError({"notes": error.messages}) from None
        call = selectors.call_with_notes(call_id=call.pk)
        return Response(CallNotesSerializer(call).data, status=status.HTTP_201_CREATED)


class AnalyticsView(APIView):
    """Aggregates over a period and the same measures per hour, day or week."""

    @extend_schema(
        summary="Call analytics over a period, with a zero-filled time series",
        parameters=[AnalyticsQuerySerializer],
        responses={
            200: OpenApiResponse(
                AnalyticsReportSerializer, description="Totals and the zero-filled series."
            ),
            **error_responses(400, 401, 403, 429),
        },
    )
    def get(self, request: Request) -> Response:
        params = AnalyticsQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        report = selectors.call_analytics(**params.validated_data)
        return Response(AnalyticsReportSerializer(report).data)


class SchemaView(SpectacularAPIView):
    """The OpenAPI document: JSON by default (?format=yaml for YAML); errors in our shape."""

    renderer_classes = (OpenApiJsonRenderer, OpenApiYamlRenderer)

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        # A refusal is not an OpenAPI document: plain JSON, as everywhere else under /api/.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response
