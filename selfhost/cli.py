"""`gateway selfhost …`: plan, start, inspect, price and stop the vLLM replicas of the catalogue.

Until the lead mounts ``selfhost_app`` under the gateway CLI: ``python -m selfhost.cli --help``.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import httpx
import typer
import yaml
from rich.console import Console
from rich.table import Table

from selfhost import catalogue as cat
from selfhost.cost import NoTrafficError, TokenCounters, measured_price
from selfhost.launcher import Launcher, LaunchError, checkpoint_problems, compose_services, plan
from selfhost.probe import probe

selfhost_app = typer.Typer(
    help="Self-hosted vLLM tier: catalogue -> `vllm serve` replicas.", no_args_is_help=True
)
console = Console()

CatalogueOpt = Annotated[
    Path, typer.Option("--catalogue", "-c", envvar="TIERGATE_SELFHOST_CATALOGUE", help="Catalogue YAML.")
]
StateOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", envvar="TIERGATE_SELFHOST_STATE_DIR", help="Where state.json and logs live."),
]
NamesArg = Annotated[list[str] | None, typer.Argument(help="Deployment names (default: all).")]


def _deployments(path: Path, names: list[str] | None) -> list[cat.Deployment]:
    try:
        catalogue = cat.load(path)
        return [catalogue.get(n) for n in names] if names else catalogue.deployments
    except (cat.CatalogueError, KeyError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


@selfhost_app.command("plan")
def plan_cmd(
    names: NamesArg = None,
    catalogue: CatalogueOpt = cat.DEFAULT_PATH,
    fmt: Annotated[str, typer.Option("--format", help="shell | json | compose")] = "shell",
) -> None:
    """Print the exact `vllm serve` commands (or a compose file) without starting anything."""
    deployments = _deployments(catalogue, names)
    for problem in (p for d in deployments for p in checkpoint_problems(d)):
        console.print(f"[yellow]warning:[/yellow] {problem}", highlight=False)
    if fmt == "compose":
        services = {k: v for d in deployments for k, v in compose_services(d).items()}
        print(yaml.safe_dump({"services": services}, sort_keys=False))
    elif fmt == "json":
        rows = [
            {"id": p.id, "base_url": p.base_url, "argv": p.argv, "env": p.env}
            for d in deployments
            for p in plan(d)
        ]
        print(json.dumps(rows, indent=2))
    elif fmt == "shell":
        for p in (p for d in deployments for p in plan(d)):
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in p.env.items())
            print(f"# {p.id} -> {p.base_url}\n{env} {shlex.join(p.argv)}\n")
    else:
        raise typer.BadParameter("--format must be shell, json or compose")


@selfhost_app.command()
def up(
    names: NamesArg = None,
    catalogue: CatalogueOpt = cat.DEFAULT_PATH,
    state_dir: StateOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each replica's /v1/models.")] = 600.0,
) -> None:
    """Start the replicas that are not running yet and wait until they serve."""
    deployments = _deployments(catalogue, names)
    started = time.monotonic()
    try:
        running = Launcher(state_dir).up(deployments, timeout=timeout)
    except LaunchError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from exc
    for r in running:
        console.print(f"{r.plan.id}\t{r.plan.base_url}\tpid {r.pid}\tlog {r.log}", highlight=False)
    console.print(f"ready after {time.monotonic() - started:.0f} s")


@selfhost_app.command()
def status(state_dir: StateOpt = None) -> None:
    """Health and load of every running replica, read from its /metrics."""
    running = Launcher(state_dir).running()

    async def scrape():
        async with httpx.AsyncClient() as client:
            return await asyncio.gather(*(probe(client, r.plan.base_url) for r in running))

    loads = asyncio.run(scrape()) if running else []
    table = Table(
        "replica", "url", "pid", "healthy", "running", "waiting", "kv cache", "ttft p50", "ttft p95"
    )
    for r, load in zip(running, loads, strict=True):
        table.add_row(
            r.plan.id,
            r.plan.base_url,
            str(r.pid),
            "yes" if load.healthy else f"no ({load.error})",
            str(load.running),
            str(load.waiting),
            f"{load.kv_cache_usage:.1%}",
            _seconds(load.ttft_p50),
            _seconds(load.ttft_p95),
        )
    console.print(table)


@selfhost_app.command()
def cost(
    catalogue: CatalogueOpt = cat.DEFAULT_PATH,
    state_dir: StateOpt = None,
    window: Annotated[float, typer.Option(help="Seconds between the two counter readings.")] = 60.0,
) -> None:
    """Measured $/1M tokens of each running replica over a window (the on-prem cost model)."""
    deployments = {d.name: d for d in _deployments(catalogue, None)}
    running = Launcher(state_dir).running()

    async def readings():
        async with httpx.AsyncClient() as client:
            first = await asyncio.gather(*(probe(client, r.plan.base_url) for r in running))
            await asyncio.sleep(window)
            return first, await asyncio.gather(*(probe(client, r.plan.base_url) for r in running))

    before, after = asyncio.run(readings()) if running else ([], [])
    table = Table("replica", "$/hour", "tokens/hour", "utilisation", "input $/1M", "output $/1M")
    for r, a, b in zip(running, before, after, strict=True):
        price_of = deployments[r.plan.deployment].cost
        try:
            p = measured_price(price_of, TokenCounters.from_load(a), TokenCounters.from_load(b))
        except NoTrafficError:
            table.add_row(r.plan.id, str(price_of.hourly_usd), "0", "0", "no traffic", "no traffic")
            continue
        table.add_row(
            r.plan.id,
            str(price_of.hourly_usd),
            f"{p.tokens_per_hour:,}",
            "-" if p.utilisation is None else f"{p.utilisation:.1%}",
            _usd(p.input_micro_usd_per_million),
            _usd(p.output_micro_usd_per_million),
        )
    console.print(table)


@selfhost_app.command()
def down(
    ids: Annotated[
        list[str] | None, typer.Argument(help="Replica ids or deployment names (default: all).")
    ] = None,
    state_dir: StateOpt = None,
) -> None:
    """Stop replicas (SIGTERM, then SIGKILL after 30 s)."""
    for stopped in Launcher(state_dir).down(ids):
        console.print(f"stopped {stopped}")


def _usd(micro: int) -> str:
    return str(Decimal(micro).scaleb(-6))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


if __name__ == "__main__":
    selfhost_app()
