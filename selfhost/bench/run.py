"""Benchmark catalogue deployments on real vLLM against a plain HF transformers generate loop.

Run it with the vLLM venv's Python (it needs vLLM, transformers and torch)::

    VENV/bin/python -m selfhost.bench.run --catalogue my-gpu-catalogue.yaml \\
        --deployments llama-8b-bf16,llama-8b-awq,llama-8b-fp8-eagle3 --hf-model meta-llama/Llama-3.1-8B-Instruct

    VENV/bin/python -m selfhost.bench.run --tiny     # CPU: tiny bf16 vs n-gram / draft speculation vs W8A8

Each deployment is started by the launcher, measured at every concurrency level with streamed completions
(fixed prompt, ``max_tokens`` generated tokens, ``ignore_eos``, greedy), then stopped. The HF baseline
decodes the same prompts with ``model.generate`` one request at a time and in static batches. Results go to
stdout and ``--out`` as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

from selfhost import catalogue as cat
from selfhost.launcher import Launcher
from selfhost.probe import probe

PROMPT = "def moving_average(values, window):\n    total = 0\n    for i, value in enumerate(values):\n"


@dataclass(frozen=True)
class Result:
    engine: str
    config: str
    concurrency: int
    requests: int
    output_tokens: int
    seconds: float
    ttft_p50: float | None = None
    latency_p50: float | None = None
    spec_acceptance: float | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.output_tokens / self.seconds


async def _one_request(client: openai.AsyncOpenAI, model: str, max_tokens: int) -> tuple[float, float, int]:
    started = time.perf_counter()
    first = None
    tokens = 0
    stream = await client.completions.create(
        model=model,
        prompt=PROMPT,
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].text:
            first = time.perf_counter()
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    done = time.perf_counter()
    return (first or done) - started, done - started, tokens


async def measure_vllm(base_url: str, model: str, concurrency: int, requests: int, max_tokens: int) -> Result:
    limit = asyncio.Semaphore(concurrency)
    async with (
        openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused") as client,
        httpx.AsyncClient() as http,
    ):

        async def bounded():
            async with limit:
                return await _one_request(client, model, max_tokens)

        await _one_request(client, model, 4)  # warm-up outside the measurement
        before = await probe(http, base_url)
        started = time.perf_counter()
        samples = await asyncio.gather(*(bounded() for _ in range(requests)))
        seconds = time.perf_counter() - started
        after = await probe(http, base_url)
    drafted = after.spec_draft_tokens - before.spec_draft_tokens
    accepted = after.spec_accepted_tokens - before.spec_accepted_tokens
    return Result(
        engine="vLLM",
        config="",
        concurrency=concurrency,
        requests=requests,
        output_tokens=sum(s[2] for s in samples),
        seconds=seconds,
        ttft_p50=statistics.median(s[0] for s in samples),
        latency_p50=statistics.median(s[1] for s in samples),
        spec_acceptance=accepted / drafted if drafted else None,
    )


def measure_hf(model_dir: str, batch_size: int, requests: int, max_tokens: int, device: str) -> Result:
    """Plain transformers: ``generate`` over static batches of ``batch_size`` identical-length prompts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(device).eval()
    inputs = tokenizer([PROMPT] * batch_size, return_tensors="pt").to(device)
    kwargs = {"max_new_tokens": max_tokens, "min_new_tokens": max_tokens, "do_sample": False}
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=4, do_sample=False)  # warm-up
        started = time.perf_counter()
        produced = 0
        for _ in range(requests // batch_size):
            out = model.generate(**inputs, **kwargs)
            produced += (out.shape[1] - inputs["input_ids"].shape[1]) * batch_size
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    return Result("HF generate", "", batch_size, requests, produced, seconds)


def table(results: list[Result]) -> str:
    header = (
        "| engine | config | concurrency / batch | requests | output tok/s | TTFT p50 (s) | latency p50 (s) "
        "| spec acceptance |\n|---|---|---|---|---|---|---|---|\n"
    )
    rows = [
        f"| {r.engine} | {r.config} | {r.concurrency} | {r.requests} | {r.tokens_per_second:.0f} "
        f"| {_fmt(r.ttft_p50)} | {_fmt(r.latency_p50)} "
        f"| {'-' if r.spec_acceptance is None else f'{r.spec_acceptance:.0%}'} |"
        for r in results
    ]
    return header + "\n".join(rows) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def tiny_catalogue() -> tuple[cat.Catalogue, str]:
    """bf16, bf16 + n-gram or draft-model speculation, and W8A8 variants of the tiny CPU model (built if missing)."""
    from selfhost.tiny_model import build_all, default_output_dir

    models = build_all(default_output_dir())
    common = {
        "served_model_name": "tiny",
        "device": "cpu",
        "dtype": "bfloat16",
        "enforce_eager": True,
        "memory": {"max_model_len": 2048, "cpu_kv_cache_gib": 1},
        "cost": {"hourly_usd": "0.10"},
        "env": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    }
    ngram = {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4, "prompt_lookup_min": 2}
    deployments = [
        {"name": "tiny-bf16", "model": str(models["main"]), "base_port": 8290, **common},
        {
            "name": "tiny-bf16-ngram",
            "model": str(models["main"]),
            "base_port": 8291,
            "speculative": ngram,
            **common,
        },
        {
            "name": "tiny-bf16-draft",
            "model": str(models["main"]),
            "base_port": 8293,
            "speculative": {
                "method": "draft_model",
                "model": str(models["draft"]),
                "num_speculative_tokens": 3,
            },
            **common,
        },
        {
            "name": "tiny-w8a8",
            "model": str(models["w8a8"]),
            "base_port": 8292,
            "quantization": {"scheme": "int8-w8a8"},
            **common,
        },
    ]
    return cat.Catalogue.model_validate({"deployments": deployments}), str(models["main"])


def describe(d: cat.Deployment) -> str:
    parts = [d.name]
    if d.quantization:
        parts.append(d.quantization.scheme)
    if d.speculative:
        parts.append(f"spec={d.speculative.method}")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description="vLLM vs HF generate; speculation and quantization on/off.")
    parser.add_argument(
        "--tiny", action="store_true", help="CPU preset: the tiny models of selfhost.tiny_model"
    )
    parser.add_argument("--catalogue", type=Path, default=cat.DEFAULT_PATH)
    parser.add_argument("--deployments", default="", help="comma-separated deployment names to compare")
    parser.add_argument("--hf-model", help="checkpoint for the HF transformers baseline (omit to skip it)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="device of the HF baseline")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for a server")
    parser.add_argument("--out", type=Path, default=Path("selfhost-bench.md"))
    args = parser.parse_args()

    if args.tiny:
        catalogue, hf_model = tiny_catalogue()
        names, device = [d.name for d in catalogue.deployments], "cpu"
    else:
        catalogue, hf_model, device = cat.load(args.catalogue), args.hf_model, args.device
        names = [n for n in args.deployments.split(",") if n]
    levels = [int(c) for c in args.concurrency.split(",")]

    results: list[Result] = []
    if hf_model:
        for batch in levels:
            r = measure_hf(hf_model, batch, max(args.requests // 4, batch), args.max_tokens, device)
            results.append(Result(**{**r.__dict__, "config": Path(hf_model).name}))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    with tempfile.TemporaryDirectory() as state_dir:
        launcher = Launcher(state_dir=Path(state_dir))
        for name in names:
            deployment = catalogue.get(name)
            (replica,) = launcher.up([deployment.model_copy(update={"replicas": 1})], timeout=args.timeout)
            try:
                for c in levels:
                    r = asyncio.run(
                        measure_vllm(
                            replica.plan.base_url,
                            deployment.served_model_name,
                            c,
                            args.requests,
                            args.max_tokens,
                        )
                    )
                    results.append(Result(**{**r.__dict__, "config": describe(deployment)}))
                    print(table(results[-1:]).splitlines()[-1], flush=True)
            finally:
                launcher.down()
    report = table(results)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps([r.__dict__ for r in results], indent=2))
    print("\n" + report)


if __name__ == "__main__":
    main()
