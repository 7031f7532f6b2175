"""The router's training data (``../shared/data/router/``) and the label defined for each source.

Label 1 means "the cheap model is not good enough for this prompt: the strong model does better".
That is RouteLLM's "strong model wins" target. "The weak model fails" was measured too (model card):
it also marks prompts that both models fail, where a strong-model call buys nothing, and it recovered
less of the quality gap on every held-out source.

* ``mmlu``: GPT-4-1106 (strong) right and Mixtral-8x7B-Instruct (weak) wrong.
* ``llmrouter``: Llama-3.1-Nemotron-51B-Instruct (strong, the best model in the file) scores higher
  than Mistral-7B-Instruct-v0.3 (weak, a typical self-hosted model).
* ``arena``: evaluation only. It has no per-model quality, just the mean GPT-4 judge score of 12
  models' answers; label 1 = at most 4 of 10 (the hardest ~30%), so it gets AUC but no PGR curve.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LLMROUTER_WEAK = "mistral-7b-instruct-v0.3"
LLMROUTER_STRONG = "llama-3.1-nemotron-51b-instruct"
ARENA_HARD_MAX_SCORE = 4

TRAINING_SOURCES = ("mmlu", "llmrouter")
"""Sources with a weak/strong quality pair; ``arena``'s difficulty label is a different target."""

SOURCE_FILES = {
    "mmlu": "mmlu_mixtral_vs_gpt4.jsonl",
    "llmrouter": "llmrouter_train.jsonl",
    "arena": "arena_rated.jsonl",
}


def data_dir() -> Path:
    """``$TIERGATE_DATA_DIR`` or ``../shared/data`` beside the repository root."""
    override = os.environ.get("TIERGATE_DATA_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def router_data_dir() -> Path:
    return data_dir() / "router"


def router_data_available() -> bool:
    return all((router_data_dir() / name).is_file() for name in SOURCE_FILES.values())


@dataclass(frozen=True, slots=True)
class Dataset:
    ids: list[str]
    sources: np.ndarray
    prompts: list[str]
    labels: np.ndarray
    """1 = the cheap model is not good enough (see the module docstring per source)."""
    weak_quality: np.ndarray
    """Quality of the weak model's answer, NaN where the source has none."""
    strong_quality: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, mask: np.ndarray) -> Dataset:
        indices = np.flatnonzero(mask)
        return Dataset(
            ids=[self.ids[i] for i in indices],
            sources=self.sources[indices],
            prompts=[self.prompts[i] for i in indices],
            labels=self.labels[indices],
            weak_quality=self.weak_quality[indices],
            strong_quality=self.strong_quality[indices],
        )


def _rows(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


LABELS = ("strong-wins", "weak-fails")


def _labelled(source: str, row: dict, label: str) -> tuple[int, float, float]:
    if source == "mmlu":
        weak, strong = float(row["weak_ok"]), float(row["strong_ok"])
    elif source == "llmrouter":
        weak, strong = float(row["scores"][LLMROUTER_WEAK]), float(row["scores"][LLMROUTER_STRONG])
    elif source == "arena":
        return int(row["mean_score"] <= ARENA_HARD_MAX_SCORE), float("nan"), float("nan")
    else:
        raise ValueError(f"unknown source {source!r}")
    return int(strong > weak if label == "strong-wins" else weak < 0.5), weak, strong


def load(
    directory: Path | None = None,
    sources: tuple[str, ...] = tuple(SOURCE_FILES),
    label: str = "strong-wins",
) -> Dataset:
    """Every labelled prompt of the chosen sources (``label``: one of ``LABELS``)."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}")
    directory = directory or router_data_dir()
    ids, source_names, prompts, labels, weak, strong = [], [], [], [], [], []
    for source in sources:
        for row in _rows(directory / SOURCE_FILES[source]):
            is_hard, weak_q, strong_q = _labelled(source, row, label)
            ids.append(row["id"])
            source_names.append(source)
            prompts.append(row["prompt"])
            labels.append(is_hard)
            weak.append(weak_q)
            strong.append(strong_q)
    return Dataset(
        ids=ids,
        sources=np.asarray(source_names),
        prompts=prompts,
        labels=np.asarray(labels, dtype=np.int64),
        weak_quality=np.asarray(weak),
        strong_quality=np.asarray(strong),
    )


def llmrouter_model_scores(directory: Path | None = None) -> tuple[list[str], np.ndarray]:
    """Every model's quality on every ``llmrouter`` row (row order as in ``load``): (names, rows x models).

    ``load`` keeps one weak/strong pair; label experiments (``router_models.experiments``) use the rest.
    """
    directory = directory or router_data_dir()
    rows = list(_rows(directory / SOURCE_FILES["llmrouter"]))
    names = sorted(rows[0]["scores"]) if rows else []
    return names, np.array([[float(row["scores"][m]) for m in names] for row in rows]).reshape(len(rows), -1)
