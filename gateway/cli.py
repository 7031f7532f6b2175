"""`gateway` command line: serve, migrate, keys, report, demo, simulate-upstream."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gateway.settings import load_settings

app = typer.Typer(
    help="Tiergate: an OpenAI-compatible gateway that cuts LLM inference cost.", no_args_is_help=True
)
keys_app = typer.Typer(help="Create, list and revoke virtual keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (default: $TIERGATE_CONFIG).")
]


def _configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Run the gateway."""
    import os

    import uvicorn

    _configure_logging(log_level)
    if config is not None:
        os.environ["TIERGATE_CONFIG"] = str(config)
    # A request tokenises one short text (its embedding, the verifier's new words): handing that to the
    # tokenizers library's thread pool costs more than tokenising it, and a worker pinned to one core
    # waits for a context switch each time. One event loop per process: tokenise on its own thread.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings = load_settings()
    uvicorn.run(
        "gateway.app:app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=log_level.lower(),
        access_log=False,
        timeout_keep_alive=settings.client_keepalive_s,
    )


@app.command("migrate")
def migrate_command(config: ConfigOption = None) -> None:
    """Create or upgrade the database schema (Alembic)."""
    from gateway.db.engine import migrate

    settings = load_settings(config)
    migrate(settings.database_url)
    console.print(f"schema up to date: {settings.database_url}")


async def _with_keystore(config: Path | None, action):
    from gateway.auth.keys import KeyStore
    from gateway.db.engine import create_engine, migrate

    settings = load_settings(config)
    if settings.auto_migrate:
        await asyncio.to_thread(migrate, settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        return await action(KeyStore(engine))
    finally:
        await engine.dispose()


@keys_app.command("create")
def keys_create(
    team: Annotated[str, typer.Option(help="Team the key belongs to.")],
    project: Annotated[str | None, typer.Option(help="Project within the team.")] = None,
    name: Annotated[str | None, typer.Option(help="A label for humans.")] = None,
    budget_daily_usd: Annotated[float | None, typer.Option(help="Daily budget in USD.")] = None,
    budget_monthly_usd: Annotated[float | None, typer.Option(help="Monthly budget in USD.")] = None,
    rpm_limit: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    config: ConfigOption = None,
) -> None:
    """Create a key. The key is printed once; only its hash is stored."""

    async def create(store):
        return await store.create(
            team=team,
            project=project,
            name=name,
            budget_daily_usd=None if budget_daily_usd is None else str(budget_daily_usd),
            budget_monthly_usd=None if budget_monthly_usd is None else str(budget_monthly_usd),
            rpm_limit=rpm_limit,
        )

    try:
        key, row = asyncio.run(_with_keystore(config, create))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    console.print(f"[bold]{key}[/bold]")
    console.print(
        f"id {row.id}  team {row.team}  project {row.project or '-'}  (store the key now: it is not shown again)"
    )


@keys_app.command("list")
def keys_list(
    include_revoked: Annotated[bool, typer.Option(help="Show revoked keys too.")] = False,
    config: ConfigOption = None,
) -> None:
    """List keys (never the keys themselves)."""
    from gateway.auth.keys import key_to_dict

    rows = asyncio.run(_with_keystore(config, lambda store: store.list(include_revoked)))
    table = Table(
        "id", "prefix", "team", "project", "name", "daily $", "monthly $", "rpm", "created", "revoked"
    )
    for row in map(key_to_dict, rows):
        table.add_row(
            row["id"],
            row["key_prefix"],
            row["team"],
            row["project"] or "",
            row["name"] or "",
            row["budget_daily_usd"] or "",
            row["budget_monthly_usd"] or "",
            str(row["rpm_limit"] or ""),
            row["created_at"][:19],
            (row["revoked_at"] or "")[:19],
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id (from `keys list`).")], config: ConfigOption = None
) -> None:
    """Revoke a key; every replica stops accepting it within its key refresh interval."""
    if not asyncio.run(_with_keystore(config, lambda store: store.revoke(key_id))):
        console.print(f"[red]no active key with id {key_id}[/red]")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")


def _usd(micros: int) -> str:
    return f"${micros / 1e6:,.4f}"


def print_summary(rows: list[dict], group_by: str) -> None:
    """Actual against baseline per group; per-query cost shown per 1,000 queries to stay readable."""
    table = Table(
        group_by,
        "requests",
        "tokens in/out",
        "actual",
        "baseline",
        "saved",
        "$ / 1k queries",
        title=f"Cost per query by {group_by} (from the ledger)",
    )
    requests = cost = baseline = 0
    for row in rows:
        requests += row["requests"]
        cost += row["cost_micros"]
        baseline += row["baseline_cost_micros"]
        table.add_row(
            "(no upstream)" if row["group"] is None else str(row["group"]),
            str(row["requests"]),
            f"{row['input_tokens'] or 0}/{row['output_tokens'] or 0}",
            _usd(row["cost_micros"]),
            _usd(row["baseline_cost_micros"]),
            f"{row['savings_pct']:.1f}%",
            _usd(1000 * row["cost_micros"] // row["requests"]) if row["requests"] else "-",
        )
    table.add_section()
    saved_pct = 100 * (baseline - cost) / baseline if baseline else 0.0
    table.add_row(
        "total",
        str(requests),
        "",
        _usd(cost),
        _usd(baseline),
        f"{saved_pct:.1f}%",
        _usd(1000 * cost // requests) if requests else "-",
    )
    console.print(table)


@app.command()
def demo(
    workload: Annotated[
        Path | None, typer.Option(help="JSONL workload (default: examples/workload.jsonl).")
    ] = None,
    workdir: Annotated[Path, typer.Option(help="Where the demo's SQLite ledger goes.")] = Path(
        ".tiergate/demo"
    ),
    concurrency: Annotated[int, typer.Option(help="Requests in flight.")] = 4,
) -> None:
    """Start the gateway on embedded defaults against the simulated upstream, replay a workload,
    and print the cost-per-query summary from the ledger."""
    from gateway.demo import DEFAULT_WORKLOAD, run_demo

    logging.basicConfig(level="WARNING")
    console.print("Starting the simulated upstream and the gateway (SQLite ledger, no external services)...")
    succeeded, total, by_team, by_deployment = run_demo(workload or DEFAULT_WORKLOAD, workdir, concurrency)
    console.print(
        f"Replayed {total} requests through the gateway with the openai SDK: {succeeded} succeeded."
    )
    print_summary(by_team, "team")
    print_summary(by_deployment, "deployment")
    console.print(
        f"Ledger: {workdir / 'ledger.db'}  (query it with `gateway report` and TIERGATE_DATABASE_URL)"
    )
    if succeeded != total:
        raise typer.Exit(1)


def _mount_subcommands() -> None:
    from gateway.cache.cli import cache_app
    from gateway.distill.cli import distill_app
    from gateway.ledger.report_cli import focus_export, report
    from gateway.routing.cli import router_app
    from gateway.routing.policy_cli import policy_app
    from gateway.simulator.cli import simulate_upstream
    from selfhost.cli import selfhost_app

    app.command("simulate-upstream")(simulate_upstream)
    app.command("report")(report)
    app.command("focus-export")(focus_export)
    app.add_typer(policy_app, name="policy")
    app.add_typer(router_app, name="router")
    app.add_typer(cache_app, name="cache")
    app.add_typer(selfhost_app, name="selfhost")
    app.add_typer(distill_app, name="distill")


_mount_subcommands()

if __name__ == "__main__":
    app()
