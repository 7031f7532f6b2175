"""Prometheus metrics the gateway exports on `/metrics`. Names are part of the public contract:
dashboards and alert rules in `dashboards/` reference them."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)

REQUESTS = Counter(
    "tiergate_requests_total",
    "Requests answered, by endpoint, deployment, tier, status code and cache outcome.",
    ["endpoint", "deployment", "tier", "status", "cache"],
)
TOKENS = Counter(
    "tiergate_tokens_total",
    "Tokens by deployment and class (input_uncached, input_cache_read, input_cache_write, output).",
    ["deployment", "token_class"],
)
COST = Counter("tiergate_cost_usd_total", "Actual cost in USD, by team and tier.", ["team", "tier"])
BASELINE_COST = Counter(
    "tiergate_baseline_cost_usd_total", "What the same requests would have cost on the baseline.", ["team"]
)
UPSTREAM_LATENCY = Histogram(
    "tiergate_upstream_latency_seconds",
    "Upstream call duration (to the last byte), by deployment.",
    ["deployment"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "tiergate_upstream_errors_total",
    "Failed upstream attempts, by deployment and error class.",
    ["deployment", "error_class"],
)
RETRIES = Counter("tiergate_upstream_retries_total", "Retried upstream attempts.", ["deployment"])
FALLBACKS = Counter("tiergate_fallbacks_total", "Requests served by a fallback deployment.", ["deployment"])
OVERHEAD = Histogram(
    "tiergate_gateway_overhead_seconds",
    "Time the gateway itself adds to a request (total minus upstream wait).",
    buckets=_OVERHEAD_BUCKETS,
)
LEDGER_WRITTEN_ROWS = Counter("tiergate_ledger_rows_written_total", "Ledger rows written to the database.")
LEDGER_SPOOLED_ROWS = Counter("tiergate_ledger_rows_spooled_total", "Ledger rows spooled to local disk.")
LEDGER_REPLAYED_ROWS = Counter("tiergate_ledger_rows_replayed_total", "Spooled ledger rows replayed.")
LEDGER_WRITE_ERRORS = Counter("tiergate_ledger_write_errors_total", "Failed ledger batch inserts.")
LEDGER_SPOOL_PENDING = Gauge("tiergate_ledger_spool_pending_rows", "Ledger rows waiting in the spool.")
AUTH_FAILURES = Counter("tiergate_auth_failures_total", "Requests rejected for a missing or invalid key.")
LIMITED = Counter("tiergate_limited_total", "Requests refused by a budget or rate limit.", ["reason"])
LIMITS_DEGRADED = Gauge(
    "tiergate_limits_degraded",
    "1 while this replica enforces budgets and rate limits from its own memory because Redis is unreachable.",
)
SAVINGS = Counter(
    "tiergate_savings_usd_total",
    "Baseline minus actual cost in USD by team and source of saving; parts that cost more than the "
    "baseline count under direction=lost.",
    ["team", "source", "direction"],
)
ROUTE_DECISIONS = Counter(
    "tiergate_route_decisions_total",
    "Routing decisions by policy, chosen deployment and the rule that decided.",
    ["policy", "deployment", "reason"],
)
SELFHOST_LOAD = Gauge(
    "tiergate_selfhost_load",
    "Self-hosted replica load from the pool's scrapes (running, waiting, kv_cache_usage).",
    ["deployment", "replica", "signal"],
)
BUDGET = Gauge(
    "tiergate_budget_usd", "Sum of active keys' budgets in USD by team and period.", ["team", "period"]
)
