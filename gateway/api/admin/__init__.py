"""Admin endpoints (admin key only)."""
