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

# What Django answers by itself (before a view, or for an exception none caught): JSON in the
# API's error shape under /api/, Django's own pages (the admin's included) everywhere else.
handler400 = "calls.api.exceptions.bad_request"
handler403 = "calls.api.exceptions.permission_denied"
handler404 = "calls.api.exceptions.page_not_found"
handler500 = "calls.api.exceptions.server_error"
