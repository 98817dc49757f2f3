"""GET /api/calls/:id/recording: whole file, byte ranges, downloads, any storage backend."""

from __future__ import annotations

import datetime as dt
import io
import wave

import httpx
import pytest
from django.core.files.storage import default_storage
from rest_framework.authtoken.models import Token

from calls.api.recordings import ByteRange, RangeNotSatisfiable, byte_range_parse

pytestmark = pytest.mark.django_db

SIZE = 200_000  # over three read chunks


def wav_bytes(frames: int = (SIZE - 44) // 4) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        # Distinct bytes everywhere, so a wrong offset cannot go unnoticed.
        wav.writeframes(bytes((i * 7 + i // 256) % 256 for i in range(frames * 4)))
    return buffer.getvalue()


@pytest.fixture
def wav() -> bytes:
    data = wav_bytes()
    assert len(data) == SIZE
    return data


@pytest.fixture
def call_with_recording(make_call, make_recording, wav):
    call = make_call(
        call_sid="CA0123456789abcdef0123456789abcdef",
        started_at=dt.datetime(2026, 3, 10, 12, 30, 5, tzinfo=dt.UTC),
    )
    make_recording(call, wav)
    return call


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def get(api, call, range_header: str | None = None, **params):
    headers = {"Range": range_header} if range_header else {}
    return api.get(f"/api/calls/{call.pk}/recording", params, headers=headers)


def test_whole_file_with_length_type_and_ranges_advertised(api, call_with_recording, wav) -> None:
    response = get(api, call_with_recording)
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/wav"
    assert response["Content-Length"] == str(SIZE)
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Disposition"].startswith("inline")
    assert body(response) == wav


def test_first_bytes(api, call_with_recording, wav) -> None:
    response = get(api, call_with_recording, "bytes=0-43")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 0-43/{SIZE}"
    assert response["Content-Length"] == "44"
    assert body(response) == wav[:44]


def test_a_middle_range_across_chunks(api, call_with_recording, wav) -> None:
    response = get(api, call_with_recording, "bytes=65000-140000")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 65000-140000/{SIZE}"
    assert response["Content-Length"] == "75001"
    assert body(response) == wav[65000:140001]


def test_an_open_ended_range(api, call_with_recording, wav) -> None:
    response = get(api, call_with_recording, "bytes=199990-")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 199990-{SIZE - 1}/{SIZE}"
    assert body(response) == wav[199990:]


def test_a_suffix_range(api, call_with_recording, wav) -> None:
    response = get(api, call_with_recording, "bytes=-500")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {SIZE - 500}-{SIZE - 1}/{SIZE}"
    assert response["Content-Length"] == "500"
    assert body(response) == wav[-500:]


def test_a_range_past_the_end_is_trimmed(api, call_with_recording, wav) -> None:
    response = get(api, call_with_recording, f"bytes={SIZE - 10}-{SIZE + 1000}")
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {SIZE - 10}-{SIZE - 1}/{SIZE}"
    assert body(response) == wav[-10:]


def test_an_unsatisfiable_range_is_416(api, call_with_recording) -> None:
    response = get(api, call_with_recording, f"bytes={SIZE}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{SIZE}"
    assert response.json()["error"]["code"] == "range_not_satisfiable"


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "items=0-5", "bytes=9-1", "bytes=abc"])
def test_ranges_we_do_not_serve_get_the_whole_file(api, call_with_recording, header) -> None:
    response = get(api, call_with_recording, header)
    assert response.status_code == 200
    assert response["Content-Length"] == str(SIZE)


def test_if_range_with_another_etag_gets_the_whole_file(api, call_with_recording) -> None:
    etag = get(api, call_with_recording)["ETag"]
    same = api.get(
        f"/api/calls/{call_with_recording.pk}/recording",
        headers={"Range": "bytes=0-9", "If-Range": etag},
    )
    assert same.status_code == 206
    other = api.get(
        f"/api/calls/{call_with_recording.pk}/recording",
        headers={"Range": "bytes=0-9", "If-Range": '"stale"'},
    )
    assert other.status_code == 200


def test_download_is_an_attachment_with_a_sensible_name(api, call_with_recording) -> None:
    response = get(api, call_with_recording, download="true")
    assert response["Content-Disposition"] == (
        'attachment; filename="call-20260310-123005-CA0123456789abcdef0123456789abcdef.wav"'
    )
    assert get(api, call_with_recording, download="false")["Content-Disposition"].startswith(
        "inline"
    )


def test_bad_download_value_is_400(api, call_with_recording) -> None:
    response = get(api, call_with_recording, download="maybe")
    assert response.status_code == 400
    assert "download" in response.json()["error"]["details"]


def test_no_recording_is_404(api, make_call, recording_storage) -> None:
    response = get(api, make_call())
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "This call has no recording."


def test_file_missing_from_storage_is_404(api, call_with_recording) -> None:
    default_storage.delete(call_with_recording.recordings.get().file.name)
    response = get(api, call_with_recording)
    assert response.status_code == 404
    assert "missing" in response.json()["error"]["message"]


def test_a_chosen_recording(api, call_with_recording, make_recording) -> None:
    second = make_recording(call_with_recording, b"second take")
    first = call_with_recording.recordings.exclude(pk=second.pk).get()
    assert body(get(api, call_with_recording)) == b"second take"  # newest by default
    assert len(body(get(api, call_with_recording, recording=str(first.pk)))) == SIZE
    assert get(api, call_with_recording, recording="not-a-uuid").status_code == 400
    other = "00000000-0000-0000-0000-000000000000"
    assert get(api, call_with_recording, recording=other).status_code == 404


def test_works_with_another_storage_backend(api, make_call, settings, wav) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    from django.core.files.base import ContentFile

    from calls.models import Recording

    call = make_call()
    name = default_storage.save("recordings/mem.wav", ContentFile(wav))
    Recording.objects.create(call=call, file=name, size_bytes=SIZE)
    response = get(api, call, "bytes=100000-100099")
    assert response.status_code == 206
    assert body(response) == wav[100000:100100]


def test_reading_a_recording_needs_the_view_permission(
    make_user, client_for, call_with_recording
) -> None:
    response = get(client_for(make_user()), call_with_recording)
    assert response.status_code == 403


def test_served_by_uvicorn_the_file_streams_in_ranges(
    asgi_server, make_user, make_call, make_recording, wav
) -> None:
    """Under ASGI the body is an async iterator reading in worker threads: the real path."""
    call = make_call()
    make_recording(call, wav)
    key = Token.objects.create(user=make_user("calls.view_call")).key
    url = f"{asgi_server.url}/api/calls/{call.pk}/recording"
    with httpx.Client(headers={"Authorization": f"Token {key}"}, timeout=10) as client:
        whole = client.get(url)
        assert whole.status_code == 200
        assert whole.headers["content-length"] == str(SIZE)
        assert whole.content == wav
        middle = client.get(url, headers={"Range": "bytes=70000-139999"})
        assert middle.status_code == 206
        assert middle.headers["content-range"] == f"bytes 70000-139999/{SIZE}"
        assert middle.content == wav[70000:140000]
        suffix = client.get(url, headers={"Range": "bytes=-44"})
        assert suffix.content == wav[-44:]
        beyond = client.get(url, headers={"Range": f"bytes={SIZE + 1}-"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes = 10 - 19", ByteRange(10, 19)),
        ("bytes=-1", ByteRange(99, 99)),
        ("bytes=-1000", ByteRange(0, 99)),
        ("bytes=50-", ByteRange(50, 99)),
        ("bytes=-", None),
        ("bytes=٣-5", None),  # non-ASCII digits are not digits here
    ],
)
def test_byte_range_parse(header: str | None, expected: ByteRange | None) -> None:
    assert byte_range_parse(header, 100) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0), ("bytes=-5", 0)]
)
def test_byte_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        byte_range_parse(header, size)
