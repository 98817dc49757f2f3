"""An agent's tools are checked when saved, and offered to the model in the service's shape."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from openai.types.realtime import RealtimeClientEvent
from pydantic import TypeAdapter
from support import unknown_keys

from agents.tools import session_tool, validate_tools

WEBHOOK = {
    "type": "webhook",
    "name": "lookup_order",
    "description": "Find an order by its number.",
    "parameters": {"type": "object", "properties": {"number": {"type": "string"}}},
    "url": "https://orders.example.com/hook",
    "timeout_s": 5,
}
VALID = [
    {"type": "end_call"},
    {"type": "transfer_call", "targets": {"sales": "+15550003333", "billing": "+15550004444"},
     "warm": True},
    WEBHOOK,
    {"type": "mcp", "server_label": "crm", "server_url": "https://crm.example.com/mcp",
     "allowed_tools": ["find_customer"], "require_approval": "never"},
]  # fmt: skip


def test_every_kind_of_tool_validates() -> None:
    validate_tools(VALID)
    validate_tools([])


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ("end_call", "must be a list"),
        ([{"type": "teleport"}], "Tool 1: 'type' must be one of"),
        ([{"type": "end_call", "colour": "red"}], "unknown key(s) 'colour'"),
        ([{"type": "transfer_call", "targets": {}}], "at least one person"),
        ([{"type": "transfer_call", "targets": {"sales": "5550003333"}}], "not an E.164 number"),
        ([{"type": "transfer_call", "targets": {"sales desk": "+15550003333"}}], "target name"),
        ([{**WEBHOOK, "name": "end_call"}], "built-in tool"),
        ([{**WEBHOOK, "name": "has space"}], "'name' must be"),
        ([{**WEBHOOK, "url": "ftp://x"}], "http(s) URL"),
        ([{**WEBHOOK, "timeout_s": 0}], "'timeout_s'"),
        ([{**WEBHOOK, "timeout_s": 300}], "at most 30"),
        ([{**WEBHOOK, "parameters": {"type": "string"}}], "type object"),
        ([{**WEBHOOK, "parameters": {"type": "object", "required": "x"}}], "valid JSON Schema"),
        ([WEBHOOK, {**WEBHOOK, "description": "again"}], "Tool 2: a second tool named"),
        ([{**VALID[3], "require_approval": "always"}], "never"),
        ([{"type": "python", "name": "not_registered"}], "no Python tool named"),
    ],
)
def test_a_bad_tool_is_refused_naming_it(tools, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        validate_tools(tools)
    assert message in " ".join(refused.value.messages)


def test_webhooks_use_https_in_production(settings) -> None:
    settings.DJANGO_ENV = "production"
    with pytest.raises(ValidationError, match="https in production"):
        validate_tools([{**WEBHOOK, "url": "http://orders.example.com/hook"}])


def test_the_model_is_offered_each_tool_in_the_services_shape() -> None:
    definitions = [session_tool(tool) for tool in VALID]
    event = {"type": "session.update", "session": {"type": "realtime", "tools": definitions}}
    session = TypeAdapter(RealtimeClientEvent).validate_python(event).session
    assert unknown_keys(session) == []
    end_call, transfer, webhook, mcp = definitions
    assert end_call["parameters"]["required"] == ["reason"]
    assert transfer["parameters"]["properties"]["target"]["enum"] == ["billing", "sales"]
    assert "billing, sales" in transfer["description"]
    assert (webhook["name"], webhook["parameters"]) == ("lookup_order", WEBHOOK["parameters"])
    assert "url" not in webhook  # where it goes is the bridge's business, not the model's
    assert (mcp["type"], mcp["server_label"], mcp["require_approval"]) == ("mcp", "crm", "never")
