"""The call list: columns, filters, date drill-down, search, a fixed number of queries, access."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from calls.models import Analytics, Transcript

pytestmark = pytest.mark.django_db
URL = "/admin/calls/call/"


def listed(response) -> set:
    assert response.status_code == 200, response.status_code
    return {call.pk for call in response.context["cl"].result_list}


def test_the_list_shows_what_a_support_lead_reads(
    client_as, viewer, make_full_call, make_agent
) -> None:
    sales = make_agent(name="Sales line", slug="sales")
    call = make_full_call(caller="+14155550123", agent=sales)
    body = client_as(viewer).get(URL).content.decode()
    started = timezone.localtime(call.started_at).strftime("%Y-%m-%d %H:%M:%S")
    assert started in body
    assert "+14155550123" in body and "Oakland, CA, US" in body
    # The agent by name, linked to its page.
    assert f'<a href="/admin/agents/agent/{sales.pk}/change/">Sales line</a>' in body
    assert '<span class="bo-badge bo-status--completed">Completed</span>' in body
    assert ">0:12<" in body  # 12.4 s
    assert 'class="bo-badge bo-sentiment--positive" title="score +0.62">positive<' in body
    assert '<td class="field-interruptions_column">1</td>' in body
    assert '<span class="">640 ms</span>' in body
    assert 'alt="True"' in body  # it has a recording


def test_a_slow_response_is_flagged_and_a_call_without_analytics_is_unknown(
    client_as, viewer, make_full_call, make_call
) -> None:
    make_full_call(analytics={"latency_ms_avg": 1500.0})
    make_call(status="ringing")  # no analytics row yet
    body = client_as(viewer).get(URL).content.decode()
    assert '<span class="bo-slow">1500 ms</span>' in body
    assert '<span class="bo-badge bo-sentiment--unknown">unknown</span>' in body
    assert 'alt="False"' in body


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("active", {"ringing", "in-progress"}),
        ("finished", {"completed", "failed"}),
        ("failed", {"failed"}),
        ("in-progress", {"in-progress"}),
    ],
)
def test_the_status_filter(client_as, viewer, make_call, value, expected) -> None:
    calls = {status: make_call(status=status) for status in ("ringing", "in-progress", "failed")}
    now = timezone.now()
    calls["completed"] = make_call(status="completed", started_at=now, ended_at=now)
    shown = listed(client_as(viewer).get(URL, {"status": value}))
    assert shown == {calls[status].pk for status in expected}


def test_the_sentiment_filter_and_its_unknown_choice(
    client_as, viewer, make_full_call, make_call
) -> None:
    happy = make_full_call()
    angry = make_full_call(analytics={"sentiment_label": "negative", "sentiment_score": -0.7})
    unscored = make_full_call(analytics={"sentiment_label": "", "sentiment_score": None})
    bare = make_call()
    client = client_as(viewer)
    assert listed(client.get(URL, {"sentiment": "negative"})) == {angry.pk}
    assert listed(client.get(URL, {"sentiment": "positive"})) == {happy.pk}
    assert listed(client.get(URL, {"sentiment": "unknown"})) == {unscored.pk, bare.pk}


def test_the_agent_filter_lists_the_agents_and_calls_without_one(
    client_as, viewer, make_call, make_agent
) -> None:
    sales_agent = make_agent(name="Sales", slug="sales")
    make_agent(name="Support", slug="support")
    sales = make_call(agent=sales_agent)
    unanswered = make_call()
    client = client_as(viewer)
    body = client.get(URL).content.decode()
    assert "?agent=sales" in body and "?agent=support" in body and "?agent=-" in body
    assert listed(client.get(URL, {"agent": "sales"})) == {sales.pk}
    assert listed(client.get(URL, {"agent": "support"})) == set()
    assert listed(client.get(URL, {"agent": "-"})) == {unanswered.pk}


def test_sorting_by_agent_sorts_by_its_name(client_as, viewer, make_call, make_agent) -> None:
    zed = make_call(agent=make_agent(name="Zed", slug="a-zed"))
    abe = make_call(agent=make_agent(name="Abe", slug="z-abe"))
    # list_display index 3 is the agent column.
    response = client_as(viewer).get(URL, {"o": "3"})
    assert [c.pk for c in response.context["cl"].result_list] == [abe.pk, zed.pk]


def test_search_covers_the_agents_name(client_as, viewer, make_call, make_agent) -> None:
    billing = make_call(agent=make_agent(name="Billing desk", slug="billing"))
    make_call()
    assert listed(client_as(viewer).get(URL, {"q": "billing DESK"})) == {billing.pk}


def test_the_barge_in_and_latency_filters(client_as, viewer, make_full_call) -> None:
    cut_and_slow = make_full_call(analytics={"interruptions": 2, "latency_ms_avg": 1400.0})
    smooth = make_full_call(analytics={"interruptions": 0, "latency_ms_avg": 400.0})
    client = client_as(viewer)
    assert listed(client.get(URL, {"barge_ins": "yes"})) == {cut_and_slow.pk}
    assert listed(client.get(URL, {"barge_ins": "no"})) == {smooth.pk}
    assert listed(client.get(URL, {"latency": "slow"})) == {cut_and_slow.pk}
    assert listed(client.get(URL, {"latency": "ok"})) == {smooth.pk}


def test_the_date_hierarchy_drills_down_to_a_day(client_as, viewer, make_call) -> None:
    day = timezone.make_aware(dt.datetime(2026, 3, 10, 9, 30))
    on_the_day = make_call(started_at=day)
    make_call(started_at=day + dt.timedelta(days=1))
    make_call(started_at=day - dt.timedelta(days=40))
    client = client_as(viewer)
    body = client.get(URL).content.decode()
    assert "started_at__year=2026" in body  # the drill-down is offered
    params = {"started_at__year": 2026, "started_at__month": 3, "started_at__day": 10}
    assert listed(client.get(URL, params)) == {on_the_day.pk}


@pytest.mark.parametrize(
    ("term", "who"),
    [
        ("5550123", "first"),  # part of the caller's number
        ("CAfeed", "first"),  # the call SID
        ("callback", "second"),  # a word of the notes
        ("cancel", "second"),  # a word said in the call
        ("ORDER cancelled", "second"),  # every word, in any field, any case
    ],
)
def test_search_covers_caller_sid_notes_and_transcript(
    client_as, viewer, make_call, make_full_call, term, who
) -> None:
    calls = {
        "first": make_call(caller="+14155550123", call_sid="CAfeed0001"),
        "second": make_full_call(caller="+14155550999", notes="Wants a callback."),
    }
    assert listed(client_as(viewer).get(URL, {"q": term})) == {calls[who].pk}


def test_a_call_matching_many_lines_is_listed_once(client_as, viewer, make_full_call) -> None:
    call = make_full_call()
    # Every line of the conversation contains an "o"; the call still appears once.
    assert Transcript.objects.filter(call=call, text__icontains="o").count() > 1
    response = client_as(viewer).get(URL, {"q": "o"})
    assert [c.pk for c in response.context["cl"].result_list] == [call.pk]
    assert response.context["cl"].result_count == 1


def _queries_for_list(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(URL).status_code == 200
    return len(queries)


def test_the_list_is_a_fixed_number_of_queries(
    client_as, viewer, make_full_call, make_agent
) -> None:
    client = client_as(viewer)
    make_full_call()
    make_full_call()
    few = _queries_for_list(client)
    for _ in range(6):
        make_full_call(agent=make_agent())
    assert _queries_for_list(client) == few


def test_columns_sort_by_their_measure(client_as, viewer, make_full_call) -> None:
    slow = make_full_call(analytics={"latency_ms_avg": 1400.0})
    fast = make_full_call(analytics={"latency_ms_avg": 300.0})
    client = client_as(viewer)
    # list_display index 8 is the latency column; "o=-8" sorts it descending.
    response = client.get(URL, {"o": "-8"})
    assert [c.pk for c in response.context["cl"].result_list] == [slow.pk, fast.pk]
    assert Analytics.objects.count() == 2


def test_who_may_open_the_list(client, make_staff, viewer, make_call) -> None:
    make_call()
    response = client.get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    staff_without_permission = make_staff()
    client.force_login(staff_without_permission)
    assert client.get(URL).status_code == 403
    not_staff = make_staff("calls.view_call", is_staff=False)
    client.force_login(not_staff)
    assert client.get(URL).status_code == 302
    client.force_login(viewer)
    assert client.get(URL).status_code == 200


def test_calls_are_never_added_here_and_only_superusers_delete(
    client_as, editor, make_staff, make_call
) -> None:
    call = make_call()
    client = client_as(editor)
    response = client.get(URL)
    body = response.content.decode()
    assert "/admin/calls/call/add/" not in body
    assert "delete_selected" not in body
    assert client.get(f"{URL}add/").status_code == 403
    assert client.get(f"{URL}{call.pk}/delete/").status_code == 403
    boss = make_staff(is_superuser=True)
    admin_client = client_as(boss)
    assert "delete_selected" in admin_client.get(URL).content.decode()
    assert admin_client.get(f"{URL}add/").status_code == 403
    assert admin_client.get(f"{URL}{call.pk}/delete/").status_code == 200


def test_the_list_links_to_the_live_and_analytics_pages(client_as, viewer) -> None:
    body = client_as(viewer).get(URL).content.decode()
    assert 'href="/admin/calls/call/live/"' in body
    assert 'href="/admin/calls/call/analytics/"' in body
