"""Users with and without permissions, API clients, and factories for a call's related rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from rest_framework.test import APIClient
from support import LiveServer, asgi_server_in_thread, free_port

from calls.models import Analytics, Call, CallMetadata, Recording, Transcript

T = TypeVar("T")


@pytest.fixture
def viewer(make_user) -> User:
    return make_user("calls.view_call", username="viewer")


@pytest.fixture
def api(client_for, viewer) -> APIClient:
    """A client for a user allowed to read calls."""
    return client_for(viewer)


@pytest.fixture
def recording_storage(settings, tmp_path) -> None:
    """Recordings go to a folder of this test, not the checkout's recordings/."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }


@pytest.fixture
def make_analytics(db) -> Callable[..., Analytics]:
    def factory(call: Call, **fields: Any) -> Analytics:
        return Analytics.objects.create(call=call, **fields)

    return factory


@pytest.fixture
def make_metadata(db) -> Callable[..., CallMetadata]:
    def factory(call: Call, **fields: Any) -> CallMetadata:
        return CallMetadata.objects.create(call=call, **fields)

    return factory


@pytest.fixture
def make_transcript(db) -> Callable[..., Transcript]:
    def factory(call: Call, text: str, **fields: Any) -> Transcript:
        sequence = fields.pop("sequence", None)
        if sequence is None:
            sequence = Transcript.objects.filter(call=call).count()
        start_ms = fields.pop("start_ms", sequence * 1000)
        return Transcript.objects.create(
            call=call,
            sequence=sequence,
            speaker=fields.pop("speaker", "caller"),
            text=text,
            start_ms=start_ms,
            end_ms=fields.pop("end_ms", start_ms + 500),
            **fields,
        )

    return factory


@pytest.fixture
def make_recording(db, recording_storage) -> Callable[..., Recording]:
    def factory(call: Call, data: bytes, **fields: Any) -> Recording:
        name = default_storage.save(f"recordings/{call.pk}.wav", ContentFile(data))
        return Recording.objects.create(
            call=call, file=name, size_bytes=len(data), duration_s=1.0, **fields
        )

    return factory


@pytest.fixture
def asgi_server(transactional_db) -> Iterator[LiveServer]:
    """bridge_project.asgi served by uvicorn in a thread; `run` reaches its event loop."""
    with asgi_server_in_thread(free_port()) as server:
        yield server
