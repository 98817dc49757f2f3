"""The OpenAPI 3 document at /api/schema/ and the docs at /api/docs/."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("/api/calls", "get"),
    ("/api/calls", "post"),
    ("/api/calls/{id}", "get"),
    ("/api/calls/{id}/recording", "get"),
    ("/api/calls/{id}/notes", "post"),
    ("/api/analytics", "get"),
    ("/api/status", "get"),
    ("/api/agents", "get"),
    ("/api/agents", "post"),
    ("/api/agents/{slug}", "get"),
    ("/api/agents/{slug}", "patch"),
    ("/api/agents/{slug}", "delete"),
}


@pytest.fixture
def schema(api) -> dict:
    response = api.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


def parameters(schema: dict, path: str, method: str = "get") -> set[str]:
    return {p["name"] for p in schema["paths"][path][method].get("parameters", [])}


def test_schema_is_valid_openapi_3(schema) -> None:
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)  # raises on any violation of the OpenAPI 3 JSON schema


def test_schema_generation_has_no_warnings(tmp_path) -> None:
    # Warnings mean an endpoint, parameter or field the generator could not describe.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s"))


def test_every_endpoint_is_described(schema) -> None:
    described = {
        (path, method)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert described == OPERATIONS


def test_parameters_are_described(schema) -> None:
    assert parameters(schema, "/api/calls") == {
        "caller",
        "agent",
        "sentiment",
        "status",
        "startDate",
        "endDate",
        "search",
        "ordering",
        "limit",
        "offset",
    }
    assert parameters(schema, "/api/analytics") == {"startDate", "endDate", "interval"}
    assert parameters(schema, "/api/agents") == {"limit", "offset"}
    assert parameters(schema, "/api/agents/{slug}", "patch") == {"slug"}
    assert parameters(schema, "/api/calls/{id}/recording") == {
        "id",
        "recording",
        "download",
        "Range",
    }
    interval = next(
        p for p in schema["paths"]["/api/analytics"]["get"]["parameters"] if p["name"] == "interval"
    )
    assert set(interval["schema"]["enum"]) == {"hour", "day", "week"}


def test_responses_and_errors_are_described(schema) -> None:
    paths = schema["paths"]
    detail = paths["/api/calls/{id}"]["get"]["responses"]
    assert {"200", "401", "403", "404", "429"} <= set(detail)
    recording = paths["/api/calls/{id}/recording"]["get"]["responses"]
    assert {"200", "206", "404", "416"} <= set(recording)
    assert "audio/wav" in recording["206"]["content"]
    assert {"201", "400", "403"} <= set(paths["/api/calls/{id}/notes"]["post"]["responses"])
    feed = paths["/api/status"]["get"]["responses"]
    assert "text/event-stream" in feed["200"]["content"]
    error = schema["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["$ref"] == "#/components/schemas/ErrorBody"
    call = schema["components"]["schemas"]["CallDetail"]["properties"]
    assert {"transcripts", "recordings", "analytics", "metadata", "note_entries"} <= set(call)
    report = schema["components"]["schemas"]["AnalyticsReport"]["properties"]
    assert {"totals", "series"} <= set(report)
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])


# Every status each operation can answer (400 schema-invalid; 404 no such id or, for the call
# list, no such agent; 409 a conflict with what is stored; 413/415 a body too large or not
# JSON; 416 a range past the end; 422 an idempotency key reused; 429 throttled; 502 Twilio
# unreachable; 401/403 who may).
STATUSES = {
    ("/api/agents", "get"): {"200", "400", "401", "403", "429"},
    ("/api/agents", "post"): {"201", "400", "401", "403", "409", "413", "415", "429"},
    ("/api/agents/{slug}", "get"): {"200", "401", "403", "404", "429"},
    ("/api/agents/{slug}", "patch"): {
        "200", "400", "401", "403", "404", "409", "413", "415", "429",
    },
    ("/api/agents/{slug}", "delete"): {"204", "401", "403", "404", "409", "429"},
    ("/api/calls", "get"): {"200", "400", "401", "403", "404", "429"},
    ("/api/calls", "post"): {
        "201", "400", "401", "403", "404", "413", "415", "422", "429", "502",
    },
    ("/api/calls/{id}", "get"): {"200", "401", "403", "404", "429"},
    ("/api/calls/{id}/recording", "get"): {
        "200", "206", "400", "401", "403", "404", "416", "429",
    },
    ("/api/calls/{id}/notes", "post"): {"201", "400", "401", "403", "404", "413", "415", "429"},
    ("/api/analytics", "get"): {"200", "400", "401", "403", "429"},
    ("/api/status", "get"): {"200", "401", "403", "405", "429"},
}  # fmt: skip
ERROR_HEADERS = {
    "401": "WWW-Authenticate",
    "405": "Allow",
    "416": "Content-Range",
    "429": "Retry-After",
}


def test_every_operation_is_in_the_status_table(schema) -> None:
    assert set(STATUSES) == OPERATIONS


@pytest.mark.parametrize(("path", "method"), sorted(STATUSES))
def test_operations_describe_every_status(schema, path: str, method: str) -> None:
    operation = schema["paths"][path][method]
    assert set(operation["responses"]) == STATUSES[(path, method)]
    for status, response in operation["responses"].items():
        assert response["description"], status
        if status.startswith(("4", "5")):
            body = response["content"]["application/json"]
            assert body["schema"] == {"$ref": "#/components/schemas/Error"}, status
            # An example body for every error, in the documented shape.
            assert body["examples"], status
            for example in body["examples"].values():
                assert set(example["value"]["error"]) == {"code", "message", "details"}
        if status in ERROR_HEADERS:
            assert response["headers"][ERROR_HEADERS[status]]["required"] is True, status
    assert operation.get("summary") or operation.get("description")


def test_agent_bodies_and_examples_are_described(schema) -> None:
    paths = schema["paths"]
    for path, method in (("/api/agents", "post"), ("/api/agents/{slug}", "patch")):
        body = paths[path][method]["requestBody"]["content"]["application/json"]
        assert body["examples"], (path, method)  # a request a client can copy
        example = next(iter(body["examples"].values()))["value"]
        assert example["phone_numbers"] and example["greeting"]
        assert "version" not in example  # read-only: never sent
    created = paths["/api/agents"]["post"]["responses"]["201"]["content"]["application/json"]
    assert next(iter(created["examples"].values()))["value"]["version"] >= 1
    conflict = paths["/api/agents/{slug}"]["delete"]["responses"]["409"]["content"]
    [example] = conflict["application/json"]["examples"].values()
    assert example["value"]["error"]["code"] == "agent_has_calls"
    assert "is_active" in example["value"]["error"]["message"]
    invalid = paths["/api/agents"]["post"]["responses"]["400"]["content"]["application/json"]
    assert next(iter(invalid["examples"].values()))["value"]["error"]["code"] == "invalid"


def test_the_agent_schema_lists_the_known_names(schema) -> None:
    from agents import catalog

    components = schema["components"]["schemas"]
    agent = components["Agent"]["properties"]
    assert set(catalog.AGENT_CONFIG_FIELDS) <= set(agent)
    assert agent["version"]["readOnly"] is True
    assert agent["phone_numbers"]["type"] == "array"
    assert agent["phone_numbers"]["items"]["pattern"] == catalog.E164_PATTERN

    def enum(name: str) -> set[str]:
        # A realtime-only setting reads as null for a GPT-Live agent: oneOf [names, null].
        ref = (agent[name].get("allOf") or agent[name]["oneOf"])[0]["$ref"].rsplit("/", 1)[1]
        return set(components[ref]["enum"])

    assert enum("model") == set(catalog.MODELS)
    assert enum("voice") == set(catalog.ALL_VOICES)
    assert enum("transcription_model") == set(catalog.TRANSCRIPTION_MODELS)
    required = set(components["AgentRequest"]["required"])
    assert required == {"name", "slug", "instructions"}
    call = components["CallDetail"]["properties"]
    assert {"agent", "agent_version", "agent_snapshot"} <= set(call)
    assert components["CallAgent"]["properties"].keys() == {"slug", "name"}


def test_schema_as_yaml(api) -> None:
    response = api.get("/api/schema/", {"format": "yaml"})
    assert response.status_code == 200
    assert "/api/analytics" in yaml.safe_load(response.content)["paths"]


def test_interactive_docs_page(api) -> None:
    response = api.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content
    assert b'url: "/api/schema"' in response.content  # the UI loads the document from there
    # Served by the project itself, so the docs work on a network with no internet access.
    assert b"cdn.jsdelivr.net" not in response.content
    assert b"/static/drf_spectacular_sidecar/swagger-ui-dist/" in response.content
