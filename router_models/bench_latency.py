"""Scoring latency of the shipped router on one CPU core, feature extraction included.

    python -m router_models.bench_latency [--iterations 2000] [--json OUT]

Requests are single user messages of exactly 50, 500 and 2,000 tokens (o200k), cut from real
Chatbot Arena prompts when ../shared/data is present (else from a fixed mixed prose/code text),
plus a 2,000-token multi-turn conversation with a system prompt and tools. Each request text is
distinct per iteration (rotated start offset) so no cache can help. Wall-clock percentiles include
preemption by other processes on a shared machine; thread CPU time is the scorer's own cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from gateway.routing import features as F
from gateway.routing.scorer import Scorer
from router_models import data as D

FALLBACK_TEXT = (
    "Explain how a write-ahead log gives a database atomic commits, then implement a tiny one.\n"
    "```python\ndef append(log, record):\n    log.write(encode(record))\n    log.flush(); os.fsync(log)\n```\n"
    "Compare it with shadow paging; at most 300 words, and prove that recovery is idempotent. "
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_orders",
            "description": "Search a customer's orders by date range and status.",
            "parameters": {"type": "object", "properties": {"since": {}, "until": {}, "status": {}}},
        },
    }
]


def corpus() -> str:
    if D.router_data_available():
        return "\n\n".join(D.load(sources=("arena",)).prompts)
    return FALLBACK_TEXT * 400


def token_windows(text: str, n_tokens: int, count: int) -> list[str]:
    """``count`` distinct texts of exactly ``n_tokens`` tokens, taken at rotating offsets."""
    encoding = F.encoding()
    tokens = encoding.encode_ordinary(text)
    step = max(1, (len(tokens) - n_tokens) // count)
    return [encoding.decode(tokens[i * step : i * step + n_tokens]) for i in range(count)]


def measure(scorer: Scorer, requests: list[tuple[list[dict], list | None]]) -> dict[str, float]:
    for messages, tools in requests[:50]:
        scorer.score(messages, tools)
    wall, cpu = [], []
    for messages, tools in requests:
        start_cpu, start = time.thread_time_ns(), time.perf_counter_ns()
        scorer.score(messages, tools)
        wall.append((time.perf_counter_ns() - start) / 1e6)
        cpu.append((time.thread_time_ns() - start_cpu) / 1e6)
    return {
        "p50_ms": float(np.percentile(wall, 50)),
        "p99_ms": float(np.percentile(wall, 99)),
        "mean_ms": statistics.fmean(wall),
        "cpu_p50_ms": float(np.percentile(cpu, 50)),
        "cpu_p99_ms": float(np.percentile(cpu, 99)),
        "n": len(wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    scorer = Scorer.load()
    text = corpus()
    results = {}
    for n_tokens in (50, 500, 2000):
        windows = token_windows(text, n_tokens, args.iterations)
        results[f"user_{n_tokens}_tokens"] = measure(scorer, [(F.prompt_messages(w), None) for w in windows])
    conversations = []
    for w in token_windows(text, 2000, args.iterations):
        quarter = len(w) // 4
        messages = [
            {"role": "system", "content": w[:quarter]},
            {"role": "user", "content": w[quarter : 2 * quarter]},
            {"role": "assistant", "content": w[2 * quarter : 3 * quarter]},
            {"role": "user", "content": [{"type": "text", "text": w[3 * quarter :]}]},
        ]
        conversations.append((messages, TOOLS))
    results["conversation_2000_tokens_tools"] = measure(scorer, conversations)

    print(
        f"artifact v{scorer.version}, one core, {args.iterations} requests per case, load {os.getloadavg()}"
    )
    print("wall clock (what a request sees) and thread CPU time (the scorer's own cost, no preemption)")
    for case, r in results.items():
        print(
            f"{case:32s} wall p50 {r['p50_ms']:.3f} p99 {r['p99_ms']:.3f} ms | "
            f"cpu p50 {r['cpu_p50_ms']:.3f} p99 {r['cpu_p99_ms']:.3f} ms"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"artifact_version": scorer.version, "results": results}, out, indent=2)


if __name__ == "__main__":
    main()
