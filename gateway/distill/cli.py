"""`gateway distill export | purge | train-lora`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

distill_app = typer.Typer(
    help="Distillation datasets: export or purge captured samples, fine-tune the self-hosted model.",
    no_args_is_help=True,
)
console = Console()

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (default: $TIERGATE_CONFIG).")
]


def parse_since(value: str | None) -> datetime | None:
    """ISO 8601 date or time (UTC unless it says otherwise), or a look-back such as `7d` or `12h`."""
    if not value:
        return None
    relative = re.fullmatch(r"(\d+)([dh])", value.strip())
    if relative:
        amount, unit = int(relative[1]), relative[2]
        return datetime.now(UTC) - (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r}: use an ISO date/time or a look-back like 7d or 12h") from exc
    # stored times are UTC (SQLite keeps no offset): compare in UTC
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@distill_app.command("export")
def export_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file (openai) or folder (hf).")],
    fmt: Annotated[str, typer.Option("--format", help="openai (chat fine-tuning JSONL) or hf.")] = "openai",
    team: Annotated[str | None, typer.Option(help="Only this team's samples.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Captured at or after: ISO date/time, or 7d, 12h.")
    ] = None,
    tier: Annotated[list[str] | None, typer.Option(help="Only answers from this tier (repeatable).")] = None,
    min_feedback: Annotated[
        float | None, typer.Option(help="Mean feedback score in [0, 1] at least this (requires feedback).")
    ] = None,
    min_shadow_grade: Annotated[
        float | None, typer.Option(help="Mean shadow grade in [0, 1] at least this (requires a grade).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write captured samples, deduplicated by normalised prompt, as fine-tuning data."""
    from sqlalchemy import create_engine

    from gateway.db.engine import migrate, sync_url
    from gateway.distill.export import Filters, export
    from gateway.settings import load_settings

    if fmt not in ("openai", "hf"):
        raise typer.BadParameter("--format must be openai or hf")
    settings = load_settings(config)
    if settings.auto_migrate:
        migrate(settings.database_url)
    filters = Filters(
        team=team,
        since=parse_since(since),
        tiers=tier or [],
        min_feedback=min_feedback,
        min_shadow_grade=min_shadow_grade,
    )
    engine = create_engine(sync_url(settings.database_url))
    try:
        result = export(engine, fmt, output, filters)  # type: ignore[arg-type]
    finally:
        engine.dispose()
    if not result.written:
        console.print("[red]no samples match these filters: nothing written[/red]")
        raise typer.Exit(1)
    console.print(
        f"wrote {result.written} samples to {result.path} ({fmt}); {result.duplicates} duplicate prompts skipped"
    )


@distill_app.command("purge")
def purge_command(
    before: Annotated[str, typer.Option(help="Delete samples captured before: ISO date/time, or 90d, 12h.")],
    team: Annotated[str | None, typer.Option(help="Only this team's samples.")] = None,
    config: ConfigOption = None,
) -> None:
    """Delete captured samples (retention, or a team's request to forget its data)."""
    from sqlalchemy import create_engine, delete

    from gateway.db.engine import sync_url
    from gateway.db.models import DistillSample
    from gateway.settings import load_settings

    statement = delete(DistillSample).where(DistillSample.created_at < parse_since(before))
    if team:
        statement = statement.where(DistillSample.team == team)
    engine = create_engine(sync_url(load_settings(config).database_url))
    try:
        with engine.begin() as conn:
            deleted = conn.execute(statement).rowcount
    finally:
        engine.dispose()
    console.print(f"deleted {deleted} samples")


@distill_app.command("train-lora")
def train_lora_command(
    data: Annotated[Path, typer.Option(help="OpenAI-format JSONL from `gateway distill export`.")],
    base: Annotated[str, typer.Option(help="Base model: a catalogue deployment name or a checkpoint dir.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where the merged model is written.")],
    name: Annotated[str | None, typer.Option(help="Catalogue deployment to add (default: none).")] = None,
    catalogue: Annotated[
        Path | None, typer.Option(help="Catalogue file to read the base from and register into.")
    ] = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 100,
    learning_rate: Annotated[float, typer.Option(help="AdamW learning rate.")] = 2e-4,
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 4,
    max_length: Annotated[int, typer.Option(help="Truncate examples to this many tokens.")] = 1024,
    port: Annotated[int | None, typer.Option(help="base_port of the new catalogue entry.")] = None,
) -> None:
    """Fine-tune with LoRA on exported samples, merge, and optionally add to the catalogue.

    The adapter (peft) is merged into a full checkpoint that any vLLM serves (selfhost/distill/README.md)."""
    from selfhost.distill.train_lora import LoraRecipe, register, resolve_base, train

    base_deployment, base_dir = resolve_base(base, catalogue)
    recipe = LoraRecipe(
        steps=steps, learning_rate=learning_rate, rank=rank, batch_size=batch_size, max_length=max_length
    )
    result = train(data, base_dir, output, recipe)
    console.print(
        f"trained {result.steps} steps on {result.examples} examples: loss {result.first_loss:.3f} -> "
        f"{result.last_loss:.3f}; merged model in {result.model_dir}"
    )
    if name:
        path = register(
            name, result.model_dir, base_deployment=base_deployment, catalogue_path=catalogue, port=port
        )
        console.print(f"added deployment {name!r} to {path}")
