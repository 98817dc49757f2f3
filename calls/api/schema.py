"""OpenAPI pieces: the shared error responses, and the status feed, which is not a DRF view."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse

from calls.api.serializers import ErrorSerializer

_ERROR_MEANINGS = {
    400: "Invalid parameters or body; `details` names each field.",
    401: "No or bad credentials (Authorization: Token <key>, or a session).",
    403: "Authenticated, without the model permission (calls.view_call / calls.change_call; "
    "agents.view_agent / agents.change_agent).",
    404: "No such call, recording, agent or endpoint.",
    405: "Method not allowed.",
    409: "Refused by the resource's state: an agent that answered calls cannot be deleted "
    "(deactivate it instead), nor can the default agent.",
    416: "The range starts past the end of the file; Content-Range: bytes */<size>.",
    429: "Too many requests; Retry-After says when to try again.",
}


def error_responses(
    *statuses: int, examples: dict[int, list[OpenApiExample]] | None = None
) -> dict[int, OpenApiResponse]:
    return {
        code: OpenApiResponse(
            ErrorSerializer,
            description=_ERROR_MEANINGS[code],
            examples=(examples or {}).get(code, []),
        )
        for code in statuses
    }


STATUS_FEED_DESCRIPTION = """\
Server-Sent Events (text/event-stream): calls as they happen, from every server process.

Events (`event:` field), each with an `id:` and JSON `data:` (`call_id`, `at` unix time, ...):
- `call.started`: the media stream is up (`stream_sid`).
- `call.updated`: a status change (`status`) or new transcript lines (`transcripts`: speaker,
  text, start_ms, end_ms, interrupted).
- `call.ended`: the call is over, with a summary (`reason`, `interruptions`, `turns`,
  `latency_ms_avg`, `sentiment_label`).

A comment line (`: heartbeat`) comes every 15 s of silence. Ids count up from 1 on each
connection; the feed keeps no history, so `Last-Event-ID` is not replayed: after a reconnect,
read `/api/calls` for what happened meanwhile.
"""


def _error_ref(code: int) -> dict[str, Any]:
    return {
        "description": _ERROR_MEANINGS[code],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def status_feed_path(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: document GET /api/status, an async Django view DRF cannot see."""
    result["paths"]["/api/status"] = {
        "get": {
            "operationId": "status_feed",
            "summary": "Live call events (Server-Sent Events)",
            "description": STATUS_FEED_DESCRIPTION,
            "tags": ["status"],
            "security": [{"tokenAuth": []}, {"cookieAuth": []}],
            "responses": {
                "200": {
                    "description": "An endless event stream.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **{str(code): _error_ref(code) for code in (401, 403, 405, 429)},
            },
        }
    }
    return result
