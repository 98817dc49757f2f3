"""OpenAPI pieces: the shared error responses, and the status feed, which is not a DRF view."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse

from calls.api.serializers import ErrorSerializer

_ERROR_MEANINGS = {
    400: "The request does not match the schema (a parameter, the body, or a rule between its "
    "fields the schema states); `details` names each field.",
    401: "No or bad credentials (Authorization: Token <key>, or a session).",
    403: "Authenticated, without the model permission (calls.view_call / calls.change_call / "
    "calls.add_call; agents.view_agent / agents.change_agent), or a session write without its "
    "CSRF token.",
    404: "No such call, recording, agent or endpoint.",
    405: "Method not allowed; Allow lists the methods that are.",
    409: "Well-formed, but refused by what is stored: a slug or number another agent has, the "
    "agent's own stored settings, the one default agent; deleting an agent that answered calls "
    "(deactivate it instead) or the default agent. `details` names each field when one is to "
    "blame.",
    422: "Well-formed, but not what it claims to be: an Idempotency-Key reused for a "
    "different request (`details.call_id`: the call the key placed).",
    413: "The body is over the server's limit (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB by default).",
    415: "The body is not application/json.",
    416: "The range starts past the end of the file; Content-Range: bytes */<size>.",
    429: "Too many requests; Retry-After says when to try again. POST /api/calls also answers "
    "429 when the agent has OUTBOUND_MAX_CONCURRENT_PER_AGENT calls in progress "
    "(`too_many_calls`), or when Twilio does.",
    502: "Twilio could not be reached, or refused our credentials: the call is recorded as "
    "failed (`details.call_id`), with Twilio's code and message when it answered.",
}

# One example per status, so every documented error shows its body.
_ERROR_EXAMPLES: dict[int, dict[str, Any]] = {
    400: {
        "code": "invalid",
        "message": "limit: Must be an integer of at least 1.",
        "details": {"limit": ["Must be an integer of at least 1."]},
    },
    401: {
        "code": "not_authenticated",
        "message": "Authentication credentials were not provided.",
        "details": None,
    },
    403: {
        "code": "permission_denied",
        "message": "This needs the calls.view_call permission.",
        "details": None,
    },
    404: {"code": "not_found", "message": "No Call matches the given query.", "details": None},
    405: {"code": "method_not_allowed", "message": 'Method "PUT" not allowed.', "details": None},
    409: {
        "code": "slug_taken",
        "message": "slug: Another agent has the slug 'support'.",
        "details": {"slug": ["Another agent has the slug 'support'."]},
    },
    413: {
        "code": "request_too_large",
        "message": "The request body is over 2621440 bytes.",
        "details": {"max_bytes": 2621440},
    },
    415: {
        "code": "unsupported_media_type",
        "message": 'Unsupported media type "text/plain" in request.',
        "details": None,
    },
    416: {
        "code": "range_not_satisfiable",
        "message": "The range 'bytes=900000-' is outside the file (192044 bytes).",
        "details": {"size_bytes": 192044},
    },
    422: {
        "code": "idempotency_key_reused",
        "message": "This Idempotency-Key was used for another request: use a new key.",
        "details": {"call_id": "2f1c8a0e-5b7d-4c3e-9a6f-0d8e7b6a5c4d"},
    },
    502: {
        "code": "twilio_unavailable",
        "message": "Twilio's REST API could not be reached: timed out",
        "details": {"call_id": "2f1c8a0e-5b7d-4c3e-9a6f-0d8e7b6a5c4d"},
    },
    429: {
        "code": "throttled",
        "message": "Request was throttled. Expected available in 12 seconds.",
        "details": {"retry_after_s": 12},
    },
}

# Headers the server always sends with these statuses (response_headers adds them).
_ERROR_HEADERS: dict[str, dict[str, Any]] = {
    "401": {
        "WWW-Authenticate": {
            "description": "Token: send Authorization: Token <key>.",
            "schema": {"type": "string"},
            "required": True,
        }
    },
    "405": {
        "Allow": {
            "description": "The methods this path answers.",
            "schema": {"type": "string"},
            "required": True,
        }
    },
    "416": {
        "Content-Range": {
            "description": "bytes */<size>",
            "schema": {"type": "string"},
            "required": True,
        }
    },
    "429": {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "integer", "minimum": 0},
            "required": True,
        }
    },
}


def error_example(code: int) -> OpenApiExample:
    body = _ERROR_EXAMPLES[code]
    return OpenApiExample(body["code"], value={"error": body}, response_only=True)


def error_responses(
    *statuses: int, examples: dict[int, list[OpenApiExample]] | None = None
) -> dict[int, OpenApiResponse]:
    """The Error body for each status, with its meaning and an example (or the ones given)."""
    return {
        code: OpenApiResponse(
            ErrorSerializer,
            description=_ERROR_MEANINGS[code],
            examples=(examples or {}).get(code) or [error_example(code)],
        )
        for code in statuses
    }


def response_headers(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: the headers each error status always carries, on every operation
    (drf-spectacular declares response headers per operation only)."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                if status in _ERROR_HEADERS:
                    response.setdefault("headers", {}).update(_ERROR_HEADERS[status])
    return result


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
    body = _ERROR_EXAMPLES[code]
    return {
        "description": _ERROR_MEANINGS[code],
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "examples": {body["code"]: {"value": {"error": body}}},
            }
        },
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
