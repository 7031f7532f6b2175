"""What the benchmark scripts share: a simulated upstream and a routed gateway, each pinned to a core."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.bench_overhead import free_port, wait_http

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "BENCH_UPSTREAM_KEY": "sk-bench", "TIERGATE_ADMIN_KEY": "admin"}


def start(cmd: list[str], log: Path, core: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`cmd` pinned to `core`, its output in `log`."""
    return subprocess.Popen(
        ["taskset", "-c", str(core), *cmd], env=env or ENV, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class Stack:
    simulator_url: str
    gateway_url: str
    key: str  # a virtual key of team `bench`, whose policy `bench` routes `model="auto"`
    gateway: subprocess.Popen
    ledger: Path  # the gateway's SQLite ledger


@contextmanager
def routed_gateway(
    workdir: Path, redis_url: str, simulator_args: list[str], bands: list[dict], semantic: bool = True
) -> Iterator[Stack]:
    """The simulator on core 1 and `gateway serve` on core 0 with two deployments on it, `cheap` (economy,
    gpt-4o-mini) and `strong` (frontier, gpt-4o), and the policy `bench` (`bands`, exact and semantic
    response cache on Redis) assigned to team `bench`."""
    sim_port, gw_port = free_port(), free_port()
    procs = [
        start(
            [sys.executable, "-m", "gateway.simulator.cli", "--port", str(sim_port), *simulator_args],
            workdir / "simulator.log",
            core=1,
        )
    ]
    try:
        upstream = {"provider": "openai", "api_base": f"http://127.0.0.1:{sim_port}/v1",
                    "api_key_env": "BENCH_UPSTREAM_KEY", "max_retries": 1}  # fmt: skip
        config = workdir / "tiergate.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "database_url": f"sqlite+aiosqlite:///{workdir}/ledger.db",
                    "spool_dir": str(workdir / "spool"),
                    "redis_url": redis_url,
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
            workdir / "gateway.log",
            core=0,
        )  # fmt: skip
        procs.append(gateway)
        wait_http(f"http://127.0.0.1:{sim_port}/_sim/health")
        wait_http(f"http://127.0.0.1:{gw_port}/health")
        admin = httpx.Client(
            base_url=f"http://127.0.0.1:{gw_port}/admin", headers={"authorization": "Bearer admin"}
        )
        document = {
            "name": "bench",
            "baseline": "strong",
            "bands": bands,
            "fallbacks": {"cheap": ["strong"]},
            "cache": {"enabled": True, "semantic": semantic},
        }
        admin.post("/policies", json={"document": document}).raise_for_status()
        admin.post("/policies/bench/activate", json={"version": 1}).raise_for_status()
        admin.put("/assignments", json={"team": "bench", "policy": "bench"}).raise_for_status()
        key = admin.post("/keys", json={"team": "bench"}).json()["key"]
        yield Stack(
            f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}", key, gateway, workdir / "ledger.db"
        )
    finally:
        stop(procs)
