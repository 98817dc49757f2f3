"""The REST API under /api/: calls, recordings, notes, analytics, the live status feed."""
