"""The prompt-cache models on their own, with a clock the tests move."""

from __future__ import annotations

from gateway.simulator.clock import Clock
from gateway.simulator.prompt_cache import BreakpointCache, CacheBlock, PrefixCache


def test_prefix_cache_reads_the_longest_shared_prefix_in_128_token_steps() -> None:
    cache = PrefixCache(Clock())
    prompt = list(range(2000))
    assert cache.read_and_write("org", prompt, minimum=1024, ttl=300) == 0
    assert cache.read_and_write("org", prompt, minimum=1024, ttl=300) == 1920
    diverging = prompt[:1300] + [9] * 700
    assert cache.read_and_write("org", diverging, minimum=1024, ttl=300) == 1280
    assert cache.read_and_write("other-org", prompt, minimum=1024, ttl=300) == 0
    assert cache.read_and_write("org", prompt[:1000], minimum=1024, ttl=300) == 0


def test_prefix_cache_expiry_is_refreshed_by_hits() -> None:
    clock = Clock()
    cache = PrefixCache(clock)
    prompt = list(range(1100))
    cache.read_and_write("k", prompt, minimum=1024, ttl=300)
    clock.advance(250)
    assert cache.read_and_write("k", prompt, minimum=1024, ttl=300) == 1024
    clock.advance(250)
    assert cache.read_and_write("k", prompt, minimum=1024, ttl=300) == 1024
    clock.advance(301)
    assert cache.read_and_write("k", prompt, minimum=1024, ttl=300) == 0


def blocks(count: int, breakpoints: dict[int, str], tokens: int = 100) -> list[CacheBlock]:
    return [CacheBlock(tokens, f"block {i}".encode(), breakpoints.get(i)) for i in range(count)]


def test_breakpoints_split_writes_by_ttl() -> None:
    cache = BreakpointCache(Clock())
    usage = cache.read_and_write("org", blocks(30, {9: "1h", 19: "5m"}), minimum=1024)
    assert (usage.read, usage.written_1h, usage.written_5m) == (0, 0, 2000)  # first 1,000 tokens: too short
    usage = cache.read_and_write("org", blocks(30, {11: "1h", 19: "5m"}), minimum=1024)
    assert (usage.read, usage.written_1h, usage.written_5m) == (2000, 0, 0)
    usage = cache.read_and_write("org", blocks(30, {11: "1h", 25: "5m"}), minimum=1024)
    assert (usage.read, usage.written_1h, usage.written_5m) == (2000, 0, 600)


def test_lookback_checks_twenty_positions() -> None:
    cache = BreakpointCache(Clock())
    cache.read_and_write("org", blocks(60, {14: "5m"}), minimum=1024)
    near = cache.read_and_write("org", blocks(60, {33: "5m"}), minimum=1024)  # 20th position: found
    assert near.read == 1500
    cache.clear()
    cache.read_and_write("org", blocks(60, {14: "5m"}), minimum=1024)
    far = cache.read_and_write("org", blocks(60, {34: "5m"}), minimum=1024)  # 21st position: missed
    assert far.read == 0
    assert far.written == 3500


def test_one_hour_entries_outlive_five_minute_ones() -> None:
    clock = Clock()
    cache = BreakpointCache(clock)
    cache.read_and_write("org", blocks(30, {11: "1h", 19: "5m"}), minimum=1024)
    clock.advance(600)
    usage = cache.read_and_write("org", blocks(30, {11: "1h", 19: "5m"}), minimum=1024)
    assert usage.read == 1200
    assert usage.written_5m == 800
