"""Fixtures for the learning loop: a private simulator (its quality and judge settings stay here), a
gateway whose policy routes by score between gpt-4o-mini (economy) and gpt-4o (frontier), and a
workload whose prompts carry per-model quality labels (`sim_quality`, read by the simulator)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import create_engine, select

from gateway.db.engine import sync_url
from gateway.db.models import Feedback, LedgerEntry, ShadowGrade
from gateway.embedded import GatewayServer
from gateway.routing.scorer import default_scorer
from gateway.simulator.server import SimulatorServer
from tests.conftest import sim_deployments

ADMIN = {"authorization": "Bearer admin-secret"}
HARD_SCORE = 0.28
"""Prompts scoring at or above this are 'hard': the economy model's answer is poor (quality 0.1)."""

TOPICS = ("primes", "sorting", "photosynthesis", "inflation", "gravity", "recursion", "tides", "vaccines")
TEMPLATES = (
    "hi {t}",
    "Name {t}.",
    "What is {t}?",
    "Give one fact about {t}.",
    "Prove a theorem about {t} step by step and explain why each step holds.",
    "Write a detailed essay analysing {t}: causes, mechanisms, consequences; compare three theories and justify.",
    "Implement {t} in Python with tests.\n```python\ndef solve():\n    pass\n```\nExplain the complexity.",
    "Solve: if 3x + 7 = 22 in a question about {t}, what is x? Show your reasoning.",
)


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    """Overrides the session simulator: judge registrations must not leak into other tests."""
    with SimulatorServer() as sim:
        httpx.post(
            f"{sim.base_url}/_sim/quality", json={"model": "sim-judge", "judge": True}
        ).raise_for_status()
        yield sim


def deployments(sim: SimulatorServer) -> list[dict[str, Any]]:
    judge = {
        "name": "judge",
        "provider": "openai",
        "model": "sim-judge",
        "api_base": sim.openai_base_url,
        "api_key_env": "SIM_KEY",
        "tier": "frontier",
        "max_retries": 0,
        "price": {"input_per_mtok": "1", "output_per_mtok": "4"},
    }
    return [*sim_deployments(sim), judge]


def policy(threshold: float = 0.9, **shadow: Any) -> dict[str, Any]:
    settings = {"enabled": True, "share": 1.0, "reference": "gpt-4o", "max_usd_per_day": "5", **shadow}
    return {
        "name": "learn",
        "baseline": "gpt-4o",
        "bands": [
            {"from": 0.0, "to": threshold, "deployment": "gpt-4o-mini"},
            {"from": threshold, "to": 1.0, "deployment": "gpt-4o"},
        ],
        "quality": {"shadow": settings, "target_retained": 0.9},
        "cache": {
            "enabled": False
        },  # every request reaches a model (the response cache has tests of its own)
    }


def admin(gw: GatewayServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{gw.base_url}/admin{path}", headers=ADMIN, timeout=30, **kwargs)


@pytest.fixture
def learning_gateway(make_gateway, simulator) -> Callable[..., GatewayServer]:
    def start(document: dict[str, Any] | None = None, **settings: Any) -> GatewayServer:
        gw = make_gateway(deployments=deployments(simulator), **settings)
        created = admin(gw, "POST", "/policies", json={"document": document or policy()})
        assert created.status_code == 201, created.text
        version = created.json()["version"]
        assert admin(gw, "POST", "/policies/learn/activate", json={"version": version}).status_code == 200
        assert admin(gw, "PUT", "/assignments", json={"team": "*", "policy": "learn"}).status_code == 200
        return gw

    return start


def prompts() -> list[str]:
    return [template.format(t=topic) for topic in TOPICS for template in TEMPLATES]


def is_hard(prompt: str) -> bool:
    return default_scorer().score([{"role": "user", "content": prompt}]) >= HARD_SCORE


def labels(prompt: str) -> dict[str, float]:
    """Per-model answer quality the simulator applies: gpt-4o always good, mini poor on hard prompts."""
    return {"gpt-4o": 1.0, "gpt-4o-mini": 0.1 if is_hard(prompt) else 1.0}


def send(client: openai.OpenAI, prompt: str, **kwargs: Any):
    return client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": prompt}],
        extra_body={"sim_quality": labels(prompt)},
        **kwargs,
    )


def drain(gw: GatewayServer) -> None:
    gw.run(gw.app.state.shadow_sampler.drain())
    gw.flush_ledger()


def rows(gw: GatewayServer, model: type) -> list[Any]:
    gw.flush_ledger()
    engine = create_engine(sync_url(gw.settings.database_url))
    with engine.connect() as conn:
        found = list(conn.execute(select(model)))
    engine.dispose()
    return found


__all__ = ["Feedback", "LedgerEntry", "ShadowGrade"]
