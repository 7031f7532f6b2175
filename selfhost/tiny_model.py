"""Build tiny random-weight checkpoints that real vLLM can serve on a CPU without any model hub.

Run it with the vLLM venv's Python (it needs `transformers`, `tokenizers`, `safetensors` and
`compressed-tensors`, which that venv pins)::

    VENV/bin/python -m selfhost.tiny_model [--out DIR]

It writes three checkpoints under ``DIR`` (default ``${TIERGATE_CACHE_DIR:-~/.cache/tiergate}/tiny-models``):

- ``main``  — Llama, hidden 256, 4 layers, 4 heads (head size 64), 2 KV heads, bf16, with a byte-level BPE
  tokenizer trained locally on CPython's standard library and a chat template;
- ``draft`` — a smaller Llama (hidden 128, 2 layers) sharing the tokenizer, for draft-model speculation;
- ``w8a8``  — ``main`` quantized to compressed-tensors int8 W8A8 (per-channel weights, dynamic per-token
  activations), the format llm-compressor writes.

The weights are random, so the text is gibberish; serving, batching, caching, speculation, quantization and
usage accounting are real. The build is deterministic (fixed seeds, sorted corpus) and idempotent: a checkpoint
whose ``.complete`` marker exists is not rebuilt.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sysconfig
from pathlib import Path

import torch

VOCAB_SIZE = 4096
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
CHAT_MARKERS = ["<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MAIN_SHAPE = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 512,
}
DRAFT_SHAPE = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 256,
}
MAX_POSITIONS = 4096
MARKER = ".complete"


def default_output_dir() -> Path:
    cache = os.environ.get("TIERGATE_CACHE_DIR") or str(Path.home() / ".cache" / "tiergate")
    return Path(cache) / "tiny-models"


def build_all(out: Path) -> dict[str, Path]:
    """Build (or reuse) the three checkpoints and return their directories by name."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"main": out / "main", "draft": out / "draft", "w8a8": out / "w8a8"}
    _once(paths["main"], lambda d: _build_llama(d, MAIN_SHAPE, seed=0, tokenizer=_train_tokenizer()))
    _once(
        paths["draft"],
        lambda d: _build_llama(d, DRAFT_SHAPE, seed=1, tokenizer=_load_tokenizer(paths["main"])),
    )
    _once(paths["w8a8"], lambda d: _quantize_w8a8(paths["main"], d))
    return paths


def _once(target: Path, build) -> None:
    """Build into a temporary sibling and rename, so an interrupted build never looks complete."""
    if (target / MARKER).exists():
        return
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    (tmp / MARKER).write_text("ok\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def _train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[*SPECIAL_TOKENS.values(), *CHAT_MARKERS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(
        (p.read_text(encoding="utf-8", errors="replace") for p in corpus), trainer=trainer
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        additional_special_tokens=CHAT_MARKERS,
        model_max_length=MAX_POSITIONS,
        **SPECIAL_TOKENS,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def _build_llama(target: Path, shape: dict[str, int], *, seed: int, tokenizer) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
        **shape,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def _quantize_w8a8(source: Path, target: Path) -> None:
    """Write ``source`` as a compressed-tensors int8 W8A8 checkpoint (lm_head left in bf16)."""
    from compressed_tensors.quantization import QuantizationConfig, QuantizationStatus, preset_name_to_scheme
    from compressed_tensors.quantization.lifecycle.forward import quantize
    from safetensors.torch import load_file, save_file

    scheme = preset_name_to_scheme("W8A8", ["Linear"])
    weight_args = scheme.weights
    tensors = {}
    for name, tensor in load_file(source / "model.safetensors").items():
        if _is_quantized_linear(name):
            weight = tensor.to(torch.float32)
            scale = (weight.abs().amax(dim=1, keepdim=True) / 127.0).clamp(min=1e-8)
            zero_point = torch.zeros_like(scale, dtype=torch.int8)
            tensors[name] = quantize(weight, scale, zero_point, weight_args, dtype=torch.int8)
            tensors[name.removesuffix("weight") + "weight_scale"] = scale.to(torch.bfloat16)
        else:
            tensors[name] = tensor
    save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})

    config = json.loads((source / "config.json").read_text())
    config["quantization_config"] = QuantizationConfig(
        config_groups={"group_0": scheme},
        format="int-quantized",
        ignore=["lm_head"],
        quantization_status=QuantizationStatus.COMPRESSED,
    ).model_dump(exclude_none=True)
    config["quantization_config"]["quant_method"] = "compressed-tensors"
    (target / "config.json").write_text(json.dumps(config, indent=2, default=str))
    for extra in source.iterdir():
        if extra.name not in {"model.safetensors", "config.json", MARKER}:
            shutil.copy2(extra, target / extra.name)


def _is_quantized_linear(name: str) -> bool:
    return name.startswith("model.layers.") and name.endswith("_proj.weight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_output_dir())
    args = parser.parse_args()
    for name, path in build_all(args.out).items():
        print(f"{name}\t{path}")


if __name__ == "__main__":
    main()
