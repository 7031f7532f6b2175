"""The response cache: an exact layer and a verified semantic layer in front of every upstream call.

    lookup = await cache.lookup(scope, body, headers)      # exact, then semantic
    if lookup.response is not None: ...replay it...
    else: response = ...upstream...; await cache.store(lookup, response, status_code)

A semantic hit needs (1) the same tenant, policy and conversation up to the final user turn (the
partition), (2) a final turn whose embedding is among the nearest in that partition, and (3) the
verifier's probability at or above the policy threshold. Any backend failure or timeout turns the
lookup into a miss (counted in ``tiergate_cache_errors_total`` and logged); after a failure the
backend is left alone for ``cooldown_s`` so a dead Redis costs requests nothing, then retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import orjson
from prometheus_client import Counter
from redis.exceptions import RedisError

from gateway.cache import keys
from gateway.cache.backends import CacheBackend, MemoryBackend, Neighbour, RedisBackend, VectorKeys
from gateway.cache.policy import CacheScope, header_directives, is_storable, semantic_refusal
from gateway.cache.verifier import Verifier, get_verifier
from gateway.deadline import BackendDeadline
from gateway.embeddings import Embedder, get_embedder

log = logging.getLogger(__name__)

CACHE_ERRORS = Counter("tiergate_cache_errors_total", "Cache backend failures and timeouts", ["operation"])
CACHE_LOOKUPS = Counter("tiergate_cache_lookups_total", "Cache lookups by outcome", ["outcome"])

Outcome = Literal["exact", "semantic", "miss", "bypass"]
T = TypeVar("T")
PREFIX = "tg:cache"
ADMIN_TIMEOUT_S = 30.0


@dataclass
class CacheLookup:
    """What ``lookup`` found, and what ``store`` needs to file the upstream answer afterwards."""

    outcome: Outcome
    response: dict[str, Any] | None = None
    similarity: float | None = None
    verifier_score: float | None = None
    entry_id: str | None = None
    reason: str = ""  # why bypassed / why no semantic hit
    scope: CacheScope | None = field(default=None, repr=False)
    store_allowed: bool = field(default=False, repr=False)
    digest: str = field(default="", repr=False)
    partition: str = field(default="", repr=False)
    text: str | None = field(default=None, repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)


def _namespace(scope: CacheScope) -> str:
    return f"{PREFIX}:{keys.short_hash(scope.tenant)}:{keys.short_hash(scope.policy)}"


def _vector_keys(namespace: str, partition: str) -> VectorKeys:
    return VectorKeys(vset=f"{namespace}:v:{partition}", expiry=f"{namespace}:x:{partition}")


class BackendUnavailable(Exception):
    """The backend failed recently; it is skipped until the cool-down ends."""


class ResponseCache:
    def __init__(
        self,
        backend: CacheBackend | None = None,
        *,
        embedder: Embedder | None = None,
        verifier: Verifier | None = None,
        timeout_s: float = 0.05,
        cooldown_s: float = 1.0,
    ) -> None:
        self.backend: CacheBackend = backend or MemoryBackend()
        self._embedder = embedder
        self._verifier = verifier
        self.timeout_s = timeout_s
        self.cooldown_s = cooldown_s
        self._down_until = 0.0

    @classmethod
    def from_url(cls, redis_url: str | None, **kwargs: Any) -> ResponseCache:
        """Redis 8 when ``redis_url`` is set, else the in-process backend."""
        timeout_s = kwargs.get("timeout_s", 0.05)
        backend = RedisBackend.from_url(redis_url, timeout_s=timeout_s) if redis_url else MemoryBackend()
        return cls(backend, **kwargs)

    @property
    def embedder(self) -> Embedder:
        return self._embedder or get_embedder()

    @property
    def verifier(self) -> Verifier:
        return self._verifier or get_verifier()

    async def _call(
        self, operation: str, make: Callable[[], Awaitable[T]], timeout_s: float | None = None
    ) -> T:
        if time.monotonic() < self._down_until:
            raise BackendUnavailable(operation)
        try:
            async with BackendDeadline(timeout_s or self.timeout_s):
                return await make()
        except (RedisError, OSError, TimeoutError) as exc:
            CACHE_ERRORS.labels(operation).inc()
            if self._down_until == 0.0 or time.monotonic() - self._down_until > 60:
                log.warning("cache backend %s failed (%r): serving uncached for %.1fs", operation, exc,
                            self.cooldown_s)  # fmt: skip
            self._down_until = time.monotonic() + self.cooldown_s
            raise BackendUnavailable(operation) from exc

    async def lookup(
        self,
        scope: CacheScope,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        embedding: np.ndarray | None = None,
    ) -> CacheLookup:
        result = await self._lookup(scope, body, headers, embedding)
        CACHE_LOOKUPS.labels(result.outcome).inc()
        return result

    async def _lookup(
        self, scope: CacheScope, body: Mapping[str, Any], headers: Mapping[str, str], embedding: np.ndarray | None
    ) -> CacheLookup:  # fmt: skip
        settings = scope.settings
        if not settings.enabled:
            return CacheLookup("bypass", reason="disabled", scope=scope)
        directives = header_directives(headers)
        normalised = keys.normalise(dict(body))
        namespace = _namespace(scope)
        result = CacheLookup(
            "bypass" if not directives.read else "miss",
            reason=directives.reason,
            scope=scope,
            store_allowed=directives.store,
            digest=keys.exact_digest((scope.tenant, scope.policy), normalised),
            text=keys.final_user_text(normalised),
        )
        if result.text is not None:
            result.partition = keys.partition_digest((scope.tenant, scope.policy), normalised)
        if not directives.read:
            return result
        # Whether to look for neighbours is known before the exact GET, so both go in one round trip.
        semantic_reason = await self._semantic_refusal(result, normalised, embedding)
        vector = result.embedding if semantic_reason is None else None
        vkeys = _vector_keys(namespace, result.partition)
        verifier = self.verifier
        try:
            raw, neighbours = await self._call(
                "lookup",
                lambda: self.backend.lookup(
                    f"{namespace}:e:{result.digest}", vkeys, vector, settings.candidates, verifier.min_cosine
                ),
            )
        except BackendUnavailable:
            result.reason, result.store_allowed = "backend-unavailable", False
            return result
        if raw is not None:
            result.outcome, result.response = "exact", orjson.loads(raw)["response"]
            result.entry_id, result.similarity = (
                f"{namespace.removeprefix(PREFIX + ':')}:{result.digest}",
                1.0,
            )
            return result
        if semantic_reason is not None:
            result.reason = semantic_reason
            return result
        await self._verify(result, namespace, vkeys, neighbours)
        return result

    async def _semantic_refusal(
        self, result: CacheLookup, normalised: dict[str, Any], embedding: np.ndarray | None
    ) -> str | None:
        """Why this request gets no semantic lookup (None: it does); embeds the final turn when the
        semantic layer is on, since the router shares the embedding even when the cache refuses."""
        if result.text is None:
            return "no-final-user-text"
        settings = result.scope.settings
        if not settings.semantic:  # nothing to embed for: exact matching only
            return "semantic-disabled"
        result.embedding = (
            embedding if embedding is not None else (await self.embedder.aembed([result.text]))[0]
        )
        if refusal := semantic_refusal(normalised, settings):
            return refusal
        if not np.any(result.embedding):
            return "empty-embedding"
        return None

    async def _verify(
        self, result: CacheLookup, namespace: str, vkeys: VectorKeys, neighbours: list[Neighbour]
    ) -> None:
        """Serve the best neighbour the verifier accepts whose entry is still there."""
        assert result.scope is not None and result.text is not None
        verifier = self.verifier
        threshold = result.scope.settings.semantic_threshold
        threshold = verifier.default_threshold if threshold is None else threshold
        texts = [n.text for n in neighbours]
        scores = verifier.first_stage_many(texts, result.text, [n.cosine for n in neighbours], threshold)
        if verifier.asks_second_stage(scores, threshold):  # a would-be hit: the transformer checks it
            scores = await asyncio.to_thread(verifier.second_stage, texts, result.text, scores, threshold)
        scored = sorted(zip(scores.tolist(), neighbours, strict=True), key=lambda item: -item[0])
        result.reason = "no-neighbour" if not neighbours else "below-threshold"
        for score, neighbour in scored:
            if score < threshold:
                break
            entry_key = f"{namespace}:e:{neighbour.member}"
            try:
                raw = await self._call("get", lambda k=entry_key: self.backend.get(k))
                if raw is None:  # expired or invalidated: drop the stale member
                    await self._call(
                        "remove", lambda k=entry_key, m=neighbour.member: self.backend.remove(k, vkeys, m)
                    )
                    continue
            except BackendUnavailable:
                result.reason = "backend-unavailable"
                return
            result.outcome, result.response = "semantic", orjson.loads(raw)["response"]
            result.similarity, result.verifier_score = neighbour.cosine, score
            result.entry_id = f"{namespace.removeprefix(PREFIX + ':')}:{neighbour.member}"
            result.reason = ""
            return

    async def store(self, lookup: CacheLookup, response: Mapping[str, Any], status_code: int = 200) -> bool:
        """File an upstream answer under ``lookup``'s keys. Returns whether it was stored."""
        if lookup.outcome in {"exact", "semantic"} or not lookup.store_allowed or lookup.scope is None:
            return False
        if not is_storable(response, status_code):
            return False
        namespace = _namespace(lookup.scope)
        vector = None
        if lookup.text is not None and lookup.scope.settings.semantic:
            vector = lookup.embedding
            if vector is None:
                vector = (await self.embedder.aembed([lookup.text]))[0]
            if not np.any(vector):
                vector = None
        payload = orjson.dumps(
            {
                "response": response,
                "text": lookup.text,
                "partition": lookup.partition,
                "stored_at": time.time(),
            }
        )
        try:
            await self._call(
                "store",
                lambda: self.backend.put(
                    f"{namespace}:e:{lookup.digest}",
                    payload,
                    lookup.scope.settings.ttl_seconds,
                    _vector_keys(namespace, lookup.partition),
                    lookup.digest,
                    vector,
                    lookup.text or "",
                ),
            )
        except BackendUnavailable:
            return False
        return True

    async def invalidate(
        self, tenant: str | None = None, policy: str | None = None, entry_id: str | None = None
    ) -> int:
        """Remove one entry (by ``entry_id``) or every entry of a tenant, a policy, or both.

        Raises ``BackendUnavailable`` when the backend cannot be reached: an admin must know.
        """
        if entry_id is not None:
            return await self._invalidate_entry(entry_id)
        if tenant is None and policy is None:
            raise ValueError("invalidate needs a tenant, a policy or an entry id")
        t = keys.short_hash(tenant) if tenant is not None else "*"
        p = keys.short_hash(policy) if policy is not None else "*"
        self._down_until = 0.0
        return await self._call(
            "invalidate",
            lambda: self.backend.delete_matching(f"{PREFIX}:{t}:{p}:*"),
            timeout_s=ADMIN_TIMEOUT_S,
        )

    async def _invalidate_entry(self, entry_id: str) -> int:
        parts = entry_id.split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"not a cache entry id: {entry_id!r}")
        namespace, digest = f"{PREFIX}:{parts[0]}:{parts[1]}", parts[2]
        entry_key = f"{namespace}:e:{digest}"
        self._down_until = 0.0
        raw = await self._call("get", lambda: self.backend.get(entry_key))
        partition = orjson.loads(raw).get("partition") if raw is not None else None
        vkeys = _vector_keys(namespace, partition) if partition else None
        return await self._call("remove", lambda: self.backend.remove(entry_key, vkeys, digest))

    async def close(self) -> None:
        await self.backend.close()
