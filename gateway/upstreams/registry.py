"""Deployments by name, each with its upstream client and price, plus retries and fallbacks."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from gateway.ledger.pricing import Price, context_window, resolve_price
from gateway.observability import metrics
from gateway.routing.policy import DeploymentFacts
from gateway.settings import Deployment, Settings
from gateway.upstreams.base import Upstream
from gateway.upstreams.errors import UpstreamError
from gateway.upstreams.litellm_bridge import LiteLLMUpstream
from gateway.upstreams.openai_wire import OpenAIWireUpstream
from gateway.upstreams.selfhosted import SelfHostedUpstream
from selfhost import catalogue
from selfhost.pool import LoadLimits

log = logging.getLogger(__name__)

#: Providers whose API is OpenAI's own wire protocol: relayed byte for byte, no translation.
OPENAI_WIRE_PROVIDERS = frozenset({"openai", "vllm", "hosted_vllm", "openai_compatible"})

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    deployment: Deployment
    upstream: Upstream
    price: Price
    pricer: Callable[[], Price] | None = None  # a price that moves (the self-hosted cost model)

    def current_price(self) -> Price:
        return self.pricer() if self.pricer else self.price


@dataclass
class Attempts:
    """How a request was served: which deployment, after how many tries, whether by fallback."""

    target: Target
    count: int
    fell_back: bool


def _catalogue_entries(settings: Settings) -> dict[str, catalogue.Deployment]:
    if settings.selfhost_catalogue is None:
        return {}
    return {entry.name: entry for entry in catalogue.load(settings.selfhost_catalogue).deployments}


def deployment_facts(settings: Settings) -> dict[str, DeploymentFacts]:
    """Tier, price and context window of every configured deployment (what routing needs)."""
    return {
        d.name: DeploymentFacts(d.name, d.tier, resolve_price(d), context_window(d))
        for d in settings.deployments
    }


class UpstreamRegistry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=2000,
                limit_per_host=1000,
                ttl_dns_cache=300,
                keepalive_timeout=settings.upstream_keepalive_s,
            ),
            json_serialize=None,  # we always send pre-serialised bytes
            auto_decompress=True,
        )
        self.targets: dict[str, Target] = {}
        self.facts = deployment_facts(settings)
        self.selfhosted: dict[str, SelfHostedUpstream] = {}
        catalogue_entries = _catalogue_entries(settings)
        for deployment in settings.deployments:
            upstream: Upstream
            pricer = None
            if deployment.name in catalogue_entries:
                upstream = SelfHostedUpstream(catalogue_entries[deployment.name], deployment, self._session)
                self.selfhosted[deployment.name] = upstream
                pricer = upstream.price
            elif deployment.provider in OPENAI_WIRE_PROVIDERS:
                upstream = OpenAIWireUpstream(deployment, self._session)
            else:
                upstream = LiteLLMUpstream(deployment)
            self.targets[deployment.name] = Target(
                deployment, upstream, self.facts[deployment.name].price, pricer
            )

    async def start(self) -> None:
        """Begin health and load probing of the self-hosted replicas."""
        for upstream in self.selfhosted.values():
            await upstream.start()

    def saturated(self, name: str, limits: LoadLimits) -> bool:
        """Whether a self-hosted deployment has no replica within `limits` (spill-over)."""
        upstream = self.selfhosted.get(name)
        return upstream is not None and upstream.saturated(limits)

    def get(self, name: str) -> Target | None:
        return self.targets.get(name)

    def chain(self, name: str) -> list[Target]:
        """The deployment followed by its fallbacks, in order, each once."""
        first = self.targets[name]
        seen = {name}
        chain = [first]
        for fallback in first.deployment.fallbacks:
            if fallback not in seen:
                seen.add(fallback)
                chain.append(self.targets[fallback])
        return chain

    async def call(
        self, chain: list[Target], attempt: Callable[[Target], Awaitable[T]]
    ) -> tuple[T, Attempts]:
        """Run `attempt` on each target in turn, retrying retryable failures with backoff.

        Non-retryable failures (the upstream rejected the request itself) end the call at once:
        another deployment would reject it too. Raises the last UpstreamError when all fail.
        """
        tries = 0
        last: UpstreamError | None = None
        for position, target in enumerate(chain):
            name = target.deployment.name
            for retry in range(target.deployment.max_retries + 1):
                tries += 1
                try:
                    result = await attempt(target)
                except UpstreamError as exc:
                    metrics.UPSTREAM_ERRORS.labels(name, exc.error_class).inc()
                    last = exc
                    exc.attempts = tries
                    if not exc.retryable:
                        raise
                    if retry < target.deployment.max_retries:
                        metrics.RETRIES.labels(name).inc()
                        await asyncio.sleep(self._backoff(retry, exc.retry_after))
                    continue
                if position:
                    metrics.FALLBACKS.labels(name).inc()
                return result, Attempts(target, tries, fell_back=position > 0)
            log.warning(
                "upstream %s failed after %d attempts (%s)", name, retry + 1, last and last.error_class
            )
        assert last is not None
        raise last

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; an upstream's Retry-After wins, within the cap."""
        cap = self._settings.retry_backoff_max_s
        if retry_after is not None:
            return min(retry_after, cap)
        return random.uniform(0, min(cap, self._settings.retry_backoff_s * 2**retry))

    async def aclose(self) -> None:
        for upstream in self.selfhosted.values():
            await upstream.aclose()
        await self._session.close()


__all__ = ["Attempts", "Target", "UpstreamRegistry"]
