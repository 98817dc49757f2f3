"""One error shape for everything under /api/: {"error": {"code", "message", "details"}}.

DRF's own exceptions (validation, authentication, permission, throttling, 404, 405, 413) go
through `api_exception_handler`; the few plain Django views here (the status feed, the
recording's 416, unknown paths) build the same body with `api_error`. What Django answers before
or around any view (a CSRF failure, a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a bad Host, an
uncaught exception) comes through the handlers at the end of this module, which bridge_project
installs as handler400/403/404/500 and CSRF_FAILURE_VIEW: under /api/ they answer the same JSON,
elsewhere (the admin, the webhooks) Django's own pages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import csrf, defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler

from calls.api.parsers import RequestTooLarge

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
    """Django's 404, permission and body-size errors, as DRF exceptions (DRF's handler makes
    the first two of them itself; Django would answer the last with a 400)."""
    if isinstance(exc, Http404):
        return exceptions.NotFound(*exc.args)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(*exc.args)
    if isinstance(exc, RequestDataTooBig):
        return RequestTooLarge()
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


class Refused(exceptions.APIException):
    """A service's refusal with its own status (422 a reused idempotency key, 502 Twilio
    unreachable, 400 Twilio refusing the number...); `details` says what a client needs."""

    default_detail = "The request was refused."
    default_code = "refused"

    def __init__(self, status_code: int, detail: str, *, code: str, details: Any = None) -> None:
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.details = details


def _details(exc: exceptions.APIException) -> Any:
    if isinstance(exc, exceptions.ValidationError):
        return exc.detail
    if isinstance(exc, exceptions.Throttled):
        # A service's 429 may say more (Twilio's code when Twilio throttled us).
        return {"retry_after_s": exc.wait, **(getattr(exc, "details", None) or {})}
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


# Exempt: an unknown path has nothing to protect, and the CSRF check would otherwise answer a
# POST to it with a 403 before the 404 it is.
@csrf_exempt
def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    """Any path under /api/ that no endpoint matches."""
    return api_error(status_code=404, code="not_found", message=f"No endpoint at {request.path}.")


# --- Django's own answers (bridge_project.urls: handler400/403/404/500, CSRF_FAILURE_VIEW) ----

API_PREFIX = "/api/"


def is_api_request(request: HttpRequest) -> bool:
    path = request.path_info
    return path.startswith(API_PREFIX) or path == API_PREFIX.rstrip("/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: Django's SuspiciousOperation answers (a bad Host header, a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE read outside DRF), raised before or around a view."""
    if not is_api_request(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        too_large = RequestTooLarge()
        return api_error(
            status_code=too_large.status_code,
            code=too_large.default_code,
            message=str(too_large.detail),
            details=too_large.details,
        )
    return api_error(status_code=400, code="bad_request", message="The request is malformed.")


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api_request(request):
        return defaults.permission_denied(request, exception)
    return api_error(
        status_code=403,
        code="permission_denied",
        message=str(exception) or "You do not have permission to perform this action.",
    )


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api_request(request):
        return defaults.page_not_found(request, exception)
    return api_error(status_code=404, code="not_found", message=f"No endpoint at {request.path}.")


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: an exception no view caught (DRF's handler answers those raised in its
    views); Django has already logged it. Without internals, as the DRF path answers."""
    if not is_api_request(request):
        return defaults.server_error(request)
    return api_error(
        status_code=500, code="server_error", message="An unexpected error occurred on the server."
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: a write through a session without the CSRF token. DRF answers this
    itself for its views (session auth); this covers the plain views under /api/."""
    if not is_api_request(request):
        return csrf.csrf_failure(request, reason)
    return api_error(
        status_code=403,
        code="permission_denied",
        message=f"CSRF Failed: {reason}" if reason else "CSRF Failed.",
    )
