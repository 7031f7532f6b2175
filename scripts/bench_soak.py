"""Soak: a bounded mixed workload at a fixed rate; error rate, overhead percentiles, ledger completeness and
the gateway's memory over time.

    python scripts/bench_soak.py [--minutes 10] [--rate 40]

The gateway runs as its own process pinned to core 0 (SQLite ledger, Redis 8 response cache with the
semantic layer on, one routing policy with an economy and a frontier tier); the simulated upstream (20 ms
to first token, 2 ms between tokens) and this load generator share core 1. The load is open-loop: a
request starts every 1/rate seconds whatever the previous ones are doing, so a slow gateway shows up as
latency, not as a politely reduced load. The mix:

- half streamed (with `stream_options.include_usage`), half JSON;
- 30% repeat one of 50 earlier questions (exact cache hits), 70% new questions;
- `model="auto"`: short chit-chat and long multi-step technical prompts, so the classifier sends traffic to
  both tiers (the ledger's tier counts are printed).

Overhead is the gateway's own `x-tiergate-overhead-ms` (time in the gateway outside the upstream call).
Memory is the gateway's RSS every 5 s; the trend is a least-squares slope over everything after the first
minute (warm-up), in MB per minute. At the end the ledger must hold one row per request sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.benchlib import routed_gateway
from tests.support.redis8 import Redis8Server

EASY = ["hi there", "thanks!", "what's up?", "say hello in French", "good morning", "tell me a joke"]
HARD = [
    "Prove that the sum of the first n odd numbers is n^2, then generalise the argument to k-th powers and "
    "write a Python function with tests that checks the identity for n up to 10^6 efficiently.",
    "Design a distributed rate limiter for a multi-region API gateway. Compare token bucket and sliding "
    "window log, analyse consistency under partition, and give Redis Lua code with failure handling.",
    "Given a weighted directed graph with negative edges but no negative cycles, derive Johnson's algorithm, "
    "prove its correctness and complexity, and implement it in C++ with a benchmark harness.",
]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def question(rng: random.Random, n: int) -> str:
    base = rng.choice(HARD if rng.random() < 0.4 else EASY)
    return f"{base} (#{n})"


async def one(session: aiohttp.ClientSession, url: str, key: str, body: dict, results: list) -> None:
    started = time.perf_counter()
    outcome = {"stream": body.get("stream", False)}
    try:
        async with session.post(url, json=body, headers={"authorization": f"Bearer {key}"}) as response:
            await response.read()
            outcome.update(
                status=response.status,
                overhead_ms=float(response.headers.get("x-tiergate-overhead-ms", "nan")),
                cache=response.headers.get("x-tiergate-cache"),
            )
    except Exception as exc:  # counted as an error, never fatal to the soak
        outcome.update(status=0, error=type(exc).__name__)
    outcome["latency_ms"] = (time.perf_counter() - started) * 1000
    results.append(outcome)


async def drive(
    url: str, key: str, rate: float, seconds: float, gateway_pid: int, memory: list
) -> list[dict]:
    rng = random.Random(7)
    results: list[dict] = []
    asked: list[str] = []
    tasks = set()
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        t0 = time.perf_counter()
        next_sample = 0.0
        for n in range(int(rate * seconds)):
            due = t0 + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elapsed = time.perf_counter() - t0
            if elapsed >= next_sample:
                memory.append((elapsed, rss_mb(gateway_pid)))
                next_sample += 5
            if asked and rng.random() < 0.3:
                text = rng.choice(asked[-50:])
            else:
                text = question(rng, n)
                asked.append(text)
            body = {"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 32}
            if rng.random() < 0.5:
                body.update(stream=True, stream_options={"include_usage": True})
            task = asyncio.create_task(one(session, url, key, body, results))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        memory.append((time.perf_counter() - t0, rss_mb(gateway_pid)))
    return results


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=40, help="Requests per second (open loop).")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tiergate-soak-"))
    redis = Redis8Server().start()
    simulator = ["--ttft-ms", "20", "--itl-ms", "2", "--min-tokens", "8", "--max-tokens", "32"]
    bands = [{"from": 0, "to": 0.35, "deployment": "cheap"}, {"from": 0.35, "to": 1, "deployment": "strong"}]
    try:
        with routed_gateway(workdir, redis.url, simulator, bands) as stack:
            memory: list[tuple[float, float]] = []
            url = f"{stack.gateway_url}/v1/chat/completions"
            results = asyncio.run(
                drive(url, stack.key, args.rate, args.minutes * 60, stack.gateway.pid, memory)
            )
            time.sleep(3)  # the ledger writer flushes every second
            with sqlite3.connect(stack.ledger) as db:
                ledger_rows = db.execute("select count(*) from ledger_entries").fetchone()[0]
                tiers = dict(
                    db.execute("select coalesce(tier, '-'), count(*) from ledger_entries group by 1")
                )
        report(results, memory, ledger_rows, tiers, args)
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def report(
    results: list[dict], memory: list, ledger_rows: int, tiers: dict, args: argparse.Namespace
) -> None:
    errors = [r for r in results if r["status"] != 200]
    overhead = [
        r["overhead_ms"] for r in results if r["status"] == 200 and r["overhead_ms"] == r["overhead_ms"]
    ]
    latency = [r["latency_ms"] for r in results if r["status"] == 200]
    caches = Counter(r.get("cache") for r in results)
    times = np.array([t for t, _ in memory])
    rss = np.array([m for _, m in memory])
    warm = times >= 60
    slope = float(np.polyfit(times[warm] / 60, rss[warm], 1)[0]) if warm.sum() >= 3 else float("nan")
    first = rss[warm][: max(1, len(rss[warm]) // 10)].mean() if warm.any() else float("nan")
    last = rss[warm][-max(1, len(rss[warm]) // 10) :].mean() if warm.any() else float("nan")
    summary = {
        "minutes": args.minutes,
        "rate": args.rate,
        "requests": len(results),
        "errors": len(errors),
        "error_rate": len(errors) / max(len(results), 1),
        "error_kinds": dict(Counter(r.get("error") or r["status"] for r in errors)),
        "ledger_rows": ledger_rows,
        "ledger_complete": ledger_rows == len(results),
        "tiers": tiers,
        "cache": dict(caches),
        "overhead_ms": {q: round(percentile(overhead, q), 3) for q in (50, 95, 99)},
        "latency_ms": {q: round(percentile(latency, q), 2) for q in (50, 95, 99)},
        "rss_mb": {
            "start": round(float(rss[0]), 1),
            "after_warmup": round(float(first), 1),
            "end": round(float(last), 1),
            "max": round(float(rss.max()), 1),
        },
        "rss_slope_mb_per_min_after_warmup": round(slope, 3),
        "rss_samples": [(round(t), round(m, 1)) for t, m in memory],
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rss_samples"}, indent=2))
    print(
        "\nRSS (MB) per minute:",
        [round(float(rss[(times >= m * 60)][0]), 1) for m in range(int(times.max() // 60) + 1)],
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
