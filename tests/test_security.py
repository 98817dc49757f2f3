"""The admin and API behind browser-grade protections: headers, CSRF, no 500s from hostile posts."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db


def test_admin_pages_carry_security_headers(client: Client) -> None:
    response = client.get("/admin/login/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_admin_login_without_csrf_token_is_refused() -> None:
    User.objects.create_superuser("boss", password="a-long-password-1")
    client = Client(enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": "boss", "password": "a-long-password-1"})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_admin_login_with_csrf_token_works() -> None:
    User.objects.create_superuser("boss", password="a-long-password-1")
    client = Client(enforce_csrf_checks=True)
    client.get("/admin/login/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/admin/login/",
        {"username": "boss", "password": "a-long-password-1", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302


form_values = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="0123456789-.e", max_size=12),
    st.sampled_from(["", " ", "CA" + "a" * 32, "in-progress", "completed", "-1", "1e309", "NaN"]),
)
form_posts = st.dictionaries(
    st.sampled_from(
        [
            "CallSid",
            "CallStatus",
            "SequenceNumber",
            "CallDuration",
            "From",
            "To",
            "Direction",
            "FromCity",
            "CallerName",
            "AccountSid",
            "Timestamp",
            "x",
        ]
    ),
    form_values,
    max_size=10,
)


@pytest.mark.parametrize("path", ["/twilio/incoming-call", "/twilio/call-status"])
@override_settings(TWILIO_AUTH_TOKEN="")  # signatures off, so the bodies reach the views
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(params=form_posts)
@example(params={"CallSid": "CA1", "CallStatus": "completed", "SequenceNumber": "99999999999"})
@example(params={"CallSid": "CA1", "CallStatus": "completed", "CallDuration": "1e309"})
@example(params={"CallSid": "\x00", "CallStatus": "completed"})
def test_webhooks_never_answer_500_to_malformed_posts(path: str, params: dict[str, str]) -> None:
    client = Client(raise_request_exception=False)
    response = client.post(path, params)
    assert response.status_code in (200, 400), (response.status_code, response.content[:200])
    if response.status_code == 400:
        assert response.content.strip()  # a clear message, not an empty body
