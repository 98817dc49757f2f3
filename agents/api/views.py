"""/api/agents: thin; reads through agents.selectors, writes through agents.services.

A service refuses with Django's ValidationError keyed by field (answered 400, naming the
field, like the serializer's own checks) or with AgentDeleteRefused (answered 409).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from agents import selectors, services
from agents.api.permissions import AgentPermission
from agents.api.serializers import AgentSerializer
from agents.models import Agent
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


def _service(write: Callable[[], T]) -> T:
    """Run a service; its ValidationError becomes the API's 400, keyed by field."""
    try:
        return write()
    except DjangoValidationError as error:
        if not hasattr(error, "error_dict"):
            raise serializers.ValidationError(
                {api_settings.NON_FIELD_ERRORS_KEY: error.messages}
            ) from None
        detail = {
            api_settings.NON_FIELD_ERRORS_KEY if name == NON_FIELD_ERRORS else name: messages
            for name, messages in error.message_dict.items()
        }
        raise serializers.ValidationError(detail) from None


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
            **error_responses(400, 401, 403, 429, examples={400: [INVALID_EXAMPLE]}),
        },
    ),
    partial_update=extend_schema(
        summary="Change an agent; the version goes up when what the model is told changes",
        request=AgentSerializer,
        responses={
            200: OpenApiResponse(
                AgentSerializer, description="The agent as saved, with its (maybe new) version."
            ),
            **error_responses(400, 401, 403, 404, 429, examples={400: [INVALID_EXAMPLE]}),
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
        agent = _service(lambda: services.agent_create(fields=fields, phone_numbers=numbers or ()))
        data = self._read(agent)
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": data["url"]})

    def partial_update(self, request: Request, *args: object, **kwargs: object) -> Response:
        agent = self.get_object()
        body = self.get_serializer(agent, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        fields, numbers = _split(body.validated_data)
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
