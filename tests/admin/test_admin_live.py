"""The live calls page (fed by /api/status in the browser) and the links between the pages."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from calls.models import Analytics, Transcript

pytestmark = pytest.mark.django_db
URL = "/admin/calls/call/live/"


def row_ids(body: str) -> list[str]:
    return re.findall(r'<tr class="bo-live-row" data-call-id="([^"]+)"', body)


def test_active_calls_are_listed_oldest_first(client_as, viewer, make_call, make_agent) -> None:
    now = timezone.now()
    ringing = make_call(status="ringing", started_at=now - dt.timedelta(seconds=5))
    talking = make_call(
        status="in-progress",
        started_at=now - dt.timedelta(minutes=3),
        agent=make_agent(name="Support desk"),
    )
    make_call(status="completed", started_at=now - dt.timedelta(minutes=9), ended_at=now)
    Analytics.objects.create(call=talking, interruptions=2)
    for sequence, (speaker, text, start) in enumerate(
        [("caller", "Where is my parcel?", 0), ("agent", "Let me check that for you.", 2000)]
    ):
        Transcript.objects.create(
            call=talking, sequence=sequence, speaker=speaker, text=text,
            start_ms=start, end_ms=start + 1500,
        )  # fmt: skip
    response = client_as(viewer).get(URL)
    assert response.status_code == 200
    body = response.content.decode()
    assert row_ids(body) == [str(talking.pk), str(ringing.pk)]
    row = body[body.index(f'data-call-id="{talking.pk}"') :]
    row = row[: row.index("</tr>")]
    assert '<td data-field="lines">2</td>' in row
    assert "<td>Support desk</td>" in row  # the agent answering, by name
    assert '<td data-field="interruptions">2</td>' in row
    assert '<span class="bo-who">agent</span> Let me check that for you.' in row
    assert "bo-status--in-progress" in row
    since = int(re.search(r'data-since-ms="(\d+)"', row).group(1))
    assert since == int(talking.started_at.timestamp() * 1000)
    assert f'href="/admin/calls/call/{talking.pk}/change/"' in row
    assert '<span class="bo-count" id="bo-live-count">2</span>' in body
    assert '<p class="bo-quiet" id="bo-live-empty" hidden>' in body


def test_the_page_is_wired_to_the_status_feed(client_as, viewer, settings) -> None:
    body = client_as(viewer).get(URL).content.decode()
    assert 'data-feed-url="/api/status"' in body
    assert 'data-rows-url="/admin/calls/call/live/?fragment=rows"' in body
    placeholder = "00000000-0000-0000-0000-000000000000"
    assert f'data-change-url="/admin/calls/call/{placeholder}/change/"' in body
    assert f'data-placeholder-id="{placeholder}"' in body
    assert f'data-time-zone="{settings.TIME_ZONE}"' in body
    assert re.search(r'<script src="/static/calls/admin/live.js" defer>', body)
    assert '<p class="bo-quiet" id="bo-live-empty">No call in progress.</p>' in body


def test_the_rows_fragment_is_just_the_rows(client_as, viewer, make_call) -> None:
    call = make_call(status="in-progress")
    response = client_as(viewer).get(URL, {"fragment": "rows"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    assert row_ids(body) == [str(call.pk)]
    assert "<html" not in body and "<tbody" not in body


def test_calls_that_just_ended_are_listed_newest_first(client_as, viewer, make_full_call) -> None:
    now = timezone.now()
    first = make_full_call(ended_at=now - dt.timedelta(minutes=2))
    second = make_full_call(ended_at=now - dt.timedelta(minutes=1), end_reason="stop")
    body = client_as(viewer).get(URL).content.decode()
    ended = re.findall(r'<li data-call-id="([^"]+)">', body)
    assert ended == [str(second.pk), str(first.pk)]
    assert "bo-sentiment--positive" in body and "640 ms" in body


def test_who_may_watch_live_calls(client, make_staff, viewer) -> None:
    response = client.get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(make_staff())
    assert client.get(URL).status_code == 403
    assert client.get(URL, {"fragment": "rows"}).status_code == 403
    client.force_login(viewer)
    assert client.get(URL).status_code == 200


# --- the site: its title and the links between the pages ------------------------------------


def test_the_site_is_titled_for_the_product(client_as, viewer) -> None:
    body = client_as(viewer).get("/admin/").content.decode()
    assert "<title>Calls, recordings and analytics | Voice bridge</title>" in body
    assert ">Voice bridge back-office</a>" in body
    assert "View site" not in body  # there is no public site to view


def test_every_page_links_to_the_back_office_pages(client_as, viewer, make_full_call) -> None:
    call = make_full_call()
    client = client_as(viewer)
    pages = [
        "/admin/",
        "/admin/calls/call/",
        f"/admin/calls/call/{call.pk}/change/",
        "/admin/calls/call/analytics/",
        URL,
    ]
    for page in pages:
        body = client.get(page).content.decode()
        nav = re.search(r'<nav class="bo-nav" aria-label="Back-office">(.*?)</nav>', body, re.S)
        assert nav, page
        links = re.findall(r'href="([^"]+)"', nav.group(1))
        assert links == ["/admin/calls/call/", URL, "/admin/calls/call/analytics/"], page
    home = client.get("/admin/").content.decode()
    assert 'id="backoffice-module"' in home


def test_staff_who_may_not_read_calls_see_no_links_to_them(client_as, make_staff) -> None:
    body = client_as(make_staff()).get("/admin/").content.decode()
    assert 'class="bo-nav"' not in body and "backoffice-module" not in body
