"""Background work that runs every few seconds for the life of the app and survives its failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    """Calls `work()` every `interval_s` seconds until `stop()`; a failure is reported through
    `on_error` (default: a warning) and the loop carries on with the next round."""

    def __init__(
        self,
        name: str,
        interval_s: float,
        work: Callable[[], Awaitable[object]],
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.name, self.interval_s = name, interval_s
        self._work = work
        self._on_error = on_error or (lambda exc: log.warning("%s failed: %s", name, type(exc).__name__))
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self._work()
            except Exception as exc:  # the loop must outlive any single failed round
                self._on_error(exc)
