"""The capture observer off the gateway: a full queue drops and counts, a failing database drops and
counts without raising, and `observe()` stays cheap (redaction happens later, in a worker thread)."""

from __future__ import annotations

import asyncio
import threading

from prometheus_client import REGISTRY
from sqlalchemy import func, select

from gateway.auth.keys import KeyInfo
from gateway.db.engine import create_engine, migrate
from gateway.db.models import DistillSample
from gateway.distill.capture import DistillCapture
from gateway.pipeline import Exchange
from gateway.routing.policy import Router, parse_policy
from gateway.routing.store import PolicyReloader, PolicyStore
from gateway.settings import Settings
from gateway.upstreams.registry import UpstreamRegistry
from tests.conftest import sim_deployments
from tests.distill.conftest import capture_policy

KEY = KeyInfo("k1", "team", "proj", None, None, None, None, "hash")


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("tiergate_distill_samples_dropped_total", {"reason": reason}) or 0.0


def exchange(registry: UpstreamRegistry, router: Router, n: int) -> Exchange:
    ex = Exchange(request_id=f"req-{n}", endpoint="chat", started=0.0, key=KEY, policy=router)
    ex.target = registry.targets["gpt-4o"]
    return ex


def completion(text: str) -> dict:
    return {
        "model": "gpt-4o",
        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


async def count(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(DistillSample))).scalar_one()


async def test_full_queue_drops_and_counts_then_writes_the_rest(tmp_path, simulator):
    url = f"sqlite+aiosqlite:///{tmp_path}/d.db"
    await asyncio.to_thread(migrate, url)
    engine = create_engine(url)
    registry = UpstreamRegistry(Settings(deployments=sim_deployments(simulator)))
    router = Router(parse_policy(capture_policy()), 1, registry.facts)
    capture = DistillCapture(engine, PolicyReloader(PolicyStore(engine, registry.facts), 60), max_queue=3)
    before = dropped("queue_full")
    for n in range(5):
        body = {"messages": [{"role": "user", "content": f"question {n} from a@b.io"}]}
        capture.observe(exchange(registry, router, n), body, completion(f"answer {n}"))
    assert dropped("queue_full") - before == 2
    assert REGISTRY.get_sample_value("tiergate_distill_queue_depth") == 3
    await capture.flush()
    assert await count(engine) == 3
    # truncated answers are not training data
    capture.observe(
        exchange(registry, router, 9),
        body,
        {"choices": [{"message": {"content": "cut"}, "finish_reason": "length"}]},
    )
    await capture.close()
    assert await count(engine) == 3
    await engine.dispose()


async def test_database_failure_drops_the_batch_and_counts(tmp_path, simulator):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/unmigrated.db")  # no distill_samples table
    registry = UpstreamRegistry(Settings(deployments=sim_deployments(simulator)))
    router = Router(parse_policy(capture_policy()), 1, registry.facts)
    capture = DistillCapture(engine, PolicyReloader(PolicyStore(engine, registry.facts), 60))
    before = dropped("write_failed")
    capture.observe(
        exchange(registry, router, 1), {"messages": [{"role": "user", "content": "hi"}]}, completion("yo")
    )
    await capture.flush()  # must not raise
    assert dropped("write_failed") - before == 1
    await engine.dispose()


async def test_observe_defers_redaction_to_a_worker_thread(tmp_path, simulator):
    """`observe()` runs on the request path: it must only queue. Redaction of a long prompt (a regex
    pass over every message, milliseconds) happens at flush time, in a worker thread."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    await asyncio.to_thread(migrate, f"sqlite+aiosqlite:///{tmp_path}/x.db")
    registry = UpstreamRegistry(Settings(deployments=sim_deployments(simulator)))
    router = Router(parse_policy(capture_policy()), 1, registry.facts)
    redacted_on: list[int] = []

    def hook(text: str) -> str:
        redacted_on.append(threading.get_ident())
        return text.replace("415-555-0132", "[PHONE]")

    capture = DistillCapture(
        engine,
        PolicyReloader(PolicyStore(engine, registry.facts), 60),
        redaction_hook=hook,
        max_queue=100_000,
    )
    body = {"messages": [{"role": "user", "content": "mail a@b.io, call +1 415-555-0132. " * 2000}]}
    for n in range(100):
        capture.observe(exchange(registry, router, n), body, completion("ok"))
    assert redacted_on == []  # nothing done on the request path but queueing
    await capture.flush()
    assert redacted_on and threading.get_ident() not in set(redacted_on)
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(DistillSample)) == 100
    await engine.dispose()
