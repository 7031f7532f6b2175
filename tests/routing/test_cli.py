"""``gateway router`` commands end to end: score in a real subprocess, calibrate through typer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.routing.cli import router_app
from gateway.routing.scorer import score

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_score_cli_uses_the_production_path(tmp_path):
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "Prove that sqrt(2) is irrational."}]},
    ]
    rows = [
        {"id": "a", "prompt": "hi"},
        {"id": 7, "messages": messages},
        {"id": "t", "messages": messages, "tools": [{"type": "function", "function": {"name": "calc"}}]},
    ]
    source = _write_jsonl(tmp_path / "in.jsonl", rows)
    target = tmp_path / "out.jsonl"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.routing.cli",
            "score",
            "--input",
            str(source),
            "--output",
            str(target),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    out = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["id"] for r in out] == ["a", 7, "t"]
    assert out[0]["score"] == pytest.approx(score([{"role": "user", "content": "hi"}]))
    assert out[1]["score"] == pytest.approx(score(messages))
    assert out[2]["score"] == pytest.approx(score(messages, rows[2]["tools"]))


def test_score_cli_rejects_rows_without_prompt_or_messages(tmp_path):
    source = _write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": "?"}])
    result = runner.invoke(router_app, ["score", "--input", str(source), "--output", str(tmp_path / "o")])
    assert result.exit_code != 0


def test_calibrate_to_strong_shares(tmp_path):
    scores = np.arange(200) / 200
    reference = _write_jsonl(
        tmp_path / "ref.jsonl", [{"id": i, "score": float(s)} for i, s in enumerate(scores)]
    )
    output = tmp_path / "thresholds.json"
    result = runner.invoke(
        router_app,
        ["calibrate", "--reference", str(reference), "--strong-share", "0.5", "--strong-share", "0.2",
         "--output", str(output)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(output.read_text())
    assert payload["n"] == 200
    assert [t["target"] for t in payload["thresholds"]] == ["strong_share=0.2", "strong_share=0.5"]
    assert [t["threshold"] for t in payload["thresholds"]] == [pytest.approx(0.8), pytest.approx(0.5)]
    assert [t["strong_share"] for t in payload["thresholds"]] == [pytest.approx(0.2), pytest.approx(0.5)]


def test_calibrate_to_a_quality_floor_scores_prompts(tmp_path):
    prompts = ["hi", "thanks!", "What is 2+2?", "Prove Fermat's little theorem and derive Euler's theorem."]
    rows = [
        {"prompt": p, "weak_quality": w, "strong_quality": s}
        for p, w, s in zip(prompts, [1, 1, 1, 0], [1, 1, 1, 1], strict=True)
    ]
    reference = _write_jsonl(tmp_path / "ref.jsonl", rows)
    result = runner.invoke(router_app, ["calibrate", "--reference", str(reference), "--min-pgr", "1.0"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    (threshold,) = payload["thresholds"]
    hardest = max(score([{"role": "user", "content": p}]) for p in prompts)
    assert threshold["pgr"] == 1.0
    # The proof prompt is the hardest by score, so routing just it recovers the whole gap.
    assert threshold["threshold"] == pytest.approx(hardest)
    assert threshold["strong_share"] == 0.25


def test_calibrate_needs_a_target_and_quality_for_floors(tmp_path):
    reference = _write_jsonl(tmp_path / "ref.jsonl", [{"score": 0.5}])
    assert runner.invoke(router_app, ["calibrate", "--reference", str(reference)]).exit_code != 0
    result = runner.invoke(router_app, ["calibrate", "--reference", str(reference), "--min-pgr", "0.5"])
    assert result.exit_code != 0
