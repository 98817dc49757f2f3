"""Who may use /api/agents: Django's model permissions on Agent, as the admin uses them."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


def agent_permission_for(method: str) -> str:
    """Reading agents is viewing them; every write (create, change, delete) is changing them.

    One permission for all writes keeps the roles simple: whoever may edit an agent's prompt
    can already make it answer nothing, which is what adding or deleting amounts to.
    """
    return "agents.view_agent" if method in SAFE_METHODS else "agents.change_agent"


class AgentPermission(BasePermission):
    """Authenticated, with the model permission for the method (superusers have all)."""

    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        needed = agent_permission_for(request.method or "GET")
        self.message = f"This needs the {needed} permission."
        return bool(user.has_perm(needed))
