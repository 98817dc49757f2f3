"""The API's one body parser: JSON, refused with 413 over DATA_UPLOAD_MAX_MEMORY_SIZE.

DRF's JSONParser reads the body stream itself, past Django's size check (which only guards
`request.body` and form parsing), so without this a body of any size would be read and parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser


class RequestTooLarge(exceptions.APIException):
    """413: the body is over DATA_UPLOAD_MAX_MEMORY_SIZE (what Django would call a 400). Here,
    not in calls.api.exceptions: DRF imports the parsers while calls.api.exceptions imports DRF."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"

    def __init__(self) -> None:
        self.details = {"max_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE}
        super().__init__(
            f"The request body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
            code=self.default_code,
        )


def _declared_length(parser_context: Mapping[str, Any] | None) -> int:
    request = (parser_context or {}).get("request")
    meta = getattr(request, "META", {})
    try:
        return int(meta.get("CONTENT_LENGTH") or 0)
    except (TypeError, ValueError):
        return 0


class BoundedJSONParser(JSONParser):
    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        # The declared length is the whole body: DRF reads through a stream Django limits to
        # it, so nothing past the header's figure is ever read.
        if limit is not None and _declared_length(parser_context) > limit:
            raise RequestTooLarge()
        return super().parse(stream, media_type, parser_context)
