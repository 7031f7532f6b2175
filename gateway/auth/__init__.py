"""Virtual keys (tenant identity), the admin key, budgets and rate limits."""
