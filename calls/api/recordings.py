"""Serving a recording from any Django storage backend, with HTTP Range so players can seek.

Single ranges are honoured (`bytes=a-b`, `bytes=a-`, `bytes=-n`). A header asking for several
ranges, another unit, or a malformed one is ignored and the whole file is sent with 200, which
RFC 9110 (section 14.2) allows; browsers and media players only ever ask for one range.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.exceptions import SuspiciousFileOperation
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.text import get_valid_filename
from rest_framework.exceptions import NotFound

from calls.api.exceptions import api_error
from calls.models import Call, Recording

T = TypeVar("T")
CHUNK_BYTES = 64 * 1024
_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$", re.ASCII)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class RangeNotSatisfiable(Exception):
    pass


def byte_range_parse(header: str | None, size: int) -> ByteRange | None:
    """The one range a Range header asks for, None for the whole file.

    Raises RangeNotSatisfiable when the range is well-formed but starts past the end (or is
    an empty suffix): that is a 416, where a malformed header is just ignored.
    """
    match = _SINGLE_RANGE.match((header or "").replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None  # "bytes=-": no range at all
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid, so ignored (RFC 9110 14.1.1)
    if start >= size:
        raise RangeNotSatisfiable
    return ByteRange(start, min(end, size - 1))


def _skip(handle: IO[bytes], offset: int) -> None:
    """Seek when the backend's file can; read and drop otherwise (some remote files can't)."""
    try:
        handle.seek(offset)
    except (AttributeError, OSError, ValueError):
        while offset > 0:
            dropped = handle.read(min(CHUNK_BYTES, offset))
            if not dropped:
                return
            offset -= len(dropped)


def _chunks(handle: IO[bytes], length: int) -> Iterator[bytes]:
    while length > 0:
        chunk = handle.read(min(CHUNK_BYTES, length))
        if not chunk:
            return
        length -= len(chunk)
        yield chunk


def _file_chunks(recording: Recording, start: int, length: int) -> Iterator[bytes]:
    # Opened on the first read, not before: a response that is never sent leaks nothing.
    with recording.file.storage.open(recording.file.name, "rb") as handle:
        _skip(handle, start)
        yield from _chunks(handle, length)


def _off_thread(function: Callable[..., T], *args: Any) -> Coroutine[Any, Any, T]:
    return sync_to_async(function, thread_sensitive=False)(*args)


async def _file_chunks_async(recording: Recording, start: int, length: int) -> AsyncIterator[bytes]:
    """The same, for ASGI: each blocking storage call runs in a worker thread.

    thread_sensitive=False: file reads touch no database connection, so they must not queue
    behind the one shared thread every sync view and ORM call of the process runs on.
    """

    handle = await _off_thread(recording.file.storage.open, recording.file.name, "rb")
    try:
        await _off_thread(_skip, handle, start)
        while length > 0:
            chunk = await _off_thread(handle.read, min(CHUNK_BYTES, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk
    finally:
        await _off_thread(handle.close)


def recording_filename(*, call: Call, recording: Recording) -> str:
    suffix = PurePosixPath(recording.file.name).suffix or f".{recording.format}"
    started = timezone.localtime(call.started_at).strftime("%Y%m%d-%H%M%S")
    return get_valid_filename(f"call-{started}-{call.call_sid}{suffix}")


def _content_type(recording: Recording) -> str:
    if recording.format == "wav":
        return "audio/wav"
    guessed, _ = mimetypes.guess_type(recording.file.name)
    return guessed or "application/octet-stream"


def recording_response(
    *, request: HttpRequest, call: Call, recording: Recording, as_attachment: bool
) -> HttpResponseBase:
    storage, name = recording.file.storage, recording.file.name
    try:
        size = storage.size(name)
    except SuspiciousFileOperation:
        # A stored name pointing outside the storage root (a tampered row): never follow it.
        logger.warning("recording %s has a name outside the storage root; refused", recording.pk)
        raise NotFound("The recording's file is missing from storage.") from None
    except (FileNotFoundError, OSError):
        raise NotFound("The recording's file is missing from storage.") from None
    # Recordings never change once stored, so id and size identify the bytes.
    etag = f'"{recording.pk.hex}-{size}"'
    range_header = request.headers.get("Range")
    if request.headers.get("If-Range", etag) != etag:
        range_header = None  # the client's partial copy is of something else: send it all
    try:
        byte_range = byte_range_parse(range_header, size)
    except RangeNotSatisfiable:
        return api_error(
            status_code=416,
            code="range_not_satisfiable",
            message=f"The range {range_header!r} is outside the file ({size} bytes).",
            details={"size_bytes": size},
            headers={"Content-Range": f"bytes */{size}"},
        )
    start, length = (0, size) if byte_range is None else (byte_range.start, byte_range.length)
    # Under ASGI (uvicorn) the body must be an async iterator: Django would otherwise read a
    # sync one whole into memory first. The test client and WSGI want a sync one likewise.
    chunks = (
        _file_chunks_async(recording, start, length)
        if isinstance(request, ASGIRequest)
        else _file_chunks(recording, start, length)
    )
    response = StreamingHttpResponse(
        chunks, status=200 if byte_range is None else 206, content_type=_content_type(recording)
    )
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = etag
    response["Cache-Control"] = "private, max-age=3600"
    if byte_range is not None:
        response["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
    response["Content-Disposition"] = content_disposition_header(
        as_attachment, recording_filename(call=call, recording=recording)
    )
    return response
