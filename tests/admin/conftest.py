"""Staff users with and without the calls permissions, and whole calls for the admin pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from calls.models import Analytics, Call, CallMetadata, Recording, Transcript


@pytest.fixture
def make_staff(make_user) -> Callable[..., User]:
    """Staff users (the admin's only audience) with the given permissions."""

    def factory(*perms: str, **fields: Any) -> User:
        fields.setdefault("is_staff", True)
        return make_user(*perms, **fields)

    return factory


@pytest.fixture
def viewer(make_staff) -> User:
    return make_staff("calls.view_call", username="viewer")


@pytest.fixture
def editor(make_staff) -> User:
    return make_staff("calls.view_call", "calls.change_call", username="editor")


@pytest.fixture
def client_as() -> Callable[[User], Client]:
    def factory(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return factory


# The standard call of the simulator, as the bridge stores it: two caller turns, an agent
# reply cut short by a barge-in, and the answer to the interruption.
CONVERSATION = [
    ("caller", "Hello, I would like to check my order.", 500, 2000, False),
    ("agent", "Of course. What is your order number?", 2600, 4800, False),
    ("caller", "It is four two seven.", 5300, 6800, False),
    ("agent", "Thank you, let me look that up for you right", 7400, 8200, True),
    ("caller", "Actually, cancel it please.", 8000, 9000, False),
    ("agent", "Done: order 427 is cancelled.", 9600, 11800, False),
]


@pytest.fixture
def make_full_call(make_call) -> Callable[..., Call]:
    """A finished call with analytics, metadata, a transcript and a recording row."""

    def factory(*, analytics: dict[str, Any] | None = None, **fields: Any) -> Call:
        started = fields.pop("started_at", timezone.now() - dt.timedelta(minutes=5))
        fields.setdefault("status", "completed")
        fields.setdefault("ended_at", started + dt.timedelta(seconds=12.4))
        fields.setdefault("duration_s", 12.4)
        fields.setdefault("end_reason", "caller hung up")
        call = make_call(started_at=started, **fields)
        Analytics.objects.create(
            call=call,
            **{
                "sentiment_label": "positive",
                "sentiment_score": 0.62,
                "caller_talk_s": 4.0,
                "agent_talk_s": 5.2,
                "silence_s": 3.2,
                "turns": 6,
                "interruptions": 1,
                "latency_ms_avg": 640.0,
                "latency_ms_p95": 910.0,
                **(analytics or {}),
            },
        )
        CallMetadata.objects.create(
            call=call, city="Oakland", state="CA", country="US", custom={"webhook": {"a": "1"}}
        )
        for sequence, (speaker, text, start, end, cut) in enumerate(CONVERSATION):
            Transcript.objects.create(
                call=call,
                sequence=sequence,
                speaker=speaker,
                text=text,
                start_ms=start,
                end_ms=end,
                interrupted=cut,
                item_id=f"item_{sequence}",
            )
        Recording.objects.create(
            call=call, file=f"recordings/{call.pk}.wav", duration_s=12.4, size_bytes=396_844
        )
        return call

    return factory
