"""Shared fixtures: the simulated upstream, a gateway factory, and PostgreSQL."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.embedded import GatewayServer
from gateway.settings import Settings
from gateway.simulator.server import SimulatorServer
from tests.support import postgres


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer() as sim:
        yield sim


def sim_deployments(sim: SimulatorServer) -> list[dict[str, Any]]:
    """Deployments on the simulated upstream: two OpenAI models (one with a fallback), Claude, and a
    self-hosted-tier model (OpenAI wire protocol, priced by override as the on-prem cost model would)."""
    return [
        {
            "name": "gpt-4o",
            "provider": "openai",
            "model": "gpt-4o",
            "api_base": sim.openai_base_url,
            "api_key_env": "SIM_KEY",
            "tier": "frontier",
            "max_retries": 1,
            "fallbacks": ["gpt-4o-mini"],
        },
        {
            "name": "gpt-4o-mini",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "api_base": sim.openai_base_url,
            "api_key_env": "SIM_KEY",
            "tier": "economy",
            "max_retries": 0,
        },
        {
            "name": "claude-sonnet",
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "api_base": sim.base_url,
            "api_key_env": "SIM_KEY",
            "tier": "frontier",
            "max_retries": 0,
        },
        {
            "name": "local-small",
            "provider": "vllm",
            "model": "tiny-local",
            "api_base": sim.openai_base_url,
            "api_key_env": "SIM_KEY",
            "tier": "selfhost",
            "max_retries": 0,
            "max_input_tokens": 2048,
            "price": {"input_per_mtok": "0.02", "output_per_mtok": "0.04"},
        },
    ]


@pytest.fixture
def make_gateway(
    tmp_path: Path, simulator: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., GatewayServer]]:
    """Start gateways with settings for this test (SQLite in tmp_path unless `database_url` given)."""
    monkeypatch.setenv("SIM_KEY", "sk-sim")
    started: list[GatewayServer] = []

    def start(**overrides: Any) -> GatewayServer:
        values: dict[str, Any] = {
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/ledger.db",
            "spool_dir": tmp_path / "spool",
            "admin_key": "admin-secret",
            "baseline_deployment": "gpt-4o",
            "retry_backoff_s": 0.01,
            "ledger_flush_interval_s": 0.05,
            "deployments": sim_deployments(simulator),
        }
        values.update(overrides)
        server = GatewayServer(Settings(**values)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if not postgres.available():
        pytest.skip(f"PostgreSQL not reachable at {postgres.SHARED_DSN}")
    with postgres.fresh_database() as url:
        yield url
