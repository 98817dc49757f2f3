"""When and how the realtime stand-in calls tools: scripted calls, the default policy, and the
arguments it makes up from a tool's JSON Schema.

**Scripted calls.** `RealtimeStandIn(tool_calls=[ScriptedToolCall(...), ...])` calls exactly
the tools listed, each once: at the caller's N-th turn on the connection (`at_turn`, from 1) or
at the first turn in which the caller says a phrase (`when_caller_says`, case-insensitive, in
the stand-in's scripted caller line for that turn). Calls due at the same turn go out in one
response (several calls in one response). A scripted tool the session does not offer is not
called (a model cannot call it): it is listed in the connection's `skipped_tool_calls`.
`tool_calls=()` never calls a tool.

**The default policy** (`tool_calls=None`, the default): on each caller turn, if the session
offers function tools not yet called on this connection, the reply calls the next one in the
order offered, with `end_call` and `transfer_call` kept for last (they end the call): first
every other function tool, one per turn, then `transfer_call`, then `end_call`. Up to
`calls_per_turn` (default 1) non-ending tools go out in one response; an ending tool always goes
alone. Before an ending tool the reply says a line (`DEFAULT_SAY_FIRST`: "Thank you for calling.
Goodbye!" before end_call, "Let me transfer you now." before transfer_call); other calls say
nothing first. `tool_choice` is honoured: "none" calls nothing, a named function is called on
every turn, "required" starts over from the first tool once every tool was called, "auto"
(the default) is the policy above. The default policy never calls an MCP server's tools (only a
script does). A turn answered with tool calls does not use up a scripted reply.

**Arguments** are given by the script, or made from the tool's JSON Schema: required properties
only; for each, `const`, else the first `enum` value, else the first of `examples`, else
`default`, else by type: a string ("example", or a date / e-mail / URL for those formats,
padded to `minLength`), 1 for numbers and integers (or `minimum` if larger), true for
booleans, an object of its own required properties, a one-item array.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

END_CALL = "end_call"
TRANSFER_CALL = "transfer_call"
# The ending tools, in the order the default policy keeps them for last.
ENDING_TOOLS = (TRANSFER_CALL, END_CALL)
DEFAULT_SAY_FIRST = {
    END_CALL: "Thank you for calling. Goodbye!",
    TRANSFER_CALL: "Let me transfer you now.",
}
DEFAULT_TOOL_REPLY = "Thanks, I have checked that for you."
DEFAULT_MCP_OUTPUT = '{"ok": true}'
_FORMAT_EXAMPLES = {
    "date": "2026-01-01",
    "date-time": "2026-01-01T09:00:00Z",
    "time": "09:00:00",
    "email": "caller@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


@dataclass(frozen=True)
class ScriptedToolCall:
    """A tool the stand-in calls at a caller turn (see the module's docstring).

    `arguments` are made from the tool's schema when not given. `say_first` is said in the same
    response before the call (a goodbye before end_call); `reply_after` is what the model says
    once the client has sent the call's output and asked for a response (the stand-in's
    `tool_reply` otherwise). An MCP server's tool names its `server_label`: the service calls
    it itself and the reply goes on in the same response; `output` is what the server answered,
    or `error` the message it failed with.
    """

    name: str
    arguments: Mapping[str, Any] | None = None
    at_turn: int | None = None
    when_caller_says: str | None = None
    say_first: str | None = None
    reply_after: str | None = None
    server_label: str | None = None
    output: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if (self.at_turn is None) == (self.when_caller_says is None):
            raise ValueError("a scripted tool call needs exactly one of at_turn, when_caller_says")
        if self.at_turn is not None and self.at_turn < 1:
            raise ValueError("at_turn counts the caller's turns from 1")
        if self.server_label is None and (self.output is not None or self.error is not None):
            raise ValueError("output and error are an MCP call's (give server_label)")

    def due(self, turn: int, heard: str) -> bool:
        """Due at caller turn `turn` (from 1), in which the caller said `heard`."""
        if self.at_turn is not None:
            return turn == self.at_turn
        return str(self.when_caller_says).lower() in heard.lower()


def function_tools(tools: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The function tools offered, in order (a beta tool may leave out its type)."""
    return [tool for tool in tools if tool.get("type", "function") == "function"]


def mcp_tool(tools: Sequence[Mapping[str, Any]], server_label: str) -> Mapping[str, Any] | None:
    for tool in tools:
        if tool.get("type") == "mcp" and tool.get("server_label") == server_label:
            return tool
    return None


def mcp_allows(tool: Mapping[str, Any], name: str) -> bool:
    """Whether an MCP server's `allowed_tools` (a list or a filter) lets the model call `name`."""
    allowed = tool.get("allowed_tools")
    if isinstance(allowed, list):
        return name in allowed
    if isinstance(allowed, Mapping) and isinstance(allowed.get("tool_names"), list):
        return name in allowed["tool_names"]
    return True


def default_choice(
    tools: Sequence[Mapping[str, Any]],
    called: set[str],
    tool_choice: Any = "auto",
    *,
    calls_per_turn: int = 1,
) -> list[Mapping[str, Any]]:
    """The function tools the default policy calls this turn (none: an empty list)."""
    functions = function_tools(tools)
    if tool_choice == "none" or not functions:
        return []
    if isinstance(tool_choice, Mapping) and tool_choice.get("type") == "function":
        forced = [tool for tool in functions if tool.get("name") == tool_choice.get("name")]
        return forced[:1]
    ordered = _ending_last(functions)
    remaining = [tool for tool in ordered if tool.get("name") not in called]
    if not remaining and tool_choice == "required":
        remaining = ordered
    if not remaining:
        return []
    if remaining[0].get("name") in ENDING_TOOLS:
        return remaining[:1]  # an ending tool goes alone
    ordinary = [tool for tool in remaining if tool.get("name") not in ENDING_TOOLS]
    return ordinary[: max(1, calls_per_turn)]


def _ending_last(functions: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    ordinary = [tool for tool in functions if tool.get("name") not in ENDING_TOOLS]
    ending = sorted(
        (tool for tool in functions if tool.get("name") in ENDING_TOOLS),
        key=lambda tool: ENDING_TOOLS.index(str(tool.get("name"))),
    )
    return [*ordinary, *ending]


def arguments_for(schema: Any) -> dict[str, Any]:
    """Arguments for a tool with parameters `schema` (see the module's docstring)."""
    value = example_value(schema if isinstance(schema, Mapping) else {"type": "object"})
    return value if isinstance(value, dict) else {}


def example_value(schema: Mapping[str, Any]) -> Any:
    """One value valid for `schema`, as far as a stand-in needs (required properties only)."""
    if "const" in schema:
        return schema["const"]
    for key in ("enum", "examples"):
        values = schema.get(key)
        if isinstance(values, list) and values:
            return values[0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options and isinstance(options[0], Mapping):
            return example_value(options[0])
    return _typed_example(schema, _schema_type(schema))


def _schema_type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in schema:
        return "object"
    return str(kind or "string")


def _typed_example(schema: Mapping[str, Any], kind: str) -> Any:
    if kind == "object":
        properties = schema.get("properties") or {}
        required = [name for name in schema.get("required") or [] if name in properties]
        return {name: example_value(properties[name]) for name in required}
    if kind == "array":
        items = schema.get("items")
        return [example_value(items)] if isinstance(items, Mapping) else []
    if kind in ("integer", "number"):
        minimum = schema.get("minimum")
        value = max(1, minimum) if isinstance(minimum, int | float) else 1
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = _FORMAT_EXAMPLES.get(str(schema.get("format")), "example")
    min_length = schema.get("minLength")
    if isinstance(min_length, int) and len(text) < min_length:
        text = text.ljust(min_length, "x")
    return text


# --- a response's tool calls ------------------------------------------------------------------


@dataclass
class PlannedCall:
    """One tool call a response makes: a function (the client runs it) or an MCP server's
    tool (`server_label`: the service runs it)."""

    name: str
    arguments: str  # JSON text, as the model writes it
    call_id: str
    item_id: str
    server_label: str | None = None
    output: str | None = None
    error: str | None = None


@dataclass
class ToolPlan:
    """The tool calls answering one caller turn, and what is said around them."""

    functions: list[PlannedCall]
    mcp: list[PlannedCall]
    say_first: str | None = None
    # After the client's outputs (functions), or in the same response after the MCP calls.
    reply_after: str | None = None
