"""An adjustable monotonic clock, so cache TTLs can be tested without sleeping."""

from __future__ import annotations

import time


class Clock:
    """Monotonic seconds plus an offset that tests (or `POST /_sim/clock`) can advance."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds
