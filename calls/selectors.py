"""Reads of the call record (writes live in calls.services)."""

from __future__ import annotations

from calls.models import ACTIVE_STATUSES, Call


def active_call_count() -> int:
    """Calls that Twilio has not reported finished yet (all processes, from the database)."""
    return Call.objects.filter(status__in=ACTIVE_STATUSES).count()
