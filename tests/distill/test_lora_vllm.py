"""CPU smoke test of the LoRA recipe, end to end: samples captured through the gateway are exported,
a LoRA adapter is trained for a few steps on the tiny local model (peft), merged, registered as a new
catalogue entry, and that entry is served by real vLLM and answers the openai SDK. The merged
checkpoint must predict a training answer better than the base, and vLLM's log-probabilities of that
answer must match the checkpoint's: the served model is the fine-tuned one."""

from __future__ import annotations

import json
import shutil
import time

import openai
import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from gateway.cli import app as cli
from selfhost.catalogue import DEFAULT_PATH, load
from selfhost.distill.train_lora import tokenize
from tests.distill.conftest import capture_policy, install_policy, samples
from tests.selfhost.conftest import free_port, serving

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

PROMPTS = ["Name a prime number.", "Say hi.", "Count to three.", "What colour is the sky?", "Spell cat."]


def tokenized(model_dir, example) -> tuple[list[int], list[int]]:
    from transformers import AutoTokenizer

    row = tokenize(AutoTokenizer.from_pretrained(model_dir), example, max_length=256)
    return row["input_ids"], row["labels"]


def answer_nll(model_dir, ids: list[int], labels: list[int]) -> float:
    """Mean negative log-likelihood of the answer tokens under the checkpoint in `model_dir`."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        return model(torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()


def test_lora_fine_tune_is_served_by_vllm_as_a_catalogue_entry(
    make_gateway, vllm_python, tiny_models, tmp_path
):
    timings = {}
    started = time.perf_counter()
    gw = make_gateway()
    install_policy(gw, capture_policy(), team="ml")
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(team="ml"), max_retries=0)
    for prompt in PROMPTS:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": prompt}])
    assert len(samples(gw)) == len(PROMPTS)
    config = tmp_path / "tiergate.yaml"
    config.write_text(f"database_url: {gw.settings.database_url}\n")
    data = tmp_path / "train.jsonl"
    runner = CliRunner()
    exported = runner.invoke(cli, ["distill", "export", "-c", str(config), "-o", str(data)])
    assert exported.exit_code == 0, exported.output
    timings["capture+export"] = time.perf_counter() - started

    catalogue = tmp_path / "catalogue.yaml"
    shutil.copy(DEFAULT_PATH, catalogue)
    started = time.perf_counter()
    trained = runner.invoke(
        cli,
        [
            "distill", "train-lora",
            "--data", str(data),
            "--base", "tiny-cpu",
            "--catalogue", str(catalogue),
            "--output", str(tmp_path / "out"),
            "--name", "tiny-distilled",
            "--steps", "6",
            "--rank", "8",
            "--learning-rate", "5e-3",
            "--max-length", "256",
        ],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    timings["train+merge"] = time.perf_counter() - started

    losses = json.loads((tmp_path / "out" / "distill.json").read_text())["losses"]
    assert len(losses) == 6 and losses[-1] < losses[0], losses  # it learned something
    entry = load(catalogue).get("tiny-distilled")
    base = load(catalogue).get("tiny-cpu")
    assert (
        entry.model == str((tmp_path / "out" / "model").resolve())
        and entry.served_model_name == "tiny-distilled"
    )
    assert (entry.device, entry.dtype, entry.memory, entry.env) == (
        base.device,
        base.dtype,
        base.memory,
        base.env,
    )
    assert "tiny-cpu" in catalogue.read_text() and "LoRA fine-tune" in catalogue.read_text()  # appended
    merged = load_file(tmp_path / "out" / "model" / "model.safetensors")
    original = load_file(tiny_models["main"] / "model.safetensors")
    assert merged.keys() == original.keys()
    changed = [name for name in merged if not merged[name].equal(original[name])]
    assert changed and all("_proj" in name for name in changed)  # LoRA touched the linear layers only
    assert (
        merged["model.layers.0.self_attn.q_proj.weight"].dtype
        == original["model.layers.0.self_attn.q_proj.weight"].dtype
    )

    # the merged checkpoint (read back as vLLM reads it) predicts a training answer better than the base
    example = json.loads(data.read_text().splitlines()[0])
    ids, labels = tokenized(tiny_models["main"], example)
    base_nll = answer_nll(tiny_models["main"], ids, labels)
    merged_nll = answer_nll(tmp_path / "out" / "model", ids, labels)
    assert merged_nll < base_nll - 0.1, (base_nll, merged_nll)

    started = time.perf_counter()
    deployment = entry.model_copy(update={"base_port": free_port()})
    with serving(deployment, vllm_python, tmp_path / "state") as replica:
        timings["vllm start"] = time.perf_counter() - started
        vllm = openai.OpenAI(base_url=f"{replica.plan.base_url}/v1", api_key="unused", max_retries=0)
        assert [m.id for m in vllm.models.list()] == ["tiny-distilled"]
        answer = vllm.chat.completions.create(
            model="tiny-distilled",
            messages=[{"role": "user", "content": PROMPTS[0]}],
            max_tokens=8,
            extra_body={"ignore_eos": True},
        )
        assert answer.model == "tiny-distilled" and answer.usage.completion_tokens == 8
        assert answer.choices[0].message.content
        # vLLM serves exactly the fine-tuned weights: its log-probabilities of the answer match
        scored = vllm.completions.create(
            model="tiny-distilled", prompt=ids, max_tokens=1, extra_body={"prompt_logprobs": 0}
        )
        logprobs = scored.choices[0].model_extra["prompt_logprobs"]
        served = [-logprobs[i][str(ids[i])]["logprob"] for i in range(1, len(ids)) if labels[i] != -100]
        served_nll = sum(served) / len(served)
        assert abs(served_nll - merged_nll) < 0.1 and served_nll < base_nll - 0.1, (
            base_nll,
            merged_nll,
            served_nll,
        )
    print("smoke test timings (s):", {k: round(v, 1) for k, v in timings.items()})
    print(f"answer NLL: base {base_nll:.3f}, merged {merged_nll:.3f}, served by vLLM {served_nll:.3f}")
