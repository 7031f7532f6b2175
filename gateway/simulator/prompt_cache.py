"""Provider prompt-cache models, precise enough to measure what caching saves.

* `PrefixCache` — OpenAI automatic caching (and Gemini implicit caching): prompts of at least
  `minimum` tokens cache their prefixes at `minimum + k * increment` tokens; a later request reads
  the longest such prefix it shares, within a namespace (organisation, model, routing key).
* `BreakpointCache` — Anthropic: prefixes end at blocks marked `cache_control`; a read hits when the
  exact prefix up to a breakpoint, or up to an earlier block within the 20-position lookback window
  (the breakpoint's own position included), was written and has not expired;
  reads refresh the TTL; everything between the hit and the last breakpoint is written.

Entries hold an expiry on an injectable `Clock`; the number of entries is bounded.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from .clock import Clock

ANTHROPIC_TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
ANTHROPIC_LOOKBACK_BLOCKS = 20  # positions checked, the breakpoint's own included


class _ExpiringSet:
    """Keys with expiry times, bounded in size (the oldest insertions go first)."""

    def __init__(self, clock: Clock, max_entries: int) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._expiry: dict[Hashable, tuple[float, float]] = {}

    def alive(self, key: Hashable) -> bool:
        entry = self._expiry.get(key)
        if entry is None:
            return False
        if entry[0] <= self._clock.now():
            del self._expiry[key]
            return False
        return True

    def touch(self, key: Hashable) -> None:
        """Restart the entry's TTL (a cache read refreshes it)."""
        _, ttl = self._expiry[key]
        self._expiry[key] = (self._clock.now() + ttl, ttl)

    def put(self, key: Hashable, ttl: float) -> None:
        self._expiry.pop(key, None)
        self._expiry[key] = (self._clock.now() + ttl, ttl)
        if len(self._expiry) > self._max_entries:
            del self._expiry[next(iter(self._expiry))]

    def clear(self) -> None:
        self._expiry.clear()

    def __len__(self) -> int:
        return len(self._expiry)


class PrefixCache:
    """Automatic prefix caching in fixed token increments (OpenAI, Gemini implicit)."""

    def __init__(self, clock: Clock, increment: int = 128, max_entries: int = 200_000) -> None:
        self._entries = _ExpiringSet(clock, max_entries)
        self._increment = increment

    def read_and_write(self, namespace: Hashable, tokens: Sequence[int], minimum: int, ttl: float) -> int:
        """Cached tokens for this prompt; afterwards all of its cacheable prefixes are cached."""
        if len(tokens) < minimum:
            return 0
        data = array("I", tokens).tobytes()
        hasher = hashlib.blake2b(digest_size=16)
        done = 0
        cached = 0
        for length in range(minimum, len(tokens) + 1, self._increment):
            hasher.update(data[done * 4 : length * 4])
            done = length
            key = (namespace, hasher.copy().digest())
            if self._entries.alive(key):
                cached = length
                self._entries.touch(key)
            else:
                self._entries.put(key, ttl)
        return cached

    def clear(self) -> None:
        self._entries.clear()


@dataclass(frozen=True, slots=True)
class CacheBlock:
    """One prompt block in cache order (tools, then system, then messages)."""

    tokens: int
    content: bytes
    ttl: str | None = None  # "5m" or "1h" when the block carries a cache_control breakpoint


@dataclass(frozen=True, slots=True)
class CacheUsage:
    read: int = 0
    written_5m: int = 0
    written_1h: int = 0

    @property
    def written(self) -> int:
        return self.written_5m + self.written_1h


class BreakpointCache:
    """Anthropic's explicit `cache_control` breakpoints."""

    def __init__(self, clock: Clock, max_entries: int = 200_000) -> None:
        self._entries = _ExpiringSet(clock, max_entries)

    def read_and_write(self, namespace: Hashable, blocks: Sequence[CacheBlock], minimum: int) -> CacheUsage:
        breakpoints = [i for i, block in enumerate(blocks) if block.ttl]
        if not breakpoints:
            return CacheUsage()
        cumulative: list[int] = []
        keys: list[tuple[Hashable, bytes]] = []
        hasher = hashlib.blake2b(digest_size=16)
        total = 0
        for block in blocks[: breakpoints[-1] + 1]:
            hasher.update(block.content)
            total += block.tokens
            cumulative.append(total)
            keys.append((namespace, hasher.copy().digest()))

        hit = self._longest_hit(breakpoints, keys, cumulative, minimum)
        read = cumulative[hit] if hit >= 0 else 0
        written = {"5m": 0, "1h": 0}
        covered = read
        for index in breakpoints:
            if index <= hit or cumulative[index] < minimum:
                continue
            ttl = blocks[index].ttl or "5m"
            self._entries.put(keys[index], ANTHROPIC_TTL_SECONDS[ttl])
            written[ttl] += cumulative[index] - covered
            covered = cumulative[index]
        return CacheUsage(read, written["5m"], written["1h"])

    def _longest_hit(
        self, breakpoints: list[int], keys: list[tuple[Hashable, bytes]], cumulative: list[int], minimum: int
    ) -> int:
        for breakpoint in reversed(breakpoints):
            for index in range(breakpoint, max(breakpoint - ANTHROPIC_LOOKBACK_BLOCKS, -1), -1):
                if cumulative[index] >= minimum and self._entries.alive(keys[index]):
                    self._entries.touch(keys[index])
                    return index
        return -1

    def clear(self) -> None:
        self._entries.clear()
