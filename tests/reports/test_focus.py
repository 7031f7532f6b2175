"""FOCUS export: required columns, class rows that sum exactly to the ledger, both granularities."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest

from gateway.db.engine import create_engine, migrate
from gateway.ledger.focus import COLUMNS, allocate, focus_rows, to_csv
from gateway.ledger.report import ReportError
from tests.reports.ledger_fixtures import DEPLOYMENTS, PRICES, START, make_rows
from tests.reports.test_report import insert

# FOCUS 1.2 columns every conformant dataset carries (mandatory, or conditional ones that apply here).
REQUIRED = {
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd",
    "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency",
    "ChargePeriodEnd", "ChargePeriodStart", "ConsumedQuantity", "ConsumedUnit", "ContractedCost",
    "ContractedUnitPrice", "EffectiveCost", "InvoiceIssuerName", "ListCost", "ListUnitPrice",
    "PricingCategory", "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName",
    "ResourceId", "ResourceName", "ResourceType", "ServiceCategory", "ServiceName", "SkuId",
    "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
}  # fmt: skip
PROVIDERS = {name: provider for name, (_, provider) in DEPLOYMENTS.items()}


def micros(usd: str) -> int:
    return int(Decimal(usd) * 1_000_000)


async def export(url, granularity, since=None, until=None) -> list[dict]:
    engine = create_engine(url)
    try:
        records = [
            r async for r in focus_rows(engine, since, until, PRICES, granularity, providers=PROVIDERS)
        ]
    finally:
        await engine.dispose()
    return list(csv.DictReader(io.StringIO(to_csv(records))))


def test_allocation_is_exact_and_proportional():
    assert allocate(1001, {"a": Decimal(1), "b": Decimal(1), "c": Decimal(2)}) == {
        "a": 250,
        "b": 250,
        "c": 501,
    }
    assert allocate(7, {"a": Decimal(0), "b": Decimal(0)}) == {"a": 4, "b": 3}  # no weights: split evenly
    assert allocate(0, {"a": Decimal(3)}) == {"a": 0}


@pytest.mark.parametrize("granularity", ["request", "day", "hour"])
async def test_export_sums_to_the_ledger(db_url, granularity):
    migrate(db_url)
    rows = make_rows(400, seed=21, hours=50)
    insert(db_url, rows)
    since, until = START + timedelta(hours=3, minutes=5), START + timedelta(hours=40, minutes=50)
    inside = [r for r in rows if since <= r["created_at"] < until]
    exported = await export(db_url, granularity, since, until)
    assert set(REQUIRED) <= set(exported[0]) and list(exported[0]) == list(COLUMNS)
    assert all(c.startswith("x_") for c in COLUMNS if c not in REQUIRED and c[0] == "x")
    assert sum(micros(r["EffectiveCost"]) for r in exported) == sum(r["cost_micros"] for r in inside)
    assert sum(micros(r["ListCost"]) for r in exported) == sum(r["baseline_cost_micros"] for r in inside)
    output = sum(int(r["ConsumedQuantity"]) for r in exported if r["x_TokenClass"].startswith("output"))
    assert output == sum(r["output_tokens"] for r in inside)
    for record in exported:
        assert record["ChargeCategory"] == "Usage" and record["BillingCurrency"] == "USD"
        assert record["ConsumedUnit"] == "Tokens" and record["BilledCost"] == record["EffectiveCost"]
        assert since.isoformat()[:10] <= record["ChargePeriodStart"][:10]
        assert record["ChargePeriodStart"] <= record["ChargePeriodEnd"]
        assert record["ProviderName"] == (
            "self-hosted" if record["x_Tier"] == "selfhost" else PROVIDERS[record["x_Deployment"]]
        )
    if granularity == "request":
        by_request = defaultdict(int)
        for record in exported:
            by_request[record["x_RequestId"]] += micros(record["EffectiveCost"])
        assert by_request == {r["id"]: r["cost_micros"] for r in inside if r["cost_micros"]} | {
            r["id"]: 0 for r in inside if not r["cost_micros"]
        }
    else:
        assert sum(int(r["x_Requests"]) for r in exported if r["x_TokenClass"] == "output") == len(inside)


async def test_cache_read_rows_carry_the_discounted_unit_price(db_url):
    migrate(db_url)
    insert(db_url, make_rows(300, seed=4))
    exported = await export(db_url, "request")
    read = next(
        r for r in exported if r["x_TokenClass"] == "input_cache_read" and r["x_Deployment"] == "gpt-4o"
    )
    assert Decimal(read["ContractedUnitPrice"]) == Decimal("0.00000125")
    assert Decimal(read["ListUnitPrice"]) == Decimal("0.0000025")


async def test_bad_granularity(tmp_path):
    url = f"sqlite:///{tmp_path}/l.db"
    migrate(url)
    with pytest.raises(ReportError):
        await export(url, "week")
