"""Redis 8 specifics: vector-set hygiene, and requests that keep working while Redis is down."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from gateway.cache import CacheScope, CacheSettings, ResponseCache
from gateway.cache.backends import RedisBackend
from gateway.cache.cache import CACHE_ERRORS
from gateway.deadline import MAX_CONNECTIONS, MAX_LOOP_LAG_S
from tests.cache.helpers import chat, completion
from tests.support.redis8 import Redis8Server, answered_while_the_loop_is_busy

pytestmark = pytest.mark.redis8


async def vector_members(client: aioredis.Redis) -> int:
    total = 0
    async for key in client.scan_iter(match="tg:cache:*:v:*"):
        total += await client.execute_command("VCARD", key)
    return total


async def test_stale_members_leave_the_vector_set(redis8: Redis8Server) -> None:
    async with aioredis.Redis.from_url(redis8.url) as client:
        await client.flushdb()
        cache = ResponseCache(RedisBackend.from_url(redis8.url, timeout_s=1.0), timeout_s=1.0)
        short = CacheScope("t", "p", CacheSettings(ttl_seconds=1))
        for q in ["What is the capital of France?", "Who wrote Hamlet?", "How do I boil an egg?"]:
            await cache.store(await cache.lookup(short, chat(q), {}), completion("x"))
        assert await vector_members(client) == 3

        entry = (await cache.lookup(short, chat("Who wrote Hamlet?"), {})).entry_id
        assert await cache.invalidate(entry_id=entry) == 1
        assert await vector_members(client) == 2

        await asyncio.sleep(1.2)  # the other two expire; the next write in the partition sweeps them
        lookup = await cache.lookup(short, chat("What is 2 + 2?"), {})
        await cache.store(lookup, completion("4"))
        assert await vector_members(client) == 1
        await cache.close()


async def test_redis_outage_mid_load_degrades_to_uncached_and_recovers() -> None:
    server = Redis8Server().start()
    cache = ResponseCache(RedisBackend.from_url(server.url, timeout_s=0.2), timeout_s=0.2, cooldown_s=0.3)
    scope = CacheScope("t", "p")
    try:
        await cache.store(await cache.lookup(scope, chat("Who wrote Hamlet?"), {}), completion("Shakespeare"))
        assert (await cache.lookup(scope, chat("Who wrote Hamlet?"), {})).outcome == "exact"

        errors_before = CACHE_ERRORS.labels("lookup")._value.get()
        server.stop()
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(cache.lookup(scope, chat(f"question {i}?"), {}) for i in range(50)))
        elapsed = time.perf_counter() - started
        assert {o.outcome for o in outcomes} == {"miss"}
        assert {o.reason for o in outcomes} == {"backend-unavailable"}
        assert not await cache.store(outcomes[0], completion("not stored"))
        assert elapsed < 2.0  # each lookup waits at most one timeout; later ones skip Redis entirely
        assert CACHE_ERRORS.labels("lookup")._value.get() > errors_before

        server.start()  # same port, empty (no persistence)
        await asyncio.sleep(0.4)  # cool-down ends
        deadline = time.monotonic() + 5
        while True:
            lookup = await cache.lookup(scope, chat("Who wrote Hamlet?"), {})
            if lookup.reason != "backend-unavailable" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert lookup.outcome == "miss" and lookup.store_allowed
        assert await cache.store(lookup, completion("Shakespeare"))
        assert (await cache.lookup(scope, chat("Who wrote Hamlet?"), {})).outcome == "exact"
    finally:
        await cache.close()
        server.close()


async def test_slow_redis_is_a_miss_not_a_stall() -> None:
    with Redis8Server(extra_args=("--enable-debug-command", "local")) as server:
        cache = ResponseCache(RedisBackend.from_url(server.url, timeout_s=0.05), timeout_s=0.05, cooldown_s=5)
        async with aioredis.Redis.from_url(server.url) as admin:
            pause = asyncio.create_task(admin.execute_command("DEBUG", "SLEEP", "0.5"))
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            lookup = await cache.lookup(CacheScope("t", "p"), chat("Who wrote Hamlet?"), {})
            assert time.perf_counter() - started < 0.3
            assert lookup.reason == "backend-unavailable"
            await pause
        await cache.close()


async def test_a_busy_event_loop_is_not_a_slow_redis() -> None:
    """Redis's reply waited in the socket while the loop was busy past the timeout: still an answer, and
    the cache stays on (a wall-clock timeout fired here, and put the cache in cool-down under load)."""
    with Redis8Server(extra_args=("--enable-debug-command", "local")) as server:
        cache = ResponseCache(RedisBackend.from_url(server.url, timeout_s=0.05), timeout_s=0.05, cooldown_s=5)
        scope = CacheScope("t", "p")
        await cache.store(await cache.lookup(scope, chat("Who wrote Hamlet?"), {}), completion("Shakespeare"))
        errors_before = CACHE_ERRORS.labels("lookup")._value.get()
        lookup = await answered_while_the_loop_is_busy(
            server.url, cache.lookup(scope, chat("Who wrote Hamlet?"), {})
        )
        assert (lookup.outcome, lookup.reason) == ("exact", "")
        assert CACHE_ERRORS.labels("lookup")._value.get() == errors_before
        await cache.close()


async def test_a_hung_redis_behind_a_busy_loop_still_times_out() -> None:
    """Busy or not, the wait is bounded: `timeout_s` + MAX_LOOP_LAG_S of wall time at most."""
    with Redis8Server(extra_args=("--enable-debug-command", "local")) as server:
        cache = ResponseCache(RedisBackend.from_url(server.url, timeout_s=0.05), timeout_s=0.05, cooldown_s=5)
        async with aioredis.Redis.from_url(server.url) as admin:
            pause = asyncio.create_task(admin.execute_command("DEBUG", "SLEEP", "3"))
            await asyncio.sleep(0.05)

            async def keep_the_loop_busy() -> None:
                started = time.perf_counter()
                while time.perf_counter() - started < 2.5:
                    deadline = time.perf_counter() + 0.01
                    while time.perf_counter() < deadline:
                        pass
                    await asyncio.sleep(0)

            started = time.perf_counter()
            busy = asyncio.create_task(keep_the_loop_busy())
            lookup = await cache.lookup(CacheScope("t", "p"), chat("Who wrote Hamlet?"), {})
            elapsed = time.perf_counter() - started
            busy.cancel()
            assert lookup.reason == "backend-unavailable"
            assert elapsed < 0.05 + MAX_LOOP_LAG_S + 0.3, elapsed
            await pause
        await cache.close()


async def test_more_concurrent_lookups_than_connections_wait_for_one(redis8: Redis8Server) -> None:
    """Past the pool's size a lookup waits for a free connection: redis-py's default pool raised
    MaxConnectionsError past 100, and the cache went into its cool-down under load."""
    cache = ResponseCache(RedisBackend.from_url(redis8.url, timeout_s=1.0), timeout_s=1.0, cooldown_s=5)
    scope = CacheScope("t", "p")
    errors_before = CACHE_ERRORS.labels("lookup")._value.get()
    lookups = await asyncio.gather(
        *(cache.lookup(scope, chat(f"Question number {i}?"), {}) for i in range(2 * MAX_CONNECTIONS))
    )
    assert "backend-unavailable" not in {lookup.reason for lookup in lookups}
    assert CACHE_ERRORS.labels("lookup")._value.get() == errors_before
    await cache.close()
