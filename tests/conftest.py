from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from e2e_support import LiveBridge

    from agents.models import Agent
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
            "started_at": timezone.now(),
        }
        defaults.update(fields)
        return Call.objects.create(**defaults)

    return factory


@pytest.fixture
def make_agent(db):
    """Factory for agents (through agents.services, so the one-default rule holds), with a
    unique slug and valid settings; keyword arguments override, `phone_numbers` included."""
    from agents import services

    counter = {"n": 0}

    def factory(*, phone_numbers: tuple[str, ...] = (), **fields: object) -> Agent:
        counter["n"] += 1
        values: dict[str, object] = {
            "name": f"Agent {counter['n']}",
            "slug": f"agent-{counter['n']}",
            "instructions": f"You are test agent number {counter['n']}.",
        }
        values.update(fields)
        return services.agent_create(fields=values, phone_numbers=phone_numbers)

    return factory


@pytest.fixture
def make_user(db):
    """Factory for users with the given "app.codename" permissions; fields override."""
    from django.contrib.auth.models import Permission, User

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
def bridge_settings(settings, tmp_path: Path) -> Path:
    """Settings of an app served for a test: Twilio signing on, the public origin the simulated
    caller signs for, recordings and storage under tmp_path (returned: the storage root)."""
    from e2e_support import AUTH_TOKEN, PUBLIC_BASE_URL

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
    return storage_root


@pytest.fixture
def live_bridge(transactional_db, settings, bridge_settings: Path) -> Iterator[LiveBridge]:
    """The product served by uvicorn in a thread, pointed at a stand-in per call (tests/e2e,
    the admin's browser test)."""
    from e2e_support import LiveBridge
    from support import asgi_server_in_thread, free_port

    settings.REALTIME_MAX_RECONNECTS = 3
    settings.CALL_FINALIZE_GIVE_UP_S = 60.0
    with asgi_server_in_thread(free_port()) as server:
        yield LiveBridge(url=server.url, settings=settings, storage_root=bridge_settings)


class _Errors(logging.Handler):
    """Collects ERROR records: an exception escaping a consumer is logged at ERROR."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def error_log():
    handler = _Errors()
    # Named loggers: Django's and uvicorn's do not propagate to the root.
    names = ["", "uvicorn", "uvicorn.error", "django", "realtime", "telephony", "calls"]
    for name in names:
        logging.getLogger(name).addHandler(handler)
    yield handler
    for name in names:
        logging.getLogger(name).removeHandler(handler)


@pytest.fixture(autouse=True)
def _fresh_throttle_counts() -> Iterator[None]:
    """API throttle counters live in the default cache (per process in tests), which outlives
    a test: every test starts with none used."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def client_for():  # type: ignore[no-untyped-def]
    """An API client sending the user's token (anonymous for None)."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    def factory(user):  # type: ignore[no-untyped-def]
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return factory
