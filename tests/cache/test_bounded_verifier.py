"""The serving path's verifier skips the word-vector features of candidates that cannot be served:
the decisions must be exactly those of the full computation, at any threshold."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from gateway.cache import verifier_training as vt
from gateway.cache.verifier import Verifier
from gateway.embeddings import get_embedder

HANDWRITTEN = Path(__file__).parent / "data" / "handwritten_pairs.jsonl"
THRESHOLDS = [None, 0.5, 0.8, 0.95, 0.99]  # None: the artifact's own operating point
WORDS = ["river", "ledger", "quantum", "violin", "harbor", "tariff", "enzyme", "glacier", "sonnet", "pixel", "mortgage", "falcon", "cipher", "orchard", "voltage", "saffron", "tundra", "lattice", "pigment", "comet"]  # fmt: skip


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier(encoder=None)


def _groups() -> list[tuple[list[str], str]]:
    """(cached candidates, new text) groups: each hand-written pair with other pairs' texts as further
    candidates, and near misses made of the same few words (every candidate a close neighbour)."""
    pairs = vt.load_pairs([HANDWRITTEN])
    rng = random.Random(3)
    groups = [([a, *rng.sample(pairs.a, 2)], b) for a, b in zip(pairs.a, pairs.b, strict=True)]
    for _ in range(60):
        texts = [f"Explain the relation between {' '.join(rng.choices(WORDS, k=6))} and {' '.join(rng.choices(WORDS, k=6))}."
                 for _word_group in range(4)]  # fmt: skip
        groups.append((texts[:3], texts[3]))
    return groups


def _assert_same_decisions(verifier: Verifier, cached: list[str], new: str, cosines: list[float]) -> int:
    """Asserts the bounded scores serve exactly what the full scores serve; returns how many were served."""
    full = verifier.first_stage_many(cached, new, cosines)
    served = 0
    for threshold in THRESHOLDS:
        bar = verifier.default_threshold if threshold is None else threshold
        bounded = verifier.first_stage_many(cached, new, cosines, threshold=bar)
        assert np.array_equal(bounded >= bar, full >= bar), (cached, new, threshold)
        assert np.array_equal(bounded[full >= bar], full[full >= bar])  # served hits keep their score
        served += int((full >= bar).sum())
    return served


def test_bounded_scores_serve_exactly_what_full_scores_serve(verifier: Verifier) -> None:
    embedder = get_embedder()
    served = 0
    for cached, new in _groups():
        cosines = (embedder.embed(cached) @ embedder.embed([new])[0]).tolist()
        served += _assert_same_decisions(verifier, cached, new, cosines)
        # and with every candidate made eligible, whatever the embedding says
        served += _assert_same_decisions(
            verifier, cached, new, [max(c, verifier.min_cosine) for c in cosines]
        )
    assert served > 100  # the comparison covered hits, not only misses


def test_bounded_scores_on_shared_data(verifier: Verifier) -> None:
    files = [vt.data_dir() / "cache" / name for name in vt.DATA_FILES]
    if not all(f.exists() for f in files):
        pytest.skip("../shared/data/cache is not here (a fresh clone without the shared data)")
    pairs = vt.load_pairs(files)
    chosen = np.random.default_rng(5).choice(len(pairs.a), 1500, replace=False)
    embedder = get_embedder()
    for start in range(0, len(chosen), 3):
        rows = chosen[start : start + 3]
        new = pairs.b[rows[0]]
        cached = [pairs.a[i] for i in rows]
        cosines = (embedder.embed(cached) @ embedder.embed([new])[0]).tolist()
        _assert_same_decisions(verifier, cached, new, cosines)


def test_near_misses_skip_the_word_vector_features(
    verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled: list[int] = []
    fill = verifier.featuriser.fill_vector_features
    monkeypatch.setattr(verifier.featuriser, "fill_vector_features",
                        lambda rows, cands, tb: (filled.append(len(cands)), fill(rows, cands, tb)))  # fmt: skip
    cached = ["How do I reverse a list in Python?", "What is the capital of France?"]
    verifier.first_stage_many(cached, "How do I sort a dictionary by value in Go?", [0.7, 0.6],
                              threshold=verifier.default_threshold)  # fmt: skip
    verifier.first_stage_many(["How can I reverse a list in Python?"], "How do I reverse a list in Python?", [0.98],
                              threshold=verifier.default_threshold)  # fmt: skip
    assert filled == [
        0,
        1,
    ]  # the two unrelated candidates were decided without word vectors; the rewording was not
