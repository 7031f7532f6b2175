"""Dry-run a candidate policy against history: replay the last N routed ledger rows (their
complexity scores and token counts) and project cost, tier mix and savings against the active
policy, before anyone activates the candidate; with shadow grades or feedback for the policy, also its
projected quality retained (`gateway.learning.calibrate.project_quality`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.models import LedgerEntry
from gateway.routing.policy import DeploymentFacts, PolicyError, Router
from gateway.upstreams.usage import Usage


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


class _Projection:
    def __init__(self, router: Router | None, facts: Mapping[str, DeploymentFacts]) -> None:
        self.router, self.facts = router, facts
        self.cost = 0
        self.deployments: Counter[str] = Counter()
        self.tiers: Counter[str] = Counter()
        self.unroutable = 0

    def add(self, score: float, usage: Usage, recorded: str | None, recorded_cost: int) -> None:
        if self.router is None:  # no active policy: what actually happened
            name, cost = recorded or "unknown", recorded_cost
        else:
            try:
                name = self.router.decide(score, prompt_tokens=usage.input_total).chain[0]
            except PolicyError:
                self.unroutable += 1
                return
            cost = self.facts[name].price.cost_micros(usage)
        self.cost += cost
        self.deployments[name] += 1
        tier = self.facts[name].tier.value if name in self.facts else "unknown"
        self.tiers[tier] += 1

    def report(self, baseline: int) -> dict[str, Any]:
        total = sum(self.deployments.values())
        return {
            "cost_micros": self.cost,
            "savings_micros": baseline - self.cost,
            "savings_pct": _pct(baseline - self.cost, baseline),
            "tier_mix": {tier: _pct(n, total) for tier, n in self.tiers.most_common()},
            "deployment_mix": dict(self.deployments.most_common()),
            "unroutable": self.unroutable,
        }


async def simulate(
    engine: AsyncEngine,
    candidate: Router,
    active: Router | None,
    facts: Mapping[str, DeploymentFacts],
    last: int = 1000,
    team: str | None = None,
) -> dict[str, Any]:
    """Project the last `last` scored requests (optionally one team's) under both policies."""
    query = (
        select(LedgerEntry)
        .where(LedgerEntry.complexity_score.is_not(None), LedgerEntry.status_code == 200)
        .order_by(LedgerEntry.created_at.desc())
        .limit(last)
    )
    if team:
        query = query.where(LedgerEntry.team == team)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    projected, current = _Projection(candidate, facts), _Projection(active, facts)
    baseline_name = candidate.spec.baseline
    baseline = recorded_cost = 0
    for row in rows:
        usage = Usage(
            input_uncached=row.input_uncached_tokens,
            input_cache_read=row.input_cache_read_tokens,
            input_cache_write=row.input_cache_write_tokens,
            input_cache_write_1h=row.input_cache_write_1h_tokens,
            output=row.output_tokens,
            reasoning=row.reasoning_tokens,
        )
        projected.add(row.complexity_score, usage, row.deployment, row.cost_micros)
        current.add(row.complexity_score, usage, row.deployment, row.cost_micros)
        recorded_cost += row.cost_micros
        baseline += (
            facts[baseline_name].price.list_cost_micros(usage) if baseline_name else row.baseline_cost_micros
        )
    from gateway.learning.calibrate import project_quality  # quality beside cost, from shadow grades

    quality = await project_quality(engine, {"candidate": candidate, "active": active}, team, last)
    return {
        "quality": quality,
        "rows": len(rows),
        "team": team,
        "baseline_deployment": baseline_name,
        "baseline_cost_micros": baseline,
        "recorded_cost_micros": recorded_cost,
        "candidate": {
            "policy": candidate.spec.name,
            "version": candidate.version,
            **projected.report(baseline),
        },
        "active": {
            "policy": active.spec.name if active else None,
            "version": active.version if active else None,
            **current.report(baseline),
        },
        "change_vs_active_micros": projected.cost - current.cost,
    }
