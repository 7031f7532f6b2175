"""Per-request text embedding shared by the semantic cache and the router.

The default is a static embedding distilled with model2vec from all-MiniLM-L6-v2 (256 dims, shipped in
``gateway/embedding_model/``): a token-vector lookup and a mean, so a 200-token turn costs well under a
millisecond on one core, where the transformer itself costs tens of milliseconds. Quality and speed
against PyTorch MiniLM are measured by ``python -m gateway.cache.bench embeddings``.

Usage::

    vectors = get_embedder().embed(["first text", "second text"])  # float32, (2, dim), L2-normalised
    vectors = await get_embedder().aembed(["text"])  # same, never blocks the event loop
    sums, counts = get_embedder().word_sums(["list", "python"])  # per-word token-vector sums (cached)

A text's embedding is the normalised mean of its token vectors, so the embedding of any bag of words
is the normalised sum of their ``word_sums``: the cache's verifier compares the words two texts do
not share that way without tokenising again (``embed(" ".join(words))`` gives the same vector).
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from model2vec import StaticModel
from tokenizers import Tokenizer

MODEL_DIR = Path(__file__).parent / "embedding_model"
MAX_TOKENS = 512
# Embedding this many characters (~250 tokens) or fewer takes <0.5 ms: cheaper inline than a hop to a thread.
INLINE_MAX_CHARS = 1_000
# Words whose token-vector sums are kept (a word costs ~1 KiB: 16 MiB at most).
WORD_CACHE_SIZE = 16_384


class Embedder:
    """A static (token-lookup) sentence embedder; thread-safe."""

    def __init__(self, model_dir: Path = MODEL_DIR) -> None:
        vectors = np.load(model_dir / "vectors.npz")["vectors"].astype(np.float32)
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._model = StaticModel(vectors=vectors, tokenizer=tokenizer, normalize=True, max_length=MAX_TOKENS)
        tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer = tokenizer
        self._unk = self._model.unk_token_id
        self.dim: int = int(vectors.shape[1])
        self.name: str = f"model2vec-minilm-l6-{self.dim}"
        self._vectors = vectors
        self._vocab: dict[str, int] = tokenizer.get_vocab()
        self._words: OrderedDict[str, tuple[np.ndarray, int]] = OrderedDict()  # O(1) eviction of the oldest

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into a float32 array of shape (len(texts), dim) with unit-norm rows.

        A text with no known token maps to the zero vector (cosine 0 with everything).
        """
        # What StaticModel.encode computes (mean of the token vectors, unknown tokens dropped, L2-normalised;
        # tests/cache/test_embeddings.py checks they agree), without its per-call batching, progress-bar
        # and truncation set-up, which cost ~4x the arithmetic for the one short text a request embeds.
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, encoding in enumerate(
            self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        ):
            ids = encoding.ids if self._unk is None else [i for i in encoding.ids if i != self._unk]
            if ids:
                out[row] = self._vectors[ids].mean(axis=0)
        out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-32
        return out

    def word_sums(self, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per word: the sum of its token vectors (float32, (len(words), dim)) and its token count.

        Unknown tokens are dropped, as ``embed`` drops them. Words are tokenised once and remembered
        (the least recently added are forgotten beyond ``WORD_CACHE_SIZE``).
        """
        cache = self._words
        missing = list(dict.fromkeys(w for w in words if w not in cache))
        if missing:
            # A lower-case ASCII word that is itself a vocabulary entry is that one token: the BERT
            # normaliser leaves it as is, nothing splits it, and WordPiece matches the whole word first.
            whole = [w for w in missing if w.isascii() and w.isalpha() and w.islower() and w in self._vocab]
            for word in whole:
                cache[word] = self._sum([self._vocab[word]])
            rest = [w for w in missing if w not in cache]
            encodings = self._tokenizer.encode_batch_fast(rest, add_special_tokens=False) if rest else []
            for word, encoding in zip(rest, encodings, strict=True):
                cache[word] = self._sum(encoding.ids)
            while len(cache) > WORD_CACHE_SIZE:
                cache.popitem(last=False)
        items = [cache.get(w) for w in words]
        for i, item in enumerate(items):
            if item is None:  # forgotten in between (another thread filled the cache): tokenise again
                items[i] = self._sum(self._tokenizer.encode(words[i], add_special_tokens=False).ids)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32), np.zeros(0, dtype=np.int64)
        return np.stack([v for v, _ in items]), np.array([n for _, n in items], dtype=np.int64)  # type: ignore[misc]

    def _sum(self, ids: list[int]) -> tuple[np.ndarray, int]:
        ids = [i for i in ids if i != self._unk]
        return (self._vectors[ids].sum(axis=0) if ids else np.zeros(self.dim, dtype=np.float32)), len(ids)

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
