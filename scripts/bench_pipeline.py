"""Full-pipeline overhead and throughput per core, side by side with the direct upstream and the LiteLLM
proxy, all against the same simulated upstream.

    python scripts/bench_pipeline.py [--duration 10] [--concurrency 1 16 64] [--no-litellm] [--exact-only]
                                     [--prompts near-miss|questions]

Three targets, measured one after the other in one run, each server pinned to core 0 (one worker) while
the simulator and the load generator (`wrk`, C) share core 1:

- **direct**: wrk straight at the simulator (the floor);
- **tiergate pipeline**: `model="auto"` through a routing policy, so every request pays authentication,
  limits, the exact-cache GET, an embedding plus a Redis 8 VSIM semantic lookup that misses, the
  complexity classifier, the policy decision, the upstream call, the ledger row (SQLite) and the cache
  store; every prompt is distinct, so nothing is answered from the cache — the ledger's cache outcomes
  are printed to prove it. Two kinds of prompts (`--prompts`):
  - `near-miss` (default, the worst case for a miss): 12 random words from a 40-word vocabulary, so every
    prompt has close neighbours in the cache and every lookup pays the verifier on them;
  - `questions`: real user questions (the ~64,000 distinct Quora questions in `../shared/data/cache/`), each
    asked once by the gateway cells, in a fixed shuffled order: misses as real traffic has them (a paraphrase
    that the verifier serves is counted as a hit in the cell's cache counters);
- **tiergate explicit**: the same gateway and key with `model="cheap"` (a deployment name: no classifier
  or routing decision; the caller's policy still sets the cache, so the same exact and semantic lookups and
  store; ledger on);
- **litellm proxy**: `litellm --config` (its own venv, `litellm[proxy]` at the version the gateway pins),
  one worker, no database, routing the same model name to the same simulator.

Added latency = target percentile - direct percentile, at the same concurrency.

Each gateway cell also reports the cache's own counters over its measured run (`/metrics`): lookups by
outcome and backend errors. A cell with cache errors ran partly without the cache (each error turns the
cache off for its cool-down), so it measured a cheaper path than the one named; the table flags it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.bench_overhead import cpu_seconds, free_port, wait_http, wrk_run
from scripts.benchlib import ENV, routed_gateway, start, stop
from tests.support.redis8 import Redis8Server

LITELLM_VENV = Path(os.environ.get("TIERGATE_LITELLM_VENV", Path.home() / ".cache/tiergate/litellm-proxy"))
LITELLM_SPEC = "litellm[proxy]==1.103.7"

# Every request a new question: 12 random words of 40 (40^12 prompts), so neither the exact nor the semantic
# layer can hit. Every neighbour the search finds goes to the verifier's trees: no number in the prompt (a
# request counter trips the numbers veto on every neighbour) and no directed connector ("X relates to Y"
# trips the swapped-direction veto on half of them), which would skip the work this worst case must pay.
DISTINCT_PROMPTS_LUA = """
local words = {{"river","ledger","quantum","violin","harbor","tariff","enzyme","glacier","sonnet","pixel",
  "mortgage","falcon","cipher","orchard","voltage","saffron","tundra","lattice","pigment","comet",
  "statute","walnut","reactor","mosaic","canyon","protein","ballot","turbine","lantern","parsec",
  "granite","sparrow","invoice","nebula","compiler","tapestry","monsoon","alloy","fresco","kernel"}}
math.randomseed({seed})
request = function()
  local q = {{}}
  for i = 1, 12 do q[i] = words[math.random(#words)] end
  local body = string.format(
    '{{"model":"{model}","messages":[{{"role":"user","content":"Explain the relation between %s and %s."}}],'
    .. '"max_tokens":16,"stream":{stream}}}', table.concat(q, " ", 1, 6), table.concat(q, " ", 7, 12))
  return wrk.format("POST", nil, {{["Content-Type"]="application/json",["Authorization"]="Bearer {key}"}}, body)
end
"""

QUESTIONS_LUA = """
local prompts = {{}}
for line in io.lines("{path}") do prompts[#prompts + 1] = line end
local counter = {start}
request = function()
  counter = counter + 1
  local body = '{{"model":"{model}","messages":[{{"role":"user","content":' .. prompts[counter % #prompts + 1]
    .. '}}],"max_tokens":16,"stream":{stream}}}'
  return wrk.format("POST", nil, {{["Content-Type"]="application/json",["Authorization"]="Bearer {key}"}}, body)
end
"""


class NearMisses:
    """Random-word prompts, a new seed per run."""

    def script(self, model: str, key: str, stream: bool) -> str:
        seed = time.time_ns() % 2**31
        return DISTINCT_PROMPTS_LUA.format(seed=seed, model=model, key=key, stream=str(stream).lower())

    def used(self, requests: int) -> None:
        pass


class Questions:
    """Real questions from ``../shared/data/cache/``, shuffled once; each gateway run starts where the last
    one stopped (``used``), so the gateway is never asked a question twice."""

    def __init__(self, workdir: Path) -> None:
        from gateway.cache.verifier_training import DATA_FILES, data_dir, load_pairs

        pairs = load_pairs([data_dir() / "cache" / name for name in DATA_FILES])
        ordered = sorted({t.strip() for t in pairs.a + pairs.b if t.strip()})
        random.Random(20261122).shuffle(ordered)
        self.count, self.cursor = len(ordered), 0
        self.path = workdir / "questions.txt"
        self.path.write_text("".join(json.dumps(t) + "\n" for t in ordered))  # one JSON string per line

    def script(self, model: str, key: str, stream: bool) -> str:
        return QUESTIONS_LUA.format(
            path=self.path, start=self.cursor, model=model, key=key, stream=str(stream).lower()
        )

    def used(self, requests: int) -> None:
        self.cursor += requests
        if self.cursor >= self.count:
            print(
                f"warning: {self.cursor} questions asked, {self.count} distinct: some were asked again",
                flush=True,
            )


def ensure_litellm() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin/pip"), "install", "-q", LITELLM_SPEC], check=True)
    return binary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--no-litellm", action="store_true", help="Skip the LiteLLM proxy comparison.")
    parser.add_argument(
        "--exact-only",
        action="store_true",
        help="The policy's cache without its semantic layer (exact matches only): no embedding, VSIM or verifier.",
    )
    parser.add_argument(
        "--prompts", choices=["near-miss", "questions"], default="near-miss",
        help="near-miss: random words, every lookup verifies close neighbours (the default, the worst case); "
        "questions: real questions from ../shared/data/cache, each asked once.",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is required: apt-get install wrk")
    litellm = None if args.no_litellm else ensure_litellm()

    workdir = Path(tempfile.mkdtemp(prefix="tiergate-bench-pipeline-"))
    prompts = Questions(workdir) if args.prompts == "questions" else NearMisses()
    redis = Redis8Server().start()
    procs: list[subprocess.Popen] = []
    bands = [{"from": 0, "to": 0.5, "deployment": "cheap"}, {"from": 0.5, "to": 1, "deployment": "strong"}]
    try:
        simulator = ["--min-tokens", "16", "--max-tokens", "16"]
        with routed_gateway(workdir, redis.url, simulator, bands, semantic=not args.exact_only) as stack:
            chat = "/v1/chat/completions"
            targets = {
                "direct": (stack.simulator_url + chat, "sk-bench", "gpt-4o-mini", None),
                "tiergate pipeline": (stack.gateway_url + chat, stack.key, "auto", stack.gateway),
                "tiergate explicit": (stack.gateway_url + chat, stack.key, "cheap", stack.gateway),
            }
            gateway_metrics = stack.gateway_url + "/metrics"
            if litellm:
                proxy, url = start_litellm(litellm, workdir, stack.simulator_url)
                procs.append(proxy)
                targets["litellm proxy"] = (url + chat, "sk-litellm-bench", "bench", proxy)
            results = [measure(targets, stream, c, args.duration, workdir, gateway_metrics, prompts)
                       for stream in (False, True) for c in args.concurrency]  # fmt: skip
            time.sleep(2)  # the ledger writer flushes every second
            with sqlite3.connect(stack.ledger) as db:
                outcomes = dict(db.execute("select cache_outcome, count(*) from ledger_entries group by 1"))
                tiers = dict(db.execute("select tier, count(*) from ledger_entries group by 1"))
        print(f"\ngateway ledger: cache outcomes {outcomes}, tiers {tiers}")
        print_table(results, list(targets))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        stop(procs)
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def start_litellm(binary: Path, workdir: Path, simulator_url: str) -> tuple[subprocess.Popen, str]:
    """The LiteLLM proxy on core 0, one worker, no database, `bench` -> the simulator's gpt-4o-mini."""
    port = free_port()
    config = workdir / "litellm.yaml"
    model = {"model": "openai/gpt-4o-mini", "api_base": f"{simulator_url}/v1", "api_key": "sk-bench"}
    config.write_text(
        yaml.safe_dump(
            {
                "model_list": [{"model_name": "bench", "litellm_params": model}],
                "general_settings": {"master_key": "sk-litellm-bench"},
                "litellm_settings": {"telemetry": False},
            }
        )
    )
    env = {**ENV, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    proxy = start(
        [str(binary), "--config", str(config), "--port", str(port), "--num_workers", "1"],
        workdir / "litellm.log", core=0, env=env,
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
    return proxy, f"http://127.0.0.1:{port}"


def cache_counters(metrics_url: str) -> dict[str, float]:
    """The gateway's cache lookups by outcome and backend errors, as `lookup:<outcome>` / `errors`."""
    counters: dict[str, float] = {"errors": 0.0}
    for family in text_string_to_metric_families(httpx.get(metrics_url, timeout=30).text):
        for sample in family.samples:
            if sample.name == "tiergate_cache_lookups_total":
                counters[f"lookup:{sample.labels['outcome']}"] = sample.value
            elif sample.name == "tiergate_cache_errors_total":
                counters["errors"] += sample.value
    return counters


@dataclass
class Asking:
    """wrk runs at one target; with ``advances``, the prompts used are not asked again."""

    url: str
    key: str
    model: str
    stream: bool
    concurrency: int
    workdir: Path
    prompts: NearMisses | Questions
    advances: bool

    def run(self, seconds: int) -> dict:
        script = self.prompts.script(self.model, self.key, self.stream)
        result = wrk_run(self.url, script, self.concurrency, seconds, self.workdir)
        if self.advances:  # the requests answered, and a margin for those cut off at the end
            self.prompts.used(int(result["rps"] * seconds * 1.05) + self.concurrency)
        return result


def measure(
    targets: dict, stream: bool, concurrency: int, duration: int, workdir: Path, gateway_metrics: str,
    prompts: NearMisses | Questions,
) -> dict:  # fmt: skip
    """Each target in turn at this concurrency: a 2 s warm-up, then `duration` seconds measured."""
    row: dict = {"stream": stream, "concurrency": concurrency}
    for name, (url, auth, model, proc) in targets.items():
        gateway = name.startswith("tiergate")
        # New prompts each run: the measured run does not ask the warm-up's (nor the gateway any earlier run's).
        ask = Asking(url, auth, model, stream, concurrency, workdir, prompts, advances=gateway)
        ask.run(2)
        before = cache_counters(gateway_metrics) if gateway else {}
        cpu0, t0 = (cpu_seconds(proc.pid) if proc else 0.0), time.monotonic()
        measured = ask.run(duration)
        if proc:
            measured["cpu"] = round((cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0), 2)
        if gateway:
            after = cache_counters(gateway_metrics)
            measured["cache"] = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k)}
        row[name] = measured
    print(json.dumps(row), flush=True)
    return row


def print_table(results: list[dict], names: list[str]) -> None:
    others = [n for n in names if n != "direct"]
    head = " | ".join(f"{n} p50 / p99 ms (added) | {n} req/s (CPU)" for n in others)
    print(f"\n| mode | conc. | direct p50 / p99 ms | direct req/s | {head} |")
    print("|---" * (4 + 2 * len(others)) + "|")
    for r in results:
        d = r["direct"]
        cells = [f"{'stream' if r['stream'] else 'json'}", str(r["concurrency"]),
                 f"{d['p50']:.2f} / {d['p99']:.2f}", f"{d['rps']:.0f}"]  # fmt: skip
        for n in others:
            m = r[n]
            cells.append(
                f"{m['p50']:.2f} / {m['p99']:.2f} (+{m['p50'] - d['p50']:.2f} / +{m['p99'] - d['p99']:.2f})"
            )
            cache_errors = m.get("cache", {}).get("errors", 0)
            hits = sum(m.get("cache", {}).get(f"lookup:{outcome}", 0) for outcome in ("exact", "semantic"))
            cells.append(
                f"{m['rps']:.0f} ({m.get('cpu', 0) * 100:.0f}%)"
                + (f", {m['errors']} errors" if m["errors"] else "")
                + (f", {cache_errors:.0f} CACHE ERRORS (partly uncached)" if cache_errors else "")
                + (f", {hits:.0f} cache hits" if hits else "")
            )
        print("| " + " | ".join(cells) + " |")
    if "litellm proxy" in names:
        print("\nthroughput per core (req/s over the server's CPU share), against the LiteLLM proxy:")
        for r in results:
            mode = "stream" if r["stream"] else "json"
            litellm = r["litellm proxy"]["rps"] / max(r["litellm proxy"]["cpu"], 1e-9)
            for name in ("tiergate pipeline", "tiergate explicit"):
                ours = r[name]["rps"] / max(r[name]["cpu"], 1e-9)
                print(
                    f"{mode} c={r['concurrency']}: {name} {ours:.0f} vs {litellm:.0f} = {ours / litellm:.1f}x"
                )


if __name__ == "__main__":
    main()
