"""The tool runner against real HTTP servers on loopback: webhook tools are signed, checked,
bounded; Python tools are typed; every failure is an output for the model, never an error."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

import orjson
import pytest

from agents.tools import parameters_schema, python_tools, tool
from realtime.tools import CallInfo, run_tool

SECRET = "tool-webhook-secret-for-tests"
CALL = CallInfo(id="c-1", call_sid="CA" + "1" * 32, caller="+14155550123", agent="sales")
ORDER_SCHEMA = {
    "type": "object",
    "properties": {"number": {"type": "string", "pattern": "^[0-9]+$"}},
    "required": ["number"],
    "additionalProperties": False,
}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookServer:
    """A tiny HTTP/1.1 server: records each request, answers with `respond(body)`."""

    respond: Callable[[bytes], tuple[int, dict[str, str], bytes]]
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        pairs = (line.partition(":") for line in lines if line)
        headers = {name.lower(): value.strip() for name, _, value in pairs}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.received.append(Received(headers, body))
        await asyncio.sleep(self.delay_s)
        status, extra, answer = self.respond(body)
        head_out = f"HTTP/1.1 {status} X\r\nContent-Length: {len(answer)}\r\nConnection: close\r\n"
        head_out += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
        writer.write(head_out.encode() + b"\r\n" + answer)
        await writer.drain()
        writer.close()


@pytest.fixture
async def webhook() -> AsyncIterator[Callable[..., WebhookServer]]:
    servers: list[asyncio.Server] = []

    async def start(respond, delay_s: float = 0.0) -> WebhookServer:
        hook = WebhookServer(respond, delay_s)
        server = await asyncio.start_server(hook.handle, "127.0.0.1", 0)
        servers.append(server)
        hook.port = server.sockets[0].getsockname()[1]
        return hook

    yield start
    for server in servers:
        server.close()


@pytest.fixture(autouse=True)
def _secret(settings) -> None:
    settings.TOOL_WEBHOOK_SECRET = SECRET
    settings.TOOL_RESPONSE_MAX_BYTES = 1024


def webhook_tool(url: str, **overrides) -> dict:
    return {"type": "webhook", "name": "lookup_order", "description": "Find an order.",
            "parameters": ORDER_SCHEMA, "url": url, "timeout_s": 2, **overrides}  # fmt: skip


def signature_ok(header: str, body: bytes) -> bool:
    """The receiver's check, as the README shows it."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256)
    fresh = abs(time.time() - int(fields["t"])) < 300
    return fresh and hmac.compare_digest(expected.hexdigest(), fields["v1"])


async def test_a_webhook_gets_signed_json_and_its_answer_reaches_the_model(webhook) -> None:
    hook = await webhook(lambda body: (200, {"Content-Type": "application/json"},
                                       b'{ "status" : "shipped" }'))  # fmt: skip
    outcome = await run_tool(webhook_tool(hook.url), {"number": "427"}, CALL)
    assert (outcome.status, outcome.output) == ("ok", '{"status":"shipped"}')
    [request] = hook.received
    assert orjson.loads(request.body) == {
        "call": {"id": "c-1", "call_sid": CALL.call_sid, "caller": "+14155550123",
                 "agent": "sales"},
        "tool": "lookup_order",
        "arguments": {"number": "427"},
    }  # fmt: skip
    assert request.headers["content-type"] == "application/json"
    assert signature_ok(request.headers["x-bridge-signature"], request.body)
    assert not signature_ok(request.headers["x-bridge-signature"], request.body + b" ")


async def test_invalid_arguments_never_reach_the_webhook(webhook) -> None:
    hook = await webhook(lambda body: (200, {}, b"ok"))
    for arguments in ({"number": "four"}, {}, {"number": "1", "extra": True}):
        outcome = await run_tool(webhook_tool(hook.url), arguments, CALL)
        assert outcome.status == "error"
        assert "invalid arguments" in json.loads(outcome.output)["error"]
    assert hook.received == []


async def test_a_slow_webhook_times_out_into_an_error_for_the_model(webhook) -> None:
    hook = await webhook(lambda body: (200, {}, b"late"), delay_s=1.5)
    started = time.monotonic()
    outcome = await run_tool(webhook_tool(hook.url, timeout_s=0.3), {"number": "1"}, CALL)
    assert time.monotonic() - started < 1.0
    assert outcome.status == "timeout"
    assert "0.3 s" in json.loads(outcome.output)["error"]


@pytest.mark.parametrize(
    ("status", "headers", "body", "message"),
    [
        (500, {}, b"boom", "HTTP 500: boom"),
        (302, {"Location": "http://127.0.0.1:1/elsewhere"}, b"", "redirects are not followed"),
        (200, {}, b"x" * 2000, "over 1024 bytes"),
    ],
)
async def test_webhook_failures_are_outputs(webhook, status, headers, body, message) -> None:
    hook = await webhook(lambda _: (status, headers, body))
    outcome = await run_tool(webhook_tool(hook.url), {"number": "1"}, CALL)
    assert outcome.status == "error"
    assert message in json.loads(outcome.output)["error"]


async def test_plain_text_answers_pass_as_text(webhook) -> None:
    text = "Shipped \u2713".encode()
    hook = await webhook(lambda body: (200, {"Content-Type": "text/plain"}, text))
    outcome = await run_tool(webhook_tool(hook.url), {"number": "1"}, CALL)
    assert outcome.output == "Shipped \u2713"


async def test_without_a_signing_secret_webhooks_refuse_to_run(webhook, settings) -> None:
    settings.TOOL_WEBHOOK_SECRET = ""
    hook = await webhook(lambda body: (200, {}, b"ok"))
    outcome = await run_tool(webhook_tool(hook.url), {"number": "1"}, CALL)
    assert outcome.status == "error" and "TOOL_WEBHOOK_SECRET" in outcome.output
    assert hook.received == []


async def test_a_dead_webhook_is_an_error_not_an_exception() -> None:
    outcome = await run_tool(webhook_tool("http://127.0.0.1:9/hook"), {"number": "1"}, CALL)
    assert outcome.status == "error"


# --- Python tools ---------------------------------------------------------------------------


@tool(description="Look up the weather.")
async def weather(city: str, unit: Literal["c", "f"] = "c", days: int = 1) -> dict:
    return {"city": city, "unit": unit, "days": days}


@tool()
async def whoami(call: CallInfo) -> str:
    """Who is calling."""
    return call.caller


@tool()
async def broken() -> str:
    """Always fails."""
    raise RuntimeError("database is down")


def test_typed_parameters_become_the_schema_the_model_fills_in() -> None:
    assert parameters_schema(weather) == {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"enum": ["c", "f"]},
            "days": {"type": "integer"},
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    assert python_tools()["whoami"].description == "Who is calling."
    assert python_tools()["whoami"].parameters["properties"] == {}  # `call` is the bridge's


async def test_python_tools_run_with_checked_arguments_and_the_call() -> None:
    outcome = await run_tool({"type": "python", "name": "weather"}, {"city": "Oslo"}, CALL)
    assert json.loads(outcome.output) == {"city": "Oslo", "unit": "c", "days": 1}
    outcome = await run_tool({"type": "python", "name": "whoami"}, {}, CALL)
    assert outcome.output == "+14155550123"
    outcome = await run_tool({"type": "python", "name": "weather"}, {"unit": "k"}, CALL)
    assert outcome.status == "error" and "invalid arguments" in outcome.output
    outcome = await run_tool({"type": "python", "name": "broken"}, {}, CALL)
    assert outcome.status == "error" and "database is down" in outcome.output
