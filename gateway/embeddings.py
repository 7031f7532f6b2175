"""Per-request text embedding shared by the semantic cache and the router.

The default is a static embedding distilled with model2vec from all-MiniLM-L6-v2 (256 dims, shipped in
``gateway/embedding_model/``): a token-vector lookup and a mean, so a 200-token turn costs well under a
millisecond on one core, where the transformer itself costs tens of milliseconds. Quality and speed
against PyTorch MiniLM are measured by ``python -m gateway.cache.bench embeddings``.

Usage::

    vectors = get_embedder().embed(["first text", "second text"])  # float32, (2, dim), L2-normalised
    vectors = await get_embedder().aembed(["text"])  # same, never blocks the event loop
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from model2vec import StaticModel
from tokenizers import Tokenizer

MODEL_DIR = Path(__file__).parent / "embedding_model"
MAX_TOKENS = 512
# Embedding this many characters (~250 tokens) or fewer takes <0.5 ms: cheaper inline than a hop to a thread.
INLINE_MAX_CHARS = 1_000


class Embedder:
    """A static (token-lookup) sentence embedder; thread-safe."""

    def __init__(self, model_dir: Path = MODEL_DIR) -> None:
        vectors = np.load(model_dir / "vectors.npz")["vectors"].astype(np.float32)
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._model = StaticModel(vectors=vectors, tokenizer=tokenizer, normalize=True, max_length=MAX_TOKENS)
        self.dim: int = int(vectors.shape[1])
        self.name: str = f"model2vec-minilm-l6-{self.dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into a float32 array of shape (len(texts), dim) with unit-norm rows.

        A text with no known token maps to the zero vector (cosine 0 with everything).
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._model.encode(list(texts), use_multiprocessing=False)
        return np.ascontiguousarray(out, dtype=np.float32)

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """``embed`` for async callers: short inputs inline, long ones in a worker thread."""
        if sum(len(t) for t in texts) <= INLINE_MAX_CHARS:
            return self.embed(texts)
        return await asyncio.to_thread(self.embed, texts)


@functools.cache
def get_embedder() -> Embedder:
    """The process-wide default embedder, loaded on first use (~0.3 s, ~30 MB RAM)."""
    model_dir = os.environ.get("TIERGATE_EMBEDDING_DIR")
    return Embedder(Path(model_dir)) if model_dir else Embedder()
