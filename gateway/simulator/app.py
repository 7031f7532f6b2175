"""The simulator as a bare ASGI application (no framework on the hot path)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from . import control
from .asgi import Request, read_body, send_json
from .clock import Clock
from .config import SimulatorConfig
from .core import Simulator
from .providers import anthropic, gemini, openai
from .tokens import vocabulary

Handler = Callable[[Simulator, Request], Awaitable[None]]


def _openai(endpoint: Handler) -> Handler:
    async def run(sim: Simulator, request: Request) -> None:
        await openai.handle(sim, request, endpoint)

    return run


_ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/chat/completions"): _openai(openai.chat_completions),
    ("POST", "/v1/completions"): _openai(openai.completions),
    ("POST", "/v1/embeddings"): _openai(openai.embeddings),
    ("GET", "/v1/models"): _openai(openai.list_models),
    ("POST", "/v1/messages"): anthropic.handle,
    ("POST", "/v1/messages/count_tokens"): anthropic.handle_count_tokens,
}
# Clients configured with a base URL that lacks `/v1` call the same endpoints without it.
_ROUTES.update({(method, path.removeprefix("/v1")): h for (method, path), h in list(_ROUTES.items())})


class SimulatorApp:
    """ASGI entry point; `simulator` exposes the state (clock, faults, stats) to in-process tests."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive, send, await read_body(receive))
        path = request.path
        handler = _ROUTES.get((request.method, path))
        if handler is not None:
            await handler(self.simulator, request)
        elif path.startswith("/_sim/"):
            await control.handle(self.simulator, request)
        elif path.startswith("/v1beta/models/") and request.method == "POST":
            await gemini.handle(self.simulator, request)
        else:
            await send_json(send, 404, {"error": {"message": f"Unknown path {path}", "type": "not_found"}})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(config: SimulatorConfig | None = None, clock: Clock | None = None) -> SimulatorApp:
    """Build the simulator's ASGI app; pass a `Clock` to control prompt-cache expiry in tests."""
    vocabulary()  # loads both BPE files now rather than during the first request
    return SimulatorApp(Simulator(config, clock))
