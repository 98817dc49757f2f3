"""Who may use the API: Django's model permissions on Call, as the admin uses them."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


def call_permission_for(method: str, action: str | None = None) -> str:
    """Reading anything (calls, recordings, analytics, the feed) is viewing calls; writing
    notes is changing them; placing a call (POST /api/calls) is adding one."""
    if method in SAFE_METHODS:
        return "calls.view_call"
    return "calls.add_call" if action == "create" else "calls.change_call"


class CallPermission(BasePermission):
    """Authenticated, with the model permission for the method.

    Being staff is not enough by itself: the permission is what counts (superusers have all),
    so the back-office's groups decide who reads calls, as they do in the admin.
    """

    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        needed = call_permission_for(request.method or "GET", getattr(view, "action", None))
        self.message = f"This needs the {needed} permission."
        return bool(user.has_perm(needed))
