"""Simulator settings: latency, response length, accepted models and keys, cache retention."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .faults import FaultRule


@dataclass(frozen=True, slots=True)
class Latency:
    """Time to first token, delay between tokens, and the default response length (in tokens)."""

    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    min_tokens: int = 16
    max_tokens: int = 32

    def __post_init__(self) -> None:
        if self.ttft_ms < 0 or self.itl_ms < 0:
            raise ValueError("latencies must not be negative")
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise ValueError("need 1 <= min_tokens <= max_tokens")

    def updated(self, options: dict[str, Any]) -> Latency:
        """A copy with `ttft_ms`, `itl_ms`, `min_tokens`, `max_tokens` or `tokens` (both) replaced."""
        changes: dict[str, Any] = {k: float(options[k]) for k in ("ttft_ms", "itl_ms") if k in options}
        changes.update({k: int(options[k]) for k in ("min_tokens", "max_tokens") if k in options})
        if "tokens" in options:
            changes["min_tokens"] = changes["max_tokens"] = int(options["tokens"])
        return replace(self, **changes) if changes else self


@dataclass(slots=True)
class SimulatorConfig:
    """Everything `create_app` needs; every field has a usable default."""

    latency: Latency = field(default_factory=Latency)
    models: tuple[str, ...] | None = None  # None: accept any model name
    api_keys: tuple[str, ...] | None = None  # None: accept any non-empty key
    faults: list[FaultRule] = field(default_factory=list)
    fault_seed: int = 0
    openai_cache_ttl_s: float = 300.0  # in-memory retention: 5-10 minutes of inactivity
    openai_extended_cache_ttl_s: float = 86_400.0  # prompt_cache_retention="24h"
    gemini_cache_ttl_s: float = 300.0
    embedding_dimensions: int = 1536
