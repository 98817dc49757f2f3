"""The tool runner: what a webhook or Python tool does when the model calls it during a call.

The bridge runs each call as a task (caller audio keeps flowing), bounded by the tool's
timeout; whatever happens (bad arguments, an HTTP error, a timeout, an exception) becomes the
tool's output for the model, never the end of the call. end_call and transfer_call act on the
call itself and are the bridge's own (realtime.bridge).

A webhook receives `{"call": {...}, "tool": name, "arguments": {...}}` as JSON, signed in
`X-Bridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with
TOOL_WEBHOOK_SECRET (README, "Tools", shows the check). Redirects are not followed, the answer
is read up to TOOL_RESPONSE_MAX_BYTES, and it must come within the tool's timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import httpx
import orjson
from django.conf import settings
from jsonschema import Draft202012Validator

from agents.tools import DEFAULT_TIMEOUT_S, python_tools

Status = Literal["ok", "error", "timeout"]
SIGNATURE_HEADER = "X-Bridge-Signature"
# What the model is given of an answer: enough for any sensible tool, bounded for the context.
OUTPUT_MAX_CHARS = 4000


@dataclass(frozen=True)
class CallInfo:
    """What a tool is told about the call it runs in."""

    id: str
    call_sid: str
    caller: str
    agent: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class ToolOutcome:
    output: str
    status: Status


class ToolError(Exception):
    """The tool failed; str() is what the model is told."""


def error_output(message: str) -> str:
    return orjson.dumps({"error": message}).decode()


def arguments_problem(arguments: Mapping[str, Any], schema: Mapping[str, Any]) -> str | None:
    """Why the arguments do not fit the tool's JSON Schema (the first problem), or None."""
    error = next(iter(Draft202012Validator(schema).iter_errors(arguments)), None)
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


async def run_tool(
    tool: Mapping[str, Any], arguments: dict[str, Any], call: CallInfo
) -> ToolOutcome:
    """Run a webhook or Python tool within its timeout; every failure is an outcome."""
    timeout_s = float(tool.get("timeout_s", DEFAULT_TIMEOUT_S))
    try:
        async with asyncio.timeout(timeout_s):
            if tool["type"] == "webhook":
                output = await _webhook(tool, arguments, call)
            else:
                output = await _python(tool, arguments, call)
    except TimeoutError:
        late = f"the tool did not answer within {timeout_s:g} s"
        return ToolOutcome(error_output(late), "timeout")
    except ToolError as exc:
        return ToolOutcome(error_output(str(exc)), "error")
    except Exception as exc:  # a bug in a Python tool must not end the call
        return ToolOutcome(error_output(f"the tool failed: {type(exc).__name__}: {exc}"), "error")
    return ToolOutcome(output[:OUTPUT_MAX_CHARS], "ok")


async def _webhook(tool: Mapping[str, Any], arguments: dict[str, Any], call: CallInfo) -> str:
    problem = arguments_problem(arguments, tool["parameters"])
    if problem is not None:
        raise ToolError(f"invalid arguments: {problem}")  # they never reach the webhook
    secret = settings.TOOL_WEBHOOK_SECRET
    if not secret:
        raise ToolError("webhook tools are not set up on this server (TOOL_WEBHOOK_SECRET)")
    body = orjson.dumps({"call": call.as_dict(), "tool": tool["name"], "arguments": arguments})
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "voice-bridge-tools/1",
        SIGNATURE_HEADER: webhook_signature(secret, int(time.time()), body),
    }
    async with (
        # The tool's timeout bounds the whole exchange (run_tool); no per-read timeout here.
        httpx.AsyncClient(follow_redirects=False, timeout=None) as client,  # noqa: S113
        client.stream("POST", tool["url"], content=body, headers=headers) as response,
    ):
        answer = await _read_capped(response)
    if response.is_redirect:
        status = response.status_code
        raise ToolError(f"the webhook redirected ({status}); redirects are not followed")
    if response.status_code >= 400:
        raise ToolError(f"the webhook answered HTTP {response.status_code}: {answer[:300]}")
    return answer


async def _read_capped(response: httpx.Response) -> str:
    limit = settings.TOOL_RESPONSE_MAX_BYTES
    received = bytearray()
    async for chunk in response.aiter_bytes():
        received += chunk
        if len(received) > limit:
            raise ToolError(f"the webhook's answer is over {limit} bytes")
    text = received.decode("utf-8", "replace")
    try:  # JSON is passed on compact; anything else as the text it is
        return orjson.dumps(orjson.loads(received)).decode()
    except orjson.JSONDecodeError:
        return text


async def _python(tool: Mapping[str, Any], arguments: dict[str, Any], call: CallInfo) -> str:
    registered = python_tools().get(tool["name"])
    if registered is None:
        raise ToolError(f"no Python tool named {tool['name']!r} is registered")
    problem = arguments_problem(arguments, registered.parameters)
    if problem is not None:
        raise ToolError(f"invalid arguments: {problem}")
    if "call" in inspect.signature(registered.function).parameters:
        result = await registered.function(**arguments, call=call)
    else:
        result = await registered.function(**arguments)
    return result if isinstance(result, str) else orjson.dumps(result).decode()
