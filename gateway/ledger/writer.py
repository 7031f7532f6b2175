"""Batched, off-the-request-path ledger writes with a durable spool for database outages."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.models import LedgerEntry
from gateway.ledger.spool import Spool
from gateway.observability import metrics
from gateway.periodic import Periodic
from gateway.upstreams.usage import Usage

log = logging.getLogger(__name__)


def _column_defaults() -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    for column in LedgerEntry.__table__.columns:
        if column.default is not None and column.default.is_scalar:
            defaults[column.name] = column.default.arg
        elif column.server_default is not None:
            defaults[column.name] = column.server_default.arg
        else:
            defaults[column.name] = None
    return defaults


_DEFAULTS = _column_defaults()


def ledger_row(**columns: Any) -> dict[str, Any]:
    """A whole ledger row: the given columns, the model's defaults for the rest. Every row carries every
    column because a batch is one multi-row INSERT, which needs the same keys in each row."""
    unknown = columns.keys() - _DEFAULTS.keys()
    if unknown:
        raise TypeError(f"not ledger columns: {sorted(unknown)}")
    return {**_DEFAULTS, **columns}


def token_columns(usage: Usage) -> dict[str, Any]:
    """The ledger's token columns for a normalised usage."""
    return {
        "input_uncached_tokens": usage.input_uncached,
        "input_cache_read_tokens": usage.input_cache_read,
        "input_cache_write_tokens": usage.input_cache_write,
        "input_cache_write_1h_tokens": usage.input_cache_write_1h,
        "output_tokens": usage.output,
        "reasoning_tokens": usage.reasoning,
        "usage_estimated": usage.estimated,
    }


class LedgerWriter:
    """`record()` costs a list append; a background task inserts batches every `flush_interval_s`.

    When an insert fails the batch goes to the spool; spooled batches are retried on every flush
    until the database takes them. `close()` drains everything (to the database or the spool).
    """

    def __init__(
        self, engine: AsyncEngine, spool: Spool, *, flush_interval_s: float, batch_size: int
    ) -> None:
        self._engine = engine
        self.spool = spool
        self._batch_size = batch_size
        self._pending: list[dict[str, Any]] = []
        self._flusher = Periodic(
            "ledger-writer", flush_interval_s, self.flush, lambda exc: log.exception("ledger: flush failed")
        )
        self._flush_lock = asyncio.Lock()
        insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        # RETURNING makes SQLAlchemy send each batch as one multi-row INSERT (insertmanyvalues) rather
        # than a statement per row: on PostgreSQL the rollup trigger then fires once per batch.
        self._insert = (
            insert(LedgerEntry).on_conflict_do_nothing(index_elements=["id"]).returning(LedgerEntry.id)
        )

    def record(self, row: dict[str, Any]) -> None:
        self._pending.append(row)

    def start(self) -> None:
        self._flusher.start()

    async def close(self) -> None:
        await self._flusher.stop()
        await self.flush()

    async def flush(self) -> None:
        """Write everything pending; replay the spool when the database answers."""
        async with self._flush_lock:
            while self._pending:
                batch = self._pending[: self._batch_size]
                del self._pending[: self._batch_size]
                if not await self._insert_batch(batch):
                    unwritten = batch + self._pending
                    self._pending = []
                    self.spool.write(unwritten)
                    metrics.LEDGER_SPOOLED_ROWS.inc(len(unwritten))
                    return
            await self._replay_spool()

    async def _replay_spool(self) -> None:
        for path, rows in self.spool.batches():
            if not await self._insert_batch(rows):
                return
            path.unlink()
            metrics.LEDGER_REPLAYED_ROWS.inc(len(rows))
            log.info("ledger: replayed %d spooled rows from %s", len(rows), path.name)

    async def _insert_batch(self, rows: list[dict[str, Any]]) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(self._insert, rows)
        except Exception as exc:  # any database failure: keep the rows, never lose them
            metrics.LEDGER_WRITE_ERRORS.inc()
            log.warning("ledger: insert of %d rows failed (%s); spooling", len(rows), type(exc).__name__)
            return False
        metrics.LEDGER_WRITTEN_ROWS.inc(len(rows))
        return True
