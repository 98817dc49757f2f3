"""The live status feed: call events published on the channel layer for /api/status (SSE).

One group for every listener; with Redis as the layer, events from every process reach every
listener. Publishing never raises: a broken feed must not break a call.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from channels.layers import get_channel_layer

STATUS_GROUP = "calls.status"
logger = logging.getLogger(__name__)


async def call_event_publish(*, kind: str, call_id: str, **fields: Any) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    event = {"type": "call.event", "kind": kind, "call_id": call_id, "at": time.time(), **fields}
    try:
        await layer.group_send(STATUS_GROUP, event)
    except Exception:
        logger.warning("could not publish %s for call %s", kind, call_id, exc_info=True)
