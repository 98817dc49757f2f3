"""/api/agents: thin; reads through agents.selectors, writes through agents.services.

400 is for a request the schema refuses (the serializer's checks, the rules between the fields
it sets); 409 for a well-formed request that conflicts with what is stored: a slug or number
another agent has, the agent's own stored settings (a GPT-Live agent's realtime-only settings
among them), the rule that there is one default agent.
Those are checked here before the service runs; whatever the service still refuses (a race
with another write) is a 409 too, as is AgentDeleteRefused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from agents import selectors, services, validators
from agents.api.permissions import AgentPermission
from agents.api.serializers import AgentSerializer
from agents.models import Agent, PhoneNumber
from calls.api.exceptions import Conflict
from calls.api.pagination import CallPagination
from calls.api.schema import error_responses

T = TypeVar("T")

CONFLICT_EXAMPLE = OpenApiExample(
    "The agent answered calls",
    value={
        "error": {
            "code": "agent_has_calls",
            "message": "The agent 'support' answered 42 call(s), which keep it for their "
            "record: deactivate it instead (is_active: false). It then answers no calls.",
            "details": {"calls": 42},
        }
    },
)
INVALID_EXAMPLE = OpenApiExample(
    "A voice the model does not have",
    value={
        "error": {
            "code": "invalid",
            "message": "voice: The voice 'marin' is not available with "
            "gpt-4o-realtime-preview. Use one of: alloy, ash, ballad, coral, echo, sage, "
            "shimmer, verse.",
            "details": {
                "voice": [
                    "The voice 'marin' is not available with gpt-4o-realtime-preview. Use one "
                    "of: alloy, ash, ballad, coral, echo, sage, shimmer, verse."
                ]
            },
        }
    },
)

SLUG_TAKEN_EXAMPLE = OpenApiExample(
    "The slug is another agent's",
    value={
        "error": {
            "code": "slug_taken",
            "message": "slug: Another agent has the slug 'support'.",
            "details": {"slug": ["Another agent has the slug 'support'."]},
        }
    },
)
NUMBER_TAKEN_EXAMPLE = OpenApiExample(
    "A number reaches another agent",
    value={
        "error": {
            "code": "phone_number_taken",
            "message": "phone_numbers: +14155550100 already reaches the agent 'sales': remove it "
            "there first.",
            "details": {
                "phone_numbers": [
                    "+14155550100 already reaches the agent 'sales': remove it there first."
                ]
            },
        }
    },
)
STORED_CONFLICT_EXAMPLE = OpenApiExample(
    "A voice the stored model does not have",
    value={
        "error": {
            "code": "conflicts_with_stored_agent",
            "message": "voice: The voice 'marin' is not available with gpt-4o-realtime-preview. "
            "Use one of: alloy, ash, ballad, coral, echo, sage, shimmer, verse.",
            "details": {
                "voice": [
                    "The voice 'marin' is not available with gpt-4o-realtime-preview. Use one "
                    "of: alloy, ash, ballad, coral, echo, sage, shimmer, verse."
                ]
            },
        }
    },
)
_NOT_FOR_LIVE = (
    "turn_detection does not apply to GPT-Live agents (backend gpt-live), which take turns and "
    "transcribe by themselves: leave it out."
)
INVALID_LIVE_EXAMPLE = OpenApiExample(
    "A Realtime API setting for a GPT-Live agent",
    value={
        "error": {
            "code": "invalid",
            "message": f"turn_detection: {_NOT_FOR_LIVE}",
            "details": {"turn_detection": [_NOT_FOR_LIVE]},
        }
    },
)
STORED_LIVE_CONFLICT_EXAMPLE = OpenApiExample(
    "A Realtime API setting for a stored GPT-Live agent",
    value={
        "error": {
            "code": "conflicts_with_stored_agent",
            "message": f"turn_detection: {_NOT_FOR_LIVE}",
            "details": {"turn_detection": [_NOT_FOR_LIVE]},
        }
    },
)
DEFAULT_REQUIRED_EXAMPLE = OpenApiExample(
    "Unsetting the default",
    value={
        "error": {
            "code": "default_required",
            "message": "is_default: There must be a default agent: make another agent the "
            "default instead (that unsets this one).",
            "details": {
                "is_default": [
                    "There must be a default agent: make another agent the default instead "
                    "(that unsets this one)."
                ]
            },
        }
    },
)
LOCATION_HEADER = OpenApiParameter(
    "Location",
    OpenApiTypes.URI,
    OpenApiParameter.HEADER,
    description="The new agent's URL (as its `url`).",
    response=[201],
    required=True,
)
WRITE_ERRORS = (400, 401, 403, 409, 413, 415, 429)


def _by_field(error: DjangoValidationError) -> dict[str, list[str]]:
    if not hasattr(error, "error_dict"):
        return {api_settings.NON_FIELD_ERRORS_KEY: error.messages}
    return {
        api_settings.NON_FIELD_ERRORS_KEY if name == NON_FIELD_ERRORS else name: messages
        for name, messages in error.message_dict.items()
    }


def _conflict(code: str, errors: dict[str, list[str]]) -> Conflict:
    message = " ".join(f"{name}: {' '.join(texts)}" for name, texts in errors.items())
    return Conflict(message, code=code, details=errors)


def _service(write: Callable[[], T]) -> T:
    """Run a service. The request passed every check of its own before, so what the service
    refuses is the state it found (a write that raced this one): a 409, keyed by field."""
    try:
        return write()
    except DjangoValidationError as error:
        raise _conflict("conflict", _by_field(error)) from None


def _slug_conflict(agent: Agent | None, slug: str | None) -> Conflict | None:
    others = Agent.objects.exclude(pk=agent.pk) if agent is not None else Agent.objects.all()
    if slug is None or not others.filter(slug=slug).exists():
        return None
    return _conflict("slug_taken", {"slug": [f"Another agent has the slug {slug!r}."]})


def _numbers_conflict(agent: Agent | None, numbers: list[str] | None) -> Conflict | None:
    taken = PhoneNumber.objects.filter(number__in=numbers or ()).select_related("agent")
    if agent is not None:
        taken = taken.exclude(agent=agent)
    messages = [
        f"{phone.number} already reaches the agent {phone.agent.slug!r}: remove it there first."
        for phone in taken.order_by("number")
    ]
    return _conflict("phone_number_taken", {"phone_numbers": messages}) if messages else None


def _stored_conflict(agent: Agent, fields: dict[str, Any]) -> Conflict | None:
    """The agent's own stored fields against this change: the one default, the rules between
    fields with the ones the request does not set as stored."""
    if agent.is_default and fields.get("is_default") is False:
        return _conflict(
            "default_required",
            {
                "is_default": [
                    "There must be a default agent: make another agent the default instead "
                    "(that unsets this one)."
                ]
            },
        )
    stored = {field.name: getattr(agent, field.attname) for field in Agent._meta.concrete_fields}
    errors = {
        **validators.agent_cross_field_errors({**stored, **fields}),
        # A GPT-Live agent's realtime-only settings (a request that makes it GPT-Live and
        # sets them is a 400 already).
        **validators.realtime_only_errors(fields.get("backend", agent.backend), fields),
    }
    return _conflict("conflicts_with_stored_agent", errors) if errors else None


def _state_conflict(
    agent: Agent | None, fields: dict[str, Any], numbers: list[str] | None
) -> Conflict | None:
    """The 409 for a request valid on its own that what is stored refuses, or None."""
    return (
        _slug_conflict(agent, fields.get("slug"))
        or _numbers_conflict(agent, numbers)
        or (_stored_conflict(agent, fields) if agent is not None else None)
    )


def _split(validated: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
    fields = dict(validated)
    return fields, fields.pop("phone_numbers", None)


@extend_schema_view(
    list=extend_schema(
        summary="List agents (by name), with their numbers",
        responses={
            200: OpenApiResponse(AgentSerializer(many=True), description="A page of agents."),
            **error_responses(400, 401, 403, 429),
        },
    ),
    retrieve=extend_schema(
        summary="One agent",
        responses={
            200: OpenApiResponse(AgentSerializer, description="The agent."),
            **error_responses(401, 403, 404, 429),
        },
    ),
    create=extend_schema(
        summary="Create an agent (version 1)",
        request=AgentSerializer,
        responses={
            201: OpenApiResponse(
                AgentSerializer, description="Created; Location is its URL. Version 1."
            ),
            **error_responses(
                *WRITE_ERRORS,
                examples={
                    400: [INVALID_EXAMPLE, INVALID_LIVE_EXAMPLE],
                    409: [SLUG_TAKEN_EXAMPLE, NUMBER_TAKEN_EXAMPLE],
                },
            ),
        },
        parameters=[LOCATION_HEADER],
    ),
    partial_update=extend_schema(
        summary="Change an agent; the version goes up when what the model is told changes",
        request=AgentSerializer,
        responses={
            200: OpenApiResponse(
                AgentSerializer, description="The agent as saved, with its (maybe new) version."
            ),
            **error_responses(
                *WRITE_ERRORS,
                404,
                examples={
                    400: [INVALID_EXAMPLE, INVALID_LIVE_EXAMPLE],
                    409: [
                        STORED_CONFLICT_EXAMPLE,
                        STORED_LIVE_CONFLICT_EXAMPLE,
                        DEFAULT_REQUIRED_EXAMPLE,
                        SLUG_TAKEN_EXAMPLE,
                        NUMBER_TAKEN_EXAMPLE,
                    ],
                },
            ),
        },
    ),
    destroy=extend_schema(
        summary="Delete an agent that never answered a call (otherwise 409: deactivate it)",
        responses={
            204: OpenApiResponse(description="Deleted, with its numbers."),
            **error_responses(401, 403, 404, 409, 429, examples={409: [CONFLICT_EXAMPLE]}),
        },
    ),
)
class AgentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Agents: who answers each number, what it says first and how it listens. Reading needs
    agents.view_agent; creating, changing and deleting need agents.change_agent."""

    serializer_class = AgentSerializer
    permission_classes = (AgentPermission,)
    pagination_class = CallPagination
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    # No PUT (no `update`): a PATCH says exactly what changes, and so what bumps the version.

    def get_queryset(self) -> QuerySet[Agent]:
        return selectors.agent_list()

    def _read(self, agent: Agent) -> dict[str, Any]:
        fresh = selectors.agent_by_slug(slug=agent.slug)
        return self.get_serializer(fresh).data

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields, numbers = _split(body.validated_data)
        conflict = _state_conflict(None, fields, numbers)
        if conflict is not None:
            raise conflict
        agent = _service(lambda: services.agent_create(fields=fields, phone_numbers=numbers or ()))
        data = self._read(agent)
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": data["url"]})

    def partial_update(self, request: Request, *args: object, **kwargs: object) -> Response:
        agent = self.get_object()
        body = self.get_serializer(agent, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        fields, numbers = _split(body.validated_data)
        conflict = _state_conflict(agent, fields, numbers)
        if conflict is not None:
            raise conflict
        saved = _service(
            lambda: services.agent_update(agent=agent, fields=fields, phone_numbers=numbers)
        )
        return Response(self._read(saved))

    def destroy(self, request: Request, *args: object, **kwargs: object) -> Response:
        agent = self.get_object()
        try:
            services.agent_delete(agent=agent)
        except services.AgentHasCalls as refused:
            raise Conflict(
                str(refused), code=refused.code, details={"calls": refused.calls}
            ) from None
        except services.AgentDeleteRefused as refused:
            raise Conflict(str(refused), code=refused.code) from None
        return Response(status=status.HTTP_204_NO_CONTENT)
