"""GET /api/calls and /api/calls/:id: pages, filters, search, ordering, the detail's parts."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from calls.models import Call, CallStatus

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def field_error(response, field: str) -> str:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["details"], error
    assert field in error["message"]
    return error["details"][field][0]


@pytest.fixture
def sales(make_agent):
    return make_agent(name="Sales", slug="sales", phone_numbers=("+18005550100",))


@pytest.fixture
def support(make_agent):
    return make_agent(name="Support", slug="support", phone_numbers=("+18005550199",))


@pytest.fixture
def three_calls(make_call, make_analytics, sales, support):
    """Oldest to newest, with different callers, agents, statuses and sentiments."""
    calls = [
        make_call(
            caller="+14155550001",
            agent=sales,
            status=CallStatus.COMPLETED,
            started_at=T0,
            duration_s=30.0,
        ),
        make_call(
            caller="+14155550002",
            agent=sales,
            status=CallStatus.FAILED,
            started_at=T0 + dt.timedelta(days=1),
            duration_s=5.0,
        ),
        make_call(
            caller="+14155550001",
            agent=support,
            status=CallStatus.COMPLETED,
            started_at=T0 + dt.timedelta(days=2),
            duration_s=90.0,
        ),
    ]
    for call, label in zip(calls, ("positive", "negative", "neutral"), strict=True):
        make_analytics(call, sentiment_label=label, interruptions=1, latency_ms_avg=400.0)
    return calls


# --- pages and ordering ---------------------------------------------------------------------


def test_list_is_newest_first_with_count_and_links(api, three_calls) -> None:
    response = api.get("/api/calls", {"limit": 2})
    body = response.json()
    assert body["count"] == 3
    assert ids(response) == [str(three_calls[2].pk), str(three_calls[1].pk)]
    assert body["previous"] is None
    assert parse_qs(urlsplit(body["next"]).query) == {"limit": ["2"], "offset": ["2"]}
    second = api.get(body["next"])
    assert ids(second) == [str(three_calls[0].pk)]
    assert second.json()["next"] is None
    assert second.json()["previous"] is not None


def test_list_items_carry_the_call_fields_and_an_analytics_summary(api, three_calls) -> None:
    item = api.get("/api/calls").json()["results"][0]
    call = three_calls[2]
    assert item["id"] == str(call.pk)
    assert item["call_sid"] == call.call_sid
    assert item["caller"] == call.caller
    assert item["agent"] == {"slug": "support", "name": "Support"}
    assert item["status"] == "completed"
    assert item["duration_s"] == 90.0
    assert item["url"].endswith(f"/api/calls/{call.pk}")
    assert item["has_recording"] is False
    assert item["analytics"]["sentiment_label"] == "neutral"
    assert item["analytics"]["interruptions"] == 1
    assert "transcripts" not in item


def test_call_without_analytics_lists_null_summary(api, make_call) -> None:
    make_call()
    item = api.get("/api/calls").json()["results"][0]
    assert item["analytics"] is None
    assert item["agent"] is None  # no agent answered it


def test_limit_and_offset_must_be_integers(api) -> None:
    assert "integer" in field_error(api.get("/api/calls", {"limit": "ten"}), "limit")
    field_error(api.get("/api/calls", {"limit": "0"}), "limit")
    field_error(api.get("/api/calls", {"offset": "-1"}), "offset")


def test_limit_above_the_maximum_is_capped(api, make_call) -> None:
    for _ in range(3):
        make_call()
    response = api.get("/api/calls", {"limit": 100000})
    assert len(ids(response)) == 3


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("duration_s", [1, 0, 2]),
        ("-duration_s", [2, 0, 1]),
        ("started_at", [0, 1, 2]),
        # By the agent's name (Sales < Support), not by its id.
        ("agent,-started_at", [1, 0, 2]),
        ("-agent,started_at", [2, 0, 1]),
    ],
)
def test_ordering_parameter(api, three_calls, ordering: str, expected: list[int]) -> None:
    response = api.get("/api/calls", {"ordering": ordering})
    assert ids(response) == [str(three_calls[i].pk) for i in expected]


def test_unknown_ordering_field_is_400(api) -> None:
    message = field_error(api.get("/api/calls", {"ordering": "notes"}), "ordering")
    assert "notes" in message


def test_ties_keep_one_order_across_pages(api, make_call) -> None:
    # Same start instant for all: only the tie-breaker decides, and pages must not overlap.
    calls = [make_call(started_at=T0) for _ in range(7)]
    seen = []
    for offset in range(0, 7, 3):
        seen += ids(api.get("/api/calls", {"limit": 3, "offset": offset}))
    assert sorted(seen) == sorted(str(c.pk) for c in calls)
    assert len(set(seen)) == 7


def test_a_page_of_100_costs_the_same_queries_as_a_page_of_1(
    api,
    make_call,
    make_analytics,
    make_transcript,
    make_recording,
    django_assert_max_num_queries,
    sales,
    support,
) -> None:
    def page_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get("/api/calls", {"limit": 100}).status_code == 200
        return len(queries)

    first = make_call(agent=sales)
    make_analytics(first)
    make_transcript(first, "hello")
    make_recording(first, b"RIFF")
    one = page_queries()
    for n in range(99):
        agent = (sales, support, None)[n % 3]  # the agents' names come with the page
        call = make_call(started_at=T0 + dt.timedelta(minutes=n), agent=agent)
        make_analytics(call, interruptions=n)
        make_transcript(call, f"line {n}")
    assert page_queries() == one
    # Token and user, the user's and groups' permissions, the count, the page.
    with django_assert_max_num_queries(5):
        response = api.get("/api/calls", {"limit": 100})
    assert len(ids(response)) == 100


# --- filters ----------------------------------------------------------------------------------


def test_filter_by_caller_and_agent(api, three_calls) -> None:
    by_caller = api.get("/api/calls", {"caller": "+14155550001"})
    assert ids(by_caller) == [str(three_calls[2].pk), str(three_calls[0].pk)]
    by_agent = api.get("/api/calls", {"agent": "support"})
    assert ids(by_agent) == [str(three_calls[2].pk)]
    both = api.get("/api/calls", {"caller": "+14155550001", "agent": "sales"})
    assert ids(both) == [str(three_calls[0].pk)]


def test_filter_by_an_agent_without_calls_is_empty(api, three_calls, make_agent) -> None:
    make_agent(slug="quiet")
    assert ids(api.get("/api/calls", {"agent": "quiet"})) == []


def test_filter_by_an_unknown_agent_is_404(api, three_calls) -> None:
    # A typo must not look like "no calls": the slug names no agent at all. A well-formed slug
    # is schema-valid, so not a 400: the agent it names is not found.
    response = api.get("/api/calls", {"agent": "no-such-agent"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "agent" in response.json()["error"]["message"]
    field_error(api.get("/api/calls", {"agent": "not a slug"}), "agent")


def test_unencoded_plus_in_a_number_still_matches(api, three_calls) -> None:
    # "?caller=+1415..." as typed: the "+" arrives as a space.
    response = api.get("/api/calls?caller=+14155550002")
    assert ids(response) == [str(three_calls[1].pk)]


def test_filter_by_status(api, three_calls) -> None:
    assert ids(api.get("/api/calls", {"status": "failed"})) == [str(three_calls[1].pk)]
    assert "bogus" in field_error(api.get("/api/calls", {"status": "bogus"}), "status")


def test_filter_by_sentiment(api, three_calls) -> None:
    assert ids(api.get("/api/calls", {"sentiment": "positive"})) == [str(three_calls[0].pk)]
    field_error(api.get("/api/calls", {"sentiment": "ecstatic"}), "sentiment")


def test_filter_by_dates_takes_whole_days_inclusive(api, three_calls) -> None:
    response = api.get("/api/calls", {"startDate": "2026-03-11", "endDate": "2026-03-11"})
    assert ids(response) == [str(three_calls[1].pk)]
    response = api.get("/api/calls", {"startDate": "2026-03-11"})
    assert ids(response) == [str(three_calls[2].pk), str(three_calls[1].pk)]
    response = api.get("/api/calls", {"endDate": "2026-03-11"})
    assert ids(response) == [str(three_calls[1].pk), str(three_calls[0].pk)]


def test_filter_by_datetimes_with_and_without_offset(api, three_calls) -> None:
    # 13:00+01:00 is 12:00 UTC, the first call's start: inclusive.
    response = api.get(
        "/api/calls", {"startDate": "2026-03-10T13:00:00+01:00", "endDate": "2026-03-11T12:00:00Z"}
    )
    assert ids(response) == [str(three_calls[1].pk), str(three_calls[0].pk)]
    response = api.get("/api/calls", {"startDate": "2026-03-10T12:00:01"})
    assert ids(response) == [str(three_calls[2].pk), str(three_calls[1].pk)]


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2026-13-01",
        "2026-02-30",
        "2026-03-10T25:00",
        "10/03/2026",
        "2026-03-10T12:00:00+99:00",
    ],
)
@pytest.mark.parametrize("field", ["startDate", "endDate"])
def test_malformed_dates_are_400_naming_the_field(api, three_calls, field: str, value: str):
    assert "ISO 8601" in field_error(api.get("/api/calls", {field: value}), field)


def test_end_before_start_is_400(api) -> None:
    response = api.get("/api/calls", {"startDate": "2026-03-12", "endDate": "2026-03-11"})
    field_error(response, "endDate")


# --- search -----------------------------------------------------------------------------------


def test_search_finds_calls_by_number_agent_sid_notes_and_transcript(
    api, make_call, make_transcript, make_agent
) -> None:
    by_caller = make_call(caller="+447700900123")
    by_agent = make_call(agent=make_agent(name="Billing desk", slug="billing"))
    by_sid = make_call(call_sid="CAfeedface0000000000000000000000")
    by_notes = make_call(notes="Customer wants a REFUND for order 42")
    by_transcript = make_call()
    make_transcript(by_transcript, "I would like a refund, please")
    make_transcript(by_transcript, "refund again", sequence=5)  # two matches, one result
    make_call(notes="nothing to see")

    def found(term: str) -> set[str]:
        return set(ids(api.get("/api/calls", {"search": term})))

    assert found("7700900") == {str(by_caller.pk)}
    assert found("billing DESK") == {str(by_agent.pk)}  # the agent's name, any case
    assert found("billi") == {str(by_agent.pk)}  # or its slug
    assert found("feedface") == {str(by_sid.pk)}
    assert found("refund") == {str(by_notes.pk), str(by_transcript.pk)}
    response = api.get("/api/calls", {"search": "refund"})
    assert response.json()["count"] == 2
    # Every word must match (in any of the fields).
    assert found("refund please") == {str(by_transcript.pk)}
    assert found("refund 42") == {str(by_notes.pk)}
    assert found("no-such-thing") == set()


def test_search_combines_with_filters(api, make_call) -> None:
    make_call(notes="refund", status=CallStatus.FAILED)
    wanted = make_call(notes="refund", status=CallStatus.COMPLETED)
    response = api.get("/api/calls", {"search": "refund", "status": "completed"})
    assert ids(response) == [str(wanted.pk)]


def test_overlong_search_is_400(api) -> None:
    field_error(api.get("/api/calls", {"search": "x" * 201}), "search")


# --- detail -----------------------------------------------------------------------------------


def test_detail_has_the_call_and_all_its_parts(
    api, make_call, make_analytics, make_metadata, make_transcript, make_recording
) -> None:
    call = make_call(status=CallStatus.COMPLETED, duration_s=12.5, end_reason="caller hung up")
    make_analytics(
        call,
        interruptions=3,
        latency_ms_avg=512.0,
        sentiment_label="positive",
        estimated_cost_usd="0.123456",
    )
    make_metadata(call, country="US", city="SAN FRANCISCO", custom={"k": "v"})
    # Written out of spoken order: the caller's line was transcribed after the agent's.
    make_transcript(call, "How can I help?", speaker="agent", sequence=0, start_ms=1500)
    make_transcript(
        call, "Hello?", speaker="caller", sequence=1, start_ms=200, end_ms=900, interrupted=True
    )
    recording = make_recording(call, b"RIFF....WAVE")

    response = api.get(f"/api/calls/{call.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(call.pk)
    assert body["call_sid"] == call.call_sid
    assert body["status"] == "completed"
    assert body["duration_s"] == 12.5
    assert body["end_reason"] == "caller hung up"
    assert [line["text"] for line in body["transcripts"]] == ["Hello?", "How can I help?"]
    assert body["transcripts"][0] == {
        "sequence": 1,
        "speaker": "caller",
        "text": "Hello?",
        "confidence": None,
        "start_ms": 200,
        "end_ms": 900,
        "interrupted": True,
        "inaudible": False,
    }
    assert body["analytics"]["interruptions"] == 3
    assert body["analytics"]["latency_ms_avg"] == 512.0
    assert body["analytics"]["sentiment_label"] == "positive"
    assert body["analytics"]["estimated_cost_usd"] == "0.123456"
    assert body["metadata"]["country"] == "US"
    assert body["metadata"]["custom"] == {"k": "v"}
    [listed] = body["recordings"]
    assert listed["id"] == str(recording.pk)
    assert listed["size_bytes"] == 12
    # The URLs work as given.
    played = api.get(listed["url"])
    assert played.status_code == 200
    assert b"".join(played.streaming_content) == b"RIFF....WAVE"
    downloaded = api.get(listed["download_url"])
    assert downloaded["Content-Disposition"].startswith("attachment")


def test_detail_has_the_agent_its_version_and_snapshot(api, make_call, sales) -> None:
    snapshot = {"version": 4, "agent": {"voice": "marin"}, "session": {"type": "realtime"}}
    call = make_call(agent=sales, agent_version=4, agent_snapshot=snapshot)
    body = api.get(f"/api/calls/{call.pk}").json()
    assert body["agent"] == {"slug": "sales", "name": "Sales"}
    assert body["agent_version"] == 4
    assert body["agent_snapshot"] == snapshot


def test_detail_of_a_bare_call_has_empty_parts(api, make_call) -> None:
    call = make_call()
    body = api.get(f"/api/calls/{call.pk}").json()
    assert (body["agent"], body["agent_version"], body["agent_snapshot"]) == (None, None, {})
    assert body["transcripts"] == []
    assert body["recordings"] == []
    assert body["analytics"] is None
    assert body["metadata"] is None
    assert body["note_entries"] == []


def test_detail_ignores_list_filters(api, make_call) -> None:
    call = make_call(status=CallStatus.COMPLETED)
    assert api.get(f"/api/calls/{call.pk}", {"status": "failed"}).status_code == 200


def test_detail_queries_do_not_grow_with_its_rows(
    api, make_call, make_transcript, make_analytics
) -> None:
    call = make_call()
    make_analytics(call)

    def detail_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get(f"/api/calls/{call.pk}").status_code == 200
        return len(queries)

    make_transcript(call, "one")
    before = detail_queries()
    for n in range(1, 30):
        make_transcript(call, f"line {n}")
    assert detail_queries() == before
    assert Call.objects.count() == 1
