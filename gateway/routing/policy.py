"""Routing policy documents: the schema admins edit, its validation, and the routing decision.

A policy maps complexity-score bands to deployments across tiers, adds ordered fallbacks,
self-hosted spill-over limits, constraints (on-prem tags, price ceiling, context length), the
savings baseline and cache settings. `decide()` turns (policy, score, request facts) into an
ordered chain of deployments plus the reason, in microseconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.cache.policy import CacheSettings as ResponseCacheSettings
from gateway.ledger.pricing import Price
from gateway.settings import Tier
from gateway.upstreams.caching.settings import PromptCacheSettings


class PolicyError(ValueError):
    """A policy that must not be activated; the message says exactly what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Band(_Strict):
    """Requests scoring in [from_score, to_score) go to `deployment` (the last band includes 1.0)."""

    from_score: float = Field(ge=0, le=1, alias="from")
    to_score: float = Field(ge=0, le=1, alias="to")
    deployment: str

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Spillover(_Strict):
    """When every replica of a self-hosted deployment is past these limits, use the next band up."""

    max_waiting: int | None = Field(default=0, ge=0, description="Requests queued per replica.")
    max_kv_cache_usage: float | None = Field(default=0.95, ge=0, le=1)
    max_ttft_p95_ms: float | None = Field(default=None, gt=0)


class Constraints(_Strict):
    on_prem_tags: list[str] = Field(
        default_factory=lambda: ["on-prem-only"],
        description="Requests carrying any of these tags (x-tiergate-tags) never leave the self-hosted tier.",
    )
    max_price_per_mtok: Decimal | None = Field(
        default=None, gt=0, description="Skip deployments whose input or output price exceeds this ($/Mtok)."
    )
    enforce_context_length: bool = Field(
        default=True, description="Skip deployments whose context window is smaller than the request."
    )


class CacheSettings(ResponseCacheSettings):
    """The response cache (exact and semantic layers) and provider prompt caching for this policy."""

    model_config = ConfigDict(extra="forbid")

    semantic: bool = Field(
        default=False,
        description="Serve verified semantic hits. Off by default: the shipped verifier does not yet meet "
        "its 1% wrong-hit target on held-out data (see gateway/cache/VERIFIER.md).",
    )
    prompt: PromptCacheSettings = Field(
        default_factory=PromptCacheSettings,
        description="Provider prompt caching: Anthropic breakpoints, OpenAI prompt_cache_key.",
    )


class DistillationSettings(_Strict):
    """Opt-in capture of answers as fine-tuning data for the self-hosted tier (gateway/distill)."""

    capture: bool = Field(default=False, description="Keep prompt/response pairs answered by `tiers`.")
    tiers: list[Tier] = Field(default_factory=lambda: [Tier.frontier], min_length=1)
    redact: bool = Field(default=True, description="Pass both sides through the redaction hook first.")


class ShadowSettings(_Strict):
    """Shadow quality sampling (gateway/learning): off the request path, a share of the requests this
    policy sent to a cheaper tier is also asked of `reference`, and the served answer is graded
    against the reference answer. Shadow and judge calls are ledgered as their own cost class."""

    enabled: bool = Field(default=False, description="Sample requests served by `tiers` (off by default).")
    share: float = Field(default=0.05, ge=0, le=1, description="Share of eligible requests that is measured.")
    tiers: list[Tier] = Field(
        default_factory=lambda: [Tier.economy, Tier.selfhost],
        min_length=1,
        description="Tiers whose answers are measured (answers from `reference` itself never are).",
    )
    reference: str | None = Field(default=None, description="Deployment whose answer is the yardstick.")
    grader: Literal["similarity", "judge"] = Field(
        default="similarity",
        description="'similarity': lexical cosine of the two answers (no extra call); 'judge': "
        "LLM-as-judge through `judge` with the prompt in gateway/learning/README.md.",
    )
    judge: str | None = Field(default=None, description="Deployment that grades when grader is 'judge'.")
    pass_grade: float = Field(
        default=0.7,
        ge=0,
        le=1,
        description="A grade (0..1) at or above this counts as 'as good as reference'.",
    )
    max_usd_per_day: Decimal = Field(
        default=Decimal("1"), ge=0, description="Spending cap for shadow + judge calls per UTC day."
    )

    @model_validator(mode="after")
    def _deployments_named(self) -> ShadowSettings:
        if self.enabled and not self.reference:
            raise ValueError("shadow sampling needs a reference deployment")
        if self.grader == "judge" and not self.judge:
            raise ValueError("grader 'judge' needs a judge deployment")
        return self


class QualitySettings(_Strict):
    """How quality is measured (shadow sampling) and what recalibration aims for."""

    shadow: ShadowSettings = Field(default_factory=ShadowSettings)
    target_retained: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="`gateway router calibrate --from-ledger`: the share of answers that should be as "
        "good as the reference (quality retained) at the lowest projected cost.",
    )


class PolicySpec(_Strict):
    """The document admins write (YAML or JSON). Versioned; only valid versions can be activated."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    baseline: str | None = Field(default=None, description="Deployment the savings are measured against.")
    bands: list[Band] = Field(min_length=1)
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    spillover: Spillover = Field(default_factory=Spillover)
    constraints: Constraints = Field(default_factory=Constraints)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    distillation: DistillationSettings = Field(default_factory=DistillationSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)

    @field_validator("bands")
    @classmethod
    def _bands_cover_zero_to_one(cls, bands: list[Band]) -> list[Band]:
        ordered = sorted(bands, key=lambda b: (b.from_score, b.to_score))
        for band in ordered:
            if band.to_score <= band.from_score:
                raise ValueError(f"band [{band.from_score}, {band.to_score}) is empty or reversed")
        if ordered[0].from_score != 0:
            raise ValueError(f"gap in bands: scores [0, {ordered[0].from_score}) have no deployment")
        for low, high in itertools.pairwise(ordered):
            if high.from_score > low.to_score:
                raise ValueError(
                    f"gap in bands: scores [{low.to_score}, {high.from_score}) have no deployment"
                )
            if high.from_score < low.to_score:
                raise ValueError(
                    f"overlapping bands: [{low.from_score}, {low.to_score}) and [{high.from_score}, {high.to_score})"
                )
        if ordered[-1].to_score != 1:
            raise ValueError(f"gap in bands: scores [{ordered[-1].to_score}, 1] have no deployment")
        return ordered


def parse_policy(document: Mapping[str, Any]) -> PolicySpec:
    try:
        return PolicySpec.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        raise PolicyError(problems) from None


@dataclass(frozen=True)
class DeploymentFacts:
    """What routing needs to know about a deployment."""

    name: str
    tier: Tier
    price: Price
    max_input_tokens: int | None = None


def check_references(spec: PolicySpec, deployments: Mapping[str, DeploymentFacts]) -> None:
    """Unknown deployments and fallback cycles are errors, reported by name."""
    named = [("bands", b.deployment) for b in spec.bands]
    named += [("fallbacks", source) for source in spec.fallbacks]
    named += [(f"fallbacks.{source}", t) for source, targets in spec.fallbacks.items() for t in targets]
    if spec.baseline:
        named.append(("baseline", spec.baseline))
    shadow = spec.quality.shadow
    named += [
        (f"quality.shadow.{f}", getattr(shadow, f)) for f in ("reference", "judge") if getattr(shadow, f)
    ]
    unknown = [f"{where}: {name!r}" for where, name in named if name not in deployments]
    if unknown:
        raise PolicyError(
            f"unknown deployment(s): {', '.join(unknown)}; known: {', '.join(sorted(deployments))}"
        )
    for source in spec.fallbacks:
        path = _cycle_from(source, spec.fallbacks)
        if path:
            raise PolicyError(f"fallback cycle: {' -> '.join(path)}")


def _cycle_from(start: str, edges: Mapping[str, list[str]]) -> list[str] | None:
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, ()):
            if nxt == start:
                return [*path, nxt]
            if nxt not in path:
                stack.append((nxt, [*path, nxt]))
    return None


@dataclass(frozen=True)
class Decision:
    chain: tuple[str, ...]  # deployment names: the choice, then its fallbacks
    reason: str
    band: int | None = None
    rule: str = "band"  # what decided: band, on_prem, price_ceiling, context, spillover (a metric label)


class Router:
    """A validated policy bound to the deployments it names; immutable, shared across requests."""

    def __init__(self, spec: PolicySpec, version: int, deployments: Mapping[str, DeploymentFacts]) -> None:
        check_references(spec, deployments)
        self.spec, self.version = spec, version
        self._deployments = deployments
        self._bounds = [b.to_score for b in spec.bands]
        self._on_prem_tags = frozenset(spec.constraints.on_prem_tags)
        ceiling = spec.constraints.max_price_per_mtok
        self._too_expensive = frozenset(
            name
            for name in {b.deployment for b in spec.bands}
            if ceiling is not None
            and max(deployments[name].price.input, deployments[name].price.output) > ceiling
        )

    def band_of(self, score: float) -> int:
        for index, bound in enumerate(self._bounds):
            if score < bound:
                return index
        return len(self._bounds) - 1

    def decide(
        self,
        score: float,
        *,
        tags: Iterable[str] = (),
        prompt_tokens: int | None = None,
        saturated: Callable[[str], bool] | None = None,
    ) -> Decision:
        """Band by score, then constraints (tags, price, context), then self-hosted spill-over."""
        bands = self.spec.bands
        start = self.band_of(score)
        notes: list[str] = []
        rule = "band"
        on_prem = bool(self._on_prem_tags.intersection(tags))
        # Candidates: the band's deployment, then the bands above it (stronger), then below.
        order = list(range(start, len(bands))) + list(range(start - 1, -1, -1))
        for index in order:
            name = bands[index].deployment
            facts = self._deployments[name]
            if on_prem and facts.tier != Tier.selfhost:
                continue
            if name in self._too_expensive:
                notes.append(f"{name} over the price ceiling")
                rule = "price_ceiling" if rule == "band" else rule
                continue
            if (
                self.spec.constraints.enforce_context_length
                and prompt_tokens is not None
                and facts.max_input_tokens is not None
                and prompt_tokens > facts.max_input_tokens
            ):
                notes.append(f"{name} context {facts.max_input_tokens} < {prompt_tokens} tokens")
                rule = "context" if rule == "band" else rule
                continue
            if facts.tier == Tier.selfhost and saturated is not None and saturated(name) and not on_prem:
                notes.append(f"spill-over: {name} past its load limits")
                rule = "spillover" if rule == "band" else rule
                continue
            band = bands[index]
            reason = f"policy {self.spec.name} v{self.version}: score {score:.3f} in [{band.from_score}, {band.to_score})"
            if index != start:
                reason += f", moved from {bands[start].deployment}"
            if on_prem:
                reason += ", on-prem tag"
            if notes:
                reason += " (" + "; ".join(notes) + ")"
            return Decision(
                self._chain(name, on_prem), f"{reason} -> {name}", index, "on_prem" if on_prem else rule
            )
        if on_prem:
            raise PolicyError(
                f"policy {self.spec.name}: no self-hosted deployment can take an on-prem-only request"
            )
        raise PolicyError(
            f"policy {self.spec.name}: no deployment satisfies the constraints ({'; '.join(notes)})"
        )

    def _chain(self, first: str, on_prem: bool) -> tuple[str, ...]:
        chain = [first]
        for name in self.spec.fallbacks.get(first, ()):
            if name not in chain and not (on_prem and self._deployments[name].tier != Tier.selfhost):
                chain.append(name)
        return tuple(chain)

    def facts(self, name: str) -> DeploymentFacts:
        """Tier, price and context window of a deployment this policy knows."""
        return self._deployments[name]

    def deployments(self) -> set[str]:
        names = {b.deployment for b in self.spec.bands}
        return names | {t for targets in self.spec.fallbacks.values() for t in targets}
