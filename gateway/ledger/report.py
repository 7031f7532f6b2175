"""Cost-per-query reports from the ledger: actual against baseline cost, savings by source, tokens by
class, cache hit rate and latency percentiles, grouped by any of team, project, policy, tier,
deployment, cache outcome, day or hour.

Whole hours are read from the hourly rollup (`gateway.ledger.rollups`), the partial hours at the
edges of a range from the ledger itself, so a report over millions of rows touches thousands.

Only client requests (`cost_class` 'request') are in these figures; the quality sampler's shadow and
judge calls are reported beside them by `cost_at_quality` (and `gateway.learning.stats`).

Savings attribution (per request; the parts always sum to baseline minus actual):
- semantic_cache: a response served from the cache (exact or semantic hit) saves its whole baseline
  cost minus whatever it cost (normally nothing).
- self_hosting: a request served by the self-hosted tier saves baseline minus its on-prem cost.
- prompt_caching: on every other request, what the served deployment's list price would have
  charged for the cache-read and cache-write tokens minus what it did charge for them (writes cost
  more than uncached input, so this part can be negative). Computed from the served deployment's
  current prices; a deployment no longer configured contributes nothing here.
- routing: the rest, i.e. baseline minus the served deployment's list price for the same tokens:
  what choosing a cheaper model saved (negative when a request went to a dearer one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import and_, case, func, literal_column, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.models import LedgerEntry, ShadowGrade
from gateway.ledger import rollups
from gateway.ledger.pricing import Price, micros_to_usd

DIMENSIONS = ("team", "project", "policy", "tier", "deployment", "cache_outcome", "day", "hour")
TIME_DIMENSIONS = ("day", "hour")
FILTERABLE = ("team", "project", "policy", "tier", "deployment", "cache_outcome")
REPORT_WORK_MEM = "64MB"
SOURCES = ("routing", "semantic_cache", "prompt_caching", "self_hosting")
CACHE_HITS = ("exact", "semantic")
CACHE_LOOKUPS = ("miss", "exact", "semantic")
TOKEN_CLASSES = rollups.TOKEN_CLASSES


class ReportError(ValueError):
    """A report asked for something that does not exist (bad dimension, filter or range)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * 3600, UTC)


def parse_group_by(group_by: str | Iterable[str]) -> tuple[str, ...]:
    """'team,day' or ['team', 'day'] -> ('team', 'day'); unknown or repeated dimensions are errors."""
    names = group_by.split(",") if isinstance(group_by, str) else list(group_by)
    dims = tuple(name.strip() for name in names if name.strip())
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown or not dims:
        raise ReportError(
            f"cannot group by {', '.join(unknown) or 'nothing'}; choose from {', '.join(DIMENSIONS)}",
            "group_by",
        )
    if len(set(dims)) != len(dims):
        raise ReportError("a dimension is repeated in group_by", "group_by")
    return dims


@dataclass
class Totals:
    """Summed ledger facts for one group; money in integer micro-dollars."""

    requests: int = 0
    errors: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_CLASSES, 0))
    cost_micros: int = 0
    baseline_cost_micros: int = 0
    savings_micros: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SOURCES, 0))
    cache_hits: int = 0
    cache_lookups: int = 0
    latency_count: int = 0
    latency_ms_sum: float = 0.0
    latency_histogram: list[int] = field(default_factory=lambda: [0] * len(rollups.LATENCY_COLUMNS))

    def add(self, other: Totals) -> None:
        self.requests += other.requests
        self.errors += other.errors
        for name in TOKEN_CLASSES:
            self.tokens[name] += other.tokens[name]
        self.cost_micros += other.cost_micros
        self.baseline_cost_micros += other.baseline_cost_micros
        for source in SOURCES:
            self.savings_micros[source] += other.savings_micros[source]
        self.cache_hits += other.cache_hits
        self.cache_lookups += other.cache_lookups
        self.latency_count += other.latency_count
        self.latency_ms_sum += other.latency_ms_sum
        self.latency_histogram = [
            a + b for a, b in zip(self.latency_histogram, other.latency_histogram, strict=True)
        ]

    @property
    def total_savings_micros(self) -> int:
        return self.baseline_cost_micros - self.cost_micros

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: USD as decimal strings beside the exact micro-dollar integers."""
        saved = self.total_savings_micros
        baseline = self.baseline_cost_micros
        return {
            "requests": self.requests,
            "errors": self.errors,
            "tokens": {name.removesuffix("_tokens"): value for name, value in self.tokens.items()},
            "cost_usd": micros_to_usd(self.cost_micros),
            "baseline_cost_usd": micros_to_usd(baseline),
            "savings_usd": micros_to_usd(saved),
            "savings_pct": _ratio_pct(saved, baseline),
            "savings_by_source_usd": {k: micros_to_usd(v) for k, v in self.savings_micros.items()},
            "cost_per_query_usd": _per_query_usd(self.cost_micros, self.requests),
            "cost_micros": self.cost_micros,
            "baseline_cost_micros": baseline,
            "savings_micros": saved,
            "savings_by_source_micros": dict(self.savings_micros),
            "cache_hits": self.cache_hits,
            "cache_lookups": self.cache_lookups,
            "cache_hit_rate_pct": _ratio_pct(self.cache_hits, self.cache_lookups),
            "latency_p50_ms": _round(rollups.percentile_ms(self.latency_histogram, 0.50)),
            "latency_p95_ms": _round(rollups.percentile_ms(self.latency_histogram, 0.95)),
            "latency_mean_ms": _round(
                self.latency_ms_sum / self.latency_count if self.latency_count else None
            ),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _ratio_pct(part: int, whole: int) -> str | None:
    if not whole:
        return None
    return str((Decimal(100 * part) / Decimal(whole)).quantize(Decimal("0.01"), ROUND_HALF_EVEN))


def _per_query_usd(micros: int, requests: int) -> str | None:
    if not requests:
        return None
    return str((Decimal(micros) / requests / 1_000_000).quantize(Decimal("0.000000001"), ROUND_HALF_EVEN))


def _prompt_caching_micros(price: Price | None, tokens: Mapping[str, int]) -> int:
    if price is None:
        return 0
    write_1h = tokens.get("input_cache_write_1h_tokens", 0)
    write_5m = tokens.get("input_cache_write_tokens", 0) - write_1h
    saved = (
        tokens.get("input_cache_read_tokens", 0) * (price.input - price.cache_read)
        + write_5m * (price.input - price.cache_write)
        + write_1h * (price.input - price.cache_write_1h)
    )
    return int(saved.to_integral_value(rounding=ROUND_HALF_EVEN))


def attribute_savings(
    cost_micros: int,
    baseline_micros: int,
    cache_outcome: str,
    tier: str | None,
    price: Price | None,
    tokens: Mapping[str, int],
) -> dict[str, int]:
    """Baseline minus actual cost split by source of saving (see the module docstring); the parts
    sum exactly to the whole. `tokens` uses the ledger's column names; `price` is the served
    deployment's. One request or a cell of requests alike."""
    saved = baseline_micros - cost_micros
    if cache_outcome in CACHE_HITS:
        return {"semantic_cache": saved}
    if tier == "selfhost":
        return {"self_hosting": saved}
    prompt = _prompt_caching_micros(price, tokens)
    return {"prompt_caching": prompt, "routing": saved - prompt}


def add_cell(totals: Totals, row: Mapping[str, Any], prices: Mapping[str, Price]) -> None:
    """Add one (deployment, tier, cache outcome) cell of sums to `totals`, attributing its savings."""
    requests, cost, baseline = int(row["requests"]), int(row["cost_micros"]), int(row["baseline_cost_micros"])
    tokens = {name: int(row[name]) for name in TOKEN_CLASSES}
    totals.requests += requests
    totals.errors += int(row["errors"])
    for name, value in tokens.items():
        totals.tokens[name] += value
    totals.cost_micros += cost
    totals.baseline_cost_micros += baseline
    totals.latency_count += int(row["latency_count"])
    totals.latency_ms_sum += float(row["latency_ms_sum"])
    outcome, deployment = row["cell_cache_outcome"], row["cell_deployment"]
    parts = attribute_savings(cost, baseline, outcome, row["cell_tier"], prices.get(deployment), tokens)
    for source, micros in parts.items():
        totals.savings_micros[source] += micros
    if outcome in CACHE_HITS:
        totals.cache_hits += requests
    if outcome in CACHE_LOOKUPS:
        totals.cache_lookups += requests


@dataclass
class Report:
    group_by: tuple[str, ...]
    since: datetime | None
    until: datetime | None
    groups: list[tuple[dict[str, Any], Totals]]
    total: Totals

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_by": list(self.group_by),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "data": [{"group": key, **totals.to_dict()} for key, totals in self.groups],
            "total": self.total.to_dict(),
        }

    def flat_rows(self) -> list[dict[str, Any]]:
        """One flat dict per group (for CSV and tables)."""
        return [{**key, **flatten(totals.to_dict())} for key, totals in self.groups]


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in record.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{name}_"))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _time_split(since: datetime | None, until: datetime | None):
    """(first whole hour, end whole hour, raw ledger ranges) covering [since, until)."""
    first = None if since is None else -(-int(since.timestamp()) // 3600)
    end = None if until is None else int(until.timestamp()) // 3600
    if first is not None and end is not None and first >= end:
        return None, None, [(since, until)]
    edges = []
    if since is not None and _hour_start(first) > since:
        edges.append((since, _hour_start(first)))
    if until is not None and _hour_start(end) < until:
        edges.append((_hour_start(end), until))
    return first, end, edges


def ledger_source(dialect: str, since: datetime | None, until: datetime | None, filters: Mapping[str, str]):
    """Rollup rows for whole hours UNION ALL ledger rows (in rollup shape) for partial hours."""
    first, end, edges = _time_split(since, until)
    parts = []
    if first is not None or end is not None or not edges:
        table = rollups.rollup
        conditions = [table.c[name] == value for name, value in filters.items()]
        if first is not None:
            conditions.append(table.c.hour >= first)
        if end is not None:
            conditions.append(table.c.hour < end)
        columns = ["hour", *rollups.KEYS, *rollups.MEASURES]
        parts.append(select(*(table.c[name] for name in columns)).where(and_(True, *conditions)))
    for low, high in edges:
        raw = rollups.ledger_as_rollup(dialect)
        conditions = [func.coalesce(getattr(LedgerEntry, k), "") == v for k, v in filters.items()]
        if low is not None:
            conditions.append(LedgerEntry.created_at >= low)
        if high is not None:
            conditions.append(LedgerEntry.created_at < high)
        parts.append(raw.where(and_(*conditions)))
    return (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("src")


@asynccontextmanager
async def report_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read transaction; on PostgreSQL with enough work_mem to hash-aggregate the rollup in
    memory (the default 4 MB sorts ~100k wide rows on disk, 4-5x slower)."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.exec_driver_sql(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
        yield conn


def _dimension(src, name: str):
    if name == "day":
        return (src.c.hour // 24).label("day")
    return src.c[name].label(name)


def _label(name: str, value: Any) -> Any:
    if name == "hour":
        return _hour_start(int(value)).isoformat().replace("+00:00", "Z")
    if name == "day":
        return _hour_start(int(value) * 24).date().isoformat()
    return value or None


async def cost_report(
    engine: AsyncEngine,
    group_by: str | Iterable[str] = "deployment",
    since: datetime | None = None,
    until: datetime | None = None,
    prices: Mapping[str, Price] | None = None,
    filters: Mapping[str, str] | None = None,
) -> Report:
    """The report for [since, until) (UTC; naive datetimes are taken as UTC)."""
    dims = parse_group_by(group_by)
    since, until = as_utc(since), as_utc(until)
    if since is not None and until is not None and since >= until:
        raise ReportError("since must be before until", "since")
    filters = dict(filters or {})
    unknown = [name for name in filters if name not in FILTERABLE]
    if unknown:
        raise ReportError(f"cannot filter by {', '.join(unknown)}", unknown[0])
    src = ledger_source(engine.dialect.name, since, until, filters)
    dim_columns = [_dimension(src, d) for d in dims]
    cells = [src.c[c].label(f"cell_{c}") for c in ("deployment", "tier", "cache_outcome")]
    sums = ("requests", "errors", *rollups.SUMS, "latency_count", "latency_ms_sum")
    cell_query = select(*dim_columns, *cells, *(func.sum(src.c[m]).label(m) for m in sums)).group_by(
        *(literal_column(str(i + 1)) for i in range(len(dims) + len(cells)))
    )
    # The latency histogram is only needed per group: a second, narrower aggregation.
    histogram_query = select(
        *dim_columns, *(func.sum(src.c[m]).label(m) for m in rollups.LATENCY_COLUMNS)
    ).group_by(*(literal_column(str(i + 1)) for i in range(len(dims))))
    async with report_connection(engine) as conn:
        cell_rows = (await conn.execute(cell_query)).mappings().all()
        histogram_rows = (await conn.execute(histogram_query)).all()

    groups: dict[tuple, Totals] = {}
    for row in cell_rows:
        key = tuple(row[d] for d in dims)
        totals = groups.get(key) or groups.setdefault(key, Totals())
        add_cell(totals, row, prices or {})
    for row in histogram_rows:
        groups[tuple(row[: len(dims)])].latency_histogram = [int(v or 0) for v in row[len(dims) :]]
    total = Totals()
    for totals in groups.values():
        total.add(totals)
    ordered = sorted(groups.items(), key=_sort_key(dims))
    labelled = [
        ({d: _label(d, v) for d, v in zip(dims, key, strict=True)}, totals) for key, totals in ordered
    ]
    return Report(dims, since, until, labelled, total)


def _sort_key(dims: tuple[str, ...]):
    time_positions = [i for i, d in enumerate(dims) if d in TIME_DIMENSIONS]

    def key(item: tuple[tuple, Totals]):
        values, totals = item
        times = tuple(int(values[i]) for i in time_positions)
        others = tuple(str(v) for i, v in enumerate(values) if i not in time_positions)
        return (times, -totals.cost_micros, others)

    return key


async def key_spend(
    engine: AsyncEngine, key_ids: Iterable[str], now: datetime | None = None
) -> dict[str, tuple[int, int]]:
    """key id -> (today's, this month's) actual cost in micro-dollars (UTC), from the ledger; uses
    the (key_id, created_at) index, so it reads only those keys' rows of this month."""
    ids = list(key_ids)
    if not ids:
        return {}
    now = as_utc(now) or datetime.now(UTC)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    e = LedgerEntry
    today = func.sum(case((e.created_at >= day_start, e.cost_micros), else_=0))
    query = (
        select(e.key_id, today, func.sum(e.cost_micros))
        .where(e.key_id.in_(ids), e.created_at >= month_start)
        .group_by(e.key_id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {key: (int(day or 0), int(month or 0)) for key, day, month in rows}


def default_range(days: int = 30, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last `days` whole days up to the next hour boundary."""
    now = as_utc(now) or datetime.now(UTC)
    until = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return until - timedelta(days=days), until


async def summary(
    engine: AsyncEngine,
    group_by: str = "deployment",
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """One row per group (the demo's and `print_summary`'s shape): requests, tokens, actual and
    baseline cost (µ$), savings, mean latency. Reads the raw ledger."""
    legacy = (
        "team",
        "project",
        "deployment",
        "tier",
        "provider",
        "requested_model",
        "endpoint",
        "cache_outcome",
    )
    if group_by not in legacy:
        raise ValueError(f"cannot group by {group_by!r}; choose one of {', '.join(legacy)}")
    column = getattr(LedgerEntry, group_by)
    query = (
        select(
            column.label("group"),
            func.count().label("requests"),
            func.sum(
                LedgerEntry.input_uncached_tokens
                + LedgerEntry.input_cache_read_tokens
                + LedgerEntry.input_cache_write_tokens
            ).label("input_tokens"),
            func.sum(LedgerEntry.input_cache_read_tokens).label("cache_read_tokens"),
            func.sum(LedgerEntry.output_tokens).label("output_tokens"),
            func.sum(LedgerEntry.cost_micros).label("cost_micros"),
            func.sum(LedgerEntry.baseline_cost_micros).label("baseline_cost_micros"),
            func.avg(LedgerEntry.latency_ms).label("mean_latency_ms"),
            func.sum((LedgerEntry.status_code >= 400).cast(LedgerEntry.attempts.type)).label("errors"),
        )
        .where(LedgerEntry.cost_class == "request")
        .group_by(column)
        .order_by(func.sum(LedgerEntry.cost_micros).desc())
    )
    if since is not None:
        query = query.where(LedgerEntry.created_at >= since)
    if until is not None:
        query = query.where(LedgerEntry.created_at < until)
    async with engine.connect() as conn:
        rows = [dict(row._mapping) for row in await conn.execute(query)]
    for row in rows:
        cost, baseline = int(row["cost_micros"] or 0), int(row["baseline_cost_micros"] or 0)
        row["cost_micros"], row["baseline_cost_micros"] = cost, baseline
        row["savings_micros"] = baseline - cost
        row["savings_pct"] = round(100 * (baseline - cost) / baseline, 1) if baseline else 0.0
        row["cost_per_query_micros"] = cost // row["requests"] if row["requests"] else 0
    return rows


# --- cost per query at quality (the learning loop's report) ------------------------------------

AT_QUALITY_DIMENSIONS = ("team", "project", "policy", "tier", "deployment", "day")


async def measurement_costs(
    engine: AsyncEngine, dims: tuple[str, ...], since: datetime | None, until: datetime | None
) -> dict[tuple, int]:
    """Shadow and judge calls' cost, attributed to the measured request's team, tier, ... (the
    ledger joined to itself on `parent_request_id`), by the measured request's time."""
    parent = LedgerEntry.__table__.alias("parent")
    m = LedgerEntry.__table__.alias("m")
    query = (
        select(*(parent.c[d] for d in dims if d != "day"), parent.c.created_at, m.c.cost_micros)
        .select_from(m.join(parent, parent.c.id == m.c.parent_request_id))
        .where(m.c.cost_class != "request")
    )
    if since is not None:
        query = query.where(parent.c.created_at >= since)
    if until is not None:
        query = query.where(parent.c.created_at < until)
    costs: dict[tuple, int] = {}
    async with engine.connect() as conn:
        for row in (await conn.execute(query)).mappings():
            key = tuple(as_utc(row["created_at"]).date().isoformat() if d == "day" else row[d] for d in dims)
            costs[key] = costs.get(key, 0) + int(row["cost_micros"])
    return costs


async def cost_at_quality(
    engine: AsyncEngine,
    group_by: str | Iterable[str] = "team,tier",
    since: datetime | None = None,
    until: datetime | None = None,
    prices: Mapping[str, Price] | None = None,
    filters: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Savings beside quality retained, per group: the cost report joined with shadow grades.

    Per group, each deployment's requests count with the quality retained measured for them (the
    pass rate of their shadow grades in that group); requests served by a reference deployment
    count as 1 by definition; deployments with no grades are left out of the quality figure
    (`quality_coverage_pct` says how much of the traffic it covers). The interval weights each
    deployment's 95 % Wilson bounds the same way. `cost_per_query_at_quality_usd` is cost per query
    divided by quality retained: what one answer as good as the reference's costs. Measurement
    (shadow + judge calls) is shown beside, never inside, the savings.
    """
    from gateway.learning.stats import quality_cells, wilson

    dims = parse_group_by(group_by)
    bad = [d for d in dims if d not in AT_QUALITY_DIMENSIONS]
    if bad:
        raise ReportError(
            f"cannot group cost at quality by {', '.join(bad)}; choose from {', '.join(AT_QUALITY_DIMENSIONS)}",
            "group_by",
        )
    since, until = as_utc(since), as_utc(until)
    cell_dims = dims if "deployment" in dims else (*dims, "deployment")
    costs = await cost_report(engine, cell_dims, since, until, prices, filters)
    _, grades = await quality_cells(engine, cell_dims, since, until, filters)
    async with engine.connect() as conn:
        references = set((await conn.execute(select(ShadowGrade.reference_deployment).distinct())).scalars())
    measured = await measurement_costs(engine, dims, since, until)
    groups: dict[tuple, dict[str, Any]] = {}
    for key, totals in costs.groups:
        group = tuple(key[d] for d in dims)
        acc = groups.setdefault(
            group, {"totals": Totals(), "known": 0, "q": 0.0, "low": 0.0, "high": 0.0, "graded": 0}
        )
        acc["totals"].add(totals)
        cell = grades.get(tuple(key[d] for d in cell_dims))
        if key["deployment"] in references:
            quality, interval = 1.0, (1.0, 1.0)
        elif cell is not None and cell.grades:
            quality, interval = cell.retained, wilson(cell.passed, len(cell.grades))
            acc["graded"] += len(cell.grades)
        else:
            continue
        acc["known"] += totals.requests
        acc["q"] += totals.requests * quality
        acc["low"] += totals.requests * interval[0]
        acc["high"] += totals.requests * interval[1]
    data = []
    for group, acc in sorted(groups.items(), key=lambda item: tuple(str(v) for v in item[0])):
        totals: Totals = acc["totals"]
        known = acc["known"]
        quality = acc["q"] / known if known else None
        base = totals.to_dict()
        per_query = base["cost_per_query_usd"]
        measurement = measured.get(group, 0)
        data.append(
            {
                "group": dict(zip(dims, group, strict=True)),
                "requests": totals.requests,
                "cost_usd": base["cost_usd"],
                "baseline_cost_usd": base["baseline_cost_usd"],
                "savings_usd": base["savings_usd"],
                "savings_pct": base["savings_pct"],
                "cost_per_query_usd": per_query,
                "quality_retained": None if quality is None else round(quality, 4),
                "quality_retained_ci": None
                if not known
                else [round(acc["low"] / known, 4), round(acc["high"] / known, 4)],
                "quality_coverage_pct": _ratio_pct(known, totals.requests),
                "graded": acc["graded"],
                "cost_per_query_at_quality_usd": None
                if not quality or per_query is None
                else str(
                    (Decimal(per_query) / Decimal(str(quality))).quantize(
                        Decimal("0.000000001"), ROUND_HALF_EVEN
                    )
                ),
                "measurement_cost_usd": micros_to_usd(measurement),
                "net_savings_usd": micros_to_usd(totals.total_savings_micros - measurement),
            }
        )
    return {
        "group_by": list(dims),
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "data": data,
    }
