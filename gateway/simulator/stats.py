"""Counters served at `GET /_sim/stats` (per process)."""

from __future__ import annotations

from collections import Counter
from typing import Any


class Stats:
    """What the simulator saw: requests, statuses, streams (and how they ended), faults, cache."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: Counter[str] = Counter()
        self.models: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.streams: Counter[str] = Counter()
        self.disconnects: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests_total": sum(self.requests.values()),
            "requests": dict(self.requests),
            "models": dict(self.models),
            "statuses": dict(self.statuses),
            "faults": dict(self.faults),
            "streams_started": self.streams["started"],
            "streams_completed": self.streams["completed"],
            "streams_cancelled": self.streams["cancelled"],
            "streams_reset": self.streams["reset"],
            "client_disconnects": dict(self.disconnects),
            "tokens": dict(self.tokens),
        }
