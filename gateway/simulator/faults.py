"""Injectable upstream faults: error statuses, hangs, connection resets, errors mid-stream.

A rule fires for the next `count` matching requests, or for a fraction `rate` of them (drawn from a
seeded generator, so runs are reproducible), optionally only for one model or provider.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

FAULT_KINDS = ("status", "hang", "reset", "stream_error")
PROVIDERS = ("openai", "anthropic", "gemini")


@dataclass(slots=True)
class FaultRule:
    """What to inject and when.

    kind: "status" (answer `status` with the provider's error body), "hang" (send nothing for
    `hang_s` seconds, or stall a stream after `after_tokens` tokens), "reset" (close the connection
    after `after_tokens` tokens — mid-body for JSON responses), "stream_error" (send the provider's
    in-stream error event after `after_tokens` tokens, then end the stream).
    """

    kind: str = "status"
    status: int = 500
    count: int | None = None
    rate: float | None = None
    model: str | None = None
    provider: str | None = None
    retry_after: float = 1.0
    hang_s: float = 600.0
    after_tokens: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if self.kind == "status" and not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if self.provider is not None and self.provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1")
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if self.count is None and self.rate is None:
            self.count = 1

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> FaultRule:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        if "status" in data and "kind" not in data:
            data = {**data, "kind": "status"}
        return cls(**data)

    @classmethod
    def from_spec(cls, spec: str) -> FaultRule:
        """Parse a CLI spec such as `status=429,count=3,model=gpt-4o` or `kind=reset,rate=0.1`."""
        data: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, raw = item.partition("=")
            if not sep or name not in types:
                raise ValueError(f"bad fault spec item {item!r}")
            kind = str(types[name])
            data[name] = int(raw) if "int" in kind else float(raw) if "float" in kind else raw
        return cls.from_mapping(data)

    def matches(self, provider: str, model: str) -> bool:
        return (self.provider is None or self.provider == provider) and (
            self.model is None or self.model == model
        )


class FaultInjector:
    """Holds the active rules; `draw` picks the fault (if any) for one request."""

    def __init__(self, rules: list[FaultRule] | None = None, seed: int = 0) -> None:
        self._rules: list[FaultRule] = list(rules or [])
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self, model: str | None = None) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if model is not None and r.model != model]

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(rule) for rule in self._rules]

    def draw(self, provider: str, model: str) -> FaultRule | None:
        if not self._rules:
            return None
        with self._lock:
            for rule in self._rules:
                if not rule.matches(provider, model):
                    continue
                if rule.rate is not None and self._random.random() >= rule.rate:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count == 0:
                        self._rules.remove(rule)
                return rule
        return None
