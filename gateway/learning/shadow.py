"""Shadow quality sampling: a pipeline observer that measures cheaper tiers against a reference.

For a configured share of the chat requests a policy sent to a cheaper tier, the sampler later asks
the policy's reference deployment the same prompt, grades the served answer against the reference
answer (similarity, or an LLM judge) and stores a `shadow_grades` row. It never touches the request
path: `observe()` only decides and enqueues (a bounded queue; when full the job is dropped and
counted), and workers do the calls in the background through the upstream registry, so retries,
fallback-free pricing and the ledger are the real ones. Every shadow and judge call gets its own
ledger row with `cost_class` 'shadow' / 'judge' and `parent_request_id`, outside the request rollup.

Spending cap: each job reserves an upper bound of its cost before it is queued (the reference call
is capped at `max_tokens` = 2 × the served answer's tokens + 64, the judge at `JUDGE_MAX_TOKENS`) and
is skipped when today's spend plus reservations would pass `max_usd_per_day`; a finished call
replaces its reservation with its actual cost. Today's spend is read from the ledger at start, so a
restart keeps counting; with several replicas each one enforces the cap on its own share
(documented in README.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any

from prometheus_client import Counter as PromCounter
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.models import LedgerEntry, ShadowGrade
from gateway.learning.clusters import task_cluster
from gateway.learning.grading import (
    JUDGE_MAX_TOKENS,
    answer_text,
    judge_messages,
    parse_judge,
    similarity_grade,
)
from gateway.ledger.pricing import Price
from gateway.ledger.writer import LedgerWriter, ledger_row, token_columns
from gateway.routing.policy import ShadowSettings
from gateway.tokens import count_messages, count_text
from gateway.upstreams.errors import UpstreamError
from gateway.upstreams.registry import Target, UpstreamRegistry
from gateway.upstreams.usage import Usage

log = logging.getLogger(__name__)

MEASURE_CLASSES = ("shadow", "judge")
SHADOW_EVENTS = PromCounter(
    "tiergate_shadow_samples_total",
    "Shadow quality sampling: queued, dropped (queue full), over_cap, graded, failed.",
    ["outcome"],
)
SHADOW_COST = PromCounter(
    "tiergate_shadow_cost_usd_total",
    "What measuring quality cost: shadow (reference) and judge calls, by team and cost class.",
    ["team", "cost_class"],
)
JUDGE_PROMPT_OVERHEAD_TOKENS = 200


def sampled(request_id: str, share: float) -> bool:
    """A deterministic coin: the same request id is always in or out of a given share."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def _max_cost(price: Price, input_tokens: int, output_tokens: int) -> int:
    """An upper bound: every input token uncached, every output token at the dearer output rate."""
    return int(input_tokens * price.input + output_tokens * max(price.output, price.reasoning)) + 1


@dataclass
class Job:
    request_id: str
    policy: str
    policy_version: int | None
    team: str | None
    project: str | None
    tier: str
    deployment: str
    score: float | None
    body: dict[str, Any]
    served_text: str
    served_cost_micros: int
    settings: ShadowSettings
    reference_max_tokens: int
    reserved_micros: int


@dataclass
class DailySpend:
    """Shadow + judge spend per policy for the current UTC day, plus what queued jobs reserved."""

    day: date = field(default_factory=lambda: datetime.now(UTC).date())
    spent: Counter[str] = field(default_factory=Counter)
    reserved: Counter[str] = field(default_factory=Counter)

    def _roll(self) -> None:
        today = datetime.now(UTC).date()
        if today != self.day:
            self.day, self.spent = today, Counter()

    def try_reserve(self, policy: str, micros: int, cap_micros: int) -> bool:
        self._roll()
        if self.spent[policy] + self.reserved[policy] + micros > cap_micros:
            return False
        self.reserved[policy] += micros
        return True

    def settle(self, policy: str, reserved: int, actual: int) -> None:
        self._roll()
        self.reserved[policy] -= reserved
        self.spent[policy] += actual


class ShadowSampler:
    """The observer (`observe`) plus its background workers (`start`, `drain`, `close`)."""

    def __init__(
        self,
        engine: AsyncEngine,
        upstreams: UpstreamRegistry,
        ledger: LedgerWriter,
        *,
        queue_size: int = 256,
        workers: int = 2,
    ) -> None:
        self.engine, self.upstreams, self.ledger = engine, upstreams, ledger
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=queue_size)
        self.spend = DailySpend()
        self.counts: Counter[str] = Counter()
        self._workers = workers
        self._tasks: list[asyncio.Task] = []

    # --- on the request path: look, decide, enqueue ------------------------------------------

    def observe(self, ex: Any, body: dict[str, Any], completion: dict[str, Any]) -> None:
        router = ex.policy
        if router is None or ex.endpoint != "chat" or ex.adapt_body is not None or ex.target is None:
            return
        settings = router.spec.quality.shadow
        deployment = ex.target.deployment
        if (
            not settings.enabled
            or deployment.tier not in settings.tiers
            or deployment.name == settings.reference
            or not sampled(ex.request_id, settings.share)
        ):
            return
        reference = self.upstreams.get(settings.reference)
        judge = self.upstreams.get(settings.judge) if settings.grader == "judge" else None
        if reference is None or (settings.grader == "judge" and judge is None):
            return
        usage = ex.usage or Usage()
        ref_max = 2 * usage.output + 64
        if isinstance(body.get("max_tokens"), int):
            ref_max = min(ref_max, body["max_tokens"])
        reserve = _max_cost(reference.current_price(), usage.input_total, ref_max)
        if judge is not None:
            judge_input = usage.input_total + usage.output + ref_max + JUDGE_PROMPT_OVERHEAD_TOKENS
            reserve += _max_cost(judge.current_price(), judge_input, JUDGE_MAX_TOKENS)
        cap = int(Decimal(settings.max_usd_per_day) * 1_000_000)
        if self.queue.full():
            self._count("dropped")
            return
        if not self.spend.try_reserve(router.spec.name, reserve, cap):
            self._count("over_cap")
            return
        key = ex.key
        self.queue.put_nowait(
            Job(
                request_id=ex.request_id,
                policy=router.spec.name,
                policy_version=router.version,
                team=key.team if key else None,
                project=key.project if key else None,
                tier=deployment.tier.value,
                deployment=deployment.name,
                score=ex.score,
                body=body,
                served_text=answer_text(completion),
                served_cost_micros=ex.cost_micros,
                settings=settings,
                reference_max_tokens=ref_max,
                reserved_micros=reserve,
            )
        )
        self._count("queued")

    def _count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        SHADOW_EVENTS.labels(outcome).inc()

    # --- background ------------------------------------------------------------------------

    async def start(self) -> None:
        await self._load_spend()
        self._tasks = [
            asyncio.create_task(self._work(), name=f"shadow-sampler-{i}") for i in range(self._workers)
        ]

    async def drain(self) -> None:
        """Wait until every queued job is done (tests, shutdown)."""
        await self.queue.join()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _load_spend(self) -> None:
        midnight = datetime.combine(datetime.now(UTC).date(), dtime(), UTC)
        query = (
            select(LedgerEntry.policy, func.sum(LedgerEntry.cost_micros))
            .where(LedgerEntry.cost_class.in_(MEASURE_CLASSES), LedgerEntry.created_at >= midnight)
            .group_by(LedgerEntry.policy)
        )
        try:
            async with self.engine.connect() as conn:
                for policy, micros in (await conn.execute(query)).all():
                    self.spend.spent[policy or ""] += int(micros or 0)
        except Exception:
            log.warning("shadow sampler: could not read today's spend; starting from zero", exc_info=True)

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                await self.measure(job)
            except Exception:
                self._count("failed")
                log.exception("shadow sampler: measuring request %s failed", job.request_id)
            finally:
                self.queue.task_done()

    async def measure(self, job: Job) -> None:
        """Ask the reference, grade, ledger both calls, store the grade."""
        settings = job.settings
        spent = 0
        try:
            reference = self.upstreams.targets[settings.reference]
            body = {k: v for k, v in job.body.items() if k not in ("stream", "stream_options", "n")}
            limit_key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
            body[limit_key] = job.reference_max_tokens
            ref = await self._call(job, reference, body, "shadow")
            if ref is None:
                self._count("failed")
                return
            reference_text, reference_cost = ref
            spent += reference_cost
            similarity = similarity_grade(job.served_text, reference_text)
            detail: dict[str, Any] = {"similarity": round(similarity, 4)}
            grade = similarity
            if settings.grader == "judge":
                judge = self.upstreams.targets[settings.judge]
                messages = judge_messages(job.body.get("messages") or [], reference_text, job.served_text)
                verdict = await self._call(
                    job,
                    judge,
                    {"model": judge.deployment.name, "messages": messages, "max_tokens": JUDGE_MAX_TOKENS},
                    "judge",
                )
                if verdict is None:
                    self._count("failed")
                    return
                spent += verdict[1]
                parsed = parse_judge(verdict[0])
                detail["judge_reply"] = verdict[0][:64]
                if parsed is None:
                    self._count("failed")
                    return
                grade = parsed
            await self._store_grade(job, grade, detail, spent, reference_cost)
            self._count("graded")
        finally:
            self.spend.settle(job.policy, job.reserved_micros, spent)

    async def _call(
        self, job: Job, target: Target, body: dict[str, Any], cost_class: str
    ) -> tuple[str, int] | None:
        """One non-streamed call through the registry (retries, no fallbacks), ledgered as
        `cost_class`. Returns (answer text, cost) or None when it failed."""
        started = time.perf_counter()
        status, error_class, usage, attempts, text = 200, None, Usage(), 0, ""
        try:
            response, tried = await self.upstreams.call([target], lambda t: t.upstream.complete("chat", body))
            attempts = tried.count
            usage = response.usage or Usage(
                input_uncached=count_messages(body.get("messages") or [], target.deployment.model),
                output=count_text(answer_text(response.data), target.deployment.model),
                estimated=True,
            )
            text = answer_text(response.data)
        except UpstreamError as exc:
            status, error_class, attempts = exc.status or 502, exc.error_class, exc.attempts
        cost = target.current_price().cost_micros(usage)
        SHADOW_COST.labels(job.team or "", cost_class).inc(cost / 1e6)
        self.ledger.record(
            self._ledger_row(job, target, cost_class, usage, cost, status, error_class, attempts, started)
        )
        return None if error_class else (text, cost)

    @staticmethod
    def _ledger_row(
        job: Job,
        target: Target,
        cost_class: str,
        usage: Usage,
        cost: int,
        status: int,
        error_class: str | None,
        attempts: int,
        started: float,
    ) -> dict[str, Any]:
        """The ledger row of a measurement call. No key id: measurement is not charged to the caller's
        budget; team and project say whose it was."""
        deployment = target.deployment
        return ledger_row(
            id=uuid.uuid4().hex,
            created_at=datetime.now(UTC),
            team=job.team,
            project=job.project,
            endpoint="chat",
            requested_model=deployment.name,
            deployment=deployment.name,
            tier=deployment.tier.value,
            provider=deployment.provider,
            policy=job.policy,
            policy_version=job.policy_version,
            route_reason=f"{cost_class} for {job.request_id} ({job.deployment})",
            complexity_score=None,  # not a routed request: policy dry-runs must not replay it
            status_code=status,
            error_class=error_class,
            attempts=attempts,
            **token_columns(usage),
            cost_micros=cost,
            latency_ms=(time.perf_counter() - started) * 1000,
            cost_class=cost_class,
            parent_request_id=job.request_id,
        )

    async def _store_grade(
        self, job: Job, grade: float, detail: dict[str, Any], cost: int, reference_cost: int
    ) -> None:
        settings = job.settings
        row = {
            "request_id": job.request_id,
            "created_at": datetime.now(UTC),
            "team": job.team,
            "project": job.project,
            "policy": job.policy,
            "policy_version": job.policy_version,
            "tier": job.tier,
            "deployment": job.deployment,
            "reference_deployment": settings.reference,
            "complexity_score": job.score,
            "task_cluster": task_cluster(job.body.get("messages") or [], job.body.get("tools")),
            "method": settings.grader,
            "grade": round(grade, 6),
            "passed": grade >= settings.pass_grade,
            "cost_micros": cost,
            "served_cost_micros": job.served_cost_micros,
            "reference_cost_micros": reference_cost,
            "detail": detail,
        }
        async with self.engine.begin() as conn:
            await conn.execute(insert(ShadowGrade), [row])
