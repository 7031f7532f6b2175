"""Per-model prompt-caching facts, kept as data in `min_tokens.json`."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any


@cache
def _data() -> dict[str, Any]:
    return json.loads((Path(__file__).with_name("min_tokens.json")).read_text())


def _longest_prefix(table: dict[str, Any], model: str) -> str | None:
    matches = [prefix for prefix in table if prefix != "*" and model.startswith(prefix)]
    return max(matches, key=len) if matches else None


@cache
def min_cacheable_tokens(provider: str, model: str) -> int:
    """The shortest prompt prefix (tokens) the provider caches for `model`."""
    table = _data()[provider]
    prefix = _longest_prefix(table, model.rpartition("/")[2])
    return int(table[prefix] if prefix else table["*"])


_SNAPSHOT_DATE = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@cache
def supports_extended_retention(model: str) -> bool:
    """Whether OpenAI accepts `prompt_cache_retention` for `model` (a dated snapshot counts as its model)."""
    return _SNAPSHOT_DATE.sub("", model.rpartition("/")[2]) in _data()["openai_extended_retention"]
