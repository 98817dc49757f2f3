"""The tool scenarios of `manage.py simulate_call --scenario end_call|transfer|webhook`: a demo
agent per scenario (made, or brought up to date, in the development database), and the small
loopback JSON server the webhook scenario's tool calls.

With no script, the realtime stand-in's default policy calls each tool the session offers once,
ending tools last (simulator.openai.tools), so each demo agent offers exactly the tool its
scenario shows: the caller's first turn is answered by a call of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.models import Agent
from agents.selectors import agent_by_slug
from agents.services import agent_create, agent_update

DEFAULT_WEBHOOK_PORT = 8767
WEBHOOK_PATH = "/orders"
# What the demo webhook answers: what the model then hears as the tool's output.
WEBHOOK_ANSWER = {"order": "427", "status": "shipped", "arrives": "Friday"}
MAX_REQUEST_BYTES = 64 * 1024


@dataclass(frozen=True)
class Scenario:
    name: str
    slug: str
    agent_name: str
    number: str
    instructions: str
    tools: Callable[[str], list[dict[str, Any]]]  # the webhook URL -> the agent's tools
    shows: str


def _webhook_tools(url: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "webhook",
            "name": "check_order",
            "description": "Look an order up by its number: where it is, when it arrives.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_number": {
                        "type": "string",
                        "pattern": "^[0-9]+$",
                        "examples": ["427"],
                        "description": "The order number, digits only.",
                    }
                },
                "required": ["order_number"],
                "additionalProperties": False,
            },
            "url": url,
            "timeout_s": 5,
        }
    ]


SCENARIOS: dict[str, Scenario] = {
    "end_call": Scenario(
        name="end_call",
        slug="demo-end-call",
        agent_name="Demo: the agent hangs up",
        number="+15550001001",
        instructions="You are a demo agent. When the caller is done, say goodbye and end the call.",
        tools=lambda url: [{"type": "end_call"}],
        shows="the agent says goodbye, then hangs up through Twilio's REST API",
    ),
    "transfer": Scenario(
        name="transfer",
        slug="demo-transfer",
        agent_name="Demo: the agent transfers to a person",
        number="+15550001002",
        instructions="You are a demo agent. Transfer callers who need support to a person.",
        tools=lambda url: [
            {"type": "transfer_call", "targets": {"support": "+15550003333"}, "warm": True}
        ],
        shows="the call is redirected with <Dial>; the person hears a summary first (warm)",
    ),
    "webhook": Scenario(
        name="webhook",
        slug="demo-webhook",
        agent_name="Demo: the agent calls your system",
        number="+15550001003",
        instructions="You are a demo agent. Check orders with the check_order tool.",
        tools=_webhook_tools,
        shows="the agent's tool POSTs to your system (signed) and the model hears its answer",
    ),
}


def ensure_demo_agent(scenario: Scenario, *, webhook_url: str) -> Agent:
    """The scenario's demo agent, created or brought up to date (its tools and number)."""
    fields = {
        "name": scenario.agent_name,
        "instructions": scenario.instructions,
        "greeting": "Hello, this is the demo agent.",
        "tools": scenario.tools(webhook_url),
        "is_active": True,
    }
    agent = agent_by_slug(slug=scenario.slug)
    if agent is None:
        return agent_create(
            fields={**fields, "slug": scenario.slug}, phone_numbers=[scenario.number]
        )
    changed = {name: value for name, value in fields.items() if getattr(agent, name) != value}
    numbers = list(agent.phone_numbers.values_list("number", flat=True))
    if not changed and scenario.number in numbers:
        return agent
    phone_numbers = None if scenario.number in numbers else [*numbers, scenario.number]
    return agent_update(agent=agent, fields=changed, phone_numbers=phone_numbers)


# --- the demo webhook: a loopback JSON server for the duration of the call --------------------


@dataclass(frozen=True)
class ReceivedWebhook:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class WebhookServer:
    """Answers every POST with WEBHOOK_ANSWER and keeps each request (its signature header)."""

    port: int = 0
    requests: list[ReceivedWebhook] = field(default_factory=list)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    async def __aenter__(self) -> WebhookServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines if line)
                }
                length = min(int(headers.get("content-length", "0")), MAX_REQUEST_BYTES)
                body = await reader.readexactly(length)
            method, path, *_ = request_line.split(" ")
            self.requests.append(ReceivedWebhook(method, path, headers, body))
            payload = orjson.dumps(WEBHOOK_ANSWER)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
