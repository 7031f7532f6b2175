"""Train the shipped router: held-out-source check, final fit on every training source, export.

``gateway router train`` drives this with a progress display; the result is a new artifact version
in ``router_models/artifacts/`` whose JSON half records data, label, features and metrics.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.routing import features as F

from . import data as D
from .artifact import Artifact, artifact_path, artifacts_dir, versions
from .calibration import for_strong_share
from .evaluate import SourceResult, held_out_sources
from .model import APPROACHES, DENSE_CLIP, FeatureTable, FittedRouter, fit_dataset

SELF_CHECK_PROMPTS = (
    "hi",
    "What is the capital of France?",
    "Prove that there are infinitely many primes p such that p + 2 is also prime, or explain why "
    "this is open.",
    "Write a Python function that parses an ISO-8601 duration string and returns the total seconds.\n"
    "```python\ndef parse(s):\n    ...\n```",
)
DEFAULT_SHARES = (0.1, 0.2, 0.3, 0.5, 0.7)


@dataclass(frozen=True, slots=True)
class Progress:
    """Callbacks the CLI's progress display hooks into."""

    start: Callable[[str, int], None]
    advance: Callable[[], None]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_table(dataset: D.Dataset, progress: Progress | None = None) -> FeatureTable:
    if progress:
        progress.start("features", len(dataset))
    return FeatureTable.build(dataset.prompts, progress.advance if progress else None)


def export(router: FittedRouter, metadata: dict) -> Artifact:
    linear = router.linear
    if linear is None:
        raise ValueError(f"approach {router.approach.name!r} cannot be exported to the numpy artifact")
    vocabulary = linear.term_weights.vocabulary if linear.term_weights else {}
    terms = sorted(vocabulary, key=vocabulary.__getitem__)
    return Artifact(
        metadata=metadata,
        dense_mean=linear.dense_mean,
        dense_scale=linear.dense_scale,
        dense_weights=linear.dense_weights,
        terms=terms,
        term_idf=linear.term_weights.idf if linear.term_weights else np.empty(0),
        term_coefficients=linear.term_coefficients,
        embedding_weights=linear.embedding_weights,
        bias=linear.bias,
    )


def train(
    approach_name: str = "structure",
    source_power: float = 0.5,
    version: int | None = None,
    output_dir: Path | None = None,
    progress: Progress | None = None,
) -> tuple[Path, list[SourceResult]]:
    """Evaluate ``approach_name`` on held-out sources, fit it on all training sources, write the artifact."""
    approach = APPROACHES[approach_name]
    dataset = D.load()
    table = build_table(dataset, progress)

    if progress:
        progress.start("held-out sources", len(np.unique(dataset.sources)))
    held_out = held_out_sources(
        [approach], dataset, table, source_power, progress.advance if progress else None
    )

    training_rows = np.flatnonzero(np.isin(dataset.sources, D.TRAINING_SOURCES))
    router = fit_dataset(approach, dataset, table, training_rows, source_power)

    output_dir = output_dir or artifacts_dir()
    version = version or (max(versions(output_dir), default=0) + 1)
    # Training-side probabilities that the serving scorer must reproduce (checked by the tests).
    self_check = router.predict(FeatureTable.build(SELF_CHECK_PROMPTS), np.arange(len(SELF_CHECK_PROMPTS)))
    arena_scores = router.predict(table, np.flatnonzero(dataset.sources == "arena"))
    metadata = {
        "version": version,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "approach": approach.name,
        "description": approach.description,
        "C": approach.C,
        "source_power": source_power,
        "score": "probability that the cheap model is not good enough (the strong model does better)",
        "label": D.__doc__.strip(),
        "training_sources": {
            s: {
                "file": D.SOURCE_FILES[s],
                "rows": int((dataset.sources == s).sum()),
                "positive_rate": float(dataset.labels[dataset.sources == s].mean()),
                "sha256": file_sha256(D.router_data_dir() / D.SOURCE_FILES[s]),
            }
            for s in D.TRAINING_SOURCES
        },
        "dense_features": list(F.DENSE_FEATURES),
        "dense_clip": DENSE_CLIP,
        "char_budget": F.CHAR_BUDGET,
        "tiktoken_encoding": F.TIKTOKEN_ENCODING,
        "n_terms": len(router.linear.term_weights.vocabulary) if router.linear.term_weights else 0,
        "embedding_dim": int(router.linear.embedding_weights.size),
        "held_out": [r.as_dict() for r in held_out],
        "default_thresholds": {
            "reference": "arena_rated.jsonl prompts (real Chatbot Arena traffic, never trained on)",
            "thresholds": [for_strong_share(arena_scores, s).as_dict() for s in DEFAULT_SHARES],
        },
        "self_check": [
            {"prompt": p, "score": float(s)} for p, s in zip(SELF_CHECK_PROMPTS, self_check, strict=True)
        ],
    }
    path = artifact_path(version, output_dir)
    export(router, metadata).save(path)
    return path, held_out
