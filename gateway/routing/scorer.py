"""Request complexity score: the probability that the cheap model is not good enough.

Loads the shipped ``router_models`` artifact once and evaluates it with numpy only. Higher scores
need a stronger model; policies compare the score with thresholds from ``gateway router calibrate``.

    score(messages, tools=None, embedding=None) -> float in (0, 1)

An artifact that uses the request embedding takes the one the pipeline already computed for the
semantic cache (``embedding=``, from ``gateway.embeddings`` on the last user message) and only
computes it itself when none is given. The shipped artifact uses no embedding (see the model card).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from router_models.artifact import Artifact

from . import features as F


class Scorer:
    """One loaded artifact; thread-safe (read-only after construction)."""

    def __init__(self, artifact: Artifact) -> None:
        names = tuple(artifact.metadata.get("dense_features", ()))
        if names != F.DENSE_FEATURES:
            raise ValueError("artifact was trained on different dense features; retrain it")
        self.artifact = artifact
        self.version = artifact.version
        self._terms = (
            F.TermWeights({t: i for i, t in enumerate(artifact.terms)}, artifact.term_idf)
            if artifact.terms
            else None
        )
        self.uses_embedding = artifact.embedding_weights.size > 0
        self._clip = float(artifact.metadata.get("dense_clip", np.inf))
        F.encoding()  # load the tokenizer now (~0.4 s), not on the first request

    @classmethod
    def load(cls, path: Path | None = None) -> Scorer:
        return cls(Artifact.load(path))

    def score(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        embedding: np.ndarray | None = None,
    ) -> float:
        features = F.extract(messages, tools, with_terms=self._terms is not None)
        artifact = self.artifact
        standardised = np.clip(
            (features.dense - artifact.dense_mean) / artifact.dense_scale, -self._clip, self._clip
        )
        z = artifact.bias + float(artifact.dense_weights @ standardised)
        if self._terms is not None and features.terms is not None:
            indices, values = self._terms.vectorize(features.terms)
            z += float(artifact.term_coefficients[indices] @ values)
        if self.uses_embedding:
            if embedding is None:
                from gateway.embeddings import get_embedder

                embedding = get_embedder().embed([F.embedding_text(messages)])[0]
            z += float(artifact.embedding_weights @ np.asarray(embedding, dtype=np.float64).ravel())
        return _sigmoid(z)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    exp_z = math.exp(z)
    return exp_z / (1.0 + exp_z)


@functools.cache
def default_scorer() -> Scorer:
    """The process-wide scorer of the latest shipped artifact; call it at start-up to pay loading there."""
    return Scorer.load()


def score(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    embedding: np.ndarray | None = None,
) -> float:
    """Complexity score of one request with the shipped artifact."""
    return default_scorer().score(messages, tools, embedding)
