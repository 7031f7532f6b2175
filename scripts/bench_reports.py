"""Time the cost reports over a million ledger rows on PostgreSQL.

Creates a throw-away database, migrates it, inserts N realistic ledger rows with one
`INSERT ... SELECT ... FROM generate_series` (the rollup trigger aggregates them in one go), then
times every report shape over a range whose edges are not on hour boundaries (so the edge hours
are read from the raw ledger), and finally the trigger's cost on the ledger writer's batches.

    .venv/bin/python scripts/bench_reports.py --rows 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from gateway.db.engine import create_engine, migrate
from gateway.db.models import LedgerEntry
from gateway.ledger.focus import focus_rows
from gateway.ledger.pricing import Price
from gateway.ledger.report import cost_report
from gateway.ledger.spool import Spool
from gateway.ledger.writer import LedgerWriter

# 30 days of traffic for 6 teams x 2 projects, 4 deployments (one self-hosted), three cache
# outcomes; token counts log-normal-ish, list prices below.
FILL_SQL = """
INSERT INTO ledger_entries (
  id, created_at, key_id, team, project, endpoint, requested_model, deployment, tier, provider,
  policy, policy_version, status_code, stream, attempts, input_uncached_tokens,
  input_cache_read_tokens, input_cache_write_tokens, input_cache_write_1h_tokens, output_tokens,
  reasoning_tokens, usage_estimated, cost_micros, baseline_cost_micros, baseline_deployment,
  latency_ms, overhead_ms, cache_outcome)
SELECT 'bench-' || g, %(start)s::timestamptz + (random() * interval '30 days'),
  'key-' || (g %% 12), 'team-' || (g %% 6), 'project-' || (g %% 12 / 6), 'chat', 'auto',
  d.name, d.tier, d.provider, 'policy-' || (g %% 3), 1,
  CASE WHEN random() < 0.01 THEN 502 ELSE 200 END, random() < 0.5, 1,
  t.uncached, t.cread, 0, 0, t.output, 0, false,
  CASE WHEN c.outcome = 'miss'
    THEN round(t.uncached * d.p_in + t.cread * d.p_read + t.output * d.p_out)::bigint ELSE 0 END,
  round((t.uncached + t.cread) * 2.5 + t.output * 10)::bigint, 'gpt-4o',
  exp(5 + random() * 3), random() * 2, c.outcome
FROM generate_series(1, %(rows)s) AS g
CROSS JOIN LATERAL (SELECT (random() * 3)::int + (g * 0) AS di) AS pick
JOIN (VALUES (0, 'gpt-4o', 'frontier', 'openai', 2.5, 1.25, 10.0),
             (1, 'gpt-4o-mini', 'economy', 'openai', 0.15, 0.075, 0.6),
             (2, 'claude-sonnet', 'frontier', 'anthropic', 3.0, 0.3, 15.0),
             (3, 'local-small', 'selfhost', 'vllm', 0.02, 0.02, 0.04))
  AS d(i, name, tier, provider, p_in, p_read, p_out) ON d.i = pick.di
CROSS JOIN LATERAL (SELECT (50 + random() * 2000)::int + (g * 0) AS uncached,
                           CASE WHEN random() < 0.3 THEN (random() * 4000)::int ELSE 0 END AS cread,
                           (10 + random() * 600)::int AS output) AS t
CROSS JOIN LATERAL (SELECT CASE WHEN random() < 0.08 THEN 'exact' WHEN random() < 0.1 THEN 'semantic'
                           ELSE 'miss' END || substr(g::text, 1, 0) AS outcome) AS c
"""


def _price(inp: str, read: str, out: str) -> Price:
    return Price(Decimal(inp), Decimal(out), Decimal(read), Decimal(inp), Decimal(inp), Decimal(out))


PRICES = {
    "gpt-4o": _price("2.5", "1.25", "10"),
    "gpt-4o-mini": _price("0.15", "0.075", "0.6"),
    "claude-sonnet": _price("3", "0.3", "15"),
    "local-small": _price("0.02", "0.02", "0.04"),
}
PROVIDERS = {"gpt-4o": "openai", "gpt-4o-mini": "openai", "claude-sonnet": "anthropic", "local-small": "vllm"}
SHAPES = [
    "team",
    "project",
    "policy",
    "tier",
    "deployment",
    "day",
    "hour",
    "team,day",
    "deployment,cache_outcome",
]


async def time_reports(url: str, start: datetime) -> list[tuple[str, float, int]]:
    engine = create_engine(url)
    since, until = start + timedelta(minutes=17), start + timedelta(days=30, minutes=-23)
    results = []
    try:
        for shape in SHAPES:
            began = time.perf_counter()
            report = await cost_report(engine, shape, since, until, PRICES)
            results.append((f"report --group-by {shape}", time.perf_counter() - began, len(report.groups)))
        began = time.perf_counter()
        rows = [row async for row in focus_rows(engine, since, until, PRICES, "day", PROVIDERS)]
        results.append(("FOCUS export, daily aggregates", time.perf_counter() - began, len(rows)))
    finally:
        await engine.dispose()
    return results


def _ledger_rows(n: int, start: datetime) -> list[dict]:
    return [
        {
            "id": f"write-{uuid.uuid4().hex}",
            "created_at": start + timedelta(seconds=i),
            "team": f"team-{i % 6}",
            "project": f"project-{i % 2}",
            "endpoint": "chat",
            "deployment": "gpt-4o-mini",
            "tier": "economy",
            "provider": "openai",
            "status_code": 200,
            "stream": False,
            "attempts": 1,
            "input_uncached_tokens": 800,
            "input_cache_read_tokens": 0,
            "input_cache_write_tokens": 0,
            "input_cache_write_1h_tokens": 0,
            "output_tokens": 200,
            "reasoning_tokens": 0,
            "usage_estimated": False,
            "cost_micros": 240,
            "baseline_cost_micros": 4000,
            "baseline_deployment": "gpt-4o",
            "latency_ms": 420.0,
            "cache_outcome": "miss",
        }
        for i in range(n)
    ]


async def time_writes(
    url: str, start: datetime, batches: int = 40, batch_size: int = 500
) -> dict[str, float]:
    """Milliseconds per ledger batch through the real LedgerWriter: with and without the rollup
    trigger, and with the writer's insert as it is (asyncpg executemany: one statement per row, so
    the statement-level trigger fires per row) or as one multi-row statement per batch (what
    `.returning(LedgerEntry.id)` makes SQLAlchemy send; the trigger then fires once per batch)."""
    engine = create_engine(url)
    results = {}
    try:
        for trigger in ("ENABLE", "DISABLE"):
            async with engine.begin() as conn:
                await conn.exec_driver_sql(
                    f"ALTER TABLE ledger_entries {trigger} TRIGGER ledger_rollup_hourly_ins"
                )
            for multi_row in (False, True):
                with tempfile.TemporaryDirectory() as spool_dir:
                    writer = LedgerWriter(
                        engine, Spool(Path(spool_dir)), flush_interval_s=60, batch_size=batch_size
                    )
                    if multi_row:
                        writer._insert = writer._insert.returning(LedgerEntry.id)
                    for row in _ledger_rows(batches * batch_size, start):
                        writer.record(row)
                    began = time.perf_counter()
                    await writer.flush()
                label = f"{'multi-row' if multi_row else 'executemany'}, trigger {trigger.lower()}d"
                results[label] = (time.perf_counter() - began) * 1000 / batches
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_rollup_hourly_ins")
    finally:
        await engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    args = parser.parse_args()
    name = f"tiergate_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(args.dsn)
    url = f"postgresql://{info.get('user', 'postgres')}@{info.get('host')}:{info.get('port', 5432)}/{name}"
    start = datetime(2026, 10, 1, tzinfo=UTC)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            began = time.perf_counter()
            conn.execute(FILL_SQL, {"start": start, "rows": args.rows})
            filled = time.perf_counter() - began
            conn.execute("VACUUM ANALYZE")
            ledger = conn.execute("SELECT count(*) FROM ledger_entries").fetchone()[0]
            rollup = conn.execute("SELECT count(*) FROM ledger_rollup_hourly").fetchone()[0]
        print(
            f"inserted {ledger:,} ledger rows in {filled:.1f}s (rollup trigger included): {rollup:,} rollup rows"
        )
        for label, seconds, groups in asyncio.run(time_reports(url, start)):
            print(f"{label:45s} {seconds * 1000:8.1f} ms  {groups:6d} rows")
        for label, ms in asyncio.run(time_writes(url, start + timedelta(days=31))).items():
            print(f"ledger write, 500-row batch, {label:31s} {ms:8.1f} ms")
    finally:
        if not args.keep:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
