"""The call page: summary, player, conversation, timeline, panels; read-only record, notes."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext

from calls import admin_charts as charts
from calls import services
from calls.models import Call, CallMetadata, CallNote, Recording, Transcript

pytestmark = pytest.mark.django_db


def change_url(call: Call) -> str:
    return f"/admin/calls/call/{call.pk}/change/"


def page(client, call: Call) -> str:
    response = client.get(change_url(call))
    assert response.status_code == 200
    return response.content.decode()


def test_the_summary_header(client_as, viewer, make_full_call, make_agent) -> None:
    sales = make_agent(name="Sales line", slug="sales")
    call = make_full_call(
        caller="+14155550123", agent=sales, agent_version=3, call_sid="CAsummary1"
    )
    body = page(client_as(viewer), call)
    start = body.index('<header class="bo-summary">')
    header = body[start : body.index("</header>", start)]
    link = f'<a href="/admin/agents/agent/{sales.pk}/change/">Sales line</a>'
    assert "+14155550123" in header and link in header
    assert '<span class="bo-quiet">v3</span>' in header
    assert "Oakland, CA, US" in header and "CAsummary1" in header
    assert "bo-status--completed" in header and "bo-sentiment--positive" in header
    assert "<dd>0:12</dd>" in header and "640 ms" in header and "caller hung up" in header
    assert 'href="/admin/calls/call/?q=%2B14155550123"' in header


def test_the_agent_panel_shows_the_snapshot_the_call_was_told(
    client_as, viewer, make_full_call, make_agent
) -> None:
    sales = make_agent(name="Sales line", slug="sales")
    snapshot = {
        "version": 2,
        "agent": {"instructions": "Sell <politely>.", "voice": "marin"},
        "session": {"type": "realtime", "model": "gpt-realtime"},
    }
    call = make_full_call(agent=sales, agent_version=2, agent_snapshot=snapshot)
    body = page(client_as(viewer), call)
    start = body.index('id="bo-agent-snapshot"')
    panel = body[start : body.index("</section>", start)]
    assert f'href="/admin/agents/agent/{sales.pk}/change/"' in panel and "version 2" in panel
    # Collapsed by default, read-only, escaped.
    assert "<details><summary>What the model was told (snapshot of version 2)</summary>" in panel
    assert "Sell &lt;politely&gt;." in panel and "&quot;voice&quot;: &quot;marin&quot;" in panel


def test_a_call_no_agent_answered_shows_the_number_dialled(client_as, viewer, make_call) -> None:
    call = make_call(caller="+14155550123")
    CallMetadata.objects.create(call=call, custom={"dialled_number": "+18005550100"})
    body = page(client_as(viewer), call)
    start = body.index('<header class="bo-summary">')
    header = body[start : body.index("</header>", start)]
    assert "+18005550100" in header and '<span class="bo-quiet">no agent</span>' in header
    assert "no agent answered this call to +18005550100" in body


def test_the_player_streams_the_recording_from_the_range_capable_endpoint(
    client_as, viewer, make_full_call
) -> None:
    call = make_full_call()
    recording = call.recordings.get()
    body = page(client_as(viewer), call)
    src = f"/api/calls/{call.pk}/recording?recording={recording.pk}"
    assert f'<audio id="bo-audio" controls preload="auto" src="{src}"></audio>' in body
    assert f'href="{src}&amp;download=true"' in body


def test_the_player_source_answers_byte_ranges_to_the_staff_session(
    client_as, viewer, make_call, settings, tmp_path
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    call = make_call()
    data = bytes(range(256)) * 40
    name = default_storage.save(f"recordings/{call.pk}.wav", ContentFile(data))
    Recording.objects.create(call=call, file=name, size_bytes=len(data), duration_s=0.3)
    client = client_as(viewer)
    src = re.search(r'<audio id="bo-audio"[^>]* src="([^"]+)"', page(client, call)).group(1)
    response = client.get(src.replace("&amp;", "&"), HTTP_RANGE="bytes=1000-1099")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 1000-1099/{len(data)}"
    assert b"".join(response.streaming_content) == data[1000:1100]


def test_the_conversation_is_a_chat_with_timestamps_and_cut_turns_marked(
    client_as, viewer, make_full_call
) -> None:
    call = make_full_call()
    body = page(client_as(viewer), call)
    turns = re.findall(
        r'<li class="bo-turn bo-turn--(\w+)( bo-turn--cut)?"\s+data-start-ms="(\d+)"', body
    )
    assert [(speaker, bool(cut), int(start)) for speaker, cut, start in turns] == [
        ("caller", False, 500),
        ("agent", False, 2600),
        ("caller", False, 5300),
        ("agent", True, 7400),
        ("caller", False, 8000),  # spoken order: the barge-in starts inside the cut reply
        ("agent", False, 9600),
    ]
    seeks = re.findall(r'<button type="button" class="bo-bubble" data-seek-ms="(\d+)"', body)
    assert seeks == ["500", "2600", "5300", "7400", "8000", "9600"]
    assert "<time>0:09</time>" in body
    assert "interrupted, heard 0.8 s" in body
    assert "Done: order 427 is cancelled." in body


def test_the_timeline_draws_each_turn_and_the_barge_in(client_as, viewer, make_full_call) -> None:
    call = make_full_call()
    body = page(client_as(viewer), call)
    start = body.index('<svg id="bo-timeline"')
    svg = body[start : body.index("</svg>", start)]
    assert 'data-duration-ms="12400"' in svg
    segments = re.findall(r'class="bo-seg bo-seg--(\w+)[^"]*"\s+x="([\d.]+)"', svg)
    assert [speaker for speaker, _ in segments] == [
        "caller", "agent", "caller", "agent", "caller", "agent"
    ]  # fmt: skip
    left, plot = charts.TIMELINE_LEFT, charts.TIMELINE_RIGHT - charts.TIMELINE_LEFT
    # x = left + start_ms * (plot width / duration)
    assert float(segments[-1][1]) == pytest.approx(left + 9600 * plot / 12400, abs=0.01)
    [barge_in] = re.findall(
        r'<g class="bo-bargein"><title>([^<]+)</title>\s*<line x1="([\d.]+)"', svg
    )
    assert barge_in[0] == "barge-in at 0:08: the caller cut the agent off"
    assert float(barge_in[1]) == pytest.approx(left + 8200 * plot / 12400, abs=0.01)
    assert svg.count("bo-seg--cut") == 1


def test_the_analytics_and_metadata_panels(client_as, viewer, make_full_call) -> None:
    call = make_full_call(analytics={"estimated_cost_usd": "0.012345", "reconnects": 2})
    body = page(client_as(viewer), call)
    assert '<th scope="row">Model reconnects</th><td>2</td>' in body
    assert "640 / - / 910 / - ms" in body
    assert "$0.0123" in body
    assert "4.0 s / 5.2 s / 3.2 s" in body
    assert '<th scope="row">Location</th><td>Oakland, CA, US</td>' in body
    assert "&quot;webhook&quot;" in body  # the raw custom JSON, escaped


def test_a_call_in_progress_has_no_player_yet(client_as, viewer, make_call) -> None:
    call = make_call(status="in-progress")
    Transcript.objects.create(
        call=call, sequence=0, speaker="caller", text="Hi there", start_ms=0, end_ms=900
    )
    body = page(client_as(viewer), call)
    assert "<audio" not in body
    assert "No recording yet: it is stored when the call ends." in body
    assert 'data-seek-ms="0" title' not in body  # lines cannot seek a missing recording
    assert "Hi there" in body


def test_the_page_is_a_fixed_number_of_queries(
    client_as, viewer, make_full_call, make_agent
) -> None:
    client = client_as(viewer)
    # The agent, its link and its snapshot come with the call: no query of their own.
    agent = make_agent()
    short = make_full_call()
    long = make_full_call(agent=agent, agent_version=1, agent_snapshot={"version": 1})
    for sequence in range(6, 60):
        Transcript.objects.create(
            call=long,
            sequence=sequence,
            speaker="agent" if sequence % 2 else "caller",
            text=f"line {sequence}",
            start_ms=20_000 + sequence * 1000,
            end_ms=20_500 + sequence * 1000,
        )
    services.call_note_add(call_id=str(long.pk), author=None, text="one")
    services.call_note_add(call_id=str(long.pk), author=None, text="two")
    counts = []
    for call in (short, long):
        with CaptureQueriesContext(connection) as queries:
            page(client, call)
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_everything_recorded_is_read_only(client_as, editor, make_full_call) -> None:
    call = make_full_call(caller="+14155550123", notes="")
    client = client_as(editor)
    body = page(client, call)
    inputs = set(re.findall(r'<(?:input|textarea|select)[^>]* name="([^"]+)"', body))
    submits = {"_save", "_continue"}
    assert inputs == {"csrfmiddlewaretoken", "notes", "add_note", "notes_base", *submits}
    base = re.search(r'name="notes_base" value="(\w+)"', body).group(1)
    response = client.post(
        change_url(call),
        {
            "notes": "Checked by the lead.",
            "notes_base": base,
            "caller": "+19999999999",
            "status": "failed",
            "end_reason": "rewritten",
            "duration_s": "1",
        },
    )
    assert response.status_code == 302
    fresh = Call.objects.get(pk=call.pk)
    assert fresh.notes == "Checked by the lead."
    assert (fresh.caller, fresh.status, fresh.end_reason, fresh.duration_s) == (
        "+14155550123",
        "completed",
        "caller hung up",
        12.4,
    )


def _form(client, call: Call) -> dict[str, str]:
    body = page(client, call)
    base = re.search(r'name="notes_base" value="(\w+)"', body).group(1)
    notes = re.search(r'<textarea name="notes"[^>]*>\n?(.*?)</textarea>', body, re.S).group(1)
    return {"notes": notes.replace("&#x27;", "'"), "notes_base": base, "add_note": ""}


def test_editing_the_notes_saves_them_and_logs_who_did(client_as, editor, make_full_call) -> None:
    call = make_full_call(notes="First line.")
    client = client_as(editor)
    form = _form(client, call)
    form["notes"] = "First line.\r\nSecond line, from a browser."
    response = client.post(change_url(call), form)
    assert response.status_code == 302
    call.refresh_from_db()
    assert call.notes == "First line.\nSecond line, from a browser."
    entry = LogEntry.objects.get(object_id=str(call.pk))
    assert entry.user == editor and "Notes" in entry.get_change_message()


def test_adding_a_note_goes_through_the_same_service_as_the_api(
    client_as, editor, make_full_call
) -> None:
    call = make_full_call(notes="Existing.")
    client = client_as(editor)
    form = _form(client, call)
    form["add_note"] = "Called back, all sorted."
    response = client.post(change_url(call), form, follow=True)
    assert "Your note was added." in response.content.decode()
    note = CallNote.objects.get(call=call)
    assert (note.author, note.text) == (editor, "Called back, all sorted.")
    call.refresh_from_db()
    first, appended = call.notes.split("\n\n")
    assert first == "Existing."
    assert appended.endswith("] editor: Called back, all sorted.")
    # The page lists the note with its author.
    body = page(client, call)
    assert "<strong>editor</strong>" in body and "Called back, all sorted." in body


def test_an_edit_over_notes_changed_meanwhile_is_refused(
    client_as, editor, make_full_call, make_staff
) -> None:
    call = make_full_call(notes="Original.")
    client = client_as(editor)
    form = _form(client, call)  # the page is opened...
    other = make_staff(username="bob")
    services.call_note_add(call_id=str(call.pk), author=other, text="From the API.")
    form["notes"] = "Original, rewritten."  # ...then edited and saved
    response = client.post(change_url(call), form)
    assert response.status_code == 200
    assert "Someone added to these notes since you opened this page" in response.content.decode()
    call.refresh_from_db()
    assert call.notes.startswith("Original.\n\n") and "bob: From the API." in call.notes


def test_a_note_added_on_a_stale_page_keeps_the_notes_added_meanwhile(
    client_as, editor, make_full_call, make_staff
) -> None:
    call = make_full_call(notes="Original.")
    client = client_as(editor)
    form = _form(client, call)
    services.call_note_add(call_id=str(call.pk), author=make_staff(username="bob"), text="API.")
    form["add_note"] = "Mine."
    assert client.post(change_url(call), form).status_code == 302
    call.refresh_from_db()
    paragraphs = call.notes.split("\n\n")
    assert paragraphs[0] == "Original."
    assert paragraphs[1].endswith("bob: API.") and paragraphs[2].endswith("editor: Mine.")
    assert not LogEntry.objects.filter(change_message__contains="notes_base").exists()


def test_a_viewer_reads_the_page_but_cannot_change_anything(
    client_as, viewer, make_full_call
) -> None:
    call = make_full_call(notes="Read me.")
    client = client_as(viewer)
    body = page(client, call)
    assert "Read me." in body
    assert 'name="notes"' not in body and 'name="add_note"' not in body
    assert 'name="_save"' not in body
    response = client.post(change_url(call), {"notes": "changed", "add_note": "x"})
    assert response.status_code == 403
    call.refresh_from_db()
    assert call.notes == "Read me." and not CallNote.objects.exists()


def test_who_may_open_a_call(client, make_staff, make_full_call) -> None:
    call = make_full_call()
    response = client.get(change_url(call))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(make_staff())
    assert client.get(change_url(call)).status_code == 403


def test_an_unknown_call_id_goes_back_to_the_index(client_as, viewer) -> None:
    client = client_as(viewer)
    for missing in ("00000000-0000-0000-0000-000000000001", "not-a-uuid"):
        response = client.get(f"/admin/calls/call/{missing}/change/")
        assert response.status_code == 302
        assert response["Location"] == "/admin/"
