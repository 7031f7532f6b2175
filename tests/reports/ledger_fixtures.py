"""Synthetic ledger rows and an independent, row-by-row oracle for the report's numbers."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.db.models import LedgerEntry
from gateway.ledger.pricing import Price

START = datetime(2026, 11, 1, tzinfo=UTC)
DEPLOYMENTS = {  # name -> (tier, provider)
    "gpt-4o": ("frontier", "openai"),
    "gpt-4o-mini": ("economy", "openai"),
    "claude-sonnet": ("frontier", "anthropic"),
    "local-small": ("selfhost", "vllm"),
}


def _price(inp: str, out: str, read: str, write: str, write_1h: str) -> Price:
    return Price(Decimal(inp), Decimal(out), Decimal(read), Decimal(write), Decimal(write_1h), Decimal(out))


PRICES = {
    "gpt-4o": _price("2.5", "10", "1.25", "2.5", "2.5"),
    "gpt-4o-mini": _price("0.15", "0.6", "0.075", "0.15", "0.15"),
    "claude-sonnet": _price("3", "15", "0.3", "3.75", "6"),
    "local-small": _price("0.02", "0.04", "0.02", "0.02", "0.02"),
}


def make_rows(n: int, seed: int = 7, hours: int = 72, start: datetime = START) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        deployment = rng.choice(list(DEPLOYMENTS))
        tier, provider = DEPLOYMENTS[deployment]
        cache = rng.choices(["miss", "exact", "semantic", "off"], [6, 1, 1, 2])[0]
        price = PRICES[deployment]
        uncached, output = rng.randint(1, 3000), rng.randint(1, 800)
        read = rng.choice([0, 0, rng.randint(1, 4000)]) if provider != "vllm" else 0
        write = rng.choice([0, 0, rng.randint(1, 2000)]) if provider == "anthropic" else 0
        write_1h = rng.randint(0, write)
        hit = cache in ("exact", "semantic")
        cost = (
            0
            if hit
            else int(
                uncached * price.input
                + read * price.cache_read
                + (write - write_1h) * price.cache_write
                + write_1h * price.cache_write_1h
                + output * price.output
            )
        )
        baseline = int((uncached + read + write) * PRICES["gpt-4o"].input + output * PRICES["gpt-4o"].output)
        rows.append(
            {
                "id": f"r{seed}-{i}",
                "created_at": start + timedelta(seconds=rng.uniform(0, hours * 3600)),
                "key_id": "k1",
                "team": rng.choice(["search", "support", "ads", None]),
                "project": rng.choice(["alpha", "beta", None]),
                "endpoint": "chat",
                "requested_model": "auto",
                "deployment": deployment,
                "tier": tier,
                "provider": provider,
                "policy": rng.choice(["balanced", "cheap", None]),
                "policy_version": 1,
                "status_code": rng.choices([200, 429, 502], [20, 1, 1])[0],
                "stream": False,
                "attempts": 1,
                "input_uncached_tokens": uncached,
                "input_cache_read_tokens": read,
                "input_cache_write_tokens": write,
                "input_cache_write_1h_tokens": write_1h,
                "output_tokens": output,
                "reasoning_tokens": 0,
                "usage_estimated": False,
                "cost_micros": cost,
                "baseline_cost_micros": baseline,
                "baseline_deployment": "gpt-4o",
                "latency_ms": rng.choice([None, rng.lognormvariate(6, 1)]),
                "cache_outcome": cache,
            }
        )
    return rows


def insert_statement(dialect: str):
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(LedgerEntry).on_conflict_do_nothing(index_elements=["id"])


def oracle(rows: list[dict], key) -> dict:
    """Per group, straight from the rows: requests, cost, baseline and savings by source."""
    out: dict = defaultdict(lambda: defaultdict(int))
    for row in rows:
        group = out[key(row)]
        group["requests"] += 1
        group["cost"] += row["cost_micros"]
        group["baseline"] += row["baseline_cost_micros"]
        group["output_tokens"] += row["output_tokens"]
        saved = row["baseline_cost_micros"] - row["cost_micros"]
        if row["cache_outcome"] in ("exact", "semantic"):
            group["semantic_cache"] += saved
        elif row["tier"] == "selfhost":
            group["self_hosting"] += saved
        else:
            price = PRICES[row["deployment"]]
            write_1h = row["input_cache_write_1h_tokens"]
            prompt = (
                row["input_cache_read_tokens"] * (price.input - price.cache_read)
                + (row["input_cache_write_tokens"] - write_1h) * (price.input - price.cache_write)
                + write_1h * (price.input - price.cache_write_1h)
            )
            group["prompt_caching_exact"] += prompt
            group["non_prompt_saved"] += saved
    return out
