"""`gateway report` and `gateway focus-export`: the cost reports and the FOCUS export from a shell."""

from __future__ import annotations

import asyncio
import csv
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from gateway.ledger.report import DIMENSIONS, Report, ReportError, cost_report
from gateway.settings import Settings, load_settings

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (default: $TIERGATE_CONFIG).")
]
SinceOption = Annotated[datetime | None, typer.Option(help="Start (inclusive), ISO date/time, UTC.")]
UntilOption = Annotated[datetime | None, typer.Option(help="End (exclusive), ISO date/time, UTC.")]


def deployment_prices(settings: Settings) -> dict[str, Any]:
    """Each configured deployment's price (litellm's cost map, overridable), for savings attribution."""
    from gateway.ledger.pricing import UnknownPriceError, resolve_price

    prices = {}
    for deployment in settings.deployments:
        try:
            prices[deployment.name] = resolve_price(deployment)
        except UnknownPriceError:
            continue  # that deployment's prompt-caching savings fall under routing
    return prices


def _run(settings: Settings, work):
    from gateway.db.engine import create_engine

    async def run():
        engine = create_engine(settings.database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except ReportError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"--{exc.param.replace('_', '-')}") from exc


def report(
    group_by: Annotated[
        str, typer.Option(help=f"Comma-separated dimensions: {', '.join(DIMENSIONS)}.")
    ] = "deployment",
    since: SinceOption = None,
    until: UntilOption = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
    kind: Annotated[
        str,
        typer.Option(
            help="cost (default); quality: quality retained and feedback with 95% intervals (adds the "
            "task_cluster dimension); at-quality: savings beside quality retained."
        ),
    ] = "cost",
    config: ConfigOption = None,
) -> None:
    """Cost per query from the ledger: actual against baseline, savings by source, tokens, latency."""
    if format not in ("table", "csv", "json"):
        raise typer.BadParameter("choose table, csv or json", param_hint="--format")
    if kind not in ("cost", "quality", "at-quality"):
        raise typer.BadParameter("choose cost, quality or at-quality", param_hint="--kind")
    settings = load_settings(config)
    prices = deployment_prices(settings)
    if kind != "cost":
        _learning_report(settings, kind, group_by, since, until, format, prices)
        return
    result: Report = _run(settings, lambda engine: cost_report(engine, group_by, since, until, prices))
    if format == "json":
        sys.stdout.write(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    elif format == "csv":
        write_csv(result.flat_rows(), sys.stdout)
    else:
        Console(width=max(Console().width, 160)).print(report_table(result))


QUALITY_COLUMNS = (
    "graded",
    "quality_retained",
    "quality_retained_ci_low",
    "quality_retained_ci_high",
    "mean_grade",
    "feedback_count",
    "feedback_mean_score",
    "measurement_cost_usd",
)
AT_QUALITY_COLUMNS = (
    "requests",
    "cost_per_query_usd",
    "savings_pct",
    "quality_retained",
    "quality_retained_ci_low",
    "quality_retained_ci_high",
    "cost_per_query_at_quality_usd",
    "measurement_cost_usd",
    "net_savings_usd",
)


def _learning_report(settings, kind, group_by, since, until, format, prices) -> None:
    from gateway.learning.stats import flat_row, quality_report
    from gateway.ledger.report import cost_at_quality

    if kind == "quality":
        result = _run(settings, lambda engine: quality_report(engine, group_by, since, until))
    else:
        result = _run(settings, lambda engine: cost_at_quality(engine, group_by, since, until, prices))
    rows = [flat_row(row) for row in result["data"]]
    if format == "json":
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif format == "csv":
        write_csv(rows, sys.stdout)
    else:
        wanted = QUALITY_COLUMNS if kind == "quality" else AT_QUALITY_COLUMNS
        dims = result["group_by"]
        title = (
            "Quality retained (shadow grades, 95% CI)" if kind == "quality" else "Cost per query at quality"
        )
        table = Table(*dims, *wanted, title=title)
        for row in rows:
            table.add_row(*(str(row.get(c)) if row.get(c) is not None else "-" for c in (*dims, *wanted)))
        Console(width=max(Console().width, 160)).print(table)


def write_csv(rows: list[dict[str, Any]], out) -> None:
    if not rows:
        return
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def report_table(result: Report) -> Table:
    table = Table(
        *result.group_by,
        "requests",
        "tokens in/out",
        "actual $",
        "baseline $",
        "saved",
        "routing $",
        "cache $",
        "prompt cache $",
        "self-host $",
        "$ / 1k queries",
        "cache hits",
        "p50/p95 ms",
        title="Cost per query (from the ledger)",
    )
    rows = [(key, totals.to_dict()) for key, totals in result.groups]
    for key, row in [*rows, ({d: "total" if i == 0 else "" for i, d in enumerate(result.group_by)}, None)]:
        row = row or result.total.to_dict()
        if key.get(result.group_by[0]) == "total":
            table.add_section()
        tokens = row["tokens"]
        inputs = tokens["input_uncached"] + tokens["input_cache_read"] + tokens["input_cache_write"]
        sources = row["savings_by_source_usd"]
        per_1k = row["cost_per_query_usd"]
        table.add_row(
            *(str(key[d]) if key[d] is not None else "-" for d in result.group_by),
            f"{row['requests']:,}",
            f"{inputs:,}/{tokens['output']:,}",
            row["cost_usd"],
            row["baseline_cost_usd"],
            f"{row['savings_pct']}%" if row["savings_pct"] is not None else "-",
            sources["routing"],
            sources["semantic_cache"],
            sources["prompt_caching"],
            sources["self_hosting"],
            f"{float(per_1k) * 1000:.4f}" if per_1k else "-",
            f"{row['cache_hit_rate_pct']}%" if row["cache_hit_rate_pct"] is not None else "-",
            f"{row['latency_p50_ms'] or '-'}/{row['latency_p95_ms'] or '-'}",
        )
    return table


def focus_export(
    since: SinceOption = None,
    until: UntilOption = None,
    granularity: Annotated[str, typer.Option(help="request, hour or day.")] = "day",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="CSV file (default: stdout).")] = None,
    billing_account: Annotated[str, typer.Option(help="FOCUS BillingAccountId.")] = "tiergate",
    config: ConfigOption = None,
) -> None:
    """FOCUS 1.2-compatible cost and usage CSV (ListCost = baseline, EffectiveCost = actual)."""
    from gateway.ledger.focus import COLUMNS, focus_rows

    settings = load_settings(config)
    prices = deployment_prices(settings)
    providers = {d.name: d.provider for d in settings.deployments}

    async def export(engine) -> int:
        handle = output.open("w", newline="") if output else sys.stdout
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        count = 0
        try:
            async for record in focus_rows(
                engine, since, until, prices, granularity, providers, billing_account
            ):
                writer.writerow(record)
                count += 1
        finally:
            if output:
                handle.close()
        return count

    count = _run(settings, export)
    if output:
        Console(stderr=True).print(f"wrote {count} FOCUS rows to {output}")
