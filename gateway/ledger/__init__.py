"""The per-request cost ledger: one row per request, written off the request path, never lost."""
