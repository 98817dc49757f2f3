"""Routes under /api/ (no trailing slashes on the resources, as documented)."""

from __future__ import annotations

from django.urls import path, re_path
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from agents.api.views import AgentViewSet
from calls.api.exceptions import api_not_found
from calls.api.status import status_feed
from calls.api.views import AnalyticsView, CallViewSet, SchemaView

app_name = "api"

router = SimpleRouter(trailing_slash=False)
router.register("calls", CallViewSet, basename="call")
router.register("agents", AgentViewSet, basename="agent")

urlpatterns = [
    *router.urls,
    path("analytics", AnalyticsView.as_view(), name="analytics"),
    path("status", status_feed, name="status"),
    # Slash optional: the catch-all below would otherwise answer /api/docs with a 404 before
    # APPEND_SLASH could redirect it.
    re_path(r"^schema/?$", SchemaView.as_view(), name="schema"),
    re_path(r"^docs/?$", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    # Last: any other path under /api/ gets the API's JSON 404, not Django's HTML page.
    re_path(r"^", api_not_found),
]
