"""FOCUS 1.2-compatible cost and usage export (FinOps Open Cost and Usage Specification).

One row per token class and either per request (`granularity="request"`, from the raw ledger) or
per aggregate (`"hour"` / `"day"`: period x team x project x policy x deployment x cache outcome,
from the rollup and the ledger's edge hours). Mapping of our ledger onto FOCUS:

- EffectiveCost = BilledCost = ContractedCost: what the request actually cost (ledger `cost_micros`).
- ListCost: the baseline's list price for the same tokens (ledger `baseline_cost_micros`), so
  ListCost - EffectiveCost is what the gateway saved (also in `x_SavingsCost`).
- ConsumedQuantity = PricingQuantity: tokens of the row's class (ConsumedUnit / PricingUnit "Tokens").
- A request's (or aggregate's) cost is split over its token classes in proportion to each class's
  price, by largest remainder, so the class rows of a request sum exactly to its ledgered cost.
- x_CostClass: 'request' for clients' requests, 'shadow' / 'judge' for the quality sampler's own
  calls (gateway/learning). Those have no baseline (ListCost 0) and, in aggregates, rows of their own
  (read from the ledger: the rollup holds requests only).
- SubAccount = team; ProviderName / PublisherName / InvoiceIssuerName = the upstream provider
  ("self-hosted" for the vLLM tier); Resource = deployment; our own fields are `x_` columns.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.models import LedgerEntry
from gateway.ledger import rollups
from gateway.ledger.pricing import Price
from gateway.ledger.report import ReportError, as_utc, ledger_source, report_connection

FOCUS_VERSION = "1.2"
GRANULARITIES = ("request", "hour", "day")
COLUMNS = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
    "x_TokenClass",
    "x_Team",
    "x_Project",
    "x_Policy",
    "x_Tier",
    "x_Deployment",
    "x_BaselineDeployment",
    "x_CacheOutcome",
    "x_Requests",
    "x_RequestId",
    "x_SavingsCost",
    "x_CostClass",
)

# token class -> (price attribute on the served deployment, price attribute on the baseline)
TOKEN_CLASSES = {
    "input_uncached": ("input", "input"),
    "input_cache_read": ("cache_read", "input"),
    "input_cache_write_5m": ("cache_write", "input"),
    "input_cache_write_1h": ("cache_write_1h", "input"),
    "output": ("output", "output"),
    "output_reasoning": ("reasoning", "output"),
}
_MICRO = Decimal(1_000_000)


def class_tokens(row: Mapping[str, Any]) -> dict[str, int]:
    """The ledger's token columns as disjoint FOCUS token classes."""
    write, write_1h = int(row["input_cache_write_tokens"]), int(row["input_cache_write_1h_tokens"])
    output, reasoning = int(row["output_tokens"]), int(row["reasoning_tokens"])
    return {
        "input_uncached": int(row["input_uncached_tokens"]),
        "input_cache_read": int(row["input_cache_read_tokens"]),
        "input_cache_write_5m": write - write_1h,
        "input_cache_write_1h": write_1h,
        "output": output - reasoning,
        "output_reasoning": reasoning,
    }


def allocate(total: int, weights: Mapping[str, Decimal]) -> dict[str, int]:
    """Split an integer total over keys in proportion to weights; the parts sum exactly to total."""
    weight_sum = sum(weights.values())
    if not weights:
        return {}
    if weight_sum <= 0:
        weights, weight_sum = dict.fromkeys(weights, Decimal(1)), Decimal(len(weights))
    shares = {k: Decimal(total) * w / weight_sum for k, w in weights.items()}
    parts = {k: int(s.to_integral_value(rounding="ROUND_FLOOR")) for k, s in shares.items()}
    leftover = total - sum(parts.values())
    for k in sorted(shares, key=lambda k: shares[k] - parts[k], reverse=True)[:leftover]:
        parts[k] += 1
    return parts


def _usd(micros: int | Decimal) -> str:
    return str((Decimal(micros) / _MICRO).quantize(Decimal("0.000001")))


def _unit_usd(micros_per_token: Decimal | None) -> str:
    return "" if micros_per_token is None else str((micros_per_token / _MICRO).normalize())


def _month(moment: datetime) -> tuple[datetime, datetime]:
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, (start + timedelta(days=32)).replace(day=1)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def focus_records(
    row: Mapping[str, Any],
    period: tuple[datetime, datetime],
    prices: Mapping[str, Price],
    billing_account: str,
) -> list[dict[str, str]]:
    """FOCUS rows (one per non-empty token class) for one request or one aggregate."""
    tokens = {k: v for k, v in class_tokens(row).items() if v}
    if not tokens:
        return []
    served, baseline = prices.get(row["deployment"] or ""), prices.get(row["baseline_deployment"] or "")
    served_unit = {k: getattr(served, TOKEN_CLASSES[k][0]) if served else None for k in tokens}
    list_unit = {k: getattr(baseline, TOKEN_CLASSES[k][1]) if baseline else None for k in tokens}
    effective = allocate(int(row["cost_micros"]), {k: n * (served_unit[k] or 0) for k, n in tokens.items()})
    listed = allocate(
        int(row["baseline_cost_micros"]), {k: n * (list_unit[k] or 0) for k, n in tokens.items()}
    )
    provider = "self-hosted" if row["tier"] == "selfhost" else (row.get("provider") or "")
    billing_start, billing_end = _month(period[0])
    team, project, policy = row["team"] or "", row["project"] or "", row["policy"] or ""
    cost_class = row.get("cost_class") or "request"
    tags = orjson.dumps(
        {
            k: v
            for k, v in (
                ("project", project),
                ("policy", policy),
                ("tier", row["tier"]),
                ("cost_class", "" if cost_class == "request" else cost_class),
            )
            if v
        }
    )
    records = []
    for token_class, quantity in tokens.items():
        cost = _usd(effective[token_class])
        records.append(
            {
                **dict.fromkeys(COLUMNS, ""),
                "BilledCost": cost,
                "BillingAccountId": billing_account,
                "BillingAccountName": billing_account,
                "BillingAccountType": "LLM Gateway",
                "BillingCurrency": "USD",
                "BillingPeriodStart": _iso(billing_start),
                "BillingPeriodEnd": _iso(billing_end),
                "ChargeCategory": "Usage",
                "ChargeDescription": f"{quantity} {token_class} tokens on {row['deployment']}",
                "ChargeFrequency": "Usage-Based",
                "ChargePeriodStart": _iso(period[0]),
                "ChargePeriodEnd": _iso(period[1]),
                "ConsumedQuantity": str(quantity),
                "ConsumedUnit": "Tokens",
                "ContractedCost": cost,
                "ContractedUnitPrice": _unit_usd(served_unit[token_class]),
                "EffectiveCost": cost,
                "InvoiceIssuerName": provider,
                "ListCost": _usd(listed[token_class]),
                "ListUnitPrice": _unit_usd(list_unit[token_class]),
                "PricingCategory": "Standard",
                "PricingCurrency": "USD",
                "PricingQuantity": str(quantity),
                "PricingUnit": "Tokens",
                "ProviderName": provider,
                "PublisherName": provider,
                "ResourceId": row["deployment"] or "",
                "ResourceName": row["deployment"] or "",
                "ResourceType": "LLM Deployment",
                "ServiceCategory": "AI and Machine Learning",
                "ServiceName": "LLM Inference",
                "ServiceSubcategory": "Generative AI",
                "SkuId": f"{row['deployment']}/{token_class}",
                "SkuMeter": token_class,
                "SkuPriceId": f"{row['deployment']}/{token_class}",
                "SubAccountId": team,
                "SubAccountName": team,
                "SubAccountType": "Team",
                "Tags": tags.decode(),
                "x_TokenClass": token_class,
                "x_Team": team,
                "x_Project": project,
                "x_Policy": policy,
                "x_Tier": row["tier"] or "",
                "x_Deployment": row["deployment"] or "",
                "x_BaselineDeployment": row["baseline_deployment"] or "",
                "x_CacheOutcome": row["cache_outcome"] or "",
                "x_Requests": str(row["requests"]),
                "x_RequestId": row.get("id") or "",
                "x_SavingsCost": _usd(listed[token_class] - effective[token_class]),
                "x_CostClass": cost_class,
            }
        )
    return records


async def focus_rows(
    engine: AsyncEngine,
    since: datetime | None,
    until: datetime | None,
    prices: Mapping[str, Price],
    granularity: str = "day",
    providers: Mapping[str, str] | None = None,
    billing_account: str = "tiergate",
) -> AsyncIterator[dict[str, str]]:
    """FOCUS rows for [since, until), streamed (per-request exports can be large). Aggregates take
    each deployment's provider from `providers` (the rollup does not key on provider)."""
    if granularity not in GRANULARITIES:
        raise ReportError(f"granularity must be one of {', '.join(GRANULARITIES)}", "granularity")
    since, until = as_utc(since), as_utc(until)
    if since is not None and until is not None and since >= until:
        raise ReportError("since must be before until", "since")
    if granularity == "request":
        query = select(LedgerEntry).order_by(LedgerEntry.created_at, LedgerEntry.id)
        if since is not None:
            query = query.where(LedgerEntry.created_at >= since)
        if until is not None:
            query = query.where(LedgerEntry.created_at < until)
        async with engine.connect() as conn:
            result = await conn.stream(query.execution_options(yield_per=2000))
            async for entry in result.mappings():
                row = {**entry, "requests": 1}
                at = as_utc(row["created_at"])
                for record in focus_records(row, (at, at), prices, billing_account):
                    yield record
        return
    src = ledger_source(engine.dialect.name, since, until, {})
    hours = 24 if granularity == "day" else 1
    period = (src.c.hour // hours).label("period")
    keys = [period, *(src.c[k] for k in rollups.KEYS)]
    sums = [func.sum(src.c[m]).label(m) for m in ("requests", *rollups.SUMS)]
    query = select(*keys, *sums).group_by(*keys).order_by(*keys)
    async with report_connection(engine) as conn:
        rows = (await conn.execute(query)).mappings().all()
    rows = [*rows, *await _measurement_aggregates(engine, since, until, hours)]
    for row in rows:
        start = datetime.fromtimestamp(int(row["period"]) * hours * 3600, UTC)
        bounds = (max(start, since) if since else start, start + timedelta(hours=hours))
        if until is not None:
            bounds = (bounds[0], min(bounds[1], until))
        record_row = {**row, "provider": (providers or {}).get(row["deployment"], "")}
        for record in focus_records(record_row, bounds, prices, billing_account):
            yield record


async def _measurement_aggregates(
    engine: AsyncEngine, since: datetime | None, until: datetime | None, hours: int
) -> list[dict[str, Any]]:
    """Shadow and judge calls (not in the rollup) summed per period and rollup key, per cost class;
    their volume is bounded by the sampler's daily spending cap, so they are read row by row."""
    e = LedgerEntry
    query = select(e).where(e.cost_class != "request")
    if since is not None:
        query = query.where(e.created_at >= since)
    if until is not None:
        query = query.where(e.created_at < until)
    sums: dict[tuple, dict[str, Any]] = {}
    async with engine.connect() as conn:
        for entry in (await conn.execute(query)).mappings():
            period = int(as_utc(entry["created_at"]).timestamp()) // 3600 // hours
            key = (period, *(entry[k] or "" for k in rollups.KEYS), entry["cost_class"])
            acc = sums.setdefault(
                key,
                {
                    "period": period,
                    **{k: entry[k] or "" for k in rollups.KEYS},
                    "cost_class": entry["cost_class"],
                }
                | dict.fromkeys(("requests", *rollups.SUMS), 0),
            )
            acc["requests"] += 1
            for name in rollups.SUMS:
                acc[name] += int(entry[name] or 0)
    return [sums[key] for key in sorted(sums)]


def to_csv(records: Iterable[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()
