"""Router metrics as the RouteLLM paper (arXiv 2406.18665) defines them, plus AUC and calibration.

A router sends a request to the strong model when its score is at or above a threshold. Sweeping the
threshold over every distinct score traces quality against the share of strong-model calls:

* PGR(share) = (quality(share) - weak quality) / (strong quality - weak quality)
* APGR = area under the PGR curve over shares in [0, 1] (trapezoid, as RouteLLM's ``evaluate.py``)
* CPT(x) = the smallest strong-call share whose PGR reaches x

Tied scores cannot be split by a threshold, so the curve only has points where whole tie groups
switch; between them it is linear, which is the expected PGR of breaking ties at random. A random
router therefore has APGR 0.5 and CPT(x) = x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class RoutingCurve:
    shares: np.ndarray
    """Share of requests sent to the strong model, from 0 to 1."""
    thresholds: np.ndarray
    """Score threshold giving each share (``inf`` for share 0)."""
    quality: np.ndarray
    """Mean quality of the routed answers at each share."""
    weak_quality: float
    strong_quality: float

    @property
    def pgr(self) -> np.ndarray:
        return (self.quality - self.weak_quality) / (self.strong_quality - self.weak_quality)


def routing_curve(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> RoutingCurve:
    """Quality against strong-call share for every threshold on ``scores``."""
    scores, weak, strong = (np.asarray(a, dtype=np.float64) for a in (scores, weak, strong))
    n = len(scores)
    if n == 0 or not (len(weak) == len(strong) == n):
        raise ValueError("scores, weak and strong must be non-empty and of equal length")
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    gain = np.cumsum(strong[order] - weak[order])
    # Only the last position of each tie group is a reachable cut.
    group_end = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    weak_total = weak.sum()
    shares = np.r_[0.0, (group_end + 1) / n]
    quality = np.r_[weak_total, weak_total + gain[group_end]] / n
    thresholds = np.r_[np.inf, sorted_scores[group_end]]
    return RoutingCurve(
        shares=shares,
        thresholds=thresholds,
        quality=quality,
        weak_quality=float(weak.mean()),
        strong_quality=float(strong.mean()),
    )


def apgr(curve: RoutingCurve) -> float:
    """Average performance gap recovered: the area under PGR(share)."""
    return float(np.trapezoid(curve.pgr, curve.shares))


def cpt(curve: RoutingCurve, target: float) -> float:
    """Call-performance threshold: smallest strong-call share at which PGR first reaches ``target``."""
    pgr = curve.pgr
    reached = np.flatnonzero(pgr >= target - 1e-12)
    if len(reached) == 0:
        return 1.0
    i = int(reached[0])
    if i == 0:
        return 0.0
    # Linear interpolation between the last point below the target and the first at or above it.
    fraction = (target - pgr[i - 1]) / (pgr[i] - pgr[i - 1])
    return float(curve.shares[i - 1] + fraction * (curve.shares[i] - curve.shares[i - 1]))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (probability a positive outranks a negative, ties count half)."""
    from scipy.stats import rankdata

    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - predicted probability| over equal-width bins, weighted by bin size."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    which = np.minimum((probabilities * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.sum() * abs(labels[members].mean() - probabilities[members].mean())
    return float(error / len(probabilities))


def brier(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((np.asarray(probabilities) - np.asarray(labels, dtype=np.float64)) ** 2))


def bootstrap_apgr(
    scores: np.ndarray,
    weak: np.ndarray,
    strong: np.ndarray,
    baseline: np.ndarray | None = None,
    rounds: int = 200,
    seed: int = 0,
) -> np.ndarray:
    """APGR of ``rounds`` bootstrap resamples of the rows (minus ``baseline``'s APGR on the same rows).

    With ``baseline`` (another router's scores of the same rows) the differences are paired, so their
    spread says whether one router beats another on this source or only on this sample of it.
    """
    scores, weak, strong = (np.asarray(a, dtype=np.float64) for a in (scores, weak, strong))
    rng = np.random.default_rng(seed)
    out = np.empty(rounds)
    for i in range(rounds):
        rows = rng.integers(0, len(scores), len(scores))
        value = apgr(routing_curve(scores[rows], weak[rows], strong[rows]))
        if baseline is not None:
            value -= apgr(routing_curve(np.asarray(baseline)[rows], weak[rows], strong[rows]))
        out[i] = value
    return out
