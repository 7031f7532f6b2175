"""The control API under `/_sim/`: faults, latency, clock, caches and counters.

GET    /_sim/health                      {"status": "ok"}
GET    /_sim/stats   DELETE /_sim/stats  counters (DELETE resets them)
GET    /_sim/faults                      active fault rules
POST   /_sim/faults                      add a rule, e.g. {"status": 429, "count": 3, "model": "gpt-4o"}
DELETE /_sim/faults[?model=NAME]         remove all rules (or one model's)
GET    /_sim/latency                     default and per-model latency
POST   /_sim/latency                     {"ttft_ms": 200, "itl_ms": 20, "tokens": 64, "model": optional}
POST   /_sim/clock                       {"advance_s": 301} moves the cache clock forward
DELETE /_sim/cache                       forget every cached prompt prefix
GET    /_sim/quality  POST /_sim/quality  per-model answer quality, judge models (quality.py)
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import orjson

from .asgi import Request, send_json
from .core import Simulator
from .faults import FaultRule


async def handle(sim: Simulator, request: Request) -> None:
    route = (request.method, request.path)
    try:
        handler = _ROUTES[route]
    except KeyError:
        await send_json(request.send, 404, {"error": f"no control route {request.method} {request.path}"})
        return
    try:
        status, payload = handler(sim, request)
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        status, payload = 400, {"error": str(exc)}
    await send_json(request.send, status, payload)


def _object_body(request: Request) -> dict[str, Any]:
    body = request.json() if request.body else {}
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    return body


def _health(sim: Simulator, request: Request) -> tuple[int, Any]:
    return 200, {"status": "ok"}


def _stats(sim: Simulator, request: Request) -> tuple[int, Any]:
    return 200, sim.stats.snapshot()


def _reset_stats(sim: Simulator, request: Request) -> tuple[int, Any]:
    sim.stats.reset()
    return 200, sim.stats.snapshot()


def _faults(sim: Simulator, request: Request) -> tuple[int, Any]:
    return 200, {"faults": sim.faults.describe()}


def _add_fault(sim: Simulator, request: Request) -> tuple[int, Any]:
    rule = FaultRule.from_mapping(_object_body(request))
    sim.faults.add(rule)
    return 201, {"fault": asdict(rule)}


def _clear_faults(sim: Simulator, request: Request) -> tuple[int, Any]:
    sim.faults.clear(request.query.get("model"))
    return 200, {"faults": sim.faults.describe()}


def _latency(sim: Simulator, request: Request) -> tuple[int, Any]:
    per_model = {model: asdict(latency) for model, latency in sim.model_latency.items()}
    return 200, {"default": asdict(sim.default_latency), "models": per_model}


_LATENCY_FIELDS = frozenset({"model", "ttft_ms", "itl_ms", "min_tokens", "max_tokens", "tokens"})


def _set_latency(sim: Simulator, request: Request) -> tuple[int, Any]:
    body = _object_body(request)
    unknown = set(body) - _LATENCY_FIELDS
    if unknown:
        raise ValueError(f"unknown latency fields: {', '.join(sorted(unknown))}")
    latency = sim.set_latency(body, body.get("model"))
    return 200, {"model": body.get("model"), "latency": asdict(latency)}


def _advance_clock(sim: Simulator, request: Request) -> tuple[int, Any]:
    sim.clock.advance(float(_object_body(request).get("advance_s", 0)))
    return 200, {"now": sim.clock.now()}


def _clear_cache(sim: Simulator, request: Request) -> tuple[int, Any]:
    sim.clear_caches()
    return 200, {"cleared": True}


def _quality(sim: Simulator, request: Request) -> tuple[int, Any]:
    return 200, {"models": dict(sim.model_quality), "judges": sorted(sim.judges)}


def _set_quality(sim: Simulator, request: Request) -> tuple[int, Any]:
    body = _object_body(request)
    unknown = set(body) - {"model", "quality", "judge"}
    model = body.get("model")
    if unknown or not isinstance(model, str):
        raise ValueError("expected {model, quality?, judge?}")
    if "quality" in body:
        quality = float(body["quality"])
        if not 0 <= quality <= 1:
            raise ValueError("quality must be in [0, 1]")
        sim.model_quality[model] = quality
    if body.get("judge"):
        sim.judges.add(model)
    return _quality(sim, request)


_ROUTES = {
    ("GET", "/_sim/health"): _health,
    ("GET", "/_sim/stats"): _stats,
    ("DELETE", "/_sim/stats"): _reset_stats,
    ("GET", "/_sim/faults"): _faults,
    ("POST", "/_sim/faults"): _add_fault,
    ("DELETE", "/_sim/faults"): _clear_faults,
    ("GET", "/_sim/latency"): _latency,
    ("POST", "/_sim/latency"): _set_latency,
    ("POST", "/_sim/clock"): _advance_clock,
    ("DELETE", "/_sim/cache"): _clear_cache,
    ("GET", "/_sim/quality"): _quality,
    ("POST", "/_sim/quality"): _set_quality,
}
