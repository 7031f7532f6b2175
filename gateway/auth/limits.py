"""Per-key budgets (USD per UTC day and month) and request-rate limits.

Spend is charged after each request with its actual cost and checked before the next one, so a
key can overshoot its budget by at most the requests already in flight when it ran out. Counters
start from the ledger's totals so a restart does not hand out a fresh budget.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.keys import KeyInfo
from gateway.db.models import LedgerEntry
from gateway.errors import GatewayError
from gateway.observability import metrics


def _periods(now: datetime) -> tuple[str, str]:
    return now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")


class Limits:
    def __init__(self) -> None:
        self._spend: defaultdict[tuple[str, str], int] = defaultdict(int)  # (key id, period) -> µ$
        self._window: dict[str, tuple[int, int]] = {}  # key id -> (minute, requests in it)

    async def load_spend(self, engine: AsyncEngine) -> None:
        """Start from what the ledger already holds for this month."""
        now = datetime.now(UTC)
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        day, month = _periods(now)
        is_today = LedgerEntry.created_at >= day_start
        query = (
            select(
                LedgerEntry.key_id,
                func.sum(LedgerEntry.cost_micros),
                func.sum(LedgerEntry.cost_micros).filter(is_today),
            )
            .where(LedgerEntry.created_at >= month_start, LedgerEntry.key_id.is_not(None))
            .group_by(LedgerEntry.key_id)
        )
        async with engine.connect() as conn:
            for key_id, month_total, day_total in await conn.execute(query):
                self._spend[(key_id, month)] = int(month_total or 0)
                self._spend[(key_id, day)] = int(day_total or 0)

    def check(self, key: KeyInfo) -> None:
        """Raise 429 when the key is over budget or over its request rate."""
        if key.budget_daily_micros is not None or key.budget_monthly_micros is not None:
            day, month = _periods(datetime.now(UTC))
            if key.budget_daily_micros is not None and self._spend[(key.id, day)] >= key.budget_daily_micros:
                raise self._refused("budget_exceeded", "The key's daily budget is exhausted.")
            if (
                key.budget_monthly_micros is not None
                and self._spend[(key.id, month)] >= key.budget_monthly_micros
            ):
                raise self._refused("budget_exceeded", "The key's monthly budget is exhausted.")
        if key.rpm_limit is not None:
            minute = int(time.time() // 60)
            window_minute, count = self._window.get(key.id, (minute, 0))
            if window_minute != minute:
                count = 0
            if count >= key.rpm_limit:
                raise self._refused(
                    "rate_limit_exceeded",
                    f"Rate limit of {key.rpm_limit} requests per minute reached.",
                    retry_after=60 - int(time.time() % 60),
                )
            self._window[key.id] = (minute, count + 1)

    def charge(self, key_id: str, cost_micros: int) -> None:
        if cost_micros:
            day, month = _periods(datetime.now(UTC))
            self._spend[(key_id, day)] += cost_micros
            self._spend[(key_id, month)] += cost_micros

    @staticmethod
    def _refused(code: str, message: str, retry_after: int | None = None) -> GatewayError:
        metrics.LIMITED.labels(code).inc()
        headers = {"retry-after": str(retry_after)} if retry_after else {}
        return GatewayError(
            429,
            message,
            type="rate_limit_error" if code.startswith("rate") else "insufficient_quota",
            code=code,
            headers=headers,
        )
