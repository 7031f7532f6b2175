"""Hourly rollups of the ledger, maintained by the database as rows arrive.

`ledger_rollup_hourly` holds one row per (UTC hour, team, project, policy, deployment, tier, cache
outcome, baseline deployment) with summed requests, token classes, actual and baseline cost, and a
latency histogram. Triggers keep it current: on PostgreSQL a statement-level trigger aggregates each
INSERT statement's rows (its transition table) in one upsert, so a batch should arrive as one
multi-row statement (asyncpg's executemany runs one statement per row); on SQLite a row-level
trigger upserts per row.
Rows skipped by the ledger's `ON CONFLICT DO NOTHING` (a replayed spool batch) never reach the
triggers, so nothing is counted twice. Reports read whole hours from here and the partial hours at
the edges of a range from the ledger itself, in the same shape (`ledger_as_rollup`).

Only client requests are rolled up: since migration 0004 the triggers skip ledger rows whose
`cost_class` is not 'request' (the quality sampler's shadow and judge calls, reported on their own),
and `ledger_as_rollup` does the same. A migration re-creating the triggers passes `requests_only=True`.

Key columns are never NULL ('' stands for "none") so that upserts find their row on both databases.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Integer, String, Table, case, cast, func, literal, select
from sqlalchemy.sql import ColumnElement, Select

from gateway.db.models import Base, LedgerEntry

# Latency histogram: bucket k holds latencies in (2^((k-1)/2), 2^(k/2)] ms, bucket 0 everything
# <= 1 ms, the last bucket everything above ~12 minutes. Percentiles interpolate within a bucket,
# so they are exact to within the bucket's width (a factor of sqrt 2).
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(2 ** (k / 2) for k in range(40))
LATENCY_COLUMNS: tuple[str, ...] = tuple(f"latency_b{k:02d}" for k in range(len(LATENCY_BOUNDS_MS) + 1))

KEYS = ("team", "project", "policy", "deployment", "tier", "cache_outcome", "baseline_deployment")
TOKEN_CLASSES = (
    "input_uncached_tokens",
    "input_cache_read_tokens",
    "input_cache_write_tokens",
    "input_cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)
SUMS = (*TOKEN_CLASSES, "cost_micros", "baseline_cost_micros")
MEASURES = ("requests", "errors", *SUMS, "latency_count", "latency_ms_sum", *LATENCY_COLUMNS)

rollup = Table(
    "ledger_rollup_hourly",
    Base.metadata,
    Column("hour", BigInteger, primary_key=True, comment="UTC hours since the Unix epoch"),
    *(Column(name, String(256), primary_key=True) for name in KEYS),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    *(Column(name, BigInteger, nullable=False) for name in SUMS),
    Column("latency_count", BigInteger, nullable=False),
    Column("latency_ms_sum", Float, nullable=False),
    *(Column(name, Integer, nullable=False) for name in LATENCY_COLUMNS),
)


# --- the one definition of "a ledger row, in rollup shape" -------------------------------------


def _hour_sql(dialect: str, column: str) -> str:
    if dialect == "postgresql":
        return f"floor(extract(epoch from {column}) / 3600)::bigint"
    return f"CAST(strftime('%s', {column}) AS INTEGER) / 3600"


def _bucket_sql(column: str, k: int) -> str:
    if k == len(LATENCY_BOUNDS_MS):
        return f"CASE WHEN {column} > {LATENCY_BOUNDS_MS[-1]!r} THEN 1 ELSE 0 END"
    low = f"{column} > {LATENCY_BOUNDS_MS[k - 1]!r} AND " if k else ""
    return f"CASE WHEN {low}{column} <= {LATENCY_BOUNDS_MS[k]!r} THEN 1 ELSE 0 END"


def row_expressions(dialect: str, alias: str) -> dict[str, str]:
    """SQL for every rollup column computed from one ledger row (`alias.` prefix), unsummed."""
    c = lambda name: f"{alias}.{name}"  # noqa: E731
    exprs = {"hour": _hour_sql(dialect, c("created_at"))}
    exprs.update({name: f"COALESCE({c(name)}, '')" for name in KEYS})
    exprs["requests"] = "1"
    exprs["errors"] = f"CASE WHEN {c('status_code')} >= 400 THEN 1 ELSE 0 END"
    exprs.update({name: f"COALESCE({c(name)}, 0)" for name in SUMS})
    exprs["latency_count"] = f"CASE WHEN {c('latency_ms')} IS NULL THEN 0 ELSE 1 END"
    exprs["latency_ms_sum"] = f"COALESCE({c('latency_ms')}, 0)"
    exprs.update({name: _bucket_sql(c("latency_ms"), k) for k, name in enumerate(LATENCY_COLUMNS)})
    return exprs


def _upsert_tail() -> str:
    keys = ", ".join(("hour", *KEYS))
    updates = ", ".join(f"{m} = ledger_rollup_hourly.{m} + excluded.{m}" for m in MEASURES)
    return f"ON CONFLICT ({keys}) DO UPDATE SET {updates}"


def trigger_ddl(dialect: str, *, requests_only: bool = False) -> list[str]:
    """Statements that install the triggers (0003 without, 0004 onwards with `requests_only`)."""
    columns = ", ".join(("hour", *KEYS, *MEASURES))
    if dialect == "postgresql":
        exprs = row_expressions(dialect, "n")
        group = ("hour", *KEYS)
        select_list = ", ".join([exprs[name] for name in group] + [f"SUM({exprs[m]})" for m in MEASURES])
        positions = ", ".join(str(i + 1) for i in range(len(group)))
        where = "WHERE n.cost_class = 'request' " if requests_only else ""
        return [
            f"""CREATE OR REPLACE FUNCTION ledger_rollup_hourly_ins() RETURNS trigger AS $$
BEGIN
  INSERT INTO ledger_rollup_hourly ({columns})
  SELECT {select_list} FROM new_rows n {where}GROUP BY {positions} ORDER BY {positions}
  {_upsert_tail()};
  RETURN NULL;
END $$ LANGUAGE plpgsql""",
            "CREATE TRIGGER ledger_rollup_hourly_ins AFTER INSERT ON ledger_entries "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            "EXECUTE FUNCTION ledger_rollup_hourly_ins()",
        ]
    exprs = row_expressions(dialect, "NEW")
    values = ", ".join(exprs[name] for name in ("hour", *KEYS, *MEASURES))
    return [
        f"""CREATE TRIGGER ledger_rollup_hourly_ins AFTER INSERT ON ledger_entries FOR EACH ROW
{"WHEN NEW.cost_class = 'request'" if requests_only else ""}
BEGIN
  INSERT INTO ledger_rollup_hourly ({columns}) VALUES ({values})
  {_upsert_tail()};
END"""
    ]


def drop_trigger_ddl(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [
            "DROP TRIGGER IF EXISTS ledger_rollup_hourly_ins ON ledger_entries",
            "DROP FUNCTION IF EXISTS ledger_rollup_hourly_ins()",
        ]
    return ["DROP TRIGGER IF EXISTS ledger_rollup_hourly_ins"]


def backfill_sql(dialect: str) -> str:
    """Rebuild the rollup from the whole ledger (the migration runs it once, on an empty rollup)."""
    exprs = row_expressions(dialect, "l")
    group = ("hour", *KEYS)
    select_list = ", ".join([exprs[name] for name in group] + [f"SUM({exprs[m]})" for m in MEASURES])
    positions = ", ".join(str(i + 1) for i in range(len(group)))
    columns = ", ".join(("hour", *KEYS, *MEASURES))
    return (
        f"INSERT INTO ledger_rollup_hourly ({columns}) "
        f"SELECT {select_list} FROM ledger_entries l GROUP BY {positions}"
    )


# --- the same shape as SQLAlchemy expressions, for the edges of a report's range --------------


def hour_of(dialect: str) -> ColumnElement:
    created = LedgerEntry.created_at
    if dialect == "postgresql":
        return cast(func.floor(func.extract("epoch", created) / 3600), BigInteger)
    return cast(func.strftime("%s", created), Integer) // 3600


def ledger_as_rollup(dialect: str) -> Select:
    """Ledger rows as unsummed rollup rows; callers add a `created_at` range and aggregate."""
    e = LedgerEntry
    latency = e.latency_ms
    buckets = []
    for k, name in enumerate(LATENCY_COLUMNS):
        if k == len(LATENCY_BOUNDS_MS):
            condition = latency > LATENCY_BOUNDS_MS[-1]
        elif k == 0:
            condition = latency <= LATENCY_BOUNDS_MS[0]
        else:
            condition = (latency > LATENCY_BOUNDS_MS[k - 1]) & (latency <= LATENCY_BOUNDS_MS[k])
        buckets.append(case((condition, 1), else_=0).label(name))
    return select(
        hour_of(dialect).label("hour"),
        *(func.coalesce(getattr(e, name), "").label(name) for name in KEYS),
        literal(1).label("requests"),
        case((e.status_code >= 400, 1), else_=0).label("errors"),
        *(func.coalesce(getattr(e, name), 0).label(name) for name in SUMS),
        case((latency.is_(None), 0), else_=1).label("latency_count"),
        func.coalesce(latency, 0.0).label("latency_ms_sum"),
        *buckets,
    ).where(e.cost_class == "request")


def percentile_ms(histogram: list[int], q: float) -> float | None:
    """The q-quantile (0..1) of a latency histogram, interpolated linearly within its bucket."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    seen = 0
    for k, count in enumerate(histogram):
        if count and seen + count >= rank:
            low = LATENCY_BOUNDS_MS[k - 1] if k else 0.0
            if k == len(LATENCY_BOUNDS_MS):
                return low
            high = LATENCY_BOUNDS_MS[k]
            return low + (high - low) * max(rank - seen, 0) / count
        seen += count
    return LATENCY_BOUNDS_MS[-1]
