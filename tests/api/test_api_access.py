"""Who gets in, and the one error shape every refusal and failure has."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import Group, Permission
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from calls import selectors

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


READ_PATHS = ["/api/calls", "/api/analytics", "/api/status", "/api/schema/"]


@pytest.mark.parametrize("path", READ_PATHS)
def test_anonymous_is_401_with_token_challenge(path: str) -> None:
    response = APIClient().get(path)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("path", READ_PATHS)
def test_bad_token_is_401(path: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert_error(client.get(path), 401, "authentication_failed")


@pytest.mark.parametrize("path", READ_PATHS)
def test_authenticated_without_permission_is_403(path: str, make_user, client_for) -> None:
    error = assert_error(client_for(make_user()).get(path), 403, "permission_denied")
    assert "calls.view_call" in error["message"]


@pytest.mark.parametrize("path", ["/api/calls", "/api/analytics", "/api/schema/"])
def test_staff_without_the_permission_is_403_and_with_it_200(
    path: str, make_user, client_for
) -> None:
    assert_error(client_for(make_user(is_staff=True)).get(path), 403, "permission_denied")
    staff_viewer = make_user("calls.view_call", is_staff=True)
    assert client_for(staff_viewer).get(path).status_code == 200


def test_superuser_reads_everything(make_user, client_for, make_call) -> None:
    call = make_call()
    admin = make_user(is_staff=True, is_superuser=True)
    client = client_for(admin)
    for path in ("/api/calls", f"/api/calls/{call.pk}", "/api/analytics", "/api/schema/"):
        assert client.get(path).status_code == 200, path


def test_permission_through_a_group_counts(make_user, client_for) -> None:
    group = Group.objects.create(name="support")
    group.permissions.add(Permission.objects.get(codename="view_call"))
    user = make_user()
    user.groups.add(group)
    assert client_for(user).get("/api/calls").status_code == 200


def test_session_authentication_serves_the_admin_pages(make_user, make_call) -> None:
    call = make_call()
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(make_user("calls.view_call", "calls.change_call"))
    assert client.get("/api/calls").status_code == 200
    # A write through a session needs the CSRF token, as any form in the admin does.
    refused = client.post(f"/api/calls/{call.pk}/notes", {"notes": "x"}, format="json")
    error = assert_error(refused, 403, "permission_denied")
    assert "CSRF" in error["message"]


def test_viewing_does_not_allow_writing_notes(api, make_call) -> None:
    call = make_call()
    response = api.post(f"/api/calls/{call.pk}/notes", {"notes": "hi"}, format="json")
    error = assert_error(response, 403, "permission_denied")
    assert "calls.change_call" in error["message"]


def test_throttled_requests_are_429_with_retry_after(api, monkeypatch) -> None:
    monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, "user", "2/min")
    assert api.get("/api/calls").status_code == 200
    assert api.get("/api/calls").status_code == 200
    response = api.get("/api/calls")
    error = assert_error(response, 429, "throttled")
    assert 0 < int(response["Retry-After"]) <= 60
    assert 0 < error["details"]["retry_after_s"] <= 60


def test_each_user_has_their_own_allowance(api, make_user, client_for, monkeypatch) -> None:
    monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, "user", "1/min")
    assert api.get("/api/calls").status_code == 200
    assert api.get("/api/calls").status_code == 429
    assert client_for(make_user("calls.view_call")).get("/api/calls").status_code == 200


def test_unknown_path_under_api_is_a_json_404(api) -> None:
    error = assert_error(api.get("/api/nothing/here"), 404, "not_found")
    assert "/api/nothing/here" in error["message"]


def test_unknown_call_is_a_json_404(api) -> None:
    assert_error(api.get("/api/calls/00000000-0000-0000-0000-000000000000"), 404, "not_found")
    assert_error(api.get("/api/calls/not-a-uuid"), 404, "not_found")


def test_paths_outside_api_keep_django_404(api) -> None:
    response = api.get("/definitely-not-here")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_wrong_method_is_a_json_405(make_user, client_for, make_call) -> None:
    call = make_call()
    # Permissions are checked first (DRF), so the 405 is for someone who could write.
    api = client_for(make_user("calls.view_call", "calls.change_call"))
    response = api.delete(f"/api/calls/{call.pk}")
    assert_error(response, 405, "method_not_allowed")
    assert "DELETE" not in response["Allow"]
    assert_error(api.get(f"/api/calls/{call.pk}/notes"), 405, "method_not_allowed")
    feed = api.post("/api/status")
    assert_error(feed, 405, "method_not_allowed")
    assert feed["Allow"] == "GET"


def test_unexpected_failure_is_a_json_500_without_internals(api, monkeypatch, caplog) -> None:
    def broken() -> None:
        raise RuntimeError("database on fire: secret detail")

    monkeypatch.setattr(selectors, "call_list", broken)
    # django.request does not propagate to the root logger here (see LOGGING); listen on it.
    request_logger = logging.getLogger("django.request")
    request_logger.addHandler(caplog.handler)
    try:
        error = assert_error(api.get("/api/calls"), 500, "server_error")
    finally:
        request_logger.removeHandler(caplog.handler)
    assert "secret" not in error["message"]
    # Still logged with its traceback, as Django logs a 500.
    # (The logging filters turn the traceback into redacted text, hence exc_text.)
    assert any("database on fire" in (r.exc_text or "") for r in caplog.records)


def test_wrong_content_type_is_a_json_415(make_user, client_for, make_call) -> None:
    call = make_call()
    client = client_for(make_user("calls.change_call"))
    response = client.post(f"/api/calls/{call.pk}/notes", "notes=hi", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")
