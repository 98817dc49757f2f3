"""The OpenAPI 3 document at /api/schema/ and the docs at /api/docs/."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("/api/calls", "get"),
    ("/api/calls/{id}", "get"),
    ("/api/calls/{id}/recording", "get"),
    ("/api/calls/{id}/notes", "post"),
    ("/api/analytics", "get"),
    ("/api/status", "get"),
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
