"""The analytics page: a chosen period, tiles, server-drawn charts, links into the call list."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from django.utils import timezone

from calls.models import Analytics

pytestmark = pytest.mark.django_db
URL = "/admin/calls/call/analytics/"
MARCH = {"start": "2026-03-01", "end": "2026-03-07", "interval": "day"}


def at(day: int, hour: int = 10) -> dt.datetime:
    return timezone.make_aware(dt.datetime(2026, 3, day, hour))


@pytest.fixture
def march_calls(make_call):
    """Three calls in the first week of March 2026 (and one just after it)."""

    def call(day: int, status: str, **analytics: object):
        started = at(day)
        ended = started + dt.timedelta(minutes=2) if status != "ringing" else None
        made = make_call(started_at=started, ended_at=ended, status=status, duration_s=120)
        if analytics:
            Analytics.objects.create(call=made, **analytics)
        return made

    return {
        "happy": call(2, "completed", sentiment_label="positive", latency_ms_avg=600.0,
                      caller_talk_s=60.0, agent_talk_s=48.0, interruptions=1),
        "angry": call(2, "failed", sentiment_label="negative", latency_ms_avg=1200.0,
                      caller_talk_s=30.0, agent_talk_s=30.0),
        "missed": call(4, "no-answer"),
        "later": call(9, "completed", sentiment_label="positive", latency_ms_avg=100.0),
    }  # fmt: skip


def get(client, params=None) -> str:
    response = client.get(URL, params or {})
    assert response.status_code == 200
    return response.content.decode()


def titles(body: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r"<title>([^<]+)</title>", body)]


def test_the_period_defaults_to_the_last_30_days(client_as, viewer, make_call) -> None:
    make_call(started_at=timezone.now() - dt.timedelta(days=2))
    make_call(started_at=timezone.now() - dt.timedelta(days=45))
    body = get(client_as(viewer))
    today = timezone.localdate()
    assert f'value="{(today - dt.timedelta(days=29)).isoformat()}"' in body
    assert f'value="{today.isoformat()}"' in body
    tile = re.search(r'Calls</span><span class="bo-tile-value">(\d+)<', body).group(1)
    assert tile == "1"
    assert body.count('<figure class="bo-chart module"') == 4


def test_the_tiles_and_charts_show_the_period(client_as, viewer, march_calls) -> None:
    body = get(client_as(viewer), MARCH)
    tiles = dict(
        re.findall(
            r'<span class="bo-tile-label">([^<]+)</span><span class="bo-tile-value">([^<]+)<', body
        )
    )
    assert tiles["Calls"] == "3"
    assert tiles["Completed"] == "1"
    assert tiles["Failed / unanswered"] == "1 / 1"
    assert tiles["Response latency avg"] == "900 ms"
    assert tiles["Average duration"] == "2:00"
    drawn = titles(body)
    # Calls per day: stacked by outcome, one bar per day of the period.
    assert "Mon 02 Mar: completed 1" in drawn and "Mon 02 Mar: failed 1" in drawn
    assert "Wed 04 Mar: unanswered 1" in drawn
    assert not any(t.startswith("Mon 09 Mar") for t in drawn)
    assert body.count('<text class="bo-tick"') >= 7  # a label per day, plus the value axis
    # Latency: the average of the day's calls, and nothing drawn for days without a figure.
    assert "Mon 02 Mar: average 900 ms" in drawn
    assert not any(t.startswith("Wed 04 Mar: average") for t in drawn)
    # Talk time in minutes, stacked caller / agent.
    assert "Mon 02 Mar: caller 1.5 min" in drawn and "Mon 02 Mar: agent 1.3 min" in drawn
    # Sentiment: the period's distribution.
    assert "positive: 1 (33.3%)" in drawn and "negative: 1 (33.3%)" in drawn
    assert "unknown: 1 (33.3%)" in drawn
    # The figures behind the charts, per day.
    assert "<td>Mon 02 Mar</td><td>2</td><td>1</td><td>1</td><td>0</td>" in body


def test_a_bar_opens_the_calls_it_counts(client_as, viewer, march_calls) -> None:
    client = client_as(viewer)
    body = get(client, MARCH)
    link = re.search(
        r'<a href="([^"]+)"><rect class="bo-fill-unanswered"[^>]*><title>Wed 04 Mar', body
    ).group(1)
    response = client.get(html.unescape(link))
    assert response.status_code == 200
    assert [c.pk for c in response.context["cl"].result_list] == [march_calls["missed"].pk]


def test_a_sentiment_share_opens_those_calls(client_as, viewer, march_calls) -> None:
    client = client_as(viewer)
    body = get(client, MARCH)
    link = re.search(r'<a href="([^"]+)">negative</a>', body).group(1)
    response = client.get(html.unescape(link))
    assert [c.pk for c in response.context["cl"].result_list] == [march_calls["angry"].pk]


def test_the_whole_period_opens_in_the_list(client_as, viewer, march_calls) -> None:
    client = client_as(viewer)
    body = get(client, MARCH)
    link = re.search(r'<a href="([^"]+)">Open these calls in the list</a>', body).group(1)
    shown = {c.pk for c in client.get(html.unescape(link)).context["cl"].result_list}
    assert shown == {march_calls[name].pk for name in ("happy", "angry", "missed")}


@pytest.mark.parametrize(
    ("interval", "first_bar"),
    [("week", "week of 02 Mar: completed 1"), ("hour", "02 Mar 10:00: completed 1")],
)
def test_weeks_and_hours(client_as, viewer, march_calls, interval, first_bar) -> None:
    body = get(client_as(viewer), {**MARCH, "interval": interval, "end": "2026-03-04"})
    assert first_bar in titles(body)
    assert f"Calls per {interval}" in body


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"start": "2026-03-07", "end": "2026-03-01"}, "The period ends before it starts."),
        ({"start": "2026-01-01", "end": "2026-03-01", "interval": "hour"}, "charts show at most"),
        ({"start": "yesterday"}, "Enter a valid date."),
        ({"interval": "minute"}, "Select a valid choice."),
    ],
)
def test_a_bad_period_is_explained_and_nothing_is_drawn(client_as, viewer, params, error) -> None:
    body = get(client_as(viewer), {**MARCH, **params})
    assert error in body
    assert '<figure class="bo-chart module"' not in body


def test_who_may_open_the_analytics(client, make_staff, viewer) -> None:
    response = client.get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(make_staff())
    assert client.get(URL).status_code == 403
    client.force_login(viewer)
    assert client.get(URL).status_code == 200
