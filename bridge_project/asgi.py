"""ASGI entry point: HTTP goes to Django, the WebSocket at /streams to the media consumer,
lifespan to start-up recovery and graceful shutdown (realtime.lifecycle)."""

from __future__ import annotations

import gc
import os

from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bridge_project.settings")

django_asgi_app = get_asgi_application()

from realtime.lifecycle import lifespan  # noqa: E402  (these need the apps loaded)
from telephony.consumer import MediaStreamConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "lifespan": lifespan,
        "http": django_asgi_app,
        "websocket": URLRouter([path("streams", MediaStreamConsumer.as_asgi())]),
    }
)

# Everything imported so far lives for the whole process. Freezing it keeps full garbage
# collections from walking Django's import-time objects, which otherwise shows up as tens of
# milliseconds of jitter on the media path (ARCHITECTURE.md, "Speed facts").
gc.freeze()
