"""Fixtures for prompt caching: a simulator that records what it receives, long shared prompts,
and gateways with the Anthropic Messages router mounted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from gateway.embedded import GatewayServer
from gateway.simulator.server import SimulatorServer


class RecordingSimulator(SimulatorServer):
    """The simulator, keeping the JSON body of every request it receives (`received`)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[str, dict[str, Any]]] = []
        app = self.app

        async def recording(scope, receive, send):
            if scope["type"] != "http" or scope["path"].startswith("/_sim"):
                return await app(scope, receive, send)
            chunks: list[bytes] = []

            async def replay():
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    self.received.append((scope["path"], orjson.loads(b"".join(chunks) or b"{}")))
                return message

            return await app(scope, replay, send)

        self._server.config.app = recording

    def last(self, path_suffix: str) -> dict[str, Any]:
        return next(body for path, body in reversed(self.received) if path.endswith(path_suffix))


@pytest.fixture(scope="module")
def recording_simulator() -> Iterator[RecordingSimulator]:
    with RecordingSimulator() as sim:
        yield sim


@pytest.fixture(autouse=True)
def _fresh_caches(request: pytest.FixtureRequest) -> None:
    if "recording_simulator" in request.fixturenames:
        sim = request.getfixturevalue("recording_simulator")
        sim.received.clear()
        sim.simulator.clear_caches()


def prose(words: int, seed: int = 0) -> str:
    """Deterministic English-like text of about `words` words (~1.3 tokens each)."""
    vocabulary = [
        "the",
        "gateway",
        "routes",
        "each",
        "request",
        "to",
        "the",
        "cheapest",
        "deployment",
        "that",
        "can",
        "answer",
        "it",
        "well",
        "while",
        "keeping",
        "latency",
        "budgets",
        "and",
        "tenant",
        "isolation",
        "intact",
        "across",
        "every",
        "region",
        "and",
        "tier",
    ]
    return " ".join(
        vocabulary[(i * 7 + seed) % len(vocabulary)] + ("." if i % 17 == 16 else "") for i in range(words)
    )


@pytest.fixture
def anthropic_gateway(make_gateway) -> Callable[..., GatewayServer]:
    """A gateway with `POST /v1/messages` (mounted here until app.py mounts the router)."""
    from gateway.api.anthropic.routes import router

    def start(**overrides: Any) -> GatewayServer:
        gw = make_gateway(**overrides)
        if not any(getattr(route, "path", None) == "/v1/messages" for route in gw.app.routes):
            gw.app.include_router(router)
        return gw

    return start
