"""GET /api/status: Server-Sent Events read with a real HTTP client from the running server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.utils import timezone
from rest_framework.authtoken.models import Token
from support import REPO_ROOT, base_env
from twilio.request_validator import RequestValidator

from calls.api import status as status_module
from calls.events import STATUS_GROUP
from calls.models import Call, CallStatus, Transcript
from calls.services import CallOutcome, TranscriptLine
from realtime.store import CallStore

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://voice.example.com"


class EventStream:
    """The blocks of an SSE response (separated by blank lines), parsed as the spec says."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()
        self.last_id = 0

    def block(self) -> list[str]:
        lines: list[str] = []
        for line in self._lines:
            if line == "":
                if lines:
                    return lines
                continue
            lines.append(line)
        raise AssertionError(f"stream ended after {lines}")

    def _next_event(self) -> dict[str, object]:
        while True:
            fields: dict[str, str] = {}
            for line in self.block():
                if line.startswith(":"):
                    continue  # a comment: the heartbeat
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            if "event" in fields:
                # Every event has an id, and ids only go up on one stream.
                assert int(fields["id"]) > self.last_id
                self.last_id = int(fields["id"])
                return {"id": fields["id"], "event": fields["event"], **json.loads(fields["data"])}

    def event(self, call_id: str) -> dict[str, object]:
        """The next event of that call. Others are skipped: with Redis, any process using the
        same server (another test run, say) publishes to the same group."""
        while True:
            event = self._next_event()
            if event["call_id"] == call_id:
                return event


@pytest.fixture
def token(make_user) -> str:
    user = make_user("calls.view_call", username="listener")
    return Token.objects.create(user=user).key


@pytest.fixture
def open_feed(asgi_server, token) -> Iterator[Callable[[], EventStream]]:
    """Opens feeds on the running server (reads time out after 10 s); closes them all after."""
    client = httpx.Client(timeout=httpx.Timeout(10.0))
    opened: list[httpx.Response] = []

    def open_one() -> EventStream:
        request = client.build_request(
            "GET",
            f"{asgi_server.url}/api/status",
            headers={"Authorization": f"Token {token}", "Accept": "text/event-stream"},
        )
        response = client.send(request, stream=True)
        opened.append(response)
        assert response.status_code == 200, response.read()
        stream = EventStream(response)
        # Subscribed once the first block arrives: events published from now on reach us.
        assert stream.block() == ["retry: 3000", ": subscribed"]
        return stream

    yield open_one
    for response in opened:
        response.close()
    client.close()


def signed_status_callback(url: str, call: Call, status: str, sequence: int) -> httpx.Response:
    params = {"CallSid": call.call_sid, "CallStatus": status, "SequenceNumber": str(sequence)}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        f"{PUBLIC}/twilio/call-status", params
    )
    return httpx.post(
        f"{url}/twilio/call-status", data=params, headers={"X-Twilio-Signature": signature}
    )


async def a_call_in_progress(call_id: str) -> bool:
    """What the bridge does for a call, through its real call store (on the server's loop)."""
    store = CallStore(call_id, flush_interval_s=0.05)
    store.start()
    store.stream_started(stream_sid="MZ0001", custom_parameters={}, tracks=["inbound"])
    store.add_transcript(
        TranscriptLine(
            sequence=0, speaker="caller", text="I need a refund", start_ms=100, end_ms=1400
        )
    )
    outcome = CallOutcome(
        end_reason="caller hung up",
        ended_at=timezone.now(),
        analytics={
            "interruptions": 1,
            "turns": 2,
            "latency_ms_avg": 420.0,
            "sentiment_label": "negative",
        },
    )
    return await store.finalize(outcome, give_up_after_s=10)


def test_feed_carries_a_call_from_start_to_end(asgi_server, open_feed, make_call, settings):
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.PUBLIC_BASE_URL = PUBLIC
    call = make_call(status=CallStatus.RINGING)
    feed = open_feed()
    assert feed.response.headers["content-type"].startswith("text/event-stream")
    assert feed.response.headers["cache-control"] == "no-cache"
    assert feed.response.headers["x-accel-buffering"] == "no"

    # Twilio's status callback, through the webhook view (a sync view publishing).
    assert signed_status_callback(asgi_server.url, call, "in-progress", 1).status_code == 200
    updated = feed.event(str(call.pk))
    assert updated["event"] == "call.updated"
    assert (updated["call_id"], updated["status"]) == (str(call.pk), "in-progress")
    assert isinstance(updated["at"], float)

    # The bridge's call store: events follow its writes.
    assert asgi_server.run(a_call_in_progress(str(call.pk))) is True
    started = feed.event(str(call.pk))
    assert (started["event"], started["stream_sid"]) == ("call.started", "MZ0001")
    line = feed.event(str(call.pk))
    assert line["event"] == "call.updated"
    assert line["transcripts"] == [
        {
            "speaker": "caller",
            "text": "I need a refund",
            "start_ms": 100,
            "end_ms": 1400,
            "interrupted": False,
        }
    ]
    ended = feed.event(str(call.pk))
    assert ended["event"] == "call.ended"
    assert ended["reason"] == "caller hung up"
    assert (ended["interruptions"], ended["turns"], ended["latency_ms_avg"]) == (1, 2, 420.0)
    assert ended["sentiment_label"] == "negative"
    assert Transcript.objects.filter(call=call).count() == 1
    assert Call.objects.get(pk=call.pk).status == CallStatus.COMPLETED


def test_every_listener_gets_every_event(asgi_server, open_feed) -> None:
    first, second = open_feed(), open_feed()
    call_id = str(uuid.uuid4())
    asgi_server.run(status_module_publish("call.started", call_id))
    asgi_server.run(status_module_publish("call.ended", call_id))
    for feed in (first, second):
        events = [feed.event(call_id), feed.event(call_id)]
        assert [e["event"] for e in events] == ["call.started", "call.ended"]


async def status_module_publish(kind: str, call_id: str, **fields: object) -> None:
    from calls.events import call_event_publish

    await call_event_publish(kind=kind, call_id=call_id, **fields)


def test_heartbeat_comment_when_nothing_happens(asgi_server, open_feed, monkeypatch) -> None:
    monkeypatch.setattr(status_module, "HEARTBEAT_S", 0.2)
    feed = open_feed()
    started = time.monotonic()
    heartbeats = 0
    while heartbeats < 2:
        block = feed.block()
        # (Events of other processes sharing the Redis server may come in between.)
        assert block == [": heartbeat"] or any(line.startswith("event:") for line in block)
        heartbeats += block == [": heartbeat"]
    assert time.monotonic() - started < 2
    # A heartbeat does not lose an event that arrives next.
    call_id = str(uuid.uuid4())
    asgi_server.run(status_module_publish("call.updated", call_id, status="ringing"))
    assert feed.event(call_id)["status"] == "ringing"


def _group_members(asgi_server) -> set[str]:
    async def members() -> set[str]:
        layer = get_channel_layer()
        if isinstance(layer, InMemoryChannelLayer):
            return set(layer.groups.get(STATUS_GROUP, {}))
        async with layer.connection(layer.consistent_hash(STATUS_GROUP)) as connection:
            names = await connection.zrange(layer._group_key(STATUS_GROUP), 0, -1)
        return {name.decode() for name in names}

    return asgi_server.run(members())


def _task_count(asgi_server) -> int:
    async def count() -> int:
        return len(asyncio.all_tasks()) - 1  # not this one

    return asgi_server.run(count())


def _eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_disconnected_listeners_leave_no_membership_or_task(asgi_server, open_feed) -> None:
    members_before = _group_members(asgi_server)
    baseline_tasks = _task_count(asgi_server)  # the server's own, with nobody connected

    feeds = [open_feed(), open_feed()]
    # Ours are the new members (with Redis, other processes may be listening too).
    ours = _group_members(asgi_server) - members_before
    assert len(ours) == 2
    assert _task_count(asgi_server) > baseline_tasks
    for feed in feeds:
        feed.response.close()

    assert _eventually(lambda: not ours & _group_members(asgi_server))
    # With Redis, a receive cancelled mid-pop unwinds when the pop times out (5 s).
    assert _eventually(lambda: _task_count(asgi_server) == baseline_tasks, timeout_s=10)
    # And the group still delivers to whoever listens next.
    feed = open_feed()
    call_id = str(uuid.uuid4())
    asgi_server.run(status_module_publish("call.started", call_id))
    assert feed.event(call_id)["event"] == "call.started"


def test_feed_refuses_without_credentials_or_permission(asgi_server, make_user) -> None:
    anonymous = httpx.get(f"{asgi_server.url}/api/status", timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Token"
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    key = Token.objects.create(user=make_user()).key
    refused = httpx.get(
        f"{asgi_server.url}/api/status",
        headers={"Authorization": f"Token {key}", "Accept": "text/event-stream"},
        timeout=5,
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"


@pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="across processes needs the Redis channel layer"
)
def test_events_from_another_process_arrive_through_redis(open_feed) -> None:
    feed = open_feed()
    call_id = str(uuid.uuid4())
    publisher = (
        "import django; django.setup()\n"
        "from calls.events import call_event_publish_sync\n"
        f"call_event_publish_sync(kind='call.started', call_id='{call_id}', stream_sid='MZ9')\n"
    )
    env = base_env(
        DJANGO_SETTINGS_MODULE="bridge_project.settings",
        REDIS_URL=os.environ["REDIS_URL"],
        DATABASE_URL=os.environ.get("DATABASE_URL", ""),
    )
    subprocess.run(
        [sys.executable, "-c", publisher],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    event = feed.event(call_id)
    assert (event["event"], event["stream_sid"]) == ("call.started", "MZ9")
