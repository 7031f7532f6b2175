"""Read a vLLM replica's health and load from its ``/health`` and ``/metrics`` endpoints.

vLLM's metric names changed across versions (v0 ``vllm:gpu_cache_usage_perc`` became v1
``vllm:kv_cache_usage_perc``); every field below lists the names it accepts, newest first. Values are summed
over label sets (one per engine / model), so a data-parallel replica reports its total.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

RUNNING = ("vllm:num_requests_running",)
WAITING = ("vllm:num_requests_waiting",)
KV_CACHE_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm:cpu_cache_usage_perc")
PROMPT_TOKENS = ("vllm:prompt_tokens_total",)
GENERATION_TOKENS = ("vllm:generation_tokens_total",)
CACHED_PROMPT_TOKENS = ("vllm:prompt_tokens_cached_total",)
PREFIX_CACHE_QUERIES = ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")
PREFIX_CACHE_HITS = ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")
SPEC_DRAFT_TOKENS = ("vllm:spec_decode_num_draft_tokens_total",)
SPEC_ACCEPTED_TOKENS = ("vllm:spec_decode_num_accepted_tokens_total",)
TTFT = ("vllm:time_to_first_token_seconds",)


@dataclass(frozen=True)
class Histogram:
    """Cumulative Prometheus histogram: ``buckets`` are (upper bound, count of observations <= bound)."""

    buckets: tuple[tuple[float, float], ...] = ()

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0

    def quantile(self, q: float) -> float | None:
        """Linear interpolation inside the bucket, like PromQL ``histogram_quantile``; None when empty."""
        if self.count <= 0:
            return None
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        for bound, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower_bound  # above the highest finite bucket: its bound is the best estimate
                in_bucket = cumulative - lower_count
                return lower_bound + (bound - lower_bound) * ((rank - lower_count) / in_bucket)
            lower_bound, lower_count = bound, cumulative
        return lower_bound

    def since(self, earlier: Histogram) -> Histogram:
        """Observations made after ``earlier`` was scraped (counters only grow, unless the server restarted)."""
        before = dict(earlier.buckets)
        delta = tuple((b, c - before.get(b, 0.0)) for b, c in self.buckets)
        return self if any(c < 0 for _, c in delta) else Histogram(delta)


@dataclass(frozen=True)
class ReplicaLoad:
    healthy: bool
    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0  # fraction 0..1
    prompt_tokens: int = 0
    generation_tokens: int = 0
    cached_prompt_tokens: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    spec_draft_tokens: int = 0
    spec_accepted_tokens: int = 0
    ttft: Histogram = field(default_factory=Histogram)
    scraped_at: float = field(default_factory=time.monotonic)
    error: str | None = None
    slow: bool = False  # no answer within the deadline: busy (its queue unknown), not necessarily down

    @property
    def ttft_p50(self) -> float | None:
        return self.ttft.quantile(0.50)

    @property
    def ttft_p95(self) -> float | None:
        return self.ttft.quantile(0.95)


def parse_metrics(text: str, *, healthy: bool = True) -> ReplicaLoad:
    samples: dict[str, float] = defaultdict(float)
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("vllm:"):
            continue
        for s in family.samples:
            if s.name.endswith("_bucket"):
                buckets[s.name.removesuffix("_bucket")][float(s.labels["le"])] += s.value
            else:
                samples[s.name] += s.value

    def first(names: tuple[str, ...]) -> float:
        return next((samples[n] for n in names if n in samples), 0.0)

    def histogram(names: tuple[str, ...]) -> Histogram:
        found = next((buckets[n] for n in names if n in buckets), {})
        return Histogram(tuple(sorted(found.items())))

    return ReplicaLoad(
        healthy=healthy,
        running=int(first(RUNNING)),
        waiting=int(first(WAITING)),
        kv_cache_usage=first(KV_CACHE_USAGE),
        prompt_tokens=int(first(PROMPT_TOKENS)),
        generation_tokens=int(first(GENERATION_TOKENS)),
        cached_prompt_tokens=int(first(CACHED_PROMPT_TOKENS)),
        prefix_cache_queries=int(first(PREFIX_CACHE_QUERIES)),
        prefix_cache_hits=int(first(PREFIX_CACHE_HITS)),
        spec_draft_tokens=int(first(SPEC_DRAFT_TOKENS)),
        spec_accepted_tokens=int(first(SPEC_ACCEPTED_TOKENS)),
        ttft=histogram(TTFT),
    )


async def probe(client: httpx.AsyncClient, base_url: str, request_timeout: float = 2.0) -> ReplicaLoad:
    """Scrape one replica. Never raises for replica trouble: returns ``healthy=False`` with the reason."""
    try:
        # httpx's timeout bounds each read, not the whole answer: a server trickling its response (vLLM
        # on a saturated CPU answers /metrics only when its batch is done) needs a deadline of our own.
        async with asyncio.timeout(request_timeout):
            health, metrics = await asyncio.gather(
                client.get(f"{base_url}/health", timeout=request_timeout),
                client.get(f"{base_url}/metrics", timeout=request_timeout),
            )
    except TimeoutError:
        return ReplicaLoad(healthy=False, slow=True, error=f"no answer within {request_timeout:g} s")
    except httpx.HTTPError as exc:
        return ReplicaLoad(healthy=False, error=f"{type(exc).__name__}: {exc}")
    if health.status_code != 200 or metrics.status_code != 200:
        return ReplicaLoad(
            healthy=False, error=f"/health {health.status_code}, /metrics {metrics.status_code}"
        )
    try:  # ~50 kB of text: parse off the event loop
        return await asyncio.to_thread(parse_metrics, metrics.text)
    except ValueError as exc:
        return ReplicaLoad(healthy=False, error=f"unreadable /metrics: {exc}")
