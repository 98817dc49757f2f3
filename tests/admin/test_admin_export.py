"""CSV export of the selected calls (an admin action)."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from calls.admin import CSV_COLUMNS, spreadsheet_safe

pytestmark = pytest.mark.django_db
URL = "/admin/calls/call/"


def export(client, calls) -> tuple[object, list[dict[str, str]]]:
    response = client.post(
        URL, {"action": "export_csv", "_selected_action": [str(call.pk) for call in calls]}
    )
    assert response.status_code == 200, response.status_code
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")  # for spreadsheets to read UTF-8
    return response, list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))


def test_the_selected_calls_are_exported(client_as, viewer, make_full_call, make_call) -> None:
    now = timezone.now()
    older = make_full_call(
        started_at=now - dt.timedelta(hours=2), notes="Line one.\nLine two, with a comma."
    )
    newer = make_full_call(started_at=now - dt.timedelta(hours=1), call_sid="CAnewer")
    make_call(call_sid="CAnot-selected")
    response, rows = export(client_as(viewer), [older, newer])
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="calls-')
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [row["id"] for row in rows] == [str(newer.pk), str(older.pk)]  # newest first
    row = rows[1]
    assert row["call_sid"] == older.call_sid
    assert row["started_at"] == timezone.localtime(older.started_at).isoformat()
    assert (row["status"], row["duration_s"], row["end_reason"]) == (
        "completed",
        "12.4",
        "caller hung up",
    )
    assert (row["sentiment"], row["sentiment_score"], row["interruptions"]) == (
        "positive",
        "0.62",
        "1",
    )
    assert (row["latency_ms_avg"], row["latency_ms_p95"]) == ("640.0", "910.0")
    assert (row["city"], row["country"]) == ("Oakland", "US")
    assert row["notes"] == "Line one.\nLine two, with a comma."


def test_a_call_without_analytics_exports_empty_measures(client_as, viewer, make_call) -> None:
    call = make_call(status="ringing")
    _, [row] = export(client_as(viewer), [call])
    assert row["sentiment"] == row["latency_ms_avg"] == row["duration_s"] == row["ended_at"] == ""
    assert row["status"] == "ringing"


def test_the_agent_is_exported_by_name_with_its_version(
    client_as, viewer, make_call, make_agent
) -> None:
    answered = make_call(agent=make_agent(name="Sales line"), agent_version=3)
    unanswered = make_call()
    _, rows = export(client_as(viewer), [answered, unanswered])
    by_id = {row["id"]: row for row in rows}
    assert (by_id[str(answered.pk)]["agent"], by_id[str(answered.pk)]["agent_version"]) == (
        "Sales line",
        "3",
    )
    assert by_id[str(unanswered.pk)]["agent"] == by_id[str(unanswered.pk)]["agent_version"] == ""


def test_cells_a_spreadsheet_would_run_as_formulas_are_defused(
    client_as, viewer, make_call
) -> None:
    hostile = make_call(caller='=HYPERLINK("http://x")', notes="@SUM(A1:A9)")
    plain = make_call(caller="+14155550123", notes="-0.5")
    _, rows = export(client_as(viewer), [hostile, plain])
    by_id = {row["id"]: row for row in rows}
    assert by_id[str(hostile.pk)]["caller"] == '\'=HYPERLINK("http://x")'
    assert by_id[str(hostile.pk)]["notes"] == "'@SUM(A1:A9)"
    assert by_id[str(plain.pk)]["caller"] == "+14155550123"  # a number stays a number
    assert by_id[str(plain.pk)]["notes"] == "-0.5"


@pytest.mark.parametrize(
    ("value", "safe"),
    [("-2+3", "'-2+3"), ("+1 415 555 0123", "+1 415 555 0123"), ("\tx", "'\tx"), (3, 3)],
)
def test_spreadsheet_safe(value, safe) -> None:
    assert spreadsheet_safe(value) == safe


def test_the_export_is_a_fixed_number_of_queries(
    client_as, viewer, make_full_call, make_agent
) -> None:
    client = client_as(viewer)
    counts = []
    for size in (2, 8):
        calls = [make_full_call(agent=make_agent()) for _ in range(size)]
        with CaptureQueriesContext(connection) as queries:
            _, rows = export(client, calls)
        assert len(rows) == size
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_the_export_needs_the_view_permission(client, make_staff, make_call) -> None:
    call = make_call()
    client.force_login(make_staff())
    response = client.post(URL, {"action": "export_csv", "_selected_action": [str(call.pk)]})
    assert response.status_code == 403
