"""Fixtures for the hostile-input and security tests: one gateway per module on the simulator."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.embedded import GatewayServer
from gateway.settings import Settings
from gateway.simulator.server import SimulatorServer
from tests.conftest import sim_deployments

ADMIN_KEY = "admin-secret-for-hostile-tests"


def gateway_settings(tmp: Path, sim: SimulatorServer, **overrides) -> Settings:
    values = {
        "database_url": f"sqlite+aiosqlite:///{tmp}/ledger.db",
        "spool_dir": tmp / "spool",
        "admin_key": ADMIN_KEY,
        "baseline_deployment": "gpt-4o",
        "retry_backoff_s": 0.01,
        "ledger_flush_interval_s": 0.05,
        "deployments": sim_deployments(sim),
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def module_gateway(tmp_path_factory, simulator: SimulatorServer) -> Iterator[GatewayServer]:
    """A gateway shared by a module's tests (starting one per test would dominate the run time)."""
    os.environ.setdefault("SIM_KEY", "sk-sim")
    with GatewayServer(gateway_settings(tmp_path_factory.mktemp("gw"), simulator)) as gw:
        yield gw
