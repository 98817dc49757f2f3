"""GET /api/status: the live call feed as Server-Sent Events.

Event ids count up from 1 on each connection. The feed keeps no history, so a reconnecting
client's Last-Event-ID is not replayed: it re-reads /api/calls for what it missed.

Each connection joins the channel layer's status group with a channel of its own, so with Redis
every process's calls reach every listener. The view is an async Django view (DRF views are
sync, and a sync view would hold a worker thread for as long as the client listens); DRF still
decides who may listen, through the same authentication, permission and throttles as the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from calls.api.exceptions import api_error
from calls.events import CALL_ENDED, CALL_STARTED, CALL_UPDATED, STATUS_GROUP

logger = logging.getLogger(__name__)

# Seconds of silence before a comment line: keeps proxies and load balancers from closing an
# idle connection, and lets the server notice a client that went away.
HEARTBEAT_S = 15.0
# How long a browser's EventSource waits before reconnecting after a drop.
RETRY_MS = 3000
FEED_KINDS = frozenset({CALL_STARTED, CALL_UPDATED, CALL_ENDED})


class _JsonAnyway(BaseContentNegotiation):
    """The refusals are JSON whatever the client accepts (it asks for text/event-stream)."""

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return None


class _FeedGate(APIView):
    """DRF's checks for the feed: the default authenticators, permission and throttles."""

    renderer_classes = (JSONRenderer,)
    content_negotiation_class = _JsonAnyway


def _feed_refusal(request: HttpRequest) -> HttpResponse | None:
    """Run DRF's authentication, permission and throttle checks; a rendered error or None."""
    gate = _FeedGate()
    gate.args, gate.kwargs, gate.headers = (), {}, {}
    drf_request = gate.initialize_request(request)
    gate.request = drf_request
    try:
        gate.initial(drf_request)
    except Exception as exc:
        response = gate.finalize_response(drf_request, gate.handle_exception(exc))
        return response.render()
    return None


def sse_event(*, event_id: int, message: dict[str, Any]) -> str:
    payload = {key: value for key, value in message.items() if key not in ("type", "kind")}
    data = json.dumps(payload, separators=(",", ":"), default=str)  # one line: no raw newlines
    return f"id: {event_id}\nevent: {message['kind']}\ndata: {data}\n\n"


async def feed_events(layer: BaseChannelLayer) -> AsyncIterator[str]:
    """The stream of one listener; the group membership ends with it, however it ends.

    Django cancels (then closes) this generator when the client disconnects, so the `finally`
    is the one place that cleans up. The pending receive is a task of its own, kept across
    heartbeats rather than cancelled each time, so no message is lost to a timeout.
    """
    channel = await layer.new_channel()
    receiving: asyncio.Task[dict[str, Any]] | None = None
    event_id = 0
    try:
        # Inside the try: a cancellation landing during the add still discards.
        await layer.group_add(STATUS_GROUP, channel)
        yield f"retry: {RETRY_MS}\n: subscribed\n\n"
        while True:
            if receiving is None:
                receiving = asyncio.ensure_future(layer.receive(channel))
            done, _ = await asyncio.wait({receiving}, timeout=HEARTBEAT_S)
            if not done:
                yield ": heartbeat\n\n"
                continue
            try:
                message = receiving.result()
            except Exception:
                # The layer is gone (Redis down): end the stream; EventSource reconnects.
                logger.warning("status feed lost its channel layer", exc_info=True)
                return
            finally:
                receiving = None
            if message.get("kind") in FEED_KINDS:
                event_id += 1
                yield sse_event(event_id=event_id, message=message)
    finally:
        if receiving is not None:
            receiving.cancel()
        try:
            # Leave the group before waiting for the receive to unwind: with Redis, a receive
            # cancelled in the middle of its blocking pop finishes only when the pop times out
            # (channels_redis's brpop_timeout, 5 s), and nothing should be sent here meanwhile.
            await layer.group_discard(STATUS_GROUP, channel)
        finally:
            if receiving is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await receiving


# Exempt: the feed only reads (GET), and DRF's gate checks who may listen. Without it a POST
# would get Django's CSRF 403 before the 405 it is.
@csrf_exempt
async def status_feed(request: HttpRequest) -> HttpResponseBase:
    if request.method != "GET":
        return api_error(
            status_code=405,
            code="method_not_allowed",
            message=f'Method "{request.method}" not allowed.',
            headers={"Allow": "GET"},
        )
    refusal = await sync_to_async(_feed_refusal)(request)
    if refusal is not None:
        return refusal
    try:
        layer = get_channel_layer()
    except Exception:
        logger.exception("status feed: the channel layer cannot be built")
        layer = None
    if layer is None:
        return api_error(
            status_code=503, code="unavailable", message="The live feed is not available."
        )
    response = StreamingHttpResponse(feed_events(layer), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx would otherwise hold events in its buffer
    return response
