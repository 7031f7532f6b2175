"""Distillation capture: a pipeline observer that keeps opted-in answers as fine-tuning samples.

`observe()` runs on the request path and only decides and appends to a bounded in-memory queue;
when the queue is full the sample is dropped and counted. A background task redacts queued samples
in a worker thread and inserts them in batches. Capture is best effort by design: a failed insert
drops its batch (counted) rather than spooling it like the ledger.

Which policy's `distillation` settings apply: the policy that routed the request (`auto`,
`policy/<name>`); for a request naming a deployment, the policy assigned to the caller's team and
project (the same one that sets its baseline and cache settings). No policy: no capture.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.models import DistillSample
from gateway.distill.redact import Hook, default_redactor
from gateway.distill.samples import build_sample
from gateway.periodic import Periodic
from gateway.pipeline import Exchange
from gateway.routing.store import PolicyReloader

log = logging.getLogger(__name__)

CAPTURED = Counter("tiergate_distill_samples_written_total", "Distillation samples stored.")
DROPPED = Counter(
    "tiergate_distill_samples_dropped_total",
    "Distillation samples lost: queue_full (the writer fell behind) or write_failed (database error).",
    ["reason"],
)
QUEUED = Gauge("tiergate_distill_queue_depth", "Distillation samples waiting to be written.")
_DONE = {"stop", "tool_calls", "function_call"}  # truncated or filtered answers are not training data


class DistillCapture:
    def __init__(
        self,
        engine: AsyncEngine,
        policies: PolicyReloader,
        *,
        redaction_hook: Hook = default_redactor,
        max_queue: int = 10_000,
        batch_size: int = 200,
        flush_interval_s: float = 1.0,
    ) -> None:
        self._engine = engine
        self._policies = policies
        self._hook = redaction_hook
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._pending: list[tuple[dict[str, Any], bool]] = []
        self._flusher = Periodic(
            "distill-capture",
            flush_interval_s,
            self.flush,
            lambda exc: log.exception("distill: flush failed"),
        )
        self._lock = asyncio.Lock()
        insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        self._insert = insert(DistillSample).on_conflict_do_nothing(index_elements=["id"])
        QUEUED.set_function(lambda: len(self._pending))

    # --- the request path: decide and append ---------------------------------------------

    def observe(self, ex: Exchange, body: dict[str, Any], completion: dict[str, Any]) -> None:
        if ex.endpoint != "chat" or ex.key is None or ex.target is None:
            return
        policy = ex.policy or self._policies.book.for_caller(ex.key.team, ex.key.project)
        if policy is None:
            return
        settings = policy.spec.distillation
        deployment = ex.target.deployment
        if not settings.capture or deployment.tier not in settings.tiers:
            return
        choices = completion.get("choices") or []
        if not choices or choices[0].get("finish_reason") not in _DONE or not choices[0].get("message"):
            return
        if len(self._pending) >= self._max_queue:
            DROPPED.labels("queue_full").inc()
            return
        pending = {
            "id": ex.request_id,
            "created_at": datetime.now(UTC),
            "team": ex.key.team,
            "project": ex.key.project,
            "policy": policy.spec.name,
            "deployment": deployment.name,
            "tier": deployment.tier.value,
            "model": completion.get("model") or deployment.model,
            "messages": body.get("messages") or [],
            "tools": body.get("tools"),
            "answer": choices[0]["message"],
        }
        self._pending.append((pending, settings.redact))

    # --- off the request path -------------------------------------------------------------

    def start(self) -> None:
        self._flusher.start()

    async def close(self) -> None:
        await self._flusher.stop()
        await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            while self._pending:
                batch = self._pending[: self._batch_size]
                del self._pending[: self._batch_size]
                rows = await asyncio.to_thread(self._build, batch)
                try:
                    async with self._engine.begin() as conn:
                        await conn.execute(self._insert, rows)
                except Exception as exc:
                    DROPPED.labels("write_failed").inc(len(rows))
                    log.warning("distill: insert of %d samples failed (%s)", len(rows), type(exc).__name__)
                    continue
                CAPTURED.inc(len(rows))

    def _build(self, batch: list[tuple[dict[str, Any], bool]]) -> list[dict[str, Any]]:
        return [build_sample(pending, self._hook if redact else None) for pending, redact in batch]
