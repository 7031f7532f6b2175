"""Policy evaluation cost per request: resolve the caller's policy and decide the route.

    taskset -c 0 python scripts/bench_policy.py [--requests 200000]

Uses the example policy (`examples/policy.yaml`) and deployments (`examples/tiergate.yaml`) with
every constraint enabled (tags, price ceiling, context length, spill-over check). Reports p50/p99
per call from individually timed calls, and the mean from one tight loop.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import yaml

from gateway.routing.policy import Router, parse_policy
from gateway.routing.store import PolicyBook
from gateway.settings import load_settings
from gateway.upstreams.registry import deployment_facts

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    facts = deployment_facts(load_settings(ROOT / "examples/tiergate.yaml"))
    router = Router(parse_policy(yaml.safe_load((ROOT / "examples/policy.yaml").read_text())), 1, facts)
    book = PolicyBook({"balanced": router}, {(f"team{i}", "*"): "balanced" for i in range(200)})
    rng = random.Random(0)
    calls = [
        (f"team{rng.randrange(200)}", rng.random(), rng.randrange(50, 4000)) for _ in range(args.requests)
    ]
    tags = ("team-tag",)

    def saturated(name: str) -> bool:
        return False

    samples = []
    for team, score, tokens in calls:
        start = time.perf_counter_ns()
        book.for_caller(team, "proj").decide(score, tags=tags, prompt_tokens=tokens, saturated=saturated)
        samples.append(time.perf_counter_ns() - start)
    samples.sort()
    start = time.perf_counter()
    for team, score, tokens in calls:
        book.for_caller(team, "proj").decide(score, tags=tags, prompt_tokens=tokens, saturated=saturated)
    mean_us = (time.perf_counter() - start) / len(calls) * 1e6
    p50 = samples[len(samples) // 2] / 1000
    p99 = samples[int(len(samples) * 0.99)] / 1000
    print(
        f"policy evaluation over {len(calls)} requests: p50 {p50:.1f} µs, p99 {p99:.1f} µs, "
        f"mean {mean_us:.1f} µs (stdev {statistics.pstdev(samples) / 1000:.1f} µs)"
    )


if __name__ == "__main__":
    main()
