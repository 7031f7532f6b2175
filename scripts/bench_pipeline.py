"""Full-pipeline overhead and throughput per core, side by side with the direct upstream and the LiteLLM
proxy, all against the same simulated upstream.

    python scripts/bench_pipeline.py [--duration 10] [--concurrency 1 16 64] [--no-litellm]

Three targets, measured one after the other in one run, each server pinned to core 0 (one worker) while
the simulator and the load generator (`wrk`, C) share core 1:

- **direct**: wrk straight at the simulator (the floor);
- **tiergate pipeline**: `model="auto"` through a routing policy, so every request pays authentication,
  limits, the exact-cache GET, an embedding plus a Redis 8 VSIM semantic lookup that misses, the
  complexity classifier, the policy decision, the upstream call, the ledger row (SQLite) and the cache
  store; every prompt is distinct (random words), so nothing is answered from the cache — the ledger's
  cache outcomes are printed to prove it;
- **litellm proxy**: `litellm --config` (its own venv, `litellm[proxy]` at the version the gateway pins),
  one worker, no database, routing the same model name to the same simulator.

Added latency = target percentile - direct percentile, at the same concurrency.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.bench_overhead import cpu_seconds, free_port, wait_http, wrk_run
from tests.support.redis8 import Redis8Server

LITELLM_VENV = Path(os.environ.get("TIERGATE_LITELLM_VENV", Path.home() / ".cache/tiergate/litellm-proxy"))
LITELLM_SPEC = "litellm[proxy]==1.103.7"

# Every request a new question: random words, so neither the exact nor the semantic layer can hit.
DISTINCT_PROMPTS_LUA = """
local words = {{"river","ledger","quantum","violin","harbor","tariff","enzyme","glacier","sonnet","pixel",
  "mortgage","falcon","cipher","orchard","voltage","saffron","tundra","lattice","pigment","comet",
  "statute","walnut","reactor","mosaic","canyon","protein","ballot","turbine","lantern","parsec",
  "granite","sparrow","invoice","nebula","compiler","tapestry","monsoon","alloy","fresco","kernel"}}
math.randomseed({seed})
counter = 0
request = function()
  counter = counter + 1
  local q = {{}}
  for i = 1, 12 do q[i] = words[math.random(#words)] end
  local body = string.format(
    '{{"model":"{model}","messages":[{{"role":"user","content":"Explain how %s relates to %s (%d)."}}],'
    .. '"max_tokens":16,"stream":{stream}}}', table.concat(q, " ", 1, 6), table.concat(q, " ", 7, 12), counter)
  return wrk.format("POST", nil, {{["Content-Type"]="application/json",["Authorization"]="Bearer {key}"}}, body)
end
"""


def ensure_litellm() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin/pip"), "install", "-q", LITELLM_SPEC], check=True)
    return binary


def start(cmd: list[str], log: Path, env: dict[str, str], core: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["taskset", "-c", str(core), *cmd], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def policy_document() -> dict:
    return {
        "name": "bench",
        "baseline": "strong",
        "bands": [
            {"from": 0, "to": 0.5, "deployment": "cheap"},
            {"from": 0.5, "to": 1, "deployment": "strong"},
        ],
        "fallbacks": {"cheap": ["strong"]},
        "cache": {"enabled": True, "semantic": True},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--no-litellm", action="store_true", help="Skip the LiteLLM proxy comparison.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is required: apt-get install wrk")
    litellm = None if args.no_litellm else ensure_litellm()

    workdir = Path(tempfile.mkdtemp(prefix="tiergate-bench-pipeline-"))
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "BENCH_UPSTREAM_KEY": "sk-bench",
        "TIERGATE_ADMIN_KEY": "admin",
    }
    sim_port, gw_port, ll_port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen] = []
    redis = Redis8Server(extra_args=("--io-threads", "1")).start()
    try:
        procs.append(
            start(
                [sys.executable, "-m", "gateway.simulator.cli", "--port", str(sim_port),
                 "--min-tokens", "16", "--max-tokens", "16"],
                workdir / "simulator.log", env, core=1,
            )
        )  # fmt: skip
        upstream = {"provider": "openai", "api_base": f"http://127.0.0.1:{sim_port}/v1",
                    "api_key_env": "BENCH_UPSTREAM_KEY", "max_retries": 0}  # fmt: skip
        config = workdir / "tiergate.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "database_url": f"sqlite+aiosqlite:///{workdir}/ledger.db",
                    "spool_dir": str(workdir / "spool"),
                    "redis_url": redis.url,
                    "deployments": [
                        {"name": "cheap", "model": "gpt-4o-mini", "tier": "economy", **upstream},
                        {"name": "strong", "model": "gpt-4o", "tier": "frontier", **upstream},
                    ],
                }
            )
        )
        gateway = start(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port", str(gw_port),
             "--log-level", "WARNING"],
            workdir / "gateway.log", env, core=0,
        )  # fmt: skip
        procs.append(gateway)
        wait_http(f"http://127.0.0.1:{sim_port}/_sim/health")
        wait_http(f"http://127.0.0.1:{gw_port}/health")
        admin = httpx.Client(
            base_url=f"http://127.0.0.1:{gw_port}/admin", headers={"authorization": "Bearer admin"}
        )
        admin.post("/policies", json={"document": policy_document()}).raise_for_status()
        admin.post("/policies/bench/activate", json={"version": 1}).raise_for_status()
        admin.put("/assignments", json={"team": "bench", "policy": "bench"}).raise_for_status()
        key = admin.post("/keys", json={"team": "bench"}).json()["key"]

        targets = {
            "direct": (f"http://127.0.0.1:{sim_port}/v1/chat/completions", "sk-bench", "gpt-4o-mini", None),
            "tiergate pipeline": (f"http://127.0.0.1:{gw_port}/v1/chat/completions", key, "auto", gateway),
        }
        if litellm:
            ll_config = workdir / "litellm.yaml"
            ll_config.write_text(
                yaml.safe_dump(
                    {
                        "model_list": [
                            {
                                "model_name": "bench",
                                "litellm_params": {
                                    "model": "openai/gpt-4o-mini",
                                    "api_base": f"http://127.0.0.1:{sim_port}/v1",
                                    "api_key": "sk-bench",
                                },
                            }
                        ],
                        "general_settings": {"master_key": "sk-litellm-bench"},
                        "litellm_settings": {"telemetry": False},
                    }
                )
            )
            ll_env = {**env, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
            proxy = start(
                [str(litellm), "--config", str(ll_config), "--port", str(ll_port), "--num_workers", "1"],
                workdir / "litellm.log", ll_env, core=0,
            )  # fmt: skip
            procs.append(proxy)
            wait_http(f"http://127.0.0.1:{ll_port}/health/liveliness", timeout=180)
            targets["litellm proxy"] = (
                f"http://127.0.0.1:{ll_port}/v1/chat/completions",
                "sk-litellm-bench",
                "bench",
                proxy,
            )

        results = []
        for stream in (False, True):
            for c in args.concurrency:
                row = {"stream": stream, "concurrency": c}
                for name, (url, auth, model, proc) in targets.items():
                    # A new seed per run: the measured run does not ask the warm-up's questions again.
                    scripts = [
                        DISTINCT_PROMPTS_LUA.format(
                            seed=time.time_ns() % 2**31 + i, model=model, key=auth, stream=str(stream).lower()
                        )
                        for i in range(2)
                    ]
                    wrk_run(url, scripts[0], c, 2, workdir)  # warm-up
                    cpu0, t0 = (cpu_seconds(proc.pid) if proc else 0.0), time.monotonic()
                    measured = wrk_run(url, scripts[1], c, args.duration, workdir)
                    if proc:
                        measured["cpu"] = round((cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0), 2)
                    row[name] = measured
                results.append(row)
                print(json.dumps(row), flush=True)

        with sqlite3.connect(workdir / "ledger.db") as db:
            time.sleep(2)  # the ledger writer flushes every second
            outcomes = Counter(
                dict(db.execute("select cache_outcome, count(*) from ledger_entries group by 1"))
            )
            tiers = Counter(dict(db.execute("select tier, count(*) from ledger_entries group by 1")))
        print(f"\ngateway ledger: cache outcomes {dict(outcomes)}, tiers {dict(tiers)}")
        print_table(results, list(targets))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


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
            cells.append(
                f"{m['rps']:.0f} ({m.get('cpu', 0) * 100:.0f}%)"
                + (f", {m['errors']} errors" if m["errors"] else "")
            )
        print("| " + " | ".join(cells) + " |")
    if "litellm proxy" in names:
        for r in results:
            ratio = r["tiergate pipeline"]["rps"] / max(r["litellm proxy"]["rps"], 1e-9)
            mode = "stream" if r["stream"] else "json"
            print(f"{mode} c={r['concurrency']}: tiergate pipeline / litellm proxy throughput = {ratio:.1f}x")


if __name__ == "__main__":
    main()
