"""A durable local spool for ledger rows the database could not take.

Each failed batch becomes one JSON-lines file, fsynced before the writer moves on, and is deleted
only after the database has accepted it. Inserts are idempotent (the request id is the primary key),
so a crash between insert and delete replays harmlessly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson


def _decode_row(row: dict[str, Any]) -> dict[str, Any]:
    row["created_at"] = datetime.fromisoformat(row["created_at"])
    return row


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, rows: list[dict[str, Any]]) -> Path:
        final = self.directory / f"{datetime.now().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.jsonl"
        partial = final.with_suffix(".partial")
        with partial.open("wb") as f:
            for row in rows:
                f.write(orjson.dumps(row, option=orjson.OPT_NAIVE_UTC) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        partial.rename(final)  # a reader never sees a half-written batch
        return final

    def batches(self) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
        for path in sorted(self.directory.glob("*.jsonl")):
            rows = [_decode_row(orjson.loads(line)) for line in path.read_bytes().splitlines() if line]
            yield path, rows

    def pending_rows(self) -> int:
        return sum(1 for path in self.directory.glob("*.jsonl") for line in path.open("rb") if line.strip())
