"""Response cache: exact and verified-semantic layers on Redis 8 Vector Sets (or in-process)."""

from gateway.cache.cache import CacheLookup, ResponseCache
from gateway.cache.policy import CacheScope, CacheSettings, is_storable
from gateway.cache.replay import sse_frames, wants_usage

__all__ = ["CacheLookup", "CacheScope", "CacheSettings", "ResponseCache", "is_storable", "sse_frames",
           "wants_usage"]  # fmt: skip
