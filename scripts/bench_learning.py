"""Benchmark: does recalibration from shadow grades move the cost/quality operating point toward
the labelled optimum? (issue 10, the learning loop)

Workload: MMLU prompts from ../shared/data/router/mmlu_mixtral_vs_gpt4.jsonl, each labelled with
whether the weak model (Mixtral-8x7B) and the strong model (GPT-4) answered it correctly. They are
replayed through the real gateway (SQLite ledger) onto the provider simulator, where the economy
deployment (gpt-4o-mini) answers with the weak model's label as its answer quality and the frontier
deployment (gpt-4o) with the strong model's (`sim_quality`, see gateway/simulator/quality.py).

1. Policy v1: the example policy's economy/frontier boundary (score 0.6), shadow sampling on
   (similarity grader, reference gpt-4o), target quality retained `--target`.
2. The calibration half of the prompts is replayed; shadow grades accumulate off the request path.
3. `gateway router calibrate --from-ledger` fits the threshold and stores candidate v2 (dry-run shown).
4. The held-out half is replayed under v1, then under v2 (activated): cost per query from the
   ledger, quality from the labels.
5. The labelled optimum: on the held-out prompts' scores and labels, the highest threshold whose
   labelled quality retained meets the target, and its cost (same tokens, list prices).

Quality retained (labelled) = share of requests whose served answer is as good as the reference's:
served by gpt-4o, or served by gpt-4o-mini on a prompt where Mixtral is right or GPT-4 is wrong.

    .venv/bin/python scripts/bench_learning.py [--n 2000] [--target 0.9] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import yaml
from sqlalchemy import create_engine, select
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.db.engine import sync_url
from gateway.db.models import LedgerEntry, ShadowGrade
from gateway.embedded import GatewayServer
from gateway.routing.cli import router_app
from gateway.settings import Settings
from gateway.simulator.server import SimulatorServer
from router_models.data import load, router_data_available, router_data_dir

WEAK, STRONG = "gpt-4o-mini", "gpt-4o"
START_THRESHOLD = 0.6  # examples/policy.yaml: gpt-4o from 0.6 up


def deployments(sim: SimulatorServer) -> list[dict]:
    common = {
        "provider": "openai",
        "api_base": sim.openai_base_url,
        "api_key_env": "SIM_KEY",
        "max_retries": 0,
    }
    return [
        {"name": STRONG, "model": STRONG, "tier": "frontier", **common},
        {"name": WEAK, "model": WEAK, "tier": "economy", **common},
    ]


def policy(target: float, share: float) -> dict:
    return {
        "name": "bench",
        "baseline": STRONG,
        "bands": [
            {"from": 0.0, "to": START_THRESHOLD, "deployment": WEAK},
            {"from": START_THRESHOLD, "to": 1.0, "deployment": STRONG},
        ],
        "cache": {"enabled": False},
        "quality": {
            "target_retained": target,
            "shadow": {
                "enabled": True,
                "share": share,
                "reference": STRONG,
                "grader": "similarity",
                "max_usd_per_day": "100",
            },
        },
    }


async def replay(gw: GatewayServer, key: str, items: list[tuple[int, str, float, float]]) -> dict[str, int]:
    """Send every prompt (8 at a time); returns request id -> item index."""
    client = openai.AsyncOpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=2)
    gate = asyncio.Semaphore(8)
    ids: dict[str, int] = {}

    async def one(index: int, prompt: str, weak: float, strong: float) -> None:
        async with gate:
            raw = await client.chat.completions.with_raw_response.create(
                model="auto",
                messages=[{"role": "user", "content": prompt}],
                max_tokens=24,
                extra_body={"sim_quality": {WEAK: weak, STRONG: strong}},
            )
            ids[raw.headers["x-request-id"]] = index

    await asyncio.gather(*(one(*item) for item in items))
    await client.close()
    return ids


def ledger(gw: GatewayServer) -> list:
    gw.flush_ledger()
    engine = create_engine(sync_url(gw.settings.database_url))
    with engine.connect() as conn:
        rows = list(conn.execute(select(LedgerEntry)))
        grades = list(conn.execute(select(ShadowGrade)))
    engine.dispose()
    return rows, grades


def operating_point(rows, ids, weak_ok, strong_ok) -> dict:
    served = [(ids[r.id], r) for r in rows if r.id in ids]
    passed = [1.0 if r.deployment == STRONG else float(weak_ok[i] >= strong_ok[i]) for i, r in served]
    correct = [strong_ok[i] if r.deployment == STRONG else weak_ok[i] for i, r in served]
    cost = sum(r.cost_micros for _, r in served)
    baseline = sum(r.baseline_cost_micros for _, r in served)
    return {
        "requests": len(served),
        "reference_share": round(float(np.mean([r.deployment == STRONG for _, r in served])), 4),
        "cost_per_1k_queries_usd": round(cost / len(served) / 1000, 4),
        "savings_pct": round(100 * (baseline - cost) / baseline, 2),
        "quality_retained_labelled": round(float(np.mean(passed)), 4),
        "accuracy_labelled": round(float(np.mean(correct)), 4),
    }


def optimum(rows, ids, weak_ok, strong_ok, prices, target: float) -> dict:
    """The highest threshold meeting the target on the held-out labels, priced on the same tokens."""
    served = [(ids[r.id], r) for r in rows if r.id in ids]
    scores = np.asarray([r.complexity_score for _, r in served])
    ok = np.asarray([float(weak_ok[i] >= strong_ok[i]) for i, _ in served])
    best = None
    for t in sorted(set(scores.round(4)) | {1.0}, reverse=True):
        retained = float(np.mean(np.where(scores >= t, 1.0, ok)))
        if retained >= target:
            best = t
            break
    best = 0.0 if best is None else best
    cost = 0
    for (_, r), s in zip(served, scores, strict=True):
        price = prices[STRONG if s >= best else WEAK]
        cost += int(r.input_uncached_tokens * price.input + r.output_tokens * price.output)
    base = sum(r.baseline_cost_micros for _, r in served)
    strong = scores >= best
    correct = np.where(strong, [strong_ok[i] for i, _ in served], [weak_ok[i] for i, _ in served])
    return {
        "threshold": best,
        "requests": len(served),
        "reference_share": round(float(np.mean(strong)), 4),
        "cost_per_1k_queries_usd": round(cost / len(served) / 1000, 4),
        "savings_pct": round(100 * (base - cost) / base, 2),
        "quality_retained_labelled": round(float(np.mean(np.where(strong, 1.0, ok))), 4),
        "accuracy_labelled": round(float(np.mean(correct)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="prompts (half to calibrate, half held out)")
    parser.add_argument("--target", type=float, default=0.9, help="quality retained to reach")
    parser.add_argument("--share", type=float, default=1.0, help="shadow sampling share")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not router_data_available():
        sys.exit(f"router data not found in {router_data_dir()} (set TIERGATE_DATA_DIR)")
    data = load(sources=("mmlu",))
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(data), args.n, replace=False)
    prompts = [data.prompts[i] for i in chosen]
    weak_ok, strong_ok = data.weak_quality[chosen], data.strong_quality[chosen]
    items = [(i, prompts[i], float(weak_ok[i]), float(strong_ok[i])) for i in range(args.n)]
    half = args.n // 2
    calibration, held_out = items[:half], items[half:]
    os.environ["SIM_KEY"] = "sk-sim"
    workdir = Path(tempfile.mkdtemp(prefix="bench-learning-"))
    started = time.perf_counter()
    with SimulatorServer() as sim:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{workdir}/ledger.db",
            spool_dir=workdir / "spool",
            admin_key="admin-secret",
            baseline_deployment=STRONG,
            deployments=deployments(sim),
        )
        with GatewayServer(settings) as gw:
            admin = httpx.Client(
                base_url=f"{gw.base_url}/admin", headers={"authorization": "Bearer admin-secret"}
            )
            admin.post("/policies", json={"document": policy(args.target, args.share)}).raise_for_status()
            admin.post("/policies/bench/activate", json={"version": 1}).raise_for_status()
            admin.put("/assignments", json={"team": "*", "policy": "bench"}).raise_for_status()
            key = gw.create_key(team="bench", project=None)

            asyncio.run(replay(gw, key, calibration))
            gw.run(gw.app.state.shadow_sampler.drain(), timeout=600)
            calibration_rows, calibration_grades = ledger(gw)
            config = workdir / "gateway.yaml"
            config.write_text(
                yaml.safe_dump({"database_url": settings.database_url, "deployments": deployments(sim)})
            )
            result = CliRunner().invoke(
                router_app,
                ["calibrate", "--from-ledger", "--policy", "bench", "--team", "bench", "-c", str(config)],
            )
            if result.exit_code:
                sys.exit(result.output)
            calibration_result = json.loads(result.stdout)

            before_ids = asyncio.run(replay(gw, key, held_out))
            admin.post("/policies/bench/activate", json={"version": 2}).raise_for_status()
            gw.run(gw.app.state.policies.reload_if_changed())
            after_ids = asyncio.run(replay(gw, key, held_out))
            gw.run(gw.app.state.shadow_sampler.drain(), timeout=600)
            rows, _ = ledger(gw)
            prices = {name: t.current_price() for name, t in gw.app.state.pipeline.upstreams.targets.items()}
    measurement = sum(r.cost_micros for r in calibration_rows if r.cost_class != "request")
    spent = sum(r.cost_micros for r in calibration_rows if r.cost_class == "request")
    report = {
        "workload": f"MMLU, {args.n} prompts (seed {args.seed}): {half} to calibrate, {args.n - half} held out",
        "target_quality_retained": args.target,
        "shadow": {
            "graded": len(calibration_grades),
            "pass_rate": round(float(np.mean([g.passed for g in calibration_grades])), 4),
            "measurement_cost_usd": round(measurement / 1e6, 4),
            "served_cost_usd": round(spent / 1e6, 4),
        },
        "calibration": {k: calibration_result[k] for k in ("evidence", "before", "after", "candidate")},
        "dry_run_quality": calibration_result["dry_run"]["quality"],
        "before": {
            "threshold": calibration_result["before"]["threshold"],
            **operating_point(rows, before_ids, weak_ok, strong_ok),
        },
        "after": {
            "threshold": calibration_result["after"]["threshold"],
            **operating_point(rows, after_ids, weak_ok, strong_ok),
        },
        "labelled_optimum": optimum(rows, before_ids, weak_ok, strong_ok, prices, args.target),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
