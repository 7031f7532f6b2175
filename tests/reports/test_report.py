"""Reports against a row-by-row oracle on SQLite and PostgreSQL: the rollup triggers, the edges of a
range read from the raw ledger, savings attribution, latency percentiles, bad input."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import func, select

from gateway.db.engine import create_engine, migrate, sync_url
from gateway.ledger import rollups
from gateway.ledger.report import SOURCES, ReportError, cost_report
from tests.reports.ledger_fixtures import PRICES, START, insert_statement, make_rows, oracle


def insert(url: str, rows: list[dict]) -> None:
    engine = create_sync_engine(sync_url(url))
    with engine.begin() as conn:
        for i in range(0, len(rows), 500):
            conn.execute(insert_statement(engine.dialect.name), rows[i : i + 500])
    engine.dispose()


def rollup_sums(url: str) -> tuple[int, int, int]:
    engine = create_sync_engine(sync_url(url))
    with engine.connect() as conn:
        t = rollups.rollup
        row = conn.execute(
            select(func.sum(t.c.requests), func.sum(t.c.cost_micros), func.sum(t.c.output_tokens))
        ).one()
    engine.dispose()
    return tuple(int(v or 0) for v in row)


async def report(url: str, **kwargs):
    engine = create_engine(url)
    try:
        return await cost_report(engine, prices=PRICES, **kwargs)
    finally:
        await engine.dispose()


def check_against_oracle(result, rows, key) -> None:
    expected = oracle(rows, key)
    assert len(result.groups) == len(expected)
    for labels, totals in result.groups:
        want = expected[tuple(labels.values())]
        assert totals.requests == want["requests"]
        assert totals.cost_micros == want["cost"] and totals.baseline_cost_micros == want["baseline"]
        assert totals.tokens["output_tokens"] == want["output_tokens"]
        saved = totals.savings_micros
        assert sum(saved[s] for s in SOURCES) == totals.total_savings_micros  # parts sum to the total
        assert saved["semantic_cache"] == want["semantic_cache"]
        assert saved["self_hosting"] == want["self_hosting"]
        assert saved["routing"] + saved["prompt_caching"] == want["non_prompt_saved"]
        # Prompt caching is rounded once per (deployment, cache outcome) cell, not per row.
        assert abs(saved["prompt_caching"] - want["prompt_caching_exact"]) <= 12


async def test_report_matches_the_ledger_row_by_row(db_url):
    migrate(db_url)
    rows = make_rows(3000)
    insert(db_url, rows)
    since, until = START + timedelta(hours=5, minutes=17), START + timedelta(hours=50, seconds=31)
    inside = [r for r in rows if since <= r["created_at"] < until]

    by_team = await report(db_url, group_by="team", since=since, until=until)
    check_against_oracle(by_team, inside, lambda r: (r["team"],))

    by_day_tier = await report(db_url, group_by="day,tier", since=since, until=until)
    check_against_oracle(by_day_tier, inside, lambda r: (r["created_at"].date().isoformat(), r["tier"]))
    assert [g["day"] for g, _ in by_day_tier.groups] == sorted(g["day"] for g, _ in by_day_tier.groups)

    everything = await report(db_url, group_by="policy,project")
    check_against_oracle(everything, rows, lambda r: (r["policy"], r["project"]))
    assert everything.total.requests == len(rows)


async def test_a_range_inside_one_hour_reads_only_the_ledger(db_url):
    migrate(db_url)
    rows = make_rows(2000, hours=3)
    insert(db_url, rows)
    since, until = START + timedelta(hours=1, minutes=10), START + timedelta(hours=1, minutes=40)
    inside = [r for r in rows if since <= r["created_at"] < until]
    result = await report(db_url, group_by="hour", since=since, until=until)
    check_against_oracle(result, inside, lambda r: ("2026-11-01T01:00:00Z",))


async def test_triggers_keep_the_rollup_current_and_replays_count_once(db_url):
    migrate(db_url)
    rows = make_rows(700, seed=3)
    insert(db_url, rows[:400])
    insert(db_url, rows[:400])  # a replayed spool batch: ON CONFLICT DO NOTHING, nothing rolled up twice
    insert(db_url, rows[300:])
    assert rollup_sums(db_url) == (
        len(rows),
        sum(r["cost_micros"] for r in rows),
        sum(r["output_tokens"] for r in rows),
    )


async def test_migration_backfills_rows_written_before_it(db_url):
    migrate(db_url, "0002")
    rows = make_rows(500, seed=11)
    insert(db_url, rows)
    migrate(db_url)
    assert rollup_sums(db_url)[:2] == (len(rows), sum(r["cost_micros"] for r in rows))
    insert(db_url, make_rows(10, seed=12))
    assert rollup_sums(db_url)[0] == len(rows) + 10


async def test_latency_percentiles_are_within_one_bucket(db_url):
    migrate(db_url)
    rows = make_rows(2000, seed=5)
    insert(db_url, rows)
    latencies = sorted(r["latency_ms"] for r in rows if r["latency_ms"] is not None)
    result = (await report(db_url, group_by="tier")).total.to_dict()
    for q, name in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms")):
        exact = latencies[math.ceil(q * len(latencies)) - 1]
        assert exact / math.sqrt(2) <= result[name] <= exact * math.sqrt(2), (name, exact, result[name])
    assert result["latency_mean_ms"] == pytest.approx(sum(latencies) / len(latencies), abs=0.1)


async def test_json_shape_uses_decimal_strings_for_money(db_url):
    migrate(db_url)
    insert(db_url, make_rows(50, seed=2))
    data = (await report(db_url, group_by="deployment")).to_dict()
    first = data["data"][0]
    assert set(first["group"]) == {"deployment"}
    assert isinstance(first["cost_usd"], str) and "." in first["cost_usd"]
    assert isinstance(first["cost_micros"], int)
    assert set(first["savings_by_source_usd"]) == set(SOURCES)
    hits, lookups = data["total"]["cache_hits"], data["total"]["cache_lookups"]
    assert 0 < hits < lookups and data["total"]["cache_hit_rate_pct"] == f"{100 * hits / lookups:.2f}"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"group_by": "colour"}, "group_by"),
        ({"group_by": ""}, "group_by"),
        ({"group_by": "team,team"}, "group_by"),
        ({"since": START + timedelta(hours=2), "until": START}, "since"),
        ({"filters": {"key_hash": "x"}}, "key_hash"),
    ],
)
async def test_bad_requests_are_report_errors(tmp_path, kwargs, param):
    url = f"sqlite:///{tmp_path}/l.db"
    migrate(url)
    with pytest.raises(ReportError) as info:
        await report(url, **kwargs)
    assert info.value.param == param


def test_attribute_savings_one_request_at_a_time():
    from gateway.ledger.report import attribute_savings

    sonnet = PRICES["claude-sonnet"]  # input 3, cache read 0.3, 5-min write 3.75, 1-hour write 6 (µ$/token)
    tokens = {
        "input_cache_read_tokens": 1000,
        "input_cache_write_tokens": 300,
        "input_cache_write_1h_tokens": 100,
    }
    parts = attribute_savings(5_000, 9_000, "miss", "frontier", sonnet, tokens)
    # read: 1000 x 2.7 = 2700; 5-min writes: 200 x -0.75 = -150; 1-hour writes: 100 x -3 = -300
    assert parts == {"prompt_caching": 2250, "routing": 4000 - 2250}
    assert attribute_savings(0, 9_000, "semantic", "frontier", sonnet, tokens) == {"semantic_cache": 9000}
    assert attribute_savings(100, 9_000, "miss", "selfhost", None, tokens) == {"self_hosting": 8900}
    assert attribute_savings(12_000, 9_000, "off", "frontier", None, {}) == {
        "prompt_caching": 0,
        "routing": -3000,
    }


async def test_key_spend_today_and_this_month(db_url):
    from gateway.ledger.report import key_spend

    migrate(db_url)
    rows = make_rows(600, seed=8, hours=72, start=START - timedelta(hours=24))  # from the previous month on
    for i, row in enumerate(rows):
        row["key_id"] = ("k1", "k2", "k3")[i % 3]
    insert(db_url, rows)
    now = START + timedelta(hours=30)  # 2026-11-02 06:00 UTC
    engine = create_engine(db_url)
    try:
        spend = await key_spend(engine, ["k1", "k2", "nobody"], now)
    finally:
        await engine.dispose()
    day_start = START + timedelta(hours=24)
    for key in ("k1", "k2"):
        mine = [r for r in rows if r["key_id"] == key]
        today = sum(r["cost_micros"] for r in mine if day_start <= r["created_at"])
        month = sum(r["cost_micros"] for r in mine if r["created_at"] >= START)
        assert spend[key] == (today, month)
    assert set(spend) == {"k1", "k2"}
