"""Train, evaluate and score end to end on a small synthetic copy of the data layout.

Runs without ../shared/data: ``TIERGATE_DATA_DIR`` points at generated files whose label depends on how
much a prompt asks, so the pipeline must learn it from structure.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.routing.cli import router_app
from gateway.routing.features import prompt_messages
from gateway.routing.scorer import Scorer
from router_models import data as D

EASY = ["What is the capital of {}?", "Say hello to {}.", "Spell {}.", "Who is {}?"]
HARD = [
    "Prove that for every prime p > 3 the number p^2 - 1 is divisible by 24, then derive a formula "
    "for the sum of the first n cubes and show every step. Write a Python function computing it for {} "
    "and analyse its complexity; you must answer in at most 200 words.",
    "Given the system x + 2y - z = 4, 3x - y + 2z = 1 and 2x + 3y + z = {}, solve for x, y, z step by "
    "step, then compute the determinant of the coefficient matrix and explain why it is invertible.",
]
NAMES = ["France", "Peru", "Kenya", "Japan", "Norway", "Chile", "Egypt", "Nepal"]


def _rows(n: int, rng: random.Random):
    for i in range(n):
        hard = rng.random() < 0.4
        prompt = rng.choice(HARD if hard else EASY).format(rng.choice(NAMES))
        strong_wins = rng.random() < (0.8 if hard else 0.1)
        yield i, prompt, strong_wins


@pytest.fixture
def synthetic_data(tmp_path, monkeypatch):
    rng = random.Random(0)
    router = tmp_path / "router"
    router.mkdir()
    with (router / D.SOURCE_FILES["mmlu"]).open("w") as out:
        for i, prompt, wins in _rows(400, rng):
            row = {"id": f"m{i}", "prompt": prompt, "weak_ok": not wins, "strong_ok": True}
            out.write(json.dumps(row) + "\n")
    with (router / D.SOURCE_FILES["llmrouter"]).open("w") as out:
        for i, prompt, wins in _rows(300, rng):
            scores = {D.LLMROUTER_WEAK: 0.0 if wins else 1.0, D.LLMROUTER_STRONG: 1.0, "other": 0.5}
            out.write(json.dumps({"id": f"l{i}", "prompt": prompt, "scores": scores}) + "\n")
    with (router / D.SOURCE_FILES["arena"]).open("w") as out:
        for i, prompt, wins in _rows(100, rng):
            out.write(json.dumps({"id": f"a{i}", "prompt": prompt, "mean_score": 3 if wins else 8}) + "\n")
    monkeypatch.setenv("TIERGATE_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_train_writes_a_working_versioned_artifact(synthetic_data, tmp_path):
    output = tmp_path / "artifacts"
    result = CliRunner().invoke(router_app, ["train", "--output-dir", str(output)])
    assert result.exit_code == 0, result.output
    assert (output / "router-v1.npz").is_file()
    metadata = json.loads((output / "router-v1.json").read_text())
    assert metadata["training_sources"]["mmlu"]["rows"] == 400
    assert {r["held_out"] for r in metadata["held_out"]} == {"mmlu", "llmrouter", "arena"}
    for r in metadata["held_out"]:
        assert r["auc"] > 0.7
        if r["apgr"] is not None:
            assert r["apgr"] > 0.6 and r["cpt50"] < 0.4

    scorer = Scorer.load(output / "router-v1.npz")
    for check in metadata["self_check"]:
        assert scorer.score(prompt_messages(check["prompt"])) == pytest.approx(check["score"], abs=1e-9)
    assert scorer.score(prompt_messages(HARD[0].format("Peru"))) > scorer.score(
        prompt_messages("Spell Peru.")
    )

    again = CliRunner().invoke(router_app, ["train", "--output-dir", str(output), "--approach", "lexical"])
    assert again.exit_code == 0, again.output
    lexical = Scorer.load(output / "router-v2.npz")
    assert lexical.artifact.terms and lexical.version == 2


@pytest.mark.slow
def test_eval_protocols_and_labels(synthetic_data, tmp_path):
    runner = CliRunner()
    for extra in (
        ["--approach", "structure", "--approach", "structure-gbm"],
        ["--approach", "structure", "--protocol", "within"],
        ["--approach", "lexical", "--label", "weak-fails"],
    ):
        output = tmp_path / "eval.json"
        result = runner.invoke(router_app, ["eval", "--output", str(output), *extra])
        assert result.exit_code == 0, result.output
        payload = json.loads(output.read_text())
        approaches = {r["approach"] for r in payload["results"]}
        assert approaches == {a for a in extra[1::2] if a in {"structure", "structure-gbm", "lexical"}}
        assert all(np.isfinite(r["auc"]) for r in payload["results"])
    assert runner.invoke(router_app, ["eval", "--approach", "nope"]).exit_code != 0


def test_train_refuses_approaches_it_cannot_ship(synthetic_data, tmp_path):
    for approach in ("structure-gbm", "nope"):
        result = CliRunner().invoke(
            router_app, ["train", "--output-dir", str(tmp_path), "--approach", approach]
        )
        assert result.exit_code == 2
    assert not list(tmp_path.glob("*.npz"))


def test_train_refuses_missing_data(tmp_path, monkeypatch):
    monkeypatch.setenv("TIERGATE_DATA_DIR", str(tmp_path / "absent"))
    assert CliRunner().invoke(router_app, ["train", "--output-dir", str(tmp_path)]).exit_code == 2
