"""The verifier's second stage (MiniLM transformer cosine): gating, fallback, and the local export."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from gateway.cache import minilm_onnx
from gateway.cache.verifier import ARTIFACT, Verifier, get_verifier

CACHED = ["How do I undo the last commit in git?", "How can I undo my last git commit?", "Who wrote Hamlet?"]
NEW = "How do I undo the last commit in git?"


class FakeEncoder:
    """Returns fixed cosines per cached text and records what it was asked."""

    def __init__(self, cosines: dict[str, float]) -> None:
        self.table, self.asked = cosines, []

    def cosines(self, cached: Sequence[str], new: str) -> np.ndarray:
        self.asked.append(list(cached))
        return np.array([self.table[c] for c in cached])


def test_candidates_under_the_transformer_minimum_score_zero() -> None:
    verifier = Verifier(ARTIFACT, encoder=None)
    assert verifier.second_stage_min_cosine is not None, "the shipped artifact has a second stage"
    first = verifier.score_many(CACHED, NEW, [1.0, 0.9, 0.6])
    low = verifier.second_stage_min_cosine - 0.01
    fake = FakeEncoder({CACHED[0]: 1.0, CACHED[1]: low, CACHED[2]: 1.0})
    gated = Verifier(ARTIFACT, encoder=fake).score_many(CACHED, NEW, [1.0, 0.9, 0.6])
    asked = [i for i, s in enumerate(first) if s >= verifier.second_stage_floor]
    assert fake.asked == [[CACHED[i] for i in asked]]  # one call, only candidates at the floor or more
    for i, (f, g) in enumerate(zip(first, gated, strict=True)):
        if i in asked and fake.table[CACHED[i]] < verifier.second_stage_min_cosine:
            assert g == 0.0
        else:
            assert g == pytest.approx(f)
    assert gated[1] == 0.0 and first[1] >= verifier.second_stage_floor


def test_without_an_encoder_the_first_stage_decides_alone() -> None:
    verifier = Verifier(ARTIFACT, encoder=None)
    assert not verifier.second_stage_active
    scores = verifier.score_many(CACHED, NEW, [1.0, 0.9, 0.6])
    assert np.array_equal(scores, verifier.first_stage_many(CACHED, NEW, [1.0, 0.9, 0.6]))


def test_missing_export_is_logged_and_turns_the_second_stage_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TIERGATE_MINILM_DIR", str(tmp_path / "absent"))
    minilm_onnx.get_encoder.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.cache.minilm_onnx"):
            verifier = Verifier(ARTIFACT)
            assert verifier.encoder is None and not verifier.second_stage_active
        assert "export-minilm" in caplog.text
    finally:
        minilm_onnx.get_encoder.cache_clear()


def test_an_artifact_without_a_second_stage_never_asks_for_one(tmp_path: Path) -> None:
    with np.load(ARTIFACT) as bundle:
        arrays = {k: bundle[k] for k in bundle.files if not k.startswith("second_stage")}
    path = tmp_path / "first_only.npz"
    np.savez(path, **arrays)
    fake = FakeEncoder({})
    verifier = Verifier(path, encoder=fake)
    assert verifier.second_stage_min_cosine is None and verifier.encoder is None
    verifier.score_many(CACHED, NEW, [1.0, 0.9, 0.6])
    assert fake.asked == []


@pytest.mark.skipif(
    not (minilm_onnx.default_dir() / minilm_onnx.MODEL_FILE).is_file(),
    reason="no local MiniLM export (python -m gateway.cache.cli export-minilm)",
)
def test_local_export_separates_rewordings_from_other_questions() -> None:
    encoder = minilm_onnx.SentenceEncoder()
    cos = encoder.cosines(
        [NEW, "How can I revert my most recent commit in git?", "How do I bake sourdough bread?"], NEW
    )
    assert cos[0] == pytest.approx(1.0, abs=1e-3)
    assert cos[1] > 0.7 > cos[2]
    bulk = encoder.pair_cosines([NEW, NEW], ["How can I revert my most recent commit in git?", NEW])
    assert bulk == pytest.approx([cos[1], cos[0]], abs=1e-4)
    vectors = encoder.embed(["a", "b", "a"])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    # The shared verifier uses it when the artifact has a second stage.
    assert get_verifier().second_stage_active
