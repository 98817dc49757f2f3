from __future__ import annotations

from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"
    verbose_name = "Calls"

    def ready(self) -> None:
        from calls.sentiment import sentiment_analyzer_load

        # A bad SENTIMENT_ANALYZER stops the start with a message naming it, instead of
        # failing at the end of every call.
        sentiment_analyzer_load()
