"""The semantic-hit verifier: is a new final turn the same request as a cached one?

Cosine similarity of bag-of-token embeddings cannot tell "How do I open a file in Python 2?" from
"... in Python 3?", or "Why is X good?" from "Why is X not good?". The verifier scores a candidate
pair with a small gradient-boosted classifier over the cosine plus features that catch such changes
(numbers, negations, capitalised names, question words, length and token-overlap mismatches, and how
similar the words that differ are). It is trained by ``gateway.cache.verifier_training``; the shipped
artifact and its operating point are described in ``VERIFIER.md``.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.embeddings import Embedder, get_embedder

ARTIFACT = Path(__file__).parent / "verifier.npz"

_SYMBOL = re.compile(r"[^\w\s'\"?.,!]")
_WORD = re.compile(r"[^\W\d_]+(?:'[a-z]+)?|\d+(?:[.,:/]\d+)*")
_CAPITALISED = re.compile(r"(?<![.?!]\s)(?<!^)\b[A-Z][\w+#.-]*|\b[a-z]+[A-Z][\w]*")
_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "twenty": "20", "hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000",
    "first": "1st", "second": "2nd", "third": "3rd", "fourth": "4th", "fifth": "5th", "last": "last",
}  # fmt: skip
_NEGATIONS = {
    "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot",
    "don't", "doesn't", "didn't", "isn't", "aren't", "wasn't", "weren't", "won't", "wouldn't",
    "can't", "couldn't", "shouldn't", "hasn't", "haven't", "hadn't", "mustn't", "except", "instead",
}  # fmt: skip
_QUESTION_WORDS = ["what", "how", "why", "when", "where", "who", "whom", "whose", "which", "whether"]
_CONTRAST = {"best", "worst", "most", "least", "more", "less", "better", "worse", "before", "after",
             "first", "last", "min", "max", "minimum", "maximum", "increase", "decrease", "buy", "sell",
             "pros", "cons", "advantages", "disadvantages", "start", "stop", "enable", "disable"}  # fmt: skip
_STOP = {
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "being", "do", "does", "did", "to", "of",
    "in", "on", "for", "with", "at", "by", "from", "as", "and", "or", "it", "its", "this", "that", "these",
    "those", "i", "me", "my", "we", "our", "you", "your", "he", "she", "they", "them", "their", "his",
    "her", "can", "could", "should", "would", "will", "shall", "may", "might", "must", "there", "here",
    "what", "how", "why", "when", "where", "who", "which", "some", "any", "so", "if", "about", "into",
    "get", "one", "have", "has", "had", "just", "also", "very", "really", "please", "tell", "us",
}  # fmt: skip

FEATURE_NAMES = [
    "cosine", "diff_cosine", "char_len_ratio", "min_words", "max_words", "word_jaccard",
    "content_jaccard", "content_only_min", "content_only_max", "bigram_jaccard", "has_numbers",
    "numbers_equal", "numbers_symdiff", "negation_diff", "negation_parity", "entity_unmatched",
    "question_word_equal", "first_word_equal", "contrast_symdiff", "words_only_max", "symbols_symdiff",
]  # fmt: skip
# +1: the feature can only raise the probability of "same request"; -1: only lower it.
MONOTONIC = [
    1, 1, 1, 0, 0, 1,
    1, -1, -1, 1, 0,
    1, -1, -1, -1, -1,
    1, 1, -1, -1, -1,
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Parsed:
    words: list[str]
    content: frozenset[str]
    numbers: frozenset[str]
    negations: int
    entities: frozenset[str]
    question_words: frozenset[str]
    contrast: frozenset[str]
    symbols: str


def _parse(text: str) -> _Parsed:
    words = [w.lower() for w in _WORD.findall(text)]
    numbers = {w for w in words if w[0].isdigit()} | {_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS}
    return _Parsed(
        words=words,
        content=frozenset(w for w in words if w not in _STOP),
        numbers=frozenset(numbers),
        negations=sum(w in _NEGATIONS or w.endswith("n't") for w in words),
        entities=frozenset(w.lower() for m in _CAPITALISED.findall(text.strip()) for w in _WORD.findall(m)),
        question_words=frozenset(w for w in words[:12] if w in _QUESTION_WORDS),
        contrast=frozenset(w for w in words if w in _CONTRAST),
        symbols="".join(sorted(_SYMBOL.findall(text))),
    )


def _multiset_symdiff(a: str, b: str) -> int:
    ca, cb = Counter(a), Counter(b)
    return sum(((ca - cb) + (cb - ca)).values())


def _jaccard(a: frozenset[str] | set[str], b: frozenset[str] | set[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def pair_features_many(
    cached: list[str], new: str, cosines: list[float], embedder: Embedder | None = None
) -> np.ndarray:
    """Feature rows for each cached text against ``new`` (one embedding call for all of them)."""
    pb = _parse(new)
    parsed = [_parse(a) for a in cached]
    diffs = [(pa.content - pb.content, pb.content - pa.content) for pa in parsed]
    to_embed = [
        " ".join(sorted(side)) for only_a, only_b in diffs if only_a and only_b for side in (only_a, only_b)
    ]
    vectors = (embedder or get_embedder()).embed(to_embed) if to_embed else None
    rows, k = [], 0
    for a, pa, (only_a, only_b), cosine in zip(cached, parsed, diffs, cosines, strict=True):
        if only_a and only_b:
            diff_cosine = float(vectors[k] @ vectors[k + 1])  # type: ignore[index]
            k += 2
        else:
            diff_cosine = 1.0 if not (only_a or only_b) else 0.0
        rows.append(_row(a, new, pa, pb, cosine, diff_cosine))
    return np.stack(rows) if rows else np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)


def pair_features(a: str, b: str, cosine: float, embedder: Embedder | None = None) -> np.ndarray:
    """The verifier's feature vector for texts ``a`` and ``b`` whose embedding cosine is ``cosine``."""
    return pair_features_many([a], b, [cosine], embedder)[0]


def _row(a: str, b: str, pa: _Parsed, pb: _Parsed, cosine: float, diff_cosine: float) -> np.ndarray:
    only_a, only_b = pa.content - pb.content, pb.content - pa.content
    bigrams_a = set(zip(pa.words, pa.words[1:], strict=False))
    bigrams_b = set(zip(pb.words, pb.words[1:], strict=False))
    len_a, len_b = max(len(a), 1), max(len(b), 1)
    return np.array(
        [
            cosine,
            diff_cosine,
            min(len_a, len_b) / max(len_a, len_b),
            min(len(pa.words), len(pb.words)),
            max(len(pa.words), len(pb.words)),
            _jaccard(set(pa.words), set(pb.words)),
            _jaccard(pa.content, pb.content),
            min(len(only_a), len(only_b)),
            max(len(only_a), len(only_b)),
            _jaccard(bigrams_a, bigrams_b),
            float(bool(pa.numbers or pb.numbers)),
            float(pa.numbers == pb.numbers),
            len(pa.numbers ^ pb.numbers),
            abs(pa.negations - pb.negations),
            float((pa.negations % 2) != (pb.negations % 2)),
            len(pa.entities - set(pb.words)) + len(pb.entities - set(pa.words)),
            float(pa.question_words == pb.question_words),
            float(bool(pa.words) and bool(pb.words) and pa.words[0] == pb.words[0]),
            len(pa.contrast ^ pb.contrast),
            max(len(set(pa.words) - set(pb.words)), len(set(pb.words) - set(pa.words))),
            _multiset_symdiff(pa.symbols, pb.symbols),
        ],
        dtype=np.float32,
    )


class Forest:
    """Boosted trees as flat arrays, evaluated for all trees at once with numpy.

    scikit-learn's predictor costs 3-35 ms per single-row call here (per-tree Python dispatch and
    OpenMP start-up under CPU contention); this costs ~0.1 ms and needs no pickle at load time.
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.feature, self.threshold = arrays["feature"], arrays["threshold"]
        self.left, self.right = arrays["left"], arrays["right"]
        self.is_leaf, self.value = arrays["is_leaf"], arrays["value"]
        self.baseline = float(arrays["baseline"])
        self.depth = int(arrays["depth"])
        # Flattened with global node ids; a leaf's children are itself, so walking `depth` steps
        # from every root lands every tree on its leaf without per-step leaf checks.
        n_trees, width = self.feature.shape
        own = np.arange(n_trees * width, dtype=np.int64).reshape(n_trees, width)
        offsets = (np.arange(n_trees, dtype=np.int64) * width)[:, None]
        self._roots = offsets.ravel()
        self._feature = self.feature.ravel().astype(np.int64)
        self._threshold = self.threshold.ravel()
        self._left = np.where(self.is_leaf, own, self.left + offsets).ravel()
        self._right = np.where(self.is_leaf, own, self.right + offsets).ravel()
        self._value = self.value.ravel()

    @classmethod
    def from_sklearn(cls, model: object) -> Forest:
        """From a fitted binary ``HistGradientBoostingClassifier`` with numerical features only."""
        trees = [predictors[0].nodes for predictors in model._predictors]  # type: ignore[attr-defined]
        width = max(len(t) for t in trees)

        def stack(field: str, dtype: type) -> np.ndarray:
            out = np.zeros((len(trees), width), dtype=dtype)
            for i, nodes in enumerate(trees):
                out[i, : len(nodes)] = nodes[field]
            return out

        return cls({
            "feature": stack("feature_idx", np.int32), "threshold": stack("num_threshold", np.float64),
            "left": stack("left", np.int32), "right": stack("right", np.int32),
            "is_leaf": stack("is_leaf", np.bool_), "value": stack("value", np.float64),
            "baseline": np.array(model._baseline_prediction).ravel()[0],  # type: ignore[attr-defined]
            "depth": np.array(max(int(t["depth"].max()) for t in trees)),
        })  # fmt: skip

    def arrays(self) -> dict[str, np.ndarray]:
        return {"feature": self.feature, "threshold": self.threshold, "left": self.left, "right": self.right,
                "is_leaf": self.is_leaf, "value": self.value, "baseline": np.array(self.baseline),
                "depth": np.array(self.depth)}  # fmt: skip

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """P(same request) for each row of ``x`` (n, n_features)."""
        x = np.asarray(x, dtype=np.float64)
        node = np.broadcast_to(self._roots, (len(x), len(self._roots)))
        for _ in range(self.depth):
            go_left = np.take_along_axis(x, self._feature.take(node), axis=1) <= self._threshold.take(node)
            node = np.where(go_left, self._left.take(node), self._right.take(node))
        raw = self.baseline + self._value.take(node).sum(axis=1)
        return 1.0 / (1.0 + np.exp(-raw))


def save_artifact(path: Path, forest: Forest, threshold: float, min_cosine: float) -> None:
    np.savez_compressed(path, **forest.arrays(), features=np.array(FEATURE_NAMES),
                        operating_threshold=np.array(threshold), min_cosine=np.array(min_cosine))  # fmt: skip


class Verifier:
    """Scores (cached text, new text, cosine) as the probability that both ask the same thing."""

    def __init__(self, path: Path = ARTIFACT, embedder: Embedder | None = None) -> None:
        with np.load(path) as bundle:
            if list(bundle["features"]) != FEATURE_NAMES:
                raise ValueError(f"{path} was trained on other features; retrain with `cache train-verifier`")
            self.forest = Forest({k: bundle[k] for k in bundle.files})
            self.default_threshold: float = float(bundle["operating_threshold"])
            self.min_cosine: float = float(bundle["min_cosine"])
        self._embedder = embedder

    def score_many(self, cached: list[str], new: str, cosines: list[float]) -> np.ndarray:
        """Scores of several cached candidates against one new text, in one model evaluation."""
        scores = np.zeros(len(cached))
        eligible = [i for i, c in enumerate(cosines) if c >= self.min_cosine]
        if eligible:
            x = pair_features_many(
                [cached[i] for i in eligible], new, [cosines[i] for i in eligible], self._embedder
            )
            scores[eligible] = self.forest.predict_proba(x)
        return scores

    def score(self, cached: str, new: str, cosine: float) -> float:
        return float(self.score_many([cached], new, [cosine])[0])


@functools.cache
def get_verifier() -> Verifier:
    return Verifier()
