"""Users with and without permissions, API clients, and factories for a call's related rows."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import uvicorn
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connections
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from support import free_port

from calls.models import Analytics, Call, CallMetadata, Recording, Transcript
from realtime import store as call_store

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _fresh_throttle_counts() -> Iterator[None]:
    # Throttle counters live in the default cache, which outlives a test; every test starts
    # with none used.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_user(db) -> Callable[..., User]:
    counter = {"n": 0}

    def factory(*perms: str, **fields: Any) -> User:
        counter["n"] += 1
        user = User.objects.create_user(
            username=fields.pop("username", f"user{counter['n']}"), password="pw", **fields
        )
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        return user

    return factory


@pytest.fixture
def client_for() -> Callable[[User | None], APIClient]:
    """An API client sending the user's token (anonymous for None)."""

    def factory(user: User | None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return factory


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


@dataclass
class AsgiServer:
    """The real ASGI app served by uvicorn in a thread of this process (see `asgi_server`)."""

    url: str
    loop: asyncio.AbstractEventLoop

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
        """Run a coroutine on the server's event loop, as code of the server itself would."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


class _LoopRecordingServer(uvicorn.Server):
    loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)


@pytest.fixture
def asgi_server(transactional_db) -> Iterator[AsgiServer]:
    """bridge_project.asgi served with uvicorn (uvloop, httptools) on a free loopback port.

    In-process, so it shares this test's settings and database (committed rows only: hence
    transactional_db) and its channel layer instance; `run` gives access to its event loop.
    """
    config = uvicorn.Config(
        "bridge_project.asgi:application",
        host="127.0.0.1",
        port=free_port(),
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
    )
    # Each request's connection closes when the request ends, instead of idling for
    # CONN_MAX_AGE in a thread the test cannot reach (PostgreSQL would then refuse to drop
    # the test database while they are open).
    database = connections.settings["default"]
    saved_max_age = database.get("CONN_MAX_AGE", 0)
    database["CONN_MAX_AGE"] = 0
    server = _LoopRecordingServer(config)
    thread = threading.Thread(target=server.run, name="api-test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    assert server.loop is not None
    try:
        yield AsgiServer(url=f"http://127.0.0.1:{config.port}", loop=server.loop)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        database["CONN_MAX_AGE"] = saved_max_age
        # The call store's writer thread outlives the server; its connection must not.
        call_store._WRITER.submit(connections.close_all).result()
