"""Schemathesis hooks of the contract run (contract/run.py sets SCHEMATHESIS_HOOKS=contract.hooks).

Two things the schema alone cannot give the fuzzer:

- The seeded ids. A random uuid or slug only ever meets a 404; half the generated requests to
  /api/calls/{id}... and /api/agents/{slug} use the seeded call and agent instead, so detail
  pages, the recording, notes and agent writes are exercised on real rows.
- The one rule between query parameters that OpenAPI cannot state (parameters are described
  one by one): a period's end is not before its start, and an analytics period has at most
  selectors.MAX_BUCKETS buckets. Schema-valid requests breaking it are refused with a 400 that
  names endDate or interval; positive requests are made to respect it, by asking for the
  start's own day. Negative requests are left alone.

- The rules of an agent's tools that JSON Schema (OpenAPI 3.0's) cannot state: a transfer
  target's name is a word (letters, digits, _ and -; OpenAPI 3.0 has no `propertyNames`), a
  webhook's `parameters` is itself a valid JSON Schema, and no two tools share a name. A
  positive request keeps its generated tools, made to follow these.

- What makes an outbound call (POST /api/calls) placeable beyond its shape: the agent is one
  that exists (the seeded one), `from` is one of our numbers (the run's TWILIO_PHONE_NUMBER),
  and context keys are placeholder names (OpenAPI 3.0 has no `propertyNames`). A positive
  request is made to follow these.

Nothing else is adjusted: every other refusal of a schema-valid request is a finding.
"""

from __future__ import annotations

import os
import re
from typing import Any

import schemathesis
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

# The operations whose query is a period (startDate/endDate), and whether a missing bound is
# "now" (analytics reports up to now by default; the call list is unbounded).
PERIOD_OPERATIONS = {"/api/analytics": True, "/api/calls": False}


@schemathesis.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """The generated path, or the same with the seeded call's id / agent's slug."""
    seeded = {
        "id": os.environ.get("CONTRACT_CALL_ID"),
        "slug": os.environ.get("CONTRACT_AGENT_SLUG"),
    }
    present = path_parameters or {}
    swaps = {name: value for name, value in seeded.items() if value and name in present}
    if not swaps:
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, {**present, **swaps}])


def _is_positive(case: Any) -> bool:
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode.is_positive


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    return _outbound_call_fixed(_period_fixed(_tools_beyond_the_schema(case)))


def _period_fixed(case: Any) -> Any:
    """A positive request for a period asks for the start's own day: a valid period, whatever
    the two generated bounds were (a date as endDate is that whole day; a date-time, that
    instant)."""
    path = case.operation.path
    if path not in PERIOD_OPERATIONS or not _is_positive(case) or not case.query:
        return case
    start = case.query.get("startDate")
    if start is None:
        return case
    if "endDate" in case.query or PERIOD_OPERATIONS[path]:
        case.query = {**case.query, "endDate": start}
    return case


AGENT_PATHS = ("/api/agents", "/api/agents/{slug}")


def _tools_beyond_the_schema(case: Any) -> Any:
    """A positive agent write's tools, made to follow the rules OpenAPI cannot state."""
    body = case.body
    if case.operation.path not in AGENT_PATHS or not _is_positive(case):
        return case
    if not isinstance(body, dict) or not isinstance(body.get("tools"), list):
        return case
    case.body = {**body, "tools": _tools_fixed(body["tools"])}
    return case


def _word(name: str) -> str:
    return (re.sub(r"[^A-Za-z0-9_-]", "_", name) or "target")[:64]


def _tools_fixed(tools: list[Any]) -> list[Any]:
    fixed, names = [], set()
    for tool in tools:
        if not isinstance(tool, dict):
            fixed.append(tool)
            continue
        tool = dict(tool)
        if tool.get("type") == "transfer_call" and isinstance(tool.get("targets"), dict):
            tool["targets"] = {_word(name): number for name, number in tool["targets"].items()}
        if tool.get("type") == "webhook" and isinstance(tool.get("parameters"), dict):
            try:
                Draft202012Validator.check_schema(tool["parameters"])
            except SchemaError:
                tool["parameters"] = {"type": "object"}
        name = tool.get("name") or tool.get("server_label") or tool.get("type")
        if name in names:
            continue  # a second tool of that name: dropped
        names.add(name)
        fixed.append(tool)
    return fixed


def _placeholder_name(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", key)[:64] or "value"
    return name if not name[0].isdigit() else f"_{name[:63]}"


def _outbound_call_fixed(case: Any) -> Any:
    """A positive POST /api/calls names the seeded agent and our number, and its context keys
    are placeholder names."""
    body = case.body
    if case.operation.path != "/api/calls" or case.method.upper() != "POST":
        return case
    if not _is_positive(case) or not isinstance(body, dict):
        return case
    body = dict(body)
    if os.environ.get("CONTRACT_AGENT_SLUG"):
        body["agent"] = os.environ["CONTRACT_AGENT_SLUG"]
    if "from" in body and os.environ.get("CONTRACT_FROM_NUMBER"):
        body["from"] = os.environ["CONTRACT_FROM_NUMBER"]
    if isinstance(body.get("context"), dict):
        body["context"] = {_placeholder_name(str(k)): v for k, v in body["context"].items()}
    case.body = body
    return case
