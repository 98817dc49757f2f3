"""Every answer under /api/ that is not a success has the one JSON error shape, including what
Django answers before or around the views (CSRF, body size, bad Host, uncaught exceptions);
outside /api/ Django's own pages stay."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from calls.api import exceptions as api_exceptions
from calls.api import status as status_feed

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


@pytest.fixture
def session_client(make_user) -> APIClient:
    """The admin's way in: a session, with CSRF checks on, as a browser has them."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(make_user("calls.view_call", "calls.change_call"))
    return client


# --- 404: unknown paths and ids, whatever the method ----------------------------------------


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
@pytest.mark.parametrize(
    "path", ["/api/nothing", "/api/", "/api/calls/not-a-uuid/notes", "/api/agents/%C2%84"]
)
def test_unknown_paths_and_ids_are_a_json_404_even_with_a_session(
    session_client, method: str, path: str
) -> None:
    # With a session and no CSRF token, Django's CSRF check used to answer these writes with
    # its HTML 403 before the 404 they are.
    response = getattr(session_client, method)(path, {"notes": "x"}, format="json")
    assert_error(response, 404, "not_found")


def test_an_unknown_id_of_the_right_form_is_a_json_404(make_user, client_for) -> None:
    api = client_for(make_user("calls.view_call", "agents.view_agent"))
    assert_error(api.get("/api/calls/6a1b2c3d-0000-4000-8000-000000000000"), 404, "not_found")
    assert_error(api.get("/api/agents/no-such-agent"), 404, "not_found")


def test_the_status_feed_answers_a_session_post_with_its_405(session_client) -> None:
    response = session_client.post("/api/status")
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET"


# --- 403: CSRF ---------------------------------------------------------------------------------


def test_a_session_write_without_csrf_is_a_json_403(session_client, make_call) -> None:
    call = make_call()
    response = session_client.post(f"/api/calls/{call.pk}/notes", {"notes": "x"}, format="json")
    assert "CSRF" in assert_error(response, 403, "permission_denied")["message"]


def test_the_csrf_failure_view_answers_json_under_api_and_html_elsewhere() -> None:
    factory = RequestFactory()
    api = api_exceptions.csrf_failure(factory.post("/api/anything"), reason="CSRF token missing.")
    assert_error(api, 403, "permission_denied")
    assert "CSRF token missing." in json.loads(api.content)["error"]["message"]
    admin = api_exceptions.csrf_failure(factory.post("/admin/login/"), reason="x")
    assert admin.status_code == 403
    assert admin["Content-Type"].startswith("text/html")


def test_the_admin_keeps_django_csrf_page(make_user) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": "x", "password": "y"})
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


# --- 413: the body over DATA_UPLOAD_MAX_MEMORY_SIZE ---------------------------------------------


@pytest.fixture
def small_uploads(settings) -> int:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    return 1000


def test_a_note_over_the_body_limit_is_a_json_413(
    small_uploads, make_user, client_for, make_call
) -> None:
    call = make_call()
    client = client_for(make_user("calls.view_call", "calls.change_call"))
    response = client.post(f"/api/calls/{call.pk}/notes", {"notes": "x" * 2000}, format="json")
    error = assert_error(response, 413, "request_too_large")
    assert error["details"] == {"max_bytes": small_uploads}
    call.refresh_from_db()
    assert call.notes == ""


def test_an_agent_over_the_body_limit_is_a_json_413(small_uploads, make_user, client_for) -> None:
    client = client_for(make_user("agents.view_agent", "agents.change_agent"))
    body = {"name": "Big", "slug": "big", "instructions": "x" * 2000}
    assert_error(client.post("/api/agents", body, format="json"), 413, "request_too_large")


def test_a_body_under_the_limit_is_read(small_uploads, make_user, client_for, make_call) -> None:
    call = make_call()
    client = client_for(make_user("calls.view_call", "calls.change_call"))
    response = client.post(f"/api/calls/{call.pk}/notes", {"notes": "x" * 500}, format="json")
    assert response.status_code == 201


def test_djangos_own_body_size_refusal_is_a_json_413_under_api(small_uploads) -> None:
    # Django raises RequestDataTooBig wherever request.body is read (CSRF checks of form posts,
    # middleware); it would answer 400 (handler400).
    request = RequestFactory().post("/api/calls")
    response = api_exceptions.bad_request(request, RequestDataTooBig("too big"))
    assert_error(response, 413, "request_too_large")
    elsewhere = api_exceptions.bad_request(RequestFactory().post("/admin/"), RequestDataTooBig("x"))
    assert elsewhere.status_code == 400
    assert elsewhere["Content-Type"].startswith("text/html")


def test_body_size_refusals_raised_inside_drf_are_a_413(small_uploads) -> None:
    # Anything in a DRF view reading request.body (Django's check) gets the same 413.
    response = api_exceptions.api_exception_handler(RequestDataTooBig("too big"), {})
    assert response is not None and response.status_code == 413
    assert response.data["error"]["code"] == "request_too_large"


# --- 400 before any view: a Host the server does not serve --------------------------------------


def test_a_disallowed_host_is_a_json_400_under_api_only(api) -> None:
    assert_error(api.get("/api/calls", HTTP_HOST="evil.example"), 400, "bad_request")
    response = Client().get("/admin/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    request = RequestFactory().get("/api/calls")
    assert_error(api_exceptions.bad_request(request, DisallowedHost("x")), 400, "bad_request")


# --- 500: an exception no view caught -----------------------------------------------------------


def test_an_exception_outside_drf_is_a_json_500_under_api(
    viewer, monkeypatch, settings, caplog
) -> None:
    # The status feed is a plain async Django view: its exceptions reach Django's handler500.
    settings.DEBUG = False

    def broken(request: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(status_feed, "_feed_refusal", broken)
    client = Client(raise_request_exception=False)
    client.force_login(viewer)
    error = assert_error(client.get("/api/status"), 500, "server_error")
    assert "secret" not in error["message"]


def test_handlers_keep_django_pages_outside_api() -> None:
    factory = RequestFactory()
    assert_error(api_exceptions.server_error(factory.get("/api/calls")), 500, "server_error")
    page = api_exceptions.server_error(factory.get("/admin/"))
    assert page.status_code == 500
    assert page["Content-Type"].startswith("text/html")
    assert_error(
        api_exceptions.page_not_found(factory.get("/api/x"), Exception()), 404, "not_found"
    )
    assert api_exceptions.page_not_found(factory.get("/x"), Exception()).status_code == 404
    assert_error(
        api_exceptions.permission_denied(factory.get("/api/x"), Exception("no")),
        403,
        "permission_denied",
    )
    denied = api_exceptions.permission_denied(factory.get("/admin/"), Exception("no"))
    assert denied["Content-Type"].startswith("text/html")


def test_the_root_urlconf_installs_the_handlers() -> None:
    from bridge_project import urls

    assert urls.handler400 == "calls.api.exceptions.bad_request"
    assert urls.handler403 == "calls.api.exceptions.permission_denied"
    assert urls.handler404 == "calls.api.exceptions.page_not_found"
    assert urls.handler500 == "calls.api.exceptions.server_error"


# --- 415 and 400 for bodies of the wrong type ----------------------------------------------------


def test_a_body_that_is_not_json_is_a_json_415(make_user, client_for) -> None:
    client = client_for(make_user("agents.view_agent", "agents.change_agent"))
    response = client.post(
        "/api/agents", "name=x", content_type="application/x-www-form-urlencoded"
    )
    assert_error(response, 415, "unsupported_media_type")


def test_malformed_json_is_a_json_400(make_user, client_for, make_call) -> None:
    call = make_call()
    client = client_for(make_user("calls.view_call", "calls.change_call"))
    response = client.post(
        f"/api/calls/{call.pk}/notes", "{not json", content_type="application/json"
    )
    assert_error(response, 400, "parse_error")
