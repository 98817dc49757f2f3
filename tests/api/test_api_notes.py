"""POST /api/calls/:id/notes: appended with author and time, into the notes the admin edits."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from calls.models import NOTE_MAX_CHARS, Call, CallNote

pytestmark = pytest.mark.django_db


@pytest.fixture
def editor(make_user):
    return make_user("calls.view_call", "calls.change_call", username="alice")


@pytest.fixture
def editor_api(client_for, editor):
    return client_for(editor)


def post_note(client, call: Call, payload: object):
    return client.post(f"/api/calls/{call.pk}/notes", payload, format="json")


def test_a_note_is_appended_with_author_and_time(editor_api, editor, make_call) -> None:
    call = make_call()
    before = timezone.now()
    response = post_note(editor_api, call, {"notes": "  Asked for a callback.  "})
    assert response.status_code == 201
    body = response.json()
    [entry] = body["note_entries"]
    assert entry["author"] == "alice"
    assert entry["text"] == "Asked for a callback."
    created = dt.datetime.fromisoformat(entry["created_at"])
    assert before <= created <= timezone.now()
    stamp = timezone.localtime(created).strftime("%Y-%m-%d %H:%M")
    assert body["notes"] == f"[{stamp} UTC] alice: Asked for a callback."
    assert body["id"] == str(call.pk)
    note = CallNote.objects.get()
    assert (note.call_id, note.author_id) == (call.pk, editor.pk)


def test_notes_accumulate_after_what_the_admin_wrote(editor_api, make_call, make_user, client_for):
    call = make_call(notes="Written in the admin.")
    post_note(editor_api, call, {"notes": "first"})
    bob = client_for(make_user("calls.change_call", username="bob"))
    response = post_note(bob, call, {"notes": "second\nwith two lines"})
    notes = response.json()["notes"]
    paragraphs = notes.split("\n\n")
    assert paragraphs[0] == "Written in the admin."
    assert paragraphs[1].endswith("] alice: first")
    assert paragraphs[2].endswith("] bob: second\nwith two lines")
    assert [e["author"] for e in response.json()["note_entries"]] == ["alice", "bob"]
    # The same text the admin shows and edits, and the detail view returns.
    call.refresh_from_db()
    assert call.notes == notes
    assert editor_api.get(f"/api/calls/{call.pk}").json()["notes"] == notes


def test_an_admin_edit_is_kept_by_later_notes(editor_api, make_call) -> None:
    call = make_call()
    post_note(editor_api, call, {"notes": "typo in thsi"})
    Call.objects.filter(pk=call.pk).update(notes="Rewritten by a supervisor.")
    response = post_note(editor_api, call, {"notes": "follow-up"})
    assert response.json()["notes"].startswith("Rewritten by a supervisor.\n\n[")
    # The record of who wrote what survives the edit.
    assert [e["text"] for e in response.json()["note_entries"]] == ["typo in thsi", "follow-up"]


def test_a_deleted_author_leaves_the_note(editor_api, editor, make_call) -> None:
    call = make_call()
    post_note(editor_api, call, {"notes": "kept"})
    editor.delete()
    entry = CallNote.objects.get()
    assert entry.author is None
    assert "alice: kept" in Call.objects.get(pk=call.pk).notes


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"notes": ""}, "blank"),
        ({"notes": "   \n\t "}, "blank"),
        ({}, "required"),
        ({"note": "typo in the key"}, "required"),
        ({"notes": None}, "null"),
        ({"notes": "x" * (NOTE_MAX_CHARS + 1)}, str(NOTE_MAX_CHARS)),
    ],
)
def test_empty_missing_or_oversized_notes_are_400(editor_api, make_call, payload, fragment):
    call = make_call(notes="unchanged")
    response = post_note(editor_api, call, payload)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert fragment in error["details"]["notes"][0]
    assert error["message"].startswith("notes: ")
    assert Call.objects.get(pk=call.pk).notes == "unchanged"
    assert not CallNote.objects.exists()


def test_the_longest_allowed_note_is_accepted(editor_api, make_call) -> None:
    response = post_note(editor_api, make_call(), {"notes": "x" * NOTE_MAX_CHARS})
    assert response.status_code == 201


def test_malformed_json_is_400(editor_api, make_call) -> None:
    call = make_call()
    response = editor_api.post(
        f"/api/calls/{call.pk}/notes", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_note_on_unknown_call_is_404(editor_api) -> None:
    response = editor_api.post(
        "/api/calls/00000000-0000-0000-0000-000000000000/notes", {"notes": "x"}, format="json"
    )
    assert response.status_code == 404


def test_detail_lists_note_entries(editor_api, make_call) -> None:
    call = make_call()
    post_note(editor_api, call, {"notes": "one"})
    entries = editor_api.get(f"/api/calls/{call.pk}").json()["note_entries"]
    assert [(e["author"], e["text"]) for e in entries] == [("alice", "one")]
