"""Thresholds a routing policy uses, derived from scores of reference traffic.

A request goes to the strong model when ``score >= threshold``. Two kinds of target:

* a share of strong-model calls (RouteLLM's calibration: the score quantile at ``1 - share``);
* a quality floor, as a share of the weak-to-strong quality gap to recover (PGR), which needs
  reference prompts with both models' quality.

Several shares give several thresholds, e.g. frontier above the first, a mid tier above the second.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .metrics import routing_curve

NEVER = math.inf
"""Threshold that sends nothing to the strong model (scores are probabilities, at most 1)."""


@dataclass(frozen=True, slots=True)
class Threshold:
    target: str
    threshold: float
    strong_share: float
    """Share of the reference traffic at or above the threshold."""
    pgr: float | None = None
    """Quality gap recovered on the reference traffic, when it has quality labels."""

    def as_dict(self) -> dict:
        out = asdict(self)
        if math.isinf(self.threshold):
            out["threshold"] = None  # JSON has no infinity: None means "never route to strong".
        return out


def for_strong_share(scores: np.ndarray, share: float) -> Threshold:
    """The highest threshold sending at least ``share`` of the reference traffic to the strong model."""
    if not 0.0 <= share <= 1.0:
        raise ValueError("share must be in [0, 1]")
    scores = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    k = math.ceil(round(share * len(scores), 9))
    if k == 0:
        return Threshold(f"strong_share={share:g}", NEVER, 0.0)
    threshold = float(scores[k - 1])
    return Threshold(f"strong_share={share:g}", threshold, float(np.mean(scores >= threshold)))


def for_min_pgr(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, min_pgr: float) -> Threshold:
    """The highest threshold whose routed quality recovers at least ``min_pgr`` of the gap."""
    curve = routing_curve(scores, weak, strong)
    reached = np.flatnonzero(curve.pgr >= min_pgr - 1e-12)
    i = int(reached[0]) if len(reached) else len(curve.shares) - 1
    return Threshold(
        f"min_pgr={min_pgr:g}",
        float(curve.thresholds[i]),
        float(curve.shares[i]),
        float(curve.pgr[i]),
    )
