"""Deterministic per-model answer quality and a stand-in LLM judge (OpenAI chat only).

Without quality settings every model gives the same answer to the same prompt (the *canonical*
answer, derived from the prompt alone). With a quality q in [0, 1], word i of the canonical answer is
kept when u_i < q and otherwise replaced by w_i, where u_i and w_i are drawn from the prompt alone:
an answer depends on the prompt and the quality, not on the model's name. A model of quality 1
gives the canonical answer, one of quality 0 the same wrong answer as any other model of quality 0,
and two answers agree on a share 1 - |q_a - q_b| of their words: graders see how far apart the two
models' qualities are on that prompt (and, like any reference-based grader, cannot tell which one
is the better when the reference is the worse).

Quality comes from the request body's `sim_quality` object ({"<upstream model>": q}; the gateway
passes unknown parameters through, so a test or benchmark can label each prompt), else from the
per-model default set with `POST /_sim/quality {"model": "...", "quality": q}`, else 1.

A model registered as a judge (`POST /_sim/quality {"model": "...", "judge": true}`) answers a
prompt holding `<reference_answer>…</reference_answer>` and `<candidate_answer>…</candidate_answer>`
with an integer 1-10: 1 + round(9 × the word-level Jaccard overlap of the two answers). It is a
deterministic stand-in for an LLM judge, so that judge grades mean something in tests.
"""

from __future__ import annotations

import re
from typing import Any

from .generation import rng_for
from .tokens import vocabulary

_TAGGED = re.compile(r"<(reference_answer|candidate_answer)>(.*?)</\1>", re.DOTALL)
_WORD = re.compile(r"\w+")


def quality_for(body: dict[str, Any], model: str, defaults: dict[str, float]) -> float:
    labels = body.get("sim_quality")
    if isinstance(labels, dict) and isinstance(labels.get(model), int | float):
        return min(max(float(labels[model]), 0.0), 1.0)
    return defaults.get(model, 1.0)


def degrade(pieces: list[str], quality: float, digest: bytes, seed: Any, index: int) -> list[str]:
    """The canonical `pieces` with each word replaced with probability 1 - quality."""
    if quality >= 1.0 or not pieces:
        return pieces
    rng = rng_for(digest + b"|quality", seed, index)  # the same draws for every model
    words = vocabulary()
    out = []
    for piece in pieces:
        keep, other = rng.random(), rng.choice(words)  # both drawn each time: streams stay aligned
        out.append(piece if keep < quality else (" " if piece.startswith(" ") else "") + other)
    return out


def judge_verdict(body: dict[str, Any]) -> str | None:
    """The judge's reply to a grading prompt, or None when the prompt holds no tagged answers."""
    text = "\n".join(
        m["content"]
        for m in body.get("messages") or ()
        if isinstance(m, dict) and isinstance(m.get("content"), str)
    )
    answers = dict((name, body) for name, body in _TAGGED.findall(text))
    if set(answers) != {"reference_answer", "candidate_answer"}:
        return None
    reference = set(_WORD.findall(answers["reference_answer"].lower()))
    candidate = set(_WORD.findall(answers["candidate_answer"].lower()))
    union = reference | candidate
    overlap = len(reference & candidate) / len(union) if union else 1.0
    return str(1 + round(9 * overlap))
