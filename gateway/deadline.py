"""Calls to a shared backend (Redis) from the request path: the client, and the deadline they keep."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

# How much longer than its timeout a call may take, in wall time, while the event loop was too busy to
# have waited that long.
MAX_LOOP_LAG_S = 1.0
# Connections per client. A request waits for a free one (within its deadline) rather than failing: redis-py's
# default pool raises MaxConnectionsError past 100, which at 64 concurrent requests (lookups plus the stores
# they leave in the background) turned the cache off for its cool-down, again and again.
MAX_CONNECTIONS = 256


def redis_client(url: str, timeout_s: float) -> aioredis.Redis:
    """A client for request-path calls that keep ``BackendDeadline(timeout_s)``; its socket timeout is only
    a backstop (a socket timeout counts the event loop's busy time, which the deadline does not)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout_s + MAX_LOOP_LAG_S,  # waiting for a free connection
        socket_timeout=timeout_s + MAX_LOOP_LAG_S,
        socket_connect_timeout=max(timeout_s, 0.25),
        health_check_interval=10,
        retry_on_timeout=False,
    )
    return aioredis.Redis.from_pool(pool)  # owns its pool: closed with it


class BackendDeadline:
    """``asyncio.timeout`` that counts the time the event loop spent waiting, not the time it spent busy.

    A saturated loop gets to a Redis reply late: the reply sits in the socket while the loop serves other
    requests, and a wall-clock timeout then fires although Redis answered in microseconds, turning the
    cache off or the limits local exactly when load is highest. So the deadline is ``timeout_s`` of wall
    time minus the CPU time this process spent meanwhile (its loop, and its other threads, which take
    turns with the loop on a pinned core), and at most ``timeout_s`` + ``MAX_LOOP_LAG_S`` of wall time:
    a hung Redis behind an idle loop still fails after ``timeout_s``.
    Written here because asyncio's timeouts only know wall time.
    """

    __slots__ = ("_check", "_cpu", "_loop", "_started", "_timeout", "_timeout_s")

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s

    async def __aenter__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started, self._cpu = self._loop.time(), time.process_time()
        self._timeout = asyncio.timeout(None)
        await self._timeout.__aenter__()
        self._check = self._loop.call_at(self._started + self._timeout_s, self._expire_or_extend)

    async def __aexit__(self, *exc: object) -> bool | None:
        self._check.cancel()
        return await self._timeout.__aexit__(*exc)  # type: ignore[arg-type]

    def _expire_or_extend(self) -> None:
        now = self._loop.time()
        waited = (now - self._started) - (time.process_time() - self._cpu)
        if waited >= self._timeout_s or now - self._started >= self._timeout_s + MAX_LOOP_LAG_S:
            self._timeout.reschedule(now)  # expires: the task is cancelled, the caller sees TimeoutError
        else:
            self._check = self._loop.call_later(self._timeout_s - waited, self._expire_or_extend)
