"""One error shape for everything under /api/: {"error": {"code", "message", "details"}}.

DRF's own exceptions (validation, authentication, permission, throttling, 404, 405) go through
`api_exception_handler`; the few plain Django views here (the status feed, the recording's
416, unknown paths) build the same body with `api_error`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler

logger = logging.getLogger("django.request")


def error_body(*, code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def api_error(
    *,
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JsonResponse:
    """The error shape as a plain Django response, for views that are not DRF's."""
    return JsonResponse(
        error_body(code=code, message=message, details=details),
        status=status_code,
        headers=dict(headers or {}),
    )


def _first_message(detail: Any) -> str:
    while isinstance(detail, list | dict) and detail:
        detail = detail[0] if isinstance(detail, list) else next(iter(detail.values()))
    return str(detail)


def _validation_message(detail: Any) -> str:
    """Name the fields in the message itself, so a client logging only it still learns why."""
    if not isinstance(detail, dict):
        return _first_message(detail)
    parts = []
    for name, value in detail.items():
        text = _first_message(value)
        parts.append(text if name == api_settings.NON_FIELD_ERRORS_KEY else f"{name}: {text}")
    return " ".join(parts)


def _as_api_exception(exc: Exception) -> Exception:
    """Django's 404 and permission errors, as the DRF exceptions DRF's handler makes of them."""
    if isinstance(exc, Http404):
        return exceptions.NotFound(*exc.args)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(*exc.args)
    return exc


class Conflict(exceptions.APIException):
    """409: the request is well-formed but the resource's state refuses it (an agent that
    answered calls cannot be deleted); `details` says what stands in the way."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"

    def __init__(self, detail: str, *, code: str, details: Any = None) -> None:
        super().__init__(detail=detail, code=code)
        self.details = details


def _details(exc: exceptions.APIException) -> Any:
    if isinstance(exc, exceptions.ValidationError):
        return exc.detail
    if isinstance(exc, exceptions.Throttled):
        return {"retry_after_s": exc.wait}
    return getattr(exc, "details", None)


def api_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """DRF's handler (status, WWW-Authenticate, Retry-After), then our body."""
    exc = _as_api_exception(exc)
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return _server_error(exc, context)
    if isinstance(exc, exceptions.ValidationError):
        code, message = "invalid", _validation_message(exc.detail)
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        message = _first_message(exc.detail)
    response.data = error_body(code=code, message=message, details=_details(exc))
    return response


def _server_error(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """An unexpected exception: logged like Django logs one, answered as JSON.

    With DEBUG on, it goes back to Django for the technical page a developer wants.
    """
    if settings.DEBUG:
        return None
    request: HttpRequest | None = getattr(context.get("request"), "_request", None)
    logger.error(
        "Internal Server Error: %s",
        request.path if request else "?",
        exc_info=exc,
        extra={"status_code": 500, "request": request},
    )
    return Response(
        error_body(code="server_error", message="An unexpected error occurred on the server."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    """Any path under /api/ that no endpoint matches."""
    return api_error(status_code=404, code="not_found", message=f"No endpoint at {request.path}.")
