"""An agent's tools: what staff may configure, how each is checked when saved, and the function
definition the model is offered for it.

A tool is a small JSON object on the agent (its `tools` list):

- `{"type": "end_call"}`: the model ends the call once it has said goodbye;
- `{"type": "transfer_call", "targets": {"sales": "+15550003333"}, "warm": false}`: the model
  hands the caller to a person, picking a target by name and writing a short summary;
- `{"type": "webhook", "name", "description", "parameters", "url", "timeout_s"}`: the bridge
  POSTs the (schema-checked) arguments to your system and gives the model its answer;
- `{"type": "mcp", "server_label", "server_url", "allowed_tools", "require_approval"}`: the
  service itself calls the MCP server; the bridge records what it did;
- `{"type": "python", "name"}`: an async function of yours, registered with `@tool` in one of
  the modules TOOL_MODULES names.

Running them is the bridge's (realtime.tools); this module only describes and validates, so
the admin and the API refuse a bad tool when it is saved, never during a call.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.module_loading import import_module
from jsonschema import Draft4Validator, Draft202012Validator
from jsonschema.exceptions import SchemaError

from agents.catalog import E164_PATTERN

END_CALL = "end_call"
TRANSFER_CALL = "transfer_call"
TOOL_TYPES = (END_CALL, TRANSFER_CALL, "webhook", "mcp", "python")
# The service's rule for function names.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 30.0  # a caller waits in silence while a tool runs: keep it short
MAX_TOOLS = 32
DESCRIPTION_MAX_CHARS = 1024

END_CALL_DEFINITION = {
    "type": "function",
    "name": END_CALL,
    "description": (
        "End the phone call. Call this only once the conversation is over and you have said "
        "goodbye; the caller hears your goodbye to the end, then the call is hung up."
    ),
    "parameters": {
        "type": "object",
        "properties": {"reason": {"type": "string", "description": "Why, in a few words."}},
        "required": ["reason"],
        "additionalProperties": False,
    },
}


# --- Python tools ---------------------------------------------------------------------------

ToolFunction = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class PythonTool:
    name: str
    description: str
    parameters: dict[str, Any]
    function: ToolFunction


_REGISTERED: dict[str, PythonTool] = {}


def tool(*, description: str = "", name: str = "") -> Callable[[ToolFunction], ToolFunction]:
    """Register an async function as a tool agents can use (`{"type": "python", "name"}`).

    Its typed parameters become the JSON Schema the model fills in (str, int, float, bool,
    Literal[...] and lists of those); the docstring is the description unless one is given.
    Put it in a module named by TOOL_MODULES.
    """

    def register(function: ToolFunction) -> ToolFunction:
        if not inspect.iscoroutinefunction(function):
            raise TypeError(f"tool {function.__name__} must be an async function")
        tool_name = name or function.__name__
        _REGISTERED[tool_name] = PythonTool(
            name=tool_name,
            description=description or inspect.getdoc(function) or "",
            parameters=parameters_schema(function),
            function=function,
        )
        return function

    return register


def python_tools() -> dict[str, PythonTool]:
    """The registered Python tools (TOOL_MODULES imported on first use)."""
    _import_tool_modules(tuple(getattr(settings, "TOOL_MODULES", ())))
    return dict(_REGISTERED)


@cache
def _import_tool_modules(modules: tuple[str, ...]) -> None:
    for module in modules:
        import_module(module)


_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _annotation_schema(annotation: Any) -> dict[str, Any]:
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    origin = get_origin(annotation)
    if origin is Literal:
        return {"enum": list(get_args(annotation))}
    if origin is list:
        (item,) = get_args(annotation) or (str,)
        return {"type": "array", "items": _annotation_schema(item)}
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(options) == 1:
            return _annotation_schema(options[0])
    raise TypeError(f"tool parameters must be str, int, float, bool, Literal or list: {annotation}")


def parameters_schema(function: Callable[..., Any]) -> dict[str, Any]:
    """The JSON Schema of a Python tool's keyword parameters, from its type hints."""
    hints = typing.get_type_hints(function)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.name == "call":  # the call's context, given by the bridge, not the model
            continue
        properties[parameter.name] = _annotation_schema(hints.get(parameter.name, str))
        if parameter.default is inspect.Parameter.empty:
            required.append(parameter.name)
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


# --- the shape of each tool, as JSON Schema -------------------------------------------------
# What a tool object may hold, per type: the API publishes it (OpenAPI 3.0, so no
# `propertyNames`), and validate_tools checks it first. The rules JSON Schema cannot state
# follow in code: target names, a webhook's `parameters` being a valid JSON Schema, one tool
# per name, https in production, a Python tool being registered.

_NAME = {"type": "string", "pattern": NAME_PATTERN.pattern}
_DESCRIPTION = {"type": "string", "pattern": "\\S", "maxLength": DESCRIPTION_MAX_CHARS}
_URL = {"type": "string", "format": "uri", "pattern": "^https?://[^/?#\\s]+"}
# OpenAPI 3.0's dialect (draft-4-like: a boolean exclusiveMinimum), checked with Draft4Validator.
_TIMEOUT = {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": MAX_TIMEOUT_S}


def _shape(kind: str, properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict:
    return {
        "type": "object",
        "properties": {"type": {"type": "string", "enum": [kind]}, **properties},
        "required": ["type", *required],
        "additionalProperties": False,
    }


def tools_json_schema() -> dict[str, Any]:
    """The JSON Schema of an agent's `tools` list (Python tools: those registered now)."""
    shapes = [
        _shape(END_CALL, {"description": _DESCRIPTION}),
        _shape(
            TRANSFER_CALL,
            {
                "targets": {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": {"type": "string", "pattern": E164_PATTERN},
                    "description": "Names (letters, digits, _ and -) to E.164 numbers.",
                },
                "warm": {"type": "boolean"},
                "description": _DESCRIPTION,
            },
            ("targets",),
        ),
        _shape(
            "webhook",
            {
                "name": _NAME,
                "description": _DESCRIPTION,
                "parameters": {
                    "type": "object",
                    "properties": {"type": {"type": "string", "enum": ["object"]}},
                    "required": ["type"],
                    "description": "A JSON Schema (draft 2020-12) of type object.",
                },
                "url": _URL,
                "timeout_s": _TIMEOUT,
            },
            ("name", "description", "parameters", "url"),
        ),
        _shape(
            "mcp",
            {
                "server_label": _NAME,
                "server_url": _URL,
                "allowed_tools": {"type": "array", "items": {"type": "string"}},
                "require_approval": {"type": "string", "enum": ["never"]},
            },
            ("server_label", "server_url"),
        ),
    ]
    registered = sorted(python_tools())
    if registered:
        name = {"type": "string", "enum": registered}
        shapes.append(_shape("python", {"name": name, "timeout_s": _TIMEOUT}, ("name",)))
    return {"type": "array", "maxItems": MAX_TOOLS, "items": {"oneOf": shapes}}


# --- validation -----------------------------------------------------------------------------


def _problem(index: int, message: str) -> ValidationError:
    return ValidationError(f"Tool {index + 1}: {message}", code="invalid_tool")


def _text(tool: Mapping[str, Any], key: str, index: int, *, required: bool = True) -> str:
    value = tool.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise _problem(index, f"'{key}' must be a non-empty string.")
    if len(value) > DESCRIPTION_MAX_CHARS:
        raise _problem(index, f"'{key}' has at most {DESCRIPTION_MAX_CHARS} characters.")
    return value


def _only(tool: Mapping[str, Any], allowed: set[str], index: int) -> None:
    unknown = sorted(set(tool) - allowed - {"type"})
    if unknown:
        raise _problem(index, f"unknown key(s) {', '.join(map(repr, unknown))}.")


def _timeout(tool: Mapping[str, Any], index: int) -> None:
    value = tool.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _problem(index, "'timeout_s' must be a number of seconds.")
    if not 0 < value <= MAX_TIMEOUT_S:
        raise _problem(index, f"'timeout_s' must be more than 0 and at most {MAX_TIMEOUT_S:g}.")


def _check_transfer(tool: Mapping[str, Any], index: int) -> None:
    _only(tool, {"targets", "warm", "description"}, index)
    targets = tool.get("targets")
    if not isinstance(targets, dict) or not targets:
        raise _problem(index, '\'targets\' must name at least one person: {"sales": "+1..."}.')
    for name, number in targets.items():
        if not NAME_PATTERN.match(str(name)):
            raise _problem(index, f"target name {name!r}: letters, digits, _ and - only.")
        if not isinstance(number, str) or not re.fullmatch(E164_PATTERN, number):
            raise _problem(index, f"target {name!r}: {number!r} is not an E.164 number.")
    if not isinstance(tool.get("warm", False), bool):
        raise _problem(index, "'warm' must be true or false.")


# Characters RFC 3986 never allows in a URI (an IRI's non-ASCII ones must be percent-encoded).
_NOT_IN_URIS = re.compile(r'[^\x21-\x7e]|[<>"{}|\\^`]')


def _check_url(url: Any, key: str, index: int) -> None:
    """An http(s) URI (format "uri"): ASCII, no spaces or characters URIs exclude, a host."""
    try:
        parts = urlsplit(url) if isinstance(url, str) and not _NOT_IN_URIS.search(url) else None
        _ = parts.port if parts else None  # a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise _problem(index, f"'{key}' must be an http(s) URL.")
    if parts.scheme != "https" and settings.DJANGO_ENV == "production":
        raise _problem(index, f"'{key}' must use https in production.")


def _check_webhook(tool: Mapping[str, Any], index: int) -> None:
    _only(tool, {"name", "description", "parameters", "url", "timeout_s"}, index)
    _check_function_name(tool, index)
    _text(tool, "description", index)
    _check_url(tool.get("url"), "url", index)
    _timeout(tool, index)
    parameters = tool.get("parameters")
    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        raise _problem(index, "'parameters' must be a JSON Schema of type object.")
    try:
        Draft202012Validator.check_schema(parameters)
    except SchemaError as exc:
        raise _problem(index, f"'parameters' is not a valid JSON Schema: {exc.message}") from None


def _check_function_name(tool: Mapping[str, Any], index: int) -> None:
    name = tool.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise _problem(index, "'name' must be 1-64 letters, digits, _ or -.")
    if name in (END_CALL, TRANSFER_CALL):
        raise _problem(index, f'\'{name}\' is a built-in tool: use {{"type": "{name}"}}.')


def _check_mcp(tool: Mapping[str, Any], index: int) -> None:
    _only(tool, {"server_label", "server_url", "allowed_tools", "require_approval"}, index)
    label = _text(tool, "server_label", index)
    if not NAME_PATTERN.match(label):
        raise _problem(index, "'server_label' must be letters, digits, _ or -.")
    _check_url(tool.get("server_url"), "server_url", index)
    allowed = tool.get("allowed_tools", [])
    if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
        raise _problem(index, "'allowed_tools' must be a list of tool names.")
    if tool.get("require_approval", "never") != "never":
        # Approval means a person confirms each call while the caller waits: not on a phone.
        raise _problem(index, "'require_approval' must be \"never\" on a phone call.")


def _check_python(tool: Mapping[str, Any], index: int) -> None:
    _only(tool, {"name", "timeout_s"}, index)
    _check_function_name(tool, index)
    _timeout(tool, index)
    if tool["name"] not in python_tools():
        known = ", ".join(sorted(python_tools())) or "none (set TOOL_MODULES)"
        raise _problem(index, f"no Python tool named {tool['name']!r}; registered: {known}.")


_CHECKS: dict[str, Callable[[Mapping[str, Any], int], None]] = {
    END_CALL: lambda tool, index: _only(tool, {"description"}, index),
    TRANSFER_CALL: _check_transfer,
    "webhook": _check_webhook,
    "mcp": _check_mcp,
    "python": _check_python,
}


def validate_tools(value: Any) -> None:
    """The shape first (tools_json_schema), then what JSON Schema cannot say."""
    if not isinstance(value, list):
        raise ValidationError("Tools must be a list of tool objects.", code="invalid_tools")
    if len(value) > MAX_TOOLS:
        raise ValidationError(f"An agent has at most {MAX_TOOLS} tools.", code="invalid_tools")
    names: set[str] = set()
    for index, tool in enumerate(value):
        if not isinstance(tool, dict) or tool.get("type") not in TOOL_TYPES:
            raise _problem(index, f"'type' must be one of {', '.join(TOOL_TYPES)}.")
        _CHECKS[tool["type"]](tool, index)
        _check_shape(tool, index)
        name = tool_name(tool)
        if name in names:
            raise _problem(index, f"a second tool named {name!r}.")
        names.add(name)


def _check_shape(tool: Mapping[str, Any], index: int) -> None:
    """What the published schema says of this type of tool, so the two never disagree."""
    [shape] = [
        option
        for option in tools_json_schema()["items"]["oneOf"]
        if option["properties"]["type"]["enum"] == [tool["type"]]
    ]
    error = next(iter(Draft4Validator(shape).iter_errors(tool)), None)
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path)
        raise _problem(index, f"{where}: {error.message}" if where else error.message)


# --- what the model is offered --------------------------------------------------------------


def tool_name(tool: Mapping[str, Any]) -> str:
    """The name the model calls the tool by (an MCP server's label)."""
    if tool["type"] in (END_CALL, TRANSFER_CALL):
        return str(tool["type"])
    if tool["type"] == "mcp":
        return str(tool["server_label"])
    return str(tool["name"])


def session_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """The definition the session offers the model for one configured tool."""
    kind = tool["type"]
    if kind == END_CALL:
        return {**END_CALL_DEFINITION, "description": tool.get("description")
                or END_CALL_DEFINITION["description"]}  # fmt: skip
    if kind == TRANSFER_CALL:
        return _transfer_definition(tool)
    if kind == "mcp":
        return {
            "type": "mcp",
            "server_label": tool["server_label"],
            "server_url": tool["server_url"],
            **({"allowed_tools": list(tool["allowed_tools"])} if tool.get("allowed_tools") else {}),
            "require_approval": "never",
        }
    if kind == "python":
        registered = python_tools()[tool["name"]]
        return _function(registered.name, registered.description, registered.parameters)
    return _function(tool["name"], tool["description"], tool["parameters"])


def _function(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "name": name, "description": description, "parameters": parameters}


def _transfer_definition(tool: Mapping[str, Any]) -> dict[str, Any]:
    targets = sorted(tool["targets"])
    description = tool.get("description") or (
        "Transfer the caller to a person when they ask for one or you cannot help. Say that "
        "you are transferring them first."
    )
    return _function(
        TRANSFER_CALL,
        f"{description} People you can transfer to: {', '.join(targets)}.",
        {
            "type": "object",
            "properties": {
                "target": {"type": "string", "enum": targets},
                "summary": {
                    "type": "string",
                    "description": "One or two sentences for the person taking the call: who "
                    "is calling and what they need.",
                },
            },
            "required": ["target", "summary"],
            "additionalProperties": False,
        },
    )
