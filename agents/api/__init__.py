"""The agents API under /api/agents (routed in calls.api.urls, beside the calls API)."""
