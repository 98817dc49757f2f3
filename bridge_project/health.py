"""GET /health: is this process able to take calls?

Each dependency check runs with a deadline so a hung database or Redis makes the endpoint
answer 503 quickly rather than hang the load balancer's probe. The endpoint is public, so a
failed check says only "unavailable"; why (host names, paths, driver messages) goes to the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse

from bridge_project import __version__
from realtime.bridge import ACTIVE_BRIDGES

logger = logging.getLogger(__name__)

STARTED_AT = time.monotonic()
CHECK_TIMEOUT_S = 3.0
UNAVAILABLE = "unavailable"


def _failed(check: str, exc: BaseException) -> None:
    """Log a failed check's cause server-side (the response only says "unavailable")."""
    logger.warning("health: %s check failed: %s: %s", check, type(exc).__name__, exc)


def _database_check_sync() -> int:
    """Run a trivial query and count active calls in one connection round."""
    from calls.selectors import active_call_count

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return active_call_count()


async def _check_database() -> tuple[dict[str, object], int | None]:
    started = time.perf_counter()
    try:
        active = await asyncio.wait_for(
            sync_to_async(_database_check_sync, thread_sensitive=True)(), CHECK_TIMEOUT_S
        )
    except Exception as exc:  # any failure means "not healthy"; the reason is logged
        connection.close_if_unusable_or_obsolete()
        _failed("database", exc)
        return {"ok": False, "error": UNAVAILABLE}, None
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}, active


async def _check_channel_layer() -> dict[str, object]:
    """Round-trip one message through the configured layer (in-memory or Redis)."""
    layer = get_channel_layer()
    if layer is None:
        logger.warning("health: channel_layer check failed: no channel layer configured")
        return {"ok": False, "error": UNAVAILABLE}
    started = time.perf_counter()
    try:
        channel = await layer.new_channel("health.")
        token = uuid.uuid4().hex
        await asyncio.wait_for(
            layer.send(channel, {"type": "health.ping", "token": token}), CHECK_TIMEOUT_S
        )
        message = await asyncio.wait_for(layer.receive(channel), CHECK_TIMEOUT_S)
    except Exception as exc:
        _failed("channel_layer", exc)
        return {"ok": False, "backend": type(layer).__name__, "error": UNAVAILABLE}
    ok = message.get("token") == token
    return {
        "ok": ok,
        "backend": type(layer).__name__,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }


async def health(request: HttpRequest) -> JsonResponse:
    (database, active_calls), channel_layer = await asyncio.gather(
        _check_database(), _check_channel_layer()
    )
    healthy = bool(database["ok"] and channel_layer["ok"])
    body = {
        "status": "ok" if healthy else "unavailable",
        "version": __version__,
        "uptime_s": round(time.monotonic() - STARTED_AT, 1),
        "checks": {"database": database, "channel_layer": channel_layer},
        "active_calls": active_calls,
        "bridged_calls_this_process": len(ACTIVE_BRIDGES),
    }
    response = JsonResponse(body, status=200 if healthy else 503)
    response["Cache-Control"] = "no-store"
    return response
