"""Helpers for distillation tests: policies that opt in, reading the captured samples."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import create_engine, select

from gateway.db.engine import sync_url
from gateway.db.models import DistillSample

ADMIN = {"authorization": "Bearer admin-secret", "x-tiergate-actor": "test"}


def admin(gw, method: str, path: str, **kwargs) -> httpx.Response:
    response = httpx.request(method, f"{gw.base_url}/admin{path}", headers=ADMIN, timeout=30, **kwargs)
    assert response.status_code < 300, response.text
    return response


def capture_policy(name: str = "distilled", deployment: str = "gpt-4o", **distillation: Any) -> dict:
    """One band for every score (so the route is known), capture on unless told otherwise."""
    return {
        "name": name,
        "baseline": "gpt-4o",
        "bands": [{"from": 0.0, "to": 1.0, "deployment": deployment}],
        "distillation": {"capture": True, **distillation},
    }


def install_policy(gw, document: dict, team: str | None = None) -> None:
    admin(gw, "POST", "/policies", json={"document": document})
    admin(gw, "POST", f"/policies/{document['name']}/activate", json={"version": 1})
    if team:
        admin(gw, "PUT", "/assignments", json={"team": team, "policy": document["name"]})
    gw.run(gw.app.state.policies.reload_if_changed())


def samples(gw) -> list[DistillSample]:
    """Everything captured so far (the capture queue is flushed first)."""
    gw.flush_ledger()
    gw.run(gw.app.state.distill.flush())
    engine = create_engine(sync_url(gw.settings.database_url))
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(DistillSample).order_by(DistillSample.created_at)))
    finally:
        engine.dispose()


from tests.selfhost.conftest import tiny_models, vllm_python  # noqa: E402  (real vLLM fixtures)

__all__ = ["tiny_models", "vllm_python"]
