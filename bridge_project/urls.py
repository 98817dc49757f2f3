from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from bridge_project.health import health

admin.site.site_header = "Voice bridge back-office"
admin.site.site_title = "Voice bridge"
admin.site.index_title = "Calls, recordings and analytics"

urlpatterns = [
    path("health", health, name="health"),
    path("admin/", admin.site.urls),
    path("twilio/", include("telephony.urls")),
    path("api/", include("calls.api.urls")),
]
