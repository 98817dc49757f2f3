"""Fixtures for the end-to-end tests (helpers live in tests/e2e_support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import AUTH_TOKEN, PUBLIC_BASE_URL, LiveBridge
from support import asgi_server_in_thread, free_port


@pytest.fixture
def live_bridge(transactional_db, settings, tmp_path: Path) -> Iterator[LiveBridge]:
    storage_root = tmp_path / "storage"
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    settings.RECORDING_STORAGE_PATH = tmp_path / "in-progress"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(storage_root)},
        },
    }
    settings.REALTIME_MAX_RECONNECTS = 3
    settings.CALL_FINALIZE_GIVE_UP_S = 60.0
    with asgi_server_in_thread(free_port()) as server:
        yield LiveBridge(url=server.url, settings=settings, storage_root=storage_root)
