"""ASGI entry point: HTTP goes to Django, the WebSocket at /streams to the media consumer."""

from __future__ import annotations

import gc
import os

from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bridge_project.settings")

django_asgi_app = get_asgi_application()

from telephony.consumer import MediaStreamConsumer  # noqa: E402  (needs the apps loaded)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter([path("streams", MediaStreamConsumer.as_asgi())]),
    }
)

# Everything imported so far lives for the whole process. Freezing it keeps full garbage
# collections from walking Django's import-time objects, which otherwise shows up as tens of
# milliseconds of jitter on the media path (ARCHITECTURE.md, "Speed facts").
gc.freeze()
