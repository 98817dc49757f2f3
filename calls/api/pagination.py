"""Limit/offset pages: `limit`, `offset` -> count, next, previous, results."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_DIGITS = 18


class CallPagination(LimitOffsetPagination):
    default_limit = 25
    max_limit = 100
    limit_query_description = "Results per page: default 25, at most 100."
    offset_query_description = "How many results to skip."

    def _integer(self, request: Request, name: str, *, minimum: int) -> int | None:
        # DRF silently falls back to defaults on a malformed value; a client sending
        # limit=abc has a bug it should hear about.
        raw = request.query_params.get(name)
        if raw is None:
            return None
        if not raw.isascii() or not raw.isdigit():
            raise ValidationError({name: [f"Must be an integer of at least {minimum}."]})
        # Past MAX_DIGITS the value is only "very large" (a limit is capped anyway, an offset
        # past the end is an empty page), and Python refuses to parse thousands of digits.
        digits = raw.lstrip("0") or "0"
        value = int(digits) if len(digits) <= MAX_DIGITS else 10**MAX_DIGITS
        if value < minimum:
            raise ValidationError({name: [f"Must be an integer of at least {minimum}."]})
        return value

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        # The minimums the server checks (_integer), so limit=0 is not schema-valid.
        minimums = {self.limit_query_param: 1, self.offset_query_param: 0}
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = minimums[parameter["name"]]
        return parameters

    def get_limit(self, request: Request) -> int:
        limit = self._integer(request, self.limit_query_param, minimum=1)
        # Above the maximum is not an error: the page is just capped, as `next` shows.
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return self._integer(request, self.offset_query_param, minimum=0) or 0
