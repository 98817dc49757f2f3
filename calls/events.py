"""The live status feed: call events published on the channel layer for /api/status (SSE).

One group for every listener; with Redis as the layer, events from every process reach every
listener. Kinds: `call.started`, `call.updated` (status changes, transcript lines),
`call.tool` (a tool the agent used: name, kind, status, timing) and `call.ended` (with a
summary). Publishing never raises: a broken feed must not break a call.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

STATUS_GROUP = "calls.status"
CALL_STARTED = "call.started"
CALL_UPDATED = "call.updated"
CALL_TOOL = "call.tool"
CALL_ENDED = "call.ended"
logger = logging.getLogger(__name__)


def _event(kind: str, call_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    # "type" routes the message to the SSE consumer's handler; "kind" is the SSE event name.
    return {"type": "call.event", "kind": kind, "call_id": call_id, "at": time.time(), **fields}


async def call_event_publish(*, kind: str, call_id: str, **fields: Any) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(STATUS_GROUP, _event(kind, call_id, fields))
    except Exception:
        logger.warning("could not publish %s for call %s", kind, call_id, exc_info=True)


def call_event_publish_sync(*, kind: str, call_id: str, **fields: Any) -> None:
    """For synchronous code (webhook views)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(STATUS_GROUP, _event(kind, call_id, fields))
    except Exception:
        logger.warning("could not publish %s for call %s", kind, call_id, exc_info=True)
