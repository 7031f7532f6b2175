"""Fine-tune a self-hosted model with LoRA on distillation samples and add the result to the catalogue.

Input: OpenAI chat fine-tuning JSONL (`gateway distill export --format openai`). Each line's last
message is the answer to learn; the loss covers only its tokens. The adapter (peft) is trained with
the `transformers` Trainer, then merged into the base weights: the output folder is a plain
checkpoint that any vLLM serves without LoRA support (``model/``), beside the adapter itself
(``adapter/``) for servers started with ``--enable-lora``.

Run it in an environment with ``torch``, ``transformers``, ``peft`` and ``datasets`` (the gateway's
``ml`` extra)::

    gateway distill train-lora --data samples.jsonl --base tiny-cpu --output out/ --name tiny-distilled
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from selfhost.catalogue import DEFAULT_PATH, Deployment, cache_dir, load

TOKENIZER_FILES = (
    "tokenizer*",
    "special_tokens_map.json",
    "chat_template.*",
    "vocab.*",
    "merges.txt",
    "*.model",
    "generation_config.json",
)


@dataclass(frozen=True)
class LoraRecipe:
    steps: int = 100
    learning_rate: float = 2e-4
    rank: int = 16
    batch_size: int = 4
    max_length: int = 1024
    target_modules: str | list[str] = "all-linear"
    seed: int = 0


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    adapter_dir: Path
    examples: int
    steps: int
    first_loss: float
    last_loss: float


def resolve_base(base: str, catalogue_path: Path | None = None) -> tuple[Deployment | None, str]:
    """A checkpoint directory as given, or the model of the catalogue deployment named `base`."""
    if Path(base).is_dir():
        return None, base
    deployment = load(catalogue_path or DEFAULT_PATH).get(base)
    return deployment, deployment.resolved_model()


def read_examples(path: Path) -> list[dict[str, Any]]:
    examples = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        messages = record.get("messages") or []
        if not messages or messages[-1].get("role") != "assistant":
            raise ValueError(f"{path}:{number}: the last message must be the assistant's answer")
        examples.append(record)
    return examples


def tokenize(tokenizer, record: dict[str, Any], max_length: int) -> dict[str, list[int]]:
    """Input ids of the whole conversation; labels only on the final answer (the rest is -100)."""
    messages, tools = record["messages"], record.get("tools")
    full = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    prompt = tokenizer.apply_chat_template(
        messages[:-1], tools=tools, tokenize=False, add_generation_prompt=True
    )
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_length]
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    shared = 0
    while shared < min(len(full_ids), len(prompt_ids)) and full_ids[shared] == prompt_ids[shared]:
        shared += 1
    return {"input_ids": full_ids, "labels": [-100] * shared + full_ids[shared:]}


def train(data: Path, base: str, output: Path, recipe: LoraRecipe = LoraRecipe()) -> TrainResult:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    torch.manual_seed(recipe.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples = read_examples(data)
    rows = [tokenize(tokenizer, record, recipe.max_length) for record in examples]
    rows = [row for row in rows if any(label != -100 for label in row["labels"])]
    if not rows:
        raise ValueError(f"{data}: no example has answer tokens to learn")
    dataset = Dataset.from_list(rows)

    saved_dtype = getattr(AutoConfig.from_pretrained(base), "dtype", None) or torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)  # train in full precision
    lora = LoraConfig(
        r=recipe.rank,
        lora_alpha=2 * recipe.rank,
        lora_dropout=0.0,
        target_modules=recipe.target_modules,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    args = TrainingArguments(
        output_dir=str(output / "trainer"),
        max_steps=recipe.steps,
        per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        seed=recipe.seed,
        disable_tqdm=True,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]

    adapter_dir, model_dir = output / "adapter", output / "model"
    model.save_pretrained(adapter_dir)
    merged = model.merge_and_unload().to(saved_dtype)
    merged.config.use_cache = True  # the Trainer turned it off for training
    merged.save_pretrained(model_dir, safe_serialization=True)
    _copy_tokenizer(base, tokenizer, model_dir)
    result = TrainResult(model_dir, adapter_dir, len(rows), trainer.state.global_step, losses[0], losses[-1])
    provenance = {
        "base": str(base),
        "data": str(data),
        "recipe": asdict(recipe),
        "losses": losses,
        "created_at": datetime.now(UTC).isoformat(),
    }
    (output / "distill.json").write_text(json.dumps(provenance, indent=2) + "\n")
    shutil.rmtree(output / "trainer", ignore_errors=True)
    return result


def _copy_tokenizer(base: str, tokenizer, target: Path) -> None:
    """The base's own tokenizer files (byte for byte), so the server reads exactly what it read before."""
    source = Path(base)
    if not source.is_dir():
        tokenizer.save_pretrained(target)
        return
    for pattern in TOKENIZER_FILES:
        for path in source.glob(pattern):
            shutil.copy2(path, target / path.name)


def catalogue_entry(name: str, model_dir: Path, base: Deployment | None, port: int) -> dict[str, Any]:
    """The base deployment's serving settings for the merged checkpoint (bf16/fp32 weights: the
    base's quantization and speculative decoding are not carried over)."""
    entry = base.model_dump(mode="json", exclude_defaults=True) if base else {"cost": {"hourly_usd": "0"}}
    for dropped in ("quantization", "speculative", "tokenizer", "replicas"):
        entry.pop(dropped, None)
    model = str(model_dir.resolve())
    cache = str(cache_dir().resolve())
    if model.startswith(cache + "/"):
        model = "{cache_dir}" + model[len(cache) :]
    entry.update(name=name, model=model, served_model_name=name, base_port=port)
    return entry


def register(
    name: str,
    model_dir: Path,
    *,
    base_deployment: Deployment | None,
    catalogue_path: Path | None = None,
    port: int | None = None,
) -> Path:
    """Append a deployment serving `model_dir` to the catalogue (comments and order are kept) and
    validate the result; on any problem the file is left as it was."""
    path = Path(catalogue_path or DEFAULT_PATH)
    catalogue = load(path)
    if port is None:
        port = max(d.base_port + d.replicas for d in catalogue.deployments)
    entry = catalogue_entry(name, model_dir, base_deployment, port)
    original = path.read_text()
    block = yaml.safe_dump([entry], sort_keys=False, default_flow_style=None, width=110)
    comment = f"# LoRA fine-tune written by `gateway distill train-lora` on {datetime.now(UTC):%Y-%m-%d}.\n"
    text = original.rstrip("\n") + "\n\n" + _indent(comment + block)
    path.write_text(text)
    try:
        load(path).get(name)
    except Exception:
        path.write_text(original)
        raise
    return path


def _indent(text: str) -> str:
    return "".join(f"  {line}" if line.strip() else line for line in text.splitlines(keepends=True))
