"""`gateway demo`: the whole product on embedded defaults, in one command.

Starts the simulated upstream and the gateway (SQLite ledger, no external services), creates a key
per team, replays a workload with the official openai SDK and prints the cost-per-query summary
that finance would read from the ledger.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import orjson

from gateway.embedded import GatewayServer
from gateway.settings import Settings
from gateway.simulator.config import Latency, SimulatorConfig
from gateway.simulator.server import SimulatorServer

DEFAULT_WORKLOAD = Path(__file__).resolve().parents[1] / "examples" / "workload.jsonl"


def demo_settings(sim: SimulatorServer, workdir: Path) -> Settings:
    key_env = "TIERGATE_DEMO_UPSTREAM_KEY"
    os.environ.setdefault(key_env, "sk-simulated")
    common = {"api_key_env": key_env, "max_retries": 2}
    return Settings(
        database_url=f"sqlite+aiosqlite:///{workdir}/ledger.db",
        spool_dir=workdir / "spool",
        baseline_deployment="gpt-4o",
        deployments=[
            {
                "name": "gpt-4o",
                "provider": "openai",
                "model": "gpt-4o",
                "api_base": sim.openai_base_url,
                "tier": "frontier",
                "fallbacks": ["gpt-4o-mini"],
                **common,
            },
            {
                "name": "gpt-4o-mini",
                "provider": "openai",
                "model": "gpt-4o-mini",
                "api_base": sim.openai_base_url,
                "tier": "economy",
                **common,
            },
            {
                "name": "claude-sonnet",
                "provider": "anthropic",
                "model": "claude-sonnet-4-5",
                "api_base": sim.base_url,
                "tier": "frontier",
                **common,
            },
        ],
    )


def load_workload(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


async def replay(
    gateway: GatewayServer, workload: list[dict[str, Any]], keys: dict[str, str], concurrency: int
) -> int:
    """Send every request through the gateway with the openai SDK; returns how many succeeded."""
    import openai

    clients = {
        team: openai.AsyncOpenAI(base_url=gateway.openai_base_url, api_key=key, max_retries=2)
        for team, key in keys.items()
    }
    gate = asyncio.Semaphore(concurrency)
    succeeded = 0

    async def send(item: dict[str, Any]) -> None:
        nonlocal succeeded
        request = {k: v for k, v in item.items() if k != "team"}
        async with gate:
            client = clients[item["team"]]
            if request.get("stream"):
                async for _ in await client.chat.completions.create(**request):
                    pass
            else:
                await client.chat.completions.create(**request)
            succeeded += 1

    await asyncio.gather(*(send(item) for item in workload))
    for client in clients.values():
        await client.close()
    return succeeded


def run_demo(
    workload_path: Path = DEFAULT_WORKLOAD, workdir: Path = Path(".tiergate/demo"), concurrency: int = 4
):
    """Run the demo; returns the ledger summary rows grouped by team and by deployment."""
    from gateway.ledger.report import summary

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    workload = load_workload(workload_path)
    config = SimulatorConfig(latency=Latency(ttft_ms=40, itl_ms=2, min_tokens=24, max_tokens=96))
    with SimulatorServer(config) as sim, GatewayServer(demo_settings(sim, workdir)) as gateway:
        keys = {
            team: gateway.create_key(team=team, project="demo")
            for team in sorted({w["team"] for w in workload})
        }
        succeeded = asyncio.run(replay(gateway, workload, keys, concurrency))
        gateway.flush_ledger()
        engine = gateway.app.state.engine
        by_team = gateway.run(summary(engine, "team"))
        by_deployment = gateway.run(summary(engine, "deployment"))
    return succeeded, len(workload), by_team, by_deployment
