"""GET /api/analytics: period aggregates and a zero-filled series per hour, day or week."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from calls.models import CallStatus

pytestmark = pytest.mark.django_db


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.fixture
def week_of_calls(make_call, make_analytics):
    """Monday 2 and Wednesday 4 March 2026 (UTC), four calls with known measures."""
    first = make_call(
        started_at=at("2026-03-02T10:15"), status=CallStatus.COMPLETED, duration_s=60.0
    )
    make_analytics(
        first,
        latency_ms_avg=400.0,
        interruptions=2,
        sentiment_label="positive",
        caller_talk_s=20,
        agent_talk_s=30,
        silence_s=10,
        input_audio_tokens=200,
        output_audio_tokens=600,
        estimated_cost_usd=Decimal("0.05"),
    )
    make_call(started_at=at("2026-03-02T10:45"), status=CallStatus.FAILED)  # no analytics row
    third = make_call(
        started_at=at("2026-03-02T12:05"), status=CallStatus.COMPLETED, duration_s=120.0
    )
    make_analytics(
        third,
        latency_ms_avg=600.0,
        interruptions=0,
        sentiment_label="negative",
        caller_talk_s=50,
        agent_talk_s=60,
        silence_s=10,
        input_audio_tokens=500,
        output_audio_tokens=1200,
        estimated_cost_usd=Decimal("0.1"),
    )
    fourth = make_call(started_at=at("2026-03-04T09:00"), status=CallStatus.BUSY)
    make_analytics(fourth)


def report(api, **params: str) -> dict:
    response = api.get("/api/analytics", params)
    assert response.status_code == 200, response.content
    return response.json()


def series(body: dict, measure: str = "calls") -> list[tuple[str, object]]:
    return [(entry["bucket"], entry[measure]) for entry in body["series"]]


def test_totals_over_the_period(api, week_of_calls) -> None:
    totals = report(api, startDate="2026-03-02", endDate="2026-03-08")["totals"]
    assert totals == {
        "calls": 4,
        "completed": 2,
        "failed": 1,
        "unanswered": 1,
        "duration_s_avg": 90.0,
        "duration_s_p95": 120.0,
        "latency_ms_avg": 500.0,
        "latency_ms_p95": 600.0,
        "interruptions_per_call": pytest.approx(2 / 3),
        "calls_by_direction": {"inbound": 4, "outbound": 0},
        "sentiment": {"positive": 1, "neutral": 0, "negative": 1, "unknown": 2},
        "caller_talk_s": 70.0,
        "agent_talk_s": 90.0,
        "silence_s": 20.0,
        "input_audio_tokens": 700,
        "output_audio_tokens": 1800,
        "estimated_cost_usd": "0.150000",
    }


def test_hourly_buckets_with_empty_hours(api, week_of_calls) -> None:
    body = report(
        api, startDate="2026-03-02T09:00:00Z", endDate="2026-03-02T13:59:59Z", interval="hour"
    )
    assert body["interval"] == "hour"
    assert series(body) == [
        ("2026-03-02T09:00:00Z", 0),
        ("2026-03-02T10:00:00Z", 2),
        ("2026-03-02T11:00:00Z", 0),
        ("2026-03-02T12:00:00Z", 1),
        ("2026-03-02T13:00:00Z", 0),
    ]
    ten, eleven = body["series"][1], body["series"][2]
    assert (ten["completed"], ten["failed"], ten["duration_s_avg"]) == (1, 1, 60.0)
    assert ten["sentiment"] == {"positive": 1, "neutral": 0, "negative": 0, "unknown": 1}
    assert ten["estimated_cost_usd"] == "0.050000"
    # An empty bucket: zero counts and sums, no averages or percentiles.
    assert eleven["sentiment"] == {"positive": 0, "neutral": 0, "negative": 0, "unknown": 0}
    assert eleven["duration_s_avg"] is None
    assert eleven["duration_s_p95"] is None
    assert eleven["latency_ms_p95"] is None
    assert eleven["interruptions_per_call"] is None
    assert (eleven["caller_talk_s"], eleven["input_audio_tokens"]) == (0.0, 0)
    assert eleven["estimated_cost_usd"] == "0.000000"


def test_daily_buckets_with_empty_days(api, week_of_calls) -> None:
    body = report(api, startDate="2026-03-01", endDate="2026-03-05", interval="day")
    assert series(body) == [
        ("2026-03-01T00:00:00Z", 0),
        ("2026-03-02T00:00:00Z", 3),
        ("2026-03-03T00:00:00Z", 0),
        ("2026-03-04T00:00:00Z", 1),
        ("2026-03-05T00:00:00Z", 0),
    ]
    assert series(body, "duration_s_p95")[1] == ("2026-03-02T00:00:00Z", 120.0)
    assert series(body, "unanswered")[3] == ("2026-03-04T00:00:00Z", 1)


def test_weekly_buckets_start_on_monday(api, week_of_calls, make_call) -> None:
    make_call(started_at=at("2026-03-15T23:00"))  # a Sunday: still the week of the 9th
    body = report(api, startDate="2026-02-25", endDate="2026-03-22", interval="week")
    assert series(body) == [
        ("2026-02-23T00:00:00Z", 0),
        ("2026-03-02T00:00:00Z", 4),
        ("2026-03-09T00:00:00Z", 1),
        ("2026-03-16T00:00:00Z", 0),
    ]


def test_the_period_bounds_the_calls(api, week_of_calls) -> None:
    body = report(
        api, startDate="2026-03-02T10:30:00Z", endDate="2026-03-02T12:05:00Z", interval="hour"
    )
    assert body["totals"]["calls"] == 2  # 10:45 and 12:05 (inclusive); not 10:15
    assert [calls for _, calls in series(body)] == [1, 0, 1]


def test_p95_is_the_nearest_rank_per_bucket_and_overall(api, make_call, make_analytics) -> None:
    # Day one: durations 1..20 s; day two: 100 s alone. Nearest rank of 20 is the 19th.
    for n in range(1, 21):
        call = make_call(started_at=at(f"2026-04-01T08:{n:02d}"), duration_s=float(n))
        make_analytics(call, latency_ms_avg=float(10 * n))
    make_analytics(
        make_call(started_at=at("2026-04-02T08:00"), duration_s=100.0), latency_ms_avg=5.0
    )
    make_call(started_at=at("2026-04-02T09:00"))  # no duration: not in the percentile
    body = report(api, startDate="2026-04-01", endDate="2026-04-02")
    first, second = body["series"]
    assert (first["duration_s_p95"], first["duration_s_avg"]) == (19.0, 10.5)
    assert first["latency_ms_p95"] == 190.0
    assert (second["duration_s_p95"], second["latency_ms_p95"]) == (100.0, 5.0)
    # Overall, 21 values: rank ceil(19.95) = 20 -> 20 s; latencies 5, 10..200 -> 190.
    assert body["totals"]["duration_s_p95"] == 20.0
    assert body["totals"]["latency_ms_p95"] == 190.0


def test_buckets_follow_the_server_time_zone(api, make_call, settings) -> None:
    settings.TIME_ZONE = "Europe/Paris"
    make_call(started_at=at("2026-03-02T23:30"))  # 00:30 on the 3rd in Paris
    body = report(api, startDate="2026-03-02", endDate="2026-03-03")
    assert body["timezone"] == "Europe/Paris"
    assert series(body) == [
        ("2026-03-02T00:00:00+01:00", 0),
        ("2026-03-03T00:00:00+01:00", 1),
    ]


def test_hours_across_daylight_saving_changes(api, make_call, settings) -> None:
    settings.TIME_ZONE = "America/New_York"
    # 1 November 2026: 01:00-02:00 happens twice (EDT, then EST); both fall in one bucket.
    make_call(started_at=at("2026-11-01T05:30"))  # 01:30 EDT
    make_call(started_at=at("2026-11-01T06:30"))  # 01:30 EST
    body = report(api, startDate="2026-11-01T00:00", endDate="2026-11-01T03:59", interval="hour")
    assert series(body) == [
        ("2026-11-01T00:00:00-04:00", 0),
        ("2026-11-01T01:00:00-04:00", 2),
        ("2026-11-01T02:00:00-05:00", 0),
        ("2026-11-01T03:00:00-05:00", 0),
    ]
    # 8 March 2026: 02:00-03:00 does not exist, so there is no bucket for it.
    body = report(api, startDate="2026-03-08T00:00", endDate="2026-03-08T03:59", interval="hour")
    assert [bucket for bucket, _ in series(body)] == [
        "2026-03-08T00:00:00-05:00",
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T03:00:00-04:00",
    ]


def test_defaults_are_the_last_seven_days_by_day(api) -> None:
    body = report(api)
    start = dt.datetime.fromisoformat(body["start"])
    end = dt.datetime.fromisoformat(body["end"])
    assert end - start == dt.timedelta(days=7)
    assert body["interval"] == "day"
    assert len(body["series"]) == 8  # two partial days at the ends
    assert body["totals"]["calls"] == 0


def test_query_count_does_not_grow_with_calls(api, make_call, make_analytics) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            report(api, startDate="2026-03-01", endDate="2026-03-31")
        return len(captured)

    make_analytics(make_call(started_at=at("2026-03-05T10:00"), duration_s=3.0))
    few = queries()
    for n in range(60):
        call = make_call(
            started_at=at("2026-03-01T00:00") + dt.timedelta(hours=11 * n), duration_s=float(n)
        )
        make_analytics(call, latency_ms_avg=float(n))
    assert queries() == few


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"interval": "minute"}, "interval"),
        ({"startDate": "last week"}, "startDate"),
        ({"endDate": "2026-02-30"}, "endDate"),
        ({"startDate": "2026-03-05", "endDate": "2026-03-01"}, "endDate"),
        ({"startDate": "2020-01-01", "endDate": "2026-01-01", "interval": "hour"}, "interval"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(api, params: dict, field: str) -> None:
    response = api.get("/api/analytics", params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert list(error["details"]) == [field]
    assert error["message"].startswith(f"{field}: ")
