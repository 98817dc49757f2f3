"""Limit/offset pages: `limit`, `offset` -> count, next, previous, results."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request


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
        raw = raw.strip()
        if not raw.isascii() or not raw.isdigit() or int(raw) < minimum:
            raise ValidationError({name: [f"Must be an integer of at least {minimum}."]})
        return int(raw)

    def get_limit(self, request: Request) -> int:
        limit = self._integer(request, self.limit_query_param, minimum=1)
        # Above the maximum is not an error: the page is just capped, as `next` shows.
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return self._integer(request, self.offset_query_param, minimum=0) or 0
