"""``gateway router``: train, evaluate, batch-score and calibrate the complexity router.

Run as ``python -m gateway.routing.cli`` until it is mounted under ``gateway``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

router_app = typer.Typer(help="Complexity router: train, eval, score, calibrate.", no_args_is_help=True)
# Tables stay readable when stderr is a file or a pipe (rich would fall back to 80 columns).
console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

ArtifactOption = Annotated[
    Path | None, typer.Option(help="Artifact .npz to use (default: latest shipped version).")
]


def _rich_progress(progress: Progress):
    from router_models.train import Progress as Callbacks

    state: dict[str, Any] = {}

    def start(description: str, total: int) -> None:
        if "task" in state:
            progress.update(state["task"], completed=progress.tasks[state["task"]].total)
        state["task"] = progress.add_task(description, total=total)

    return Callbacks(start=start, advance=lambda: progress.advance(state["task"]))


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _require_data() -> None:
    from router_models.data import router_data_available, router_data_dir

    if not router_data_available():
        console.print(f"[red]router data not found in {router_data_dir()} (set TIERGATE_DATA_DIR)")
        raise typer.Exit(2)


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if percent else f"{value:.3f}"


def _results_table(results, title: str = "held-out sources (trained on the other sources)") -> Table:
    table = Table(title=title)
    for column in ("approach", "test source", "n", "AUC", "ECE", "APGR", "CPT(50%)", "CPT(80%)"):
        table.add_column(
            column, justify="left" if column in ("approach", "test source") else "right", no_wrap=True
        )
    for r in results:
        table.add_row(
            r.approach,
            r.held_out,
            str(r.n),
            _fmt(r.auc),
            _fmt(r.ece),
            _fmt(r.apgr),
            _fmt(r.cpt50, True),
            _fmt(r.cpt80, True),
        )
    return table


def _sweep_table(results) -> Table:
    from router_models.evaluate import PGR_SHARES

    table = Table(title="PGR along the threshold sweep (share of strong-model calls)")
    table.add_column("approach", no_wrap=True)
    table.add_column("test source", no_wrap=True)
    for share in PGR_SHARES:
        table.add_column(f"{share:.0%}", justify="right")
    for r in results:
        if r.pgr_at:
            table.add_row(
                r.approach, r.held_out, *(f"{r.pgr_at[f'{share:.1f}']:.2f}" for share in PGR_SHARES)
            )
    return table


@router_app.command()
def train(
    approach: Annotated[str, typer.Option(help="Approach to ship (see `eval`).")] = "structure",
    version: Annotated[int | None, typer.Option(help="Artifact version (default: next free).")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="Default: router_models/artifacts.")] = None,
    source_power: Annotated[float, typer.Option(help="0: weight rows equally, 1: sources equally.")] = 0.5,
) -> None:
    """Train on ../shared/data/router and write a new versioned artifact."""
    from router_models.model import APPROACHES
    from router_models.train import train as run

    if approach not in APPROACHES or not APPROACHES[approach].exportable:
        shippable = [name for name, a in APPROACHES.items() if a.exportable]
        raise typer.BadParameter(f"approach must be one of {shippable}")
    _require_data()
    with _progress_bar() as progress:
        path, held_out = run(approach, source_power, version, output_dir, _rich_progress(progress))
    console.print(_results_table(held_out))
    console.print(_sweep_table(held_out))
    console.print(f"wrote [bold]{path}[/] and {path.with_suffix('.json').name}")


@router_app.command("eval")
def evaluate(
    approach: Annotated[
        list[str] | None, typer.Option(help="Approaches to compare (repeatable; default: all).")
    ] = None,
    label: Annotated[str, typer.Option(help="Label definition: strong-wins or weak-fails.")] = "strong-wins",
    protocol: Annotated[
        str, typer.Option(help="held-out: leave one source out; within: 5-fold CV inside each source.")
    ] = "held-out",
    source_power: Annotated[float, typer.Option()] = 0.5,
    train_source: Annotated[
        list[str] | None,
        typer.Option(help="Sources held-out folds may train on (repeatable; default: mmlu, llmrouter)."),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Also write the results as JSON.")] = None,
) -> None:
    """Evaluate approaches: AUC, calibration, PGR sweep, APGR, CPT(50%), CPT(80%) per source."""
    import numpy as np

    from router_models import data as D
    from router_models.evaluate import held_out_sources, within_sources
    from router_models.model import APPROACHES
    from router_models.train import build_table

    _require_data()
    names = approach or list(APPROACHES)
    unknown = set(names) - set(APPROACHES)
    if unknown:
        raise typer.BadParameter(f"unknown approach(es) {sorted(unknown)}; choose from {list(APPROACHES)}")
    if protocol not in ("held-out", "within"):
        raise typer.BadParameter("protocol must be held-out or within")
    if set(train_source or ()) - set(D.SOURCE_FILES):
        raise typer.BadParameter(f"--train-source must be among {list(D.SOURCE_FILES)}")
    dataset = D.load(label=label)
    approaches = [APPROACHES[n] for n in names]
    n_sources = len(np.unique(dataset.sources))
    with _progress_bar() as progress:
        callbacks = _rich_progress(progress)
        table = build_table(dataset, callbacks)
        if protocol == "held-out":
            callbacks.start("held-out folds", len(names) * n_sources)
            results = held_out_sources(
                approaches,
                dataset,
                table,
                source_power,
                callbacks.advance,
                tuple(train_source or D.TRAINING_SOURCES),
            )
            title = "held-out sources (trained on the other sources)"
        else:
            callbacks.start("within-source folds", len(names) * n_sources * 5)
            results = within_sources(approaches, dataset, table, source_power, on_fold_done=callbacks.advance)
            title = "within each source (5-fold cross-validation)"
    console.print(_results_table(results, title))
    console.print(_sweep_table(results))
    if output:
        payload = {
            "label": label,
            "protocol": protocol,
            "train_sources": train_source or list(D.TRAINING_SOURCES),
            "source_power": source_power,
            "results": [r.as_dict() for r in results],
        }
        output.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {output}")


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict):
                raise typer.BadParameter(f"{path}:{number}: expected a JSON object")
            yield row


def _row_messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    from gateway.routing.features import prompt_messages

    if isinstance(row.get("messages"), list):
        return row["messages"]
    if isinstance(row.get("prompt"), str):
        return prompt_messages(row["prompt"])
    raise typer.BadParameter(f"row {row.get('id')!r} has neither 'prompt' nor 'messages'")


def _load_scorer(artifact: Path | None):
    from gateway.routing.scorer import Scorer, default_scorer

    return Scorer.load(artifact) if artifact else default_scorer()


def _scores(rows: list[dict[str, Any]], scorer) -> list[float]:
    """Production scoring path, one request at a time (a row's own ``score`` is kept)."""
    return [
        float(row["score"])
        if isinstance(row.get("score"), int | float)
        else scorer.score(_row_messages(row), row.get("tools"))
        for row in rows
    ]


@router_app.command()
def score(
    input: Annotated[Path, typer.Option("--input", help="JSONL: {id, prompt} or {id, messages[, tools]}.")],
    output: Annotated[Path, typer.Option("--output", help="JSONL: {id, score}.")],
    artifact: ArtifactOption = None,
) -> None:
    """Score a batch of requests with exactly the gateway's scoring path."""
    scorer = _load_scorer(artifact)
    count = 0
    with output.open("w", encoding="utf-8") as out:
        for row in _read_jsonl(input):
            value = scorer.score(_row_messages(row), row.get("tools"))
            out.write(json.dumps({"id": row.get("id"), "score": value}) + "\n")
            count += 1
    console.print(f"scored {count} requests with artifact v{scorer.version} -> {output}")


@router_app.command()
def calibrate(
    reference: Annotated[
        Path | None,
        typer.Option(
            help="JSONL of your traffic: {prompt | messages} rows, or {score} rows from `score`; "
            "add weak_quality and strong_quality for --min-pgr."
        ),
    ] = None,
    from_ledger: Annotated[
        bool,
        typer.Option(
            "--from-ledger",
            help="Fit --policy's threshold on the ledger (shadow grades, feedback, scored traffic) and "
            "store the result as a candidate version (see gateway/learning/README.md).",
        ),
    ] = False,
    policy: Annotated[str | None, typer.Option(help="--from-ledger: the policy to recalibrate.")] = None,
    team: Annotated[str | None, typer.Option(help="--from-ledger: only this team's traffic.")] = None,
    target: Annotated[
        float | None, typer.Option(help="--from-ledger: quality retained to reach (default: the policy's).")
    ] = None,
    last: Annotated[int, typer.Option(help="--from-ledger: the last N scored requests.")] = 5000,
    save_as: Annotated[
        str | None, typer.Option(help="--from-ledger: store the candidate under this policy name.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="--from-ledger: gateway config (database).")
    ] = None,
    strong_share: Annotated[
        list[float] | None, typer.Option(help="Target share of strong-model calls (repeatable).")
    ] = None,
    min_pgr: Annotated[
        list[float] | None, typer.Option(help="Quality floor: share of the weak-strong gap to recover.")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write the thresholds as JSON here.")] = None,
    artifact: ArtifactOption = None,
) -> None:
    """Thresholds for a routing policy: score >= threshold goes to the stronger model."""
    import datetime as dt

    import numpy as np

    from router_models.calibration import for_min_pgr, for_strong_share

    if from_ledger:
        if not policy:
            raise typer.BadParameter("--from-ledger needs --policy", param_hint="--policy")
        typer.echo(json.dumps(_calibrate_from_ledger(policy, team, target, last, save_as, config), indent=2))
        return
    if reference is None:
        raise typer.BadParameter("give --reference (a JSONL of traffic) or --from-ledger")
    if not strong_share and not min_pgr:
        raise typer.BadParameter("give at least one --strong-share or --min-pgr")
    rows = list(_read_jsonl(reference))
    if not rows:
        raise typer.BadParameter(f"{reference} holds no rows")
    scorer = _load_scorer(artifact)
    scores = np.asarray(_scores(rows, scorer))
    thresholds = [for_strong_share(scores, s) for s in sorted(strong_share or ())]
    if min_pgr:
        try:
            weak = np.asarray([float(r["weak_quality"]) for r in rows])
            strong = np.asarray([float(r["strong_quality"]) for r in rows])
        except (KeyError, TypeError, ValueError) as error:
            raise typer.BadParameter(
                "--min-pgr needs weak_quality and strong_quality on every row"
            ) from error
        thresholds += [for_min_pgr(scores, weak, strong, p) for p in min_pgr]
    payload = {
        "artifact_version": scorer.version,
        "reference": str(reference),
        "n": len(rows),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rule": "route to the stronger model when score >= threshold (null: never)",
        "thresholds": [t.as_dict() for t in thresholds],
    }
    table = Table(title=f"thresholds on {len(rows)} reference requests")
    for column in ("target", "threshold", "strong share", "PGR"):
        table.add_column(column)
    for t in thresholds:
        table.add_row(t.target, f"{t.threshold:.4f}", f"{t.strong_share:.1%}", _fmt(t.pgr))
    console.print(table)
    text = json.dumps(payload, indent=2) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")
    else:
        typer.echo(text, nl=False)


def _calibrate_from_ledger(
    policy: str, team: str | None, target: float | None, last: int, save_as: str | None, config: Path | None
) -> dict[str, Any]:
    """Recalibrate, store the candidate (not activated) and dry-run it against the active version."""
    from gateway.learning.calibrate import CalibrationError, calibrate_policy
    from gateway.routing.policy import Router
    from gateway.routing.policy_cli import _default_actor, _run
    from gateway.routing.simulate import simulate

    async def action(store, engine):
        listed = {row["name"]: row for row in await store.list()}
        if policy not in listed:
            raise LookupError(f"no policy named {policy}")
        row = listed[policy]
        found = await store.get(policy, row["active_version"] or row["latest_version"])
        spec = store.validate(found["document"])
        try:
            result = await calibrate_policy(
                engine, spec, store.deployments, team=team, target=target, last=last
            )
        except CalibrationError as exc:
            console.print(f"[red]cannot calibrate:[/red] {exc}")
            raise typer.Exit(1) from None
        document = result.pop("document")
        if save_as:
            document["name"] = save_as
        comment = (
            f"calibrated from ledger on v{found['version']}"
            + (f" for team {team}" if team else "")
            + f": threshold {result['before']['threshold']} -> {result['after']['threshold']}"
        )
        version = await store.create(document, _default_actor(), comment)
        candidate = Router(store.validate(document), version, store.deployments)
        book = await store.load()
        active = book.routers.get(document["name"]) or book.routers.get(policy)
        dry_run = await simulate(engine, candidate, active, store.deployments, last, team)
        return {**result, "candidate": {"policy": document["name"], "version": version}, "dry_run": dry_run}

    return _run(config, action)


if __name__ == "__main__":
    router_app()
