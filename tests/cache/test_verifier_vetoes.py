"""Vetoes: changes that make another request whatever the trees say, applied on the production path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.cache import verifier_training as vt
from gateway.cache.verifier import ARTIFACT, VETOES, Verifier, vetoed

HANDWRITTEN = Path(__file__).parent / "data" / "handwritten_pairs.jsonl"


@pytest.mark.parametrize(
    ("a", "b", "veto"),
    [
        ("How do I convert JSON to a dict?", "How do I convert a dict to JSON?", "direction_swapped"),
        ("Is Rust faster than Go?", "Is Go faster than Rust?", "direction_swapped"),
        ("Solve 2x + 5 = 17", "Solve 2x - 5 = 17", "operator_changed"),
        ("Is x < 3 true?", "Is x > 3 true?", "operator_changed"),
        ("How do I increase my credit limit?", "How do I decrease my credit limit?", "opposite_words"),
        ("Sort in ascending order", "Sort in descending order", "opposite_words"),
        ("Who won the World Cup in 2014?", "Who won the World Cup in 2018?", "numbers_changed"),
        ("Explain gravity for an adult", "Explain gravity for my 6-year-old", "person_changed"),
        ("Gift ideas for my wife", "Gift ideas for my boss", "person_changed"),
    ],
)
def test_each_veto_fires_on_its_change(a: str, b: str, veto: str) -> None:
    assert veto in vetoed(a, b)
    assert veto in vetoed(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I convert a string to int in Python?", "In Python, how do I convert a string to int?"),
        ("Python vs Java for web apps", "Java vs Python for web apps"),
        ("What is the difference between RAM and ROM?", "What's the difference between ROM and RAM?"),
        ("Explain it to a five year old", "Explain it to a 5 year old"),
        ("Explain it to a 6-year-old", "Explain it to a six-year-old"),
        ("What's 2 + 2?", "what is 2+2"),
        ("How can I lose 10 kg?", "How do I lose weight?"),
        ("Gift ideas for my wife", "What should I get my wife as a gift?"),
        ("How do I increase my credit limit?", "How can I raise my credit limit?"),
        ("Set up a 6-year-old's birthday party", "Plan a birthday party"),
    ],
)
def test_vetoes_stay_quiet_on_rewordings(a: str, b: str) -> None:
    assert vetoed(a, b) == []


def test_no_veto_fires_on_a_handwritten_rewording() -> None:
    pairs = vt.load_pairs([HANDWRITTEN])
    fired = [(a, b, vetoed(a, b)) for a, b, y in zip(pairs.a, pairs.b, pairs.label, strict=True) if y == 1]
    assert [f for f in fired if f[2]] == []


def test_the_shipped_artifact_applies_its_vetoes_in_first_stage_many() -> None:
    verifier = Verifier(ARTIFACT, encoder=None)
    assert set(verifier.vetoes) == set(VETOES)
    new = "How do I convert a dict to JSON?"
    cached = ["How do I convert JSON to a dict?", "How can I convert a dict to JSON?"]
    scores = verifier.first_stage_many(cached, new, [1.0, 0.97])
    assert scores[0] == 0.0 and scores[1] > 0.0
    # Without the veto the trees alone would score the swapped pair above zero.
    verifier.vetoes = []
    assert verifier.first_stage_many(cached, new, [1.0, 0.97])[0] > 0.0


def test_an_artifact_without_vetoes_applies_none(tmp_path: Path) -> None:
    with np.load(ARTIFACT) as bundle:
        arrays = {k: bundle[k] for k in bundle.files if k != "vetoes"}
    path = tmp_path / "no_vetoes.npz"
    np.savez(path, **arrays)
    verifier = Verifier(path, encoder=None)
    assert verifier.vetoes == []
    assert not verifier.featuriser.vetoed_many(
        ["Is Rust faster than Go?"], "Is Go faster than Rust?", []
    ).any()


def test_an_artifact_naming_an_unknown_veto_is_refused(tmp_path: Path) -> None:
    with np.load(ARTIFACT) as bundle:
        arrays = {k: bundle[k] for k in bundle.files}
    arrays["vetoes"] = np.array(["no_such_veto"])
    path = tmp_path / "unknown.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="unknown vetoes"):
        Verifier(path, encoder=None)


def test_the_model_card_lists_the_artifacts_vetoes_and_hard_families() -> None:
    card = (Path(vt.__file__).parent / "VERIFIER.md").read_text()
    for veto in Verifier(ARTIFACT, encoder=None).vetoes:
        assert f"- `{veto}`:" in card
    assert "Trained on: " + ", ".join(f"`{f}`" for f in vt.HARD_TRAIN_FAMILIES) in card
    assert "no longer fully blind" in card
