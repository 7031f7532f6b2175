"""Batch judge: run (cached, new) final-turn pairs through the production cache decision."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.cache.backends import MemoryBackend
from gateway.cache.cache import ResponseCache
from gateway.cache.policy import CacheScope, CacheSettings

_SCOPE = CacheScope(tenant="judge", policy="default", settings=CacheSettings())


def _completion(text: str) -> dict:
    return {
        "id": "chatcmpl-judge",
        "object": "chat.completion",
        "created": 0,
        "model": "judge",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def _body(text: str) -> dict:
    return {"model": "default", "messages": [{"role": "user", "content": text}]}


async def judge_pairs(pairs: Sequence[tuple[str, str]]) -> list[tuple[bool, float]]:
    """(hit, cosine similarity of the final turns) per pair, each in a fresh in-process cache."""
    results = []
    for cached, new in pairs:
        cache = ResponseCache(MemoryBackend())
        first = await cache.lookup(_SCOPE, _body(cached), {})
        await cache.store(first, _completion(cached))
        second = await cache.lookup(_SCOPE, _body(new), {})
        hit = second.outcome in {"exact", "semantic"}
        if second.similarity is not None:
            similarity = second.similarity
        elif first.embedding is not None and second.embedding is not None:
            similarity = float(first.embedding @ second.embedding)
        else:
            similarity = 0.0
        results.append((hit, similarity))
    return results
