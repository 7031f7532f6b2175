"""Quality retained per tier, team, task cluster, ... with confidence intervals.

*Quality retained* of a group is the share of its shadow-graded answers that passed (grade at or
above the policy's `pass_grade`, i.e. as good as the reference deployment's answer), with a 95 %
Wilson score interval; the mean grade gets a 95 % percentile-bootstrap interval (1,000 resamples,
fixed seed). Feedback is summarised beside it: count, mean score, and the share of positive verdicts
(score >= 0.5) with its Wilson interval. Measurement cost is what the shadow and judge calls of the
group's graded requests cost (from `shadow_grades`, which mirrors their ledger rows).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from scipy import stats
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.models import Feedback, LedgerEntry, ShadowGrade
from gateway.ledger.pricing import micros_to_usd
from gateway.ledger.report import ReportError, as_utc

DIMENSIONS = ("team", "project", "policy", "tier", "deployment", "task_cluster", "day")
CONFIDENCE = 0.95


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    if n == 0:
        return None
    interval = stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def bootstrap_mean(values: Iterable[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    data = np.asarray(list(values), dtype=float)
    if len(data) < 2:
        return None
    if np.all(data == data[0]):
        return float(data[0]), float(data[0])
    result = stats.bootstrap(
        (data,), np.mean, confidence_level=confidence, n_resamples=1000, method="percentile", random_state=0
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass
class QualityCell:
    grades: list[float] = field(default_factory=list)
    passed: int = 0
    measurement_micros: int = 0
    feedback: list[float] = field(default_factory=list)

    @property
    def retained(self) -> float | None:
        return self.passed / len(self.grades) if self.grades else None

    def to_dict(self) -> dict[str, Any]:
        n = len(self.grades)
        ci = wilson(self.passed, n)
        mean_ci = bootstrap_mean(self.grades)
        positive = sum(1 for s in self.feedback if s >= 0.5)
        feedback_ci = wilson(positive, len(self.feedback))
        return {
            "graded": n,
            "passed": self.passed,
            "quality_retained": _r(self.retained),
            "quality_retained_ci": [_r(ci[0]), _r(ci[1])] if ci else None,
            "mean_grade": _r(float(np.mean(self.grades))) if n else None,
            "mean_grade_ci": [_r(mean_ci[0]), _r(mean_ci[1])] if mean_ci else None,
            "measurement_cost_usd": micros_to_usd(self.measurement_micros),
            "measurement_cost_micros": self.measurement_micros,
            "feedback_count": len(self.feedback),
            "feedback_mean_score": _r(float(np.mean(self.feedback))) if self.feedback else None,
            "feedback_positive_share": _r(positive / len(self.feedback)) if self.feedback else None,
            "feedback_positive_ci": [_r(feedback_ci[0]), _r(feedback_ci[1])] if feedback_ci else None,
        }


def parse_dimensions(group_by: str | Iterable[str]) -> tuple[str, ...]:
    names = group_by.split(",") if isinstance(group_by, str) else list(group_by)
    dims = tuple(n.strip() for n in names if n.strip())
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown or not dims or len(set(dims)) != len(dims):
        raise ReportError(
            f"cannot group quality by {', '.join(unknown) or 'that'}; choose distinct from {', '.join(DIMENSIONS)}",
            "group_by",
        )
    return dims


def _value(row: Mapping[str, Any], dim: str) -> Any:
    if dim == "day":
        return as_utc(row["created_at"]).date().isoformat()
    return row.get(dim)


async def quality_cells(
    engine: AsyncEngine,
    group_by: str | Iterable[str],
    since: datetime | None = None,
    until: datetime | None = None,
    filters: Mapping[str, str] | None = None,
) -> tuple[tuple[str, ...], dict[tuple, QualityCell]]:
    """Shadow grades and feedback in [since, until), grouped by `group_by`."""
    dims = parse_dimensions(group_by)
    since, until = as_utc(since), as_utc(until)
    if since is not None and until is not None and since >= until:
        raise ReportError("since must be before until", "since")
    filters = dict(filters or {})
    unknown = [name for name in filters if name not in DIMENSIONS or name == "day"]
    if unknown:
        raise ReportError(f"cannot filter quality by {', '.join(unknown)}", unknown[0])
    g = ShadowGrade
    grade_query = select(*g.__table__.c).where(*_range(g.created_at, since, until))
    grade_query = grade_query.where(*(getattr(g, k) == v for k, v in filters.items()))
    # feedback takes its request's facts from the ledger, and its task cluster from a grade if any
    cluster = select(g.request_id, func.max(g.task_cluster).label("task_cluster")).group_by(g.request_id)
    cluster = cluster.subquery()
    e = LedgerEntry
    feedback_query = (
        select(
            Feedback.score,
            Feedback.created_at,
            e.team,
            e.project,
            e.policy,
            e.tier,
            e.deployment,
            cluster.c.task_cluster,
        )
        .join(e, e.id == Feedback.request_id)
        .outerjoin(cluster, cluster.c.request_id == Feedback.request_id)
        .where(*_range(Feedback.created_at, since, until))
    )
    for name, value in filters.items():
        column = cluster.c.task_cluster if name == "task_cluster" else getattr(e, name)
        feedback_query = feedback_query.where(column == value)
    cells: dict[tuple, QualityCell] = defaultdict(QualityCell)
    async with engine.connect() as conn:
        for row in (await conn.execute(grade_query)).mappings():
            cell = cells[tuple(_value(row, d) for d in dims)]
            cell.grades.append(row["grade"])
            cell.passed += int(row["passed"])
            cell.measurement_micros += row["cost_micros"]
        for row in (await conn.execute(feedback_query)).mappings():
            cells[tuple(_value(row, d) for d in dims)].feedback.append(row["score"])
    return dims, dict(cells)


def _range(column, since: datetime | None, until: datetime | None) -> list:
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return [and_(True, *conditions)]


async def quality_report(
    engine: AsyncEngine,
    group_by: str | Iterable[str] = "tier",
    since: datetime | None = None,
    until: datetime | None = None,
    filters: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    dims, cells = await quality_cells(engine, group_by, since, until, filters)
    total = QualityCell()
    for cell in cells.values():
        total.grades += cell.grades
        total.passed += cell.passed
        total.measurement_micros += cell.measurement_micros
        total.feedback += cell.feedback
    ordered = sorted(cells.items(), key=lambda item: tuple(str(v) for v in item[0]))
    return {
        "group_by": list(dims),
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "confidence": CONFIDENCE,
        "data": [{"group": dict(zip(dims, key, strict=True)), **cell.to_dict()} for key, cell in ordered],
        "total": total.to_dict(),
    }


def flat_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A report row for CSV and tables: group dimensions first, each interval as _low / _high."""
    flat: dict[str, Any] = dict(row.get("group") or {})
    for name, value in row.items():
        if name == "group":
            continue
        if name.endswith("_ci"):
            flat[f"{name}_low"], flat[f"{name}_high"] = value if value else (None, None)
        else:
            flat[name] = value
    return flat
