from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from calls.models import Call

# Django is imported inside the fixtures so the audio tests can run without it
# (`pytest tests/audio -p no:django`): audio/ knows nothing of Django.


@pytest.fixture
def make_call(db):
    """Factory for Call rows with sensible defaults; keyword arguments override."""
    from django.utils import timezone

    from calls.models import Call

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
