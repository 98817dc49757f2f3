from __future__ import annotations

import pytest
from django.test import Client

from calls.models import Call


@pytest.fixture
def make_call(db):
    """Factory for Call rows with sensible defaults; keyword arguments override."""
    from django.utils import timezone

    counter = {"n": 0}

    def factory(**fields: object) -> Call:
        counter["n"] += 1
        defaults: dict[str, object] = {
            "call_sid": f"CA{counter['n']:032x}",
            "caller": "+15005550006",
            "agent": "+15005550001",
            "started_at": timezone.now(),
        }
        defaults.update(fields)
        return Call.objects.create(**defaults)

    return factory


@pytest.fixture
def anonymous_client() -> Client:
    return Client()
