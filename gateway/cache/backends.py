"""Storage for the response cache: Redis 8 (strings + Vector Sets) or an in-process equivalent.

Layout (``{t}``/``{p}`` = hashed tenant/policy, ``{d}`` = exact-request digest, ``{s}`` = partition):

- ``tg:cache:{t}:{p}:e:{d}``  the entry (JSON: request text, partition, stored response), with a TTL
- ``tg:cache:{t}:{p}:v:{s}``  a vector set: member ``{d}``, its final-turn embedding, attributes
  ``{"exp": unix time, "text": final turn}``; expired members are never returned as candidates
  (checking ``exp`` client-side is cheaper than VSIM's FILTER, measured ~0.5 ms)
- ``tg:cache:{t}:{p}:x:{s}``  a sorted set member -> expiry; every write removes up to
  ``SWEEP_BATCH`` expired members from the vector set, so stale members do not accumulate

VSIM keeps the server's default exploration factor (EF 100) and worker thread. Measured on 100,000
entries (1,600 queries, exact neighbours from ``TRUTH``): EF 100 finds the true nearest neighbour for
98.8% of queries (99.9% of those whose neighbour has cosine >= 0.9), EF 50 for 97.6% (99.5%), EF 30
for 95.7% (98.5%): a lower EF saves 0.3-0.4 ms but loses hits. ``NOTHREAD`` measured the same as
the worker thread on queries the server had not just seen (0.85-1.21 ms against 0.87-1.25 ms p50),
and would make every search block the server, so it is not used.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import orjson
import redis.asyncio as aioredis
from redis.commands.vectorset.commands import QuantizationOptions

from gateway.deadline import redis_client

SWEEP_BATCH = 64
ADMIN_SOCKET_TIMEOUT_S = 30.0

# One round trip per lookup and per store: redis-py spends ~0.1 ms of client CPU per command, so the
# exact GET + VSIM of a miss and the 9 commands of a store cost more as commands than as one script.
# (The keys a script touches share no hash slot: these scripts assume a single Redis, not a Cluster.)
_LOOKUP = """
local entry = redis.call('GET', KEYS[1])
if entry or ARGV[1] == '' then return {entry or false, {}} end
return {false, redis.call('VSIM', KEYS[2], 'FP32', ARGV[1], 'WITHSCORES', 'WITHATTRIBS',
                          'COUNT', ARGV[2], 'EPSILON', ARGV[3])}
"""
_STORE = """
local ttl, now = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
if ARGV[4] == '' then return 0 end
redis.call('VADD', KEYS[2], 'FP32', ARGV[4], ARGV[5], ARGV[6], 'SETATTR', ARGV[7])
redis.call('ZADD', KEYS[3], now + ttl, ARGV[5])
for i = 2, 3 do
  if redis.call('TTL', KEYS[i]) < ttl then redis.call('EXPIRE', KEYS[i], ttl) end
end
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[8]))
for _, member in ipairs(stale) do redis.call('VREM', KEYS[2], member) end
if #stale > 0 then redis.call('ZREM', KEYS[3], unpack(stale)) end
return #stale
"""


@dataclass(frozen=True, slots=True)
class Neighbour:
    member: str
    cosine: float
    text: str


@dataclass(frozen=True, slots=True)
class VectorKeys:
    vset: str
    expiry: str


class CacheBackend(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def lookup(
        self, key: str, keys: VectorKeys, vector: np.ndarray | None, count: int, min_cosine: float
    ) -> tuple[bytes | None, list[Neighbour]]:
        """The entry at ``key``; if there is none and ``vector`` is given, the nearest live members of
        ``keys.vset`` at or above ``min_cosine`` (at most ``count``, nearest first)."""
        ...

    async def put(
        self, key: str, payload: bytes, ttl: int, keys: VectorKeys, member: str, vector: np.ndarray | None,
        text: str,
    ) -> None: ...  # fmt: skip

    async def remove(self, key: str, keys: VectorKeys | None, member: str) -> int: ...

    async def delete_matching(self, pattern: str) -> int:
        """Delete every key matching the glob ``pattern``; return how many entry (``:e:``) keys went."""
        ...

    async def close(self) -> None: ...


class RedisBackend:
    """Redis 8: payloads as strings with TTLs, final-turn embeddings in Vector Sets (VADD/VSIM)."""

    def __init__(
        self,
        client: aioredis.Redis,
        quantization: QuantizationOptions = QuantizationOptions.Q8,
    ) -> None:
        self.client = client
        # Admin scans walk the whole keyspace: on a busy server a reply can take longer than the request
        # path's fail-fast socket timeout, so they get their own connections with a patient one.
        kwargs = client.connection_pool.connection_kwargs
        self._admin = aioredis.Redis.from_pool(  # owns its pool: closed with it
            aioredis.ConnectionPool(
                connection_class=client.connection_pool.connection_class,
                **{**kwargs, "socket_timeout": ADMIN_SOCKET_TIMEOUT_S},
            )
        )
        self._quantization = quantization
        self._lookup = client.register_script(_LOOKUP)
        self._store = client.register_script(_STORE)

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 0.05) -> RedisBackend:
        """A client whose every command fails fast: a slow Redis must not slow requests down
        (``ResponseCache`` keeps ``timeout_s`` with ``gateway.deadline.BackendDeadline``)."""
        return cls(redis_client(url, timeout_s))

    async def get(self, key: str) -> bytes | None:
        return await self.client.get(key)

    async def put(
        self, key: str, payload: bytes, ttl: int, keys: VectorKeys, member: str, vector: np.ndarray | None,
        text: str,
    ) -> None:  # fmt: skip
        now = time.time()
        attributes = orjson.dumps({"exp": now + ttl, "text": text}) if vector is not None else b""
        blob = np.asarray(vector, dtype=np.float32).tobytes() if vector is not None else b""
        await self._store(
            keys=[key, keys.vset, keys.expiry],
            args=[payload, ttl, now, blob, member, self._quantization.value, attributes, SWEEP_BATCH],
        )

    async def lookup(
        self, key: str, keys: VectorKeys, vector: np.ndarray | None, count: int, min_cosine: float
    ) -> tuple[bytes | None, list[Neighbour]]:
        blob = np.asarray(vector, dtype=np.float32).tobytes() if vector is not None else b""
        entry, raw = await self._lookup(keys=[key, keys.vset], args=[blob, count, _epsilon(min_cosine)])
        return entry, _neighbours(raw)

    async def remove(self, key: str, keys: VectorKeys | None, member: str) -> int:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.delete(key)
            if keys is not None:
                pipe.vset().vrem(keys.vset, member)
                pipe.zrem(keys.expiry, member)
            results = await pipe.execute()
        return int(results[0])

    async def delete_matching(self, pattern: str) -> int:
        entries = 0
        batch: list[bytes] = []
        async for key in self._admin.scan_iter(match=pattern, count=1000):
            batch.append(key)
            entries += b":e:" in key
            if len(batch) >= 500:
                await self._admin.unlink(*batch)
                batch.clear()
        if batch:
            await self._admin.unlink(*batch)
        return entries

    async def close(self) -> None:
        await self.client.aclose()
        await self._admin.aclose()


def _epsilon(min_cosine: float) -> float:
    """VSIM scores are (1 + cosine) / 2; EPSILON is a bound on 1 - score."""
    return max((1.0 - min_cosine) / 2.0, 1e-6)


def _neighbours(raw: object) -> list[Neighbour]:
    """Live members from a VSIM ... WITHSCORES WITHATTRIBS reply (inside a script, so redis-py's reply
    parser, which mishandles these options, never sees it): a map (member -> [score, attributes]) under
    RESP3, a flat [member, score, attributes, ...] list under RESP2 and from scripts."""
    if isinstance(raw, dict):
        triples = [(member, *value) for member, value in raw.items()]
    else:
        triples = list(zip(*[iter(raw or [])] * 3, strict=False))
    now, out = time.time(), []
    for member, score, attrs in triples:
        meta = orjson.loads(attrs) if attrs else {}
        if meta.get("exp", 0) > now:  # expired members wait for the sweep but are never candidates
            name = member.decode() if isinstance(member, bytes) else str(member)
            out.append(Neighbour(name, 2.0 * float(score) - 1.0, str(meta.get("text", ""))))
    return out


class _VectorSet:
    """Exact (brute-force) cosine search over unit vectors, with O(1) removal."""

    def __init__(self, dim: int) -> None:
        self.matrix = np.zeros((16, dim), dtype=np.float32)
        self.members: list[str] = []
        self.index: dict[str, int] = {}
        self.attrs: dict[str, tuple[float, str]] = {}

    def add(self, member: str, vector: np.ndarray, expires: float, text: str) -> None:
        row = self.index.get(member)
        if row is None:
            row = len(self.members)
            if row == len(self.matrix):
                self.matrix = np.vstack([self.matrix, np.zeros_like(self.matrix)])
            self.members.append(member)
            self.index[member] = row
        self.matrix[row] = vector
        self.attrs[member] = (expires, text)

    def remove(self, member: str) -> bool:
        row = self.index.pop(member, None)
        if row is None:
            return False
        last = len(self.members) - 1
        if row != last:
            moved = self.members[last]
            self.matrix[row] = self.matrix[last]
            self.members[row] = moved
            self.index[moved] = row
        self.members.pop()
        del self.attrs[member]
        return True


class MemoryBackend:
    """In-process stand-in for ``RedisBackend`` with the same semantics (TTLs, filters, sweeping)."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[bytes, float]] = {}
        self._vsets: dict[str, _VectorSet] = {}

    async def get(self, key: str) -> bytes | None:
        item = self._values.get(key)
        if item is None:
            return None
        if item[1] <= time.time():
            del self._values[key]
            return None
        return item[0]

    async def lookup(
        self, key: str, keys: VectorKeys, vector: np.ndarray | None, count: int, min_cosine: float
    ) -> tuple[bytes | None, list[Neighbour]]:
        entry = await self.get(key)
        if entry is not None or vector is None:
            return entry, []
        return None, self._search(keys, vector, count, min_cosine)

    async def put(
        self, key: str, payload: bytes, ttl: int, keys: VectorKeys, member: str, vector: np.ndarray | None,
        text: str,
    ) -> None:  # fmt: skip
        now = time.time()
        self._values[key] = (payload, now + ttl)
        if vector is None:
            return
        vset = self._vsets.get(keys.vset)
        if vset is None:
            vset = self._vsets[keys.vset] = _VectorSet(len(vector))
        vset.add(member, np.asarray(vector, dtype=np.float32), now + ttl, text)
        stale = [m for m, (exp, _) in vset.attrs.items() if exp <= now][:SWEEP_BATCH]
        for m in stale:
            vset.remove(m)

    def _search(self, keys: VectorKeys, vector: np.ndarray, count: int, min_cosine: float) -> list[Neighbour]:
        vset = self._vsets.get(keys.vset)
        if vset is None or not vset.members:
            return []
        now = time.time()
        sims = vset.matrix[: len(vset.members)] @ np.asarray(vector, dtype=np.float32)
        close = np.flatnonzero(sims >= min_cosine)
        out = []
        for row in close[np.argsort(-sims[close])]:
            if len(out) == count:
                break
            member = vset.members[row]
            expires, text = vset.attrs[member]
            if expires > now:
                out.append(Neighbour(member, float(sims[row]), text))
        return out

    async def remove(self, key: str, keys: VectorKeys | None, member: str) -> int:
        existed = self._values.pop(key, None) is not None
        if keys is not None and (vset := self._vsets.get(keys.vset)) is not None:
            vset.remove(member)
            if not vset.members:
                del self._vsets[keys.vset]
        return int(existed)

    async def delete_matching(self, pattern: str) -> int:
        now = time.time()
        doomed = [k for k in self._values if fnmatch.fnmatchcase(k, pattern)]
        entries = sum(":e:" in k and self._values[k][1] > now for k in doomed)
        for k in doomed:
            del self._values[k]
        for k in [k for k in self._vsets if fnmatch.fnmatchcase(k, pattern)]:
            del self._vsets[k]
        return entries

    async def close(self) -> None:
        self._values.clear()
        self._vsets.clear()
