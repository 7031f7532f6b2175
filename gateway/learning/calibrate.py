"""Recalibration from the ledger: fit a policy's threshold on a team's own traffic, using shadow
grades and feedback, and store the result as a candidate policy version (never activated here).

1. Evidence: every shadow grade of the policy (pass / fail at its `pass_grade`) and every feedback
   verdict on a request the policy served from a measured (cheaper) tier (pass = score >= 0.5),
   each with the request's complexity score; optionally one team's only.
2. Pass curve: P(the cheaper tier's answer is as good as the reference's | score), a one-feature
   logistic regression on logit(score) (scikit-learn). This is the classifier head refitted on the
   team's traffic in one dimension (slope and bias of the score); it is monotone, so routing by a
   threshold on the score stays optimal. With one class only, a Laplace-smoothed constant.
3. Threshold: over the team's last N scored requests, projected quality retained for a threshold t
   is the mean of 1 (score >= t: served by the reference tier) or P(pass | score) (below t). The
   chosen t is the highest (cheapest) one whose projected quality meets `quality.target_retained`.
4. Candidate: the policy's bands are rescaled so that the measured tiers' bands fill [0, t) and the
   others [t, 1] (their relative widths kept), stored as a new version for the dry-run and an admin.

`project_quality` is what the policy dry-run shows beside cost: the same projection for any policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.models import Feedback, LedgerEntry, ShadowGrade
from gateway.routing.policy import PolicyError, PolicySpec, Router

MIN_EVIDENCE = 20
EPS = 1e-4


class CalibrationError(ValueError):
    """Not enough evidence, or a policy that cannot be recalibrated (the message says why)."""


def _logit(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(scores, dtype=float), EPS, 1 - EPS)
    return np.log(clipped / (1 - clipped)).reshape(-1, 1)


@dataclass
class PassCurve:
    """P(pass | score) for answers from the measured tiers."""

    model: LogisticRegression | None
    constant: float
    n: int

    @classmethod
    def fit(cls, scores: np.ndarray, passed: np.ndarray) -> PassCurve:
        passed = np.asarray(passed, dtype=int)
        if len(np.unique(passed)) < 2:
            return cls(None, (passed.sum() + 1) / (len(passed) + 2), len(passed))
        model = LogisticRegression(C=1.0).fit(_logit(scores), passed)
        return cls(model, float(passed.mean()), len(passed))

    def describe(self) -> dict[str, float | int]:
        """The refitted one-dimensional head: P(pass) = sigmoid(slope * logit(score) + intercept)."""
        if self.model is None:
            return {"constant": round(self.constant, 4), "n": self.n}
        return {
            "slope": round(float(self.model.coef_[0, 0]), 4),
            "intercept": round(float(self.model.intercept_[0]), 4),
            "n": self.n,
        }

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=float)
        if self.model is None:
            return np.full(len(scores), self.constant)
        return self.model.predict_proba(_logit(scores))[:, 1]


@dataclass
class Evidence:
    scores: np.ndarray
    passed: np.ndarray
    shadow: int
    feedback: int


async def load_evidence(
    engine: AsyncEngine, policy: str, reference: str | None, team: str | None, since: datetime | None
) -> Evidence:
    g = ShadowGrade
    grades = select(g.complexity_score, g.passed).where(g.policy == policy, g.complexity_score.is_not(None))
    e = LedgerEntry
    verdicts = (
        select(e.complexity_score, Feedback.score)
        .join(e, e.id == Feedback.request_id)
        .where(e.policy == policy, e.complexity_score.is_not(None), e.cost_class == "request")
    )
    if reference:
        verdicts = verdicts.where(e.deployment != reference)
    if team is not None:
        grades, verdicts = grades.where(g.team == team), verdicts.where(e.team == team)
    if since is not None:
        grades, verdicts = grades.where(g.created_at >= since), verdicts.where(Feedback.created_at >= since)
    async with engine.connect() as conn:
        graded = (await conn.execute(grades)).all()
        rated = (await conn.execute(verdicts)).all()
    scores = [s for s, _ in graded] + [s for s, _ in rated]
    passed = [int(p) for _, p in graded] + [int(v >= 0.5) for _, v in rated]
    return Evidence(np.asarray(scores, dtype=float), np.asarray(passed, dtype=int), len(graded), len(rated))


async def traffic_scores(engine: AsyncEngine, policy: str, team: str | None, last: int) -> np.ndarray:
    e = LedgerEntry
    query = (
        select(e.complexity_score)
        .where(
            e.policy == policy,
            e.complexity_score.is_not(None),
            e.status_code == 200,
            e.cost_class == "request",
        )
        .order_by(e.created_at.desc())
        .limit(last)
    )
    if team is not None:
        query = query.where(e.team == team)
    async with engine.connect() as conn:
        return np.asarray((await conn.execute(query)).scalars().all(), dtype=float)


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    quality: float
    strong_share: float


def operating_point(traffic: np.ndarray, curve: PassCurve, threshold: float) -> OperatingPoint:
    strong = traffic >= threshold
    quality = float(np.mean(np.where(strong, 1.0, curve(traffic)))) if len(traffic) else math.nan
    return OperatingPoint(threshold, quality, float(np.mean(strong)) if len(traffic) else math.nan)


def choose_threshold(traffic: np.ndarray, curve: PassCurve, target: float) -> OperatingPoint:
    """The highest threshold whose projected quality retained meets `target` (else the best one)."""
    if not len(traffic):
        raise CalibrationError("no scored traffic to calibrate on")
    ordered = np.sort(traffic)[::-1]
    p = curve(ordered)
    n = len(ordered)
    # k highest-scoring requests to the reference: quality = (k + sum of p over the rest) / n
    tail = np.concatenate([np.cumsum(p[::-1])[::-1], [0.0]])
    qualities = (np.arange(n + 1) + tail) / n
    reached = np.flatnonzero(qualities >= target - 1e-12)
    k = int(reached[0]) if len(reached) else n
    if k == 0:
        threshold = 1.0 - EPS  # nothing needs the reference tier
    elif k == n:
        threshold = EPS
    else:
        threshold = float((ordered[k - 1] + ordered[k]) / 2)  # between the k-th and (k+1)-th score
    threshold = float(np.clip(round(threshold, 4), EPS, 1 - EPS))
    return operating_point(traffic, curve, threshold)


def _measured(spec: PolicySpec, deployments: Mapping[str, Any]) -> list[bool]:
    shadow = spec.quality.shadow
    return [
        b.deployment != shadow.reference and deployments[b.deployment].tier in shadow.tiers
        for b in spec.bands
    ]


def current_threshold(spec: PolicySpec, deployments: Mapping[str, Any]) -> float:
    """Where the measured (cheaper) bands end and the reference side begins."""
    measured = _measured(spec, deployments)
    if not any(measured) or all(measured):
        raise CalibrationError("the policy needs bands on both sides: measured tiers below, reference above")
    first_other = measured.index(False)
    if any(measured[first_other:]):
        raise CalibrationError("measured-tier bands must all lie below the reference-side bands")
    return spec.bands[first_other].from_score


def rescaled_document(spec: PolicySpec, deployments: Mapping[str, Any], threshold: float) -> dict[str, Any]:
    """The policy with its measured bands squeezed/stretched into [0, t) and the rest into [t, 1]."""
    old = current_threshold(spec, deployments)
    document = spec.model_dump(mode="json", by_alias=True)

    def move(x: float) -> float:
        if x <= old:
            return round(x / old * threshold, 4)
        return round(threshold + (x - old) / (1 - old) * (1 - threshold), 4)

    for band in document["bands"]:
        band["from"], band["to"] = move(band["from"]), move(band["to"])
    document["bands"][0]["from"], document["bands"][-1]["to"] = 0.0, 1.0
    return document


async def calibrate_policy(
    engine: AsyncEngine,
    spec: PolicySpec,
    deployments: Mapping[str, Any],
    *,
    team: str | None = None,
    target: float | None = None,
    last: int = 5000,
    since: datetime | None = None,
) -> dict[str, Any]:
    """The recalibrated document and the numbers behind it (nothing is stored here)."""
    reference = spec.quality.shadow.reference
    if not reference:
        raise CalibrationError(f"policy {spec.name} names no quality.shadow.reference deployment")
    before = current_threshold(spec, deployments)
    evidence = await load_evidence(engine, spec.name, reference, team, since)
    if len(evidence.passed) < MIN_EVIDENCE:
        raise CalibrationError(
            f"only {len(evidence.passed)} graded or rated requests for policy {spec.name}"
            f"{' and team ' + team if team else ''}; need at least {MIN_EVIDENCE}"
        )
    traffic = await traffic_scores(engine, spec.name, team, last)
    curve = PassCurve.fit(evidence.scores, evidence.passed)
    goal = target if target is not None else spec.quality.target_retained
    chosen = choose_threshold(traffic, curve, goal)
    current = operating_point(traffic, curve, before)
    return {
        "document": rescaled_document(spec, deployments, chosen.threshold),
        "policy": spec.name,
        "team": team,
        "target_retained": goal,
        "evidence": {"shadow_grades": evidence.shadow, "feedback": evidence.feedback},
        "traffic_requests": len(traffic),
        "pass_curve": curve.describe(),
        "before": {
            "threshold": before,
            "projected_quality": round(current.quality, 4),
            "reference_share": round(current.strong_share, 4),
        },
        "after": {
            "threshold": chosen.threshold,
            "projected_quality": round(chosen.quality, 4),
            "reference_share": round(chosen.strong_share, 4),
        },
    }


async def project_quality(
    engine: AsyncEngine,
    routers: Mapping[str, Router | None],
    team: str | None = None,
    last: int = 1000,
) -> dict[str, Any] | None:
    """Projected quality retained of each router on the last `last` scored requests, from the pass
    curve fitted to the first router's evidence; None when it has no reference or no evidence."""
    first = next((r for r in routers.values() if r is not None), None)
    if first is None or not first.spec.quality.shadow.reference:
        return None
    spec = first.spec
    evidence = await load_evidence(engine, spec.name, spec.quality.shadow.reference, team, None)
    traffic = await traffic_scores(engine, spec.name, team, last)
    if not len(evidence.passed) or not len(traffic):
        return None
    curve = PassCurve.fit(evidence.scores, evidence.passed)
    p = curve(traffic)
    out: dict[str, Any] = {
        "evidence": {"shadow_grades": evidence.shadow, "feedback": evidence.feedback},
        "requests": len(traffic),
    }
    for label, router in routers.items():
        if router is None:
            out[label] = None
            continue
        shadow = router.spec.quality.shadow
        retained = []
        for score, pass_p in zip(traffic, p, strict=True):
            try:
                name = router.decide(float(score)).chain[0]
            except PolicyError:
                continue
            facts = router.facts(name)
            measured = name != shadow.reference and facts.tier in shadow.tiers
            retained.append(pass_p if measured else 1.0)
        out[label] = {"quality_retained": round(float(np.mean(retained)), 4) if retained else None}
    return out
