"""A recording's stored name can never reach outside the storage root."""

from __future__ import annotations

import pytest

from calls.models import Recording

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "name", ["../../../../etc/passwd", "/etc/passwd", "recordings/../../../../../etc/hostname"]
)
def test_recording_names_outside_the_storage_root_are_never_served(
    api, make_call, recording_storage, name: str
) -> None:
    call = make_call()
    Recording.objects.create(call=call, file=name)
    response = api.get(f"/api/calls/{call.pk}/recording")
    assert response.status_code in (400, 404)
    assert b"root:" not in b"".join(getattr(response, "streaming_content", [response.content]))
    assert response.json()["error"]["code"]
