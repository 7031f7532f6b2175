"""ResponseCache behaviour, run against both the in-process backend and a real Redis 8."""

from __future__ import annotations

import asyncio

from gateway.cache import CacheScope, CacheSettings, ResponseCache
from tests.cache.helpers import chat, completion

TEAM_A = CacheScope("team-a", "default")
TEAM_B = CacheScope("team-b", "default")
QUESTION = "How do I reverse a list in Python?"
PARAPHRASE = "how do i reverse a list in python"


async def remember(cache: ResponseCache, scope: CacheScope, body: dict, answer: str) -> None:
    lookup = await cache.lookup(scope, body, {})
    assert lookup.outcome == "miss"
    assert await cache.store(lookup, completion(answer))


async def test_exact_hit_returns_stored_completion(cache: ResponseCache) -> None:
    await remember(cache, TEAM_A, chat(QUESTION), "Use reversed().")
    hit = await cache.lookup(TEAM_A, chat(QUESTION, stream=True, user="someone-else"), {})
    assert hit.outcome == "exact"
    assert hit.response == completion("Use reversed().")
    assert hit.entry_id


async def test_semantic_hit_for_rewording_but_not_for_a_different_question(cache: ResponseCache) -> None:
    await remember(cache, TEAM_A, chat(QUESTION), "Use reversed().")
    hit = await cache.lookup(TEAM_A, chat(PARAPHRASE), {})
    assert hit.outcome == "semantic", hit.reason
    assert hit.response is not None and hit.response["choices"][0]["message"]["content"] == "Use reversed()."
    assert hit.similarity is not None and hit.similarity > 0.9
    for other in ["How do I reverse a list in Java?", "How do I sort a list in Python?"]:
        miss = await cache.lookup(TEAM_A, chat(other), {})
        assert miss.outcome == "miss", other


async def test_tenant_isolation(cache: ResponseCache) -> None:
    await remember(cache, TEAM_A, chat(QUESTION), "team A's answer")
    for body in (chat(QUESTION), chat(PARAPHRASE)):
        other = await cache.lookup(TEAM_B, body, {})
        assert other.outcome == "miss" and other.response is None
    other_policy = await cache.lookup(CacheScope("team-a", "cheap-policy"), chat(QUESTION), {})
    assert other_policy.outcome == "miss"


async def test_partition_covers_the_conversation(cache: ResponseCache) -> None:
    python = ({"role": "system", "content": "You answer about Python."},)
    rust = ({"role": "system", "content": "You answer about Rust."},)
    await remember(cache, TEAM_A, chat("How do I reverse a list?", *python), "reversed()")
    assert (await cache.lookup(TEAM_A, chat("how do i reverse a list", *python), {})).outcome == "semantic"
    assert (await cache.lookup(TEAM_A, chat("How do I reverse a list?", *rust), {})).outcome == "miss"
    assert (await cache.lookup(TEAM_A, chat("How do I reverse a list?", temperature=0), {})).outcome == "miss"


async def test_ttl_expiry(cache: ResponseCache) -> None:
    scope = CacheScope("team-a", "short", CacheSettings(ttl_seconds=1))
    await remember(cache, scope, chat(QUESTION), "soon gone")
    assert (await cache.lookup(scope, chat(QUESTION), {})).outcome == "exact"
    await asyncio.sleep(1.2)
    assert (await cache.lookup(scope, chat(QUESTION), {})).outcome == "miss"
    assert (await cache.lookup(scope, chat(PARAPHRASE), {})).outcome == "miss"


async def test_bypass_headers(cache: ResponseCache) -> None:
    await remember(cache, TEAM_A, chat(QUESTION), "cached")
    no_cache = await cache.lookup(TEAM_A, chat(QUESTION), {"Cache-Control": "no-cache"})
    assert (no_cache.outcome, no_cache.response) == ("bypass", None)
    assert await cache.store(no_cache, completion("fresh"))  # no-cache: revalidate, may store
    assert (await cache.lookup(TEAM_A, chat(QUESTION), {})).response == completion("fresh")

    for headers in ({"cache-control": "no-store"}, {"X-Tiergate-Cache-Bypass": "1"}):
        lookup = await cache.lookup(TEAM_A, chat("What is the capital of France?"), headers)
        assert lookup.outcome == "bypass"
        assert not await cache.store(lookup, completion("Paris"))
    assert (await cache.lookup(TEAM_A, chat("What is the capital of France?"), {})).outcome == "miss"


async def test_errors_and_incomplete_answers_are_never_stored(cache: ResponseCache) -> None:
    lookup = await cache.lookup(TEAM_A, chat(QUESTION), {})
    assert not await cache.store(lookup, completion("ok"), status_code=500)
    assert not await cache.store(lookup, {"error": {"message": "rate limited"}}, status_code=200)
    assert not await cache.store(lookup, completion("cut", finish_reason="content_filter"))
    assert (await cache.lookup(TEAM_A, chat(QUESTION), {})).outcome == "miss"


async def test_semantic_rules(cache: ResponseCache) -> None:
    hot = CacheScope("team-a", "p", CacheSettings(max_semantic_temperature=0.5))
    await remember(cache, hot, chat(QUESTION, temperature=0.9), "a")
    refused = await cache.lookup(hot, chat(PARAPHRASE, temperature=0.9), {})
    assert (refused.outcome, refused.reason) == ("miss", "temperature")
    assert (await cache.lookup(hot, chat(QUESTION, temperature=0.9), {})).outcome == "exact"

    await remember(cache, TEAM_A, chat(QUESTION, n=2), "two")
    assert (await cache.lookup(TEAM_A, chat(PARAPHRASE, n=2), {})).reason == "n>1"
    allow_n = CacheScope("team-a", "default", CacheSettings(allow_semantic_n_gt_1=True))
    assert (await cache.lookup(allow_n, chat(PARAPHRASE, n=2), {})).outcome == "semantic"

    tool_turn = {**chat(QUESTION), "messages": [*chat(QUESTION)["messages"],
                 {"role": "tool", "tool_call_id": "c1", "content": "42"}]}  # fmt: skip
    assert (await cache.lookup(TEAM_A, tool_turn, {})).reason == "no-final-user-text"
    off = CacheScope("team-a", "default", CacheSettings(enabled=False))
    assert (await cache.lookup(off, chat(QUESTION, n=2), {})).outcome == "bypass"


async def test_policy_threshold_is_a_setting(cache: ResponseCache) -> None:
    await remember(cache, TEAM_A, chat(QUESTION), "a")
    strict = CacheScope("team-a", "default", CacheSettings(semantic_threshold=1.01))
    assert (await cache.lookup(strict, chat(PARAPHRASE), {})).reason == "below-threshold"


async def test_invalidate_by_entry_tenant_and_policy(cache: ResponseCache) -> None:
    other_policy = CacheScope("team-a", "other")
    await remember(cache, TEAM_A, chat(QUESTION), "a1")
    await remember(cache, TEAM_A, chat("What is the capital of France?"), "a2")
    await remember(cache, other_policy, chat(QUESTION), "a3")
    await remember(cache, TEAM_B, chat(QUESTION), "b1")

    entry = (await cache.lookup(TEAM_A, chat(QUESTION), {})).entry_id
    assert await cache.invalidate(entry_id=entry) == 1
    assert (await cache.lookup(TEAM_A, chat(QUESTION), {})).outcome == "miss"
    assert (await cache.lookup(TEAM_A, chat(PARAPHRASE), {})).outcome == "miss"  # vector gone too
    assert (await cache.lookup(TEAM_A, chat("What is the capital of France?"), {})).outcome == "exact"

    assert await cache.invalidate(policy="other") == 1
    assert (await cache.lookup(other_policy, chat(QUESTION), {})).outcome == "miss"
    assert await cache.invalidate(tenant="team-a") == 1
    assert (await cache.lookup(TEAM_A, chat("What is the capital of France?"), {})).outcome == "miss"
    assert (await cache.lookup(TEAM_B, chat(QUESTION), {})).outcome == "exact"
