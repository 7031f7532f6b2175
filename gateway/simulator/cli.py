"""`gateway simulate-upstream`: serve the simulated OpenAI / Anthropic / Gemini upstream."""

from __future__ import annotations

import os
from typing import Annotated

import orjson
import typer
import uvicorn

from .app import SimulatorApp, create_app
from .config import Latency, SimulatorConfig
from .faults import FaultRule

SETTINGS_ENV = "TIERGATE_SIM_SETTINGS"  # hands the CLI settings to worker processes


def build_app() -> SimulatorApp:
    """App factory for `uvicorn --factory` (used with --workers); settings come from the environment."""
    settings = orjson.loads(os.environ.get(SETTINGS_ENV, "{}"))
    return create_app(_config(**settings))


def _config(
    ttft_ms: float = 0.0,
    itl_ms: float = 0.0,
    min_tokens: int = 16,
    max_tokens: int = 32,
    models: list[str] | None = None,
    api_keys: list[str] | None = None,
    faults: list[str] | None = None,
    fault_seed: int = 0,
) -> SimulatorConfig:
    return SimulatorConfig(
        latency=Latency(ttft_ms=ttft_ms, itl_ms=itl_ms, min_tokens=min_tokens, max_tokens=max_tokens),
        models=tuple(models) if models else None,
        api_keys=tuple(api_keys) if api_keys else None,
        faults=[FaultRule.from_spec(spec) for spec in faults or ()],
        fault_seed=fault_seed,
    )


def simulate_upstream(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8900,
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", "--ttft-ms", help="Time to first token (ms).")
    ] = 0.0,
    itl_ms: Annotated[float, typer.Option(help="Delay between streamed tokens (ms).")] = 0.0,
    min_tokens: Annotated[int, typer.Option(help="Shortest default response, in tokens.")] = 16,
    max_tokens: Annotated[int, typer.Option(help="Longest default response, in tokens.")] = 32,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Known model (repeat); others get 404. Default: any.")
    ] = None,
    api_key: Annotated[
        list[str] | None, typer.Option("--api-key", help="Accepted key (repeat). Default: any non-empty key.")
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="Fault rule (repeat), e.g. 'status=429,count=3', 'kind=reset,rate=0.05,model=gpt-4o', "
            "'kind=hang,hang_s=30', 'kind=stream_error,after_tokens=5'.",
        ),
    ] = None,
    fault_seed: Annotated[int, typer.Option(help="Seed for rate-based faults.")] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes (counters and faults are per worker).")] = 1,
) -> None:
    """Serve a simulated upstream speaking the OpenAI, Anthropic and Gemini wire protocols."""
    settings = {
        "ttft_ms": latency_ms,
        "itl_ms": itl_ms,
        "min_tokens": min_tokens,
        "max_tokens": max_tokens,
        "models": model,
        "api_keys": api_key,
        "faults": fault,
        "fault_seed": fault_seed,
    }
    try:
        config = _config(**settings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    common = {"host": host, "port": port, "log_level": "warning", "access_log": False, "lifespan": "off"}
    if workers > 1:
        os.environ[SETTINGS_ENV] = orjson.dumps(settings).decode()
        uvicorn.run("gateway.simulator.cli:build_app", factory=True, workers=workers, **common)
    else:
        uvicorn.run(create_app(config), **common)


def main() -> None:
    typer.run(simulate_upstream)


if __name__ == "__main__":
    main()
