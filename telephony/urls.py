from __future__ import annotations

from django.urls import path

from telephony import views

urlpatterns = [
    path("incoming-call", views.incoming_call, name="twilio-incoming-call"),
    path("call-status", views.call_status, name="twilio-call-status"),
    path("amd-status", views.amd_status, name="twilio-amd-status"),
    path("stream-ended", views.stream_ended, name="twilio-stream-ended"),
    path("whisper", views.whisper, name="twilio-whisper"),
]
