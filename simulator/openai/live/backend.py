"""The Responses backend a GPT-Live session delegates to: the streaming Responses events it
sends, nested in `response.event`, for a turn answered with function calls and for the answer
once the client has sent their outputs.

Each is a Responses API stream event (`openai.types.responses.ResponseStreamEvent`), numbered
by `sequence_number` within its response. As `ResponseEvent.event` says, the lifecycle
snapshots (`response.created`, `.in_progress`, `.completed`) omit the input and clear
instructions, tools and output; the items come in the granular events. The backend's tokens
(Live bills them on top of the session's seconds) are in `response.completed`'s `usage`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from simulator.openai import protocol as rt
from simulator.openai.tools import PlannedCall

# Function call arguments and text stream in deltas of about this many characters.
DELTA_CHARS = 24


@dataclass
class BackendResponse:
    """One Responses response the backend streams for a delegation."""

    delegation_id: str
    response_id: str
    model: str
    created_at: int = field(default_factory=lambda: int(time.time()))
    sequence: int = 0

    def numbered(self, event: dict[str, Any]) -> dict[str, Any]:
        self.sequence += 1
        return {**event, "sequence_number": self.sequence}


@dataclass(frozen=True)
class Tokens:
    """A backend response's token counts; `cached` is part of `input`."""

    input: int
    cached: int
    output: int

    def usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input,
            "input_tokens_details": {"cached_tokens": self.cached, "cache_write_tokens": 0},
            "output_tokens": self.output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input + self.output,
        }


def _snapshot(response: BackendResponse, status: str, tokens: Tokens | None) -> dict[str, Any]:
    return {
        "id": response.response_id,
        "object": "response",
        "created_at": response.created_at,
        "model": response.model,
        "status": status,
        "instructions": None,
        "output": [],
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "usage": tokens.usage() if tokens is not None else None,
    }


def _opening(response: BackendResponse) -> list[dict[str, Any]]:
    return [
        response.numbered(
            {"type": "response.created", "response": _snapshot(response, "in_progress", None)}
        ),
        response.numbered(
            {"type": "response.in_progress", "response": _snapshot(response, "in_progress", None)}
        ),
    ]


def _completed(response: BackendResponse, tokens: Tokens) -> dict[str, Any]:
    snapshot = _snapshot(response, "completed", tokens)
    snapshot["completed_at"] = int(time.time())
    return response.numbered({"type": "response.completed", "response": snapshot})


def function_call_item(call: PlannedCall, *, done: bool) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": call.item_id,
        "call_id": call.call_id,
        "name": call.name,
        "arguments": call.arguments if done else "",
        "status": "completed" if done else "in_progress",
    }


def function_call_events(
    response: BackendResponse, calls: list[PlannedCall], tokens: Tokens
) -> list[dict[str, Any]]:
    """A response that calls functions: each call's item, its arguments in deltas, the item
    done (a `function_call`, what the client looks for), then response.completed."""
    events = _opening(response)
    for index, call in enumerate(calls):
        ids = {"item_id": call.item_id, "output_index": index}
        events.append(
            response.numbered(
                {
                    "type": "response.output_item.added",
                    "output_index": index,
                    "item": function_call_item(call, done=False),
                }
            )
        )
        for delta in chunks(call.arguments):
            events.append(
                response.numbered(
                    {"type": "response.function_call_arguments.delta", **ids, "delta": delta}
                )
            )
        events.append(
            response.numbered(
                {
                    "type": "response.function_call_arguments.done",
                    **ids,
                    "arguments": call.arguments,
                }
            )
        )
        events.append(
            response.numbered(
                {
                    "type": "response.output_item.done",
                    "output_index": index,
                    "item": function_call_item(call, done=True),
                }
            )
        )
    events.append(_completed(response, tokens))
    return events


def message_events(response: BackendResponse, text: str, tokens: Tokens) -> list[dict[str, Any]]:
    """A response that answers in text (what the Live model then says): the message item,
    its output_text part in deltas, everything done, then response.completed."""
    item_id = rt.new_id("msg")
    ids = {"item_id": item_id, "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    done_part = {**part, "text": text}
    message = {"type": "message", "id": item_id, "role": "assistant"}
    events = _opening(response)
    events.append(
        response.numbered(
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {**message, "status": "in_progress", "content": []},
            }
        )
    )
    events.append(response.numbered({"type": "response.content_part.added", **ids, "part": part}))
    for delta in chunks(text):
        events.append(
            response.numbered(
                {"type": "response.output_text.delta", **ids, "delta": delta, "logprobs": []}
            )
        )
    events += [
        response.numbered(
            {"type": "response.output_text.done", **ids, "text": text, "logprobs": []}
        ),
        response.numbered({"type": "response.content_part.done", **ids, "part": done_part}),
        response.numbered(
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {**message, "status": "completed", "content": [done_part]},
            }
        ),
        _completed(response, tokens),
    ]
    return events


def chunks(text: str, size: int = DELTA_CHARS) -> list[str]:
    """Deltas: the text in pieces that join back to it."""
    return [text[start : start + size] for start in range(0, len(text), size)] or [""]
