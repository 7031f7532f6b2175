"""The semantic-hit verifier: is a new final turn the same request as a cached one?

Cosine similarity of bag-of-token embeddings cannot tell "How do I open a file in Python 2?" from
"... in Python 3?", or "Why is X good?" from "Why is X not good?". The verifier scores a candidate
pair with a small gradient-boosted classifier over the cosine plus features that catch such changes
(numbers, negations, capitalised names, question words, length and token-overlap mismatches, and how
similar the words that differ are). It is trained by ``gateway.cache.verifier_training``; the shipped
artifact and its operating point are described in ``VERIFIER.md``.

A second stage asks the full all-MiniLM-L6-v2 transformer (int8 ONNX, ``gateway.cache.minilm_onnx``)
about the few candidates the trees score at ``SECOND_STAGE_FLOOR`` or more: a candidate whose
transformer cosine with the new text is under the calibrated ``second_stage_min_cosine`` scores 0.
Without the local export the first stage decides alone (logged once).
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from gateway.cache.forest import Forest
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
# "X to Y", "X into Y", "X over Y", ...: the same words around such a connector, swapped, ask something
# else ("convert Celsius to Fahrenheit" / "Fahrenheit to Celsius", "tofu over bean curd").
ROLE = re.compile(r"\b([A-Za-z][\w+#-]*) (to|into|over|from|instead of) (?:(a|an|the) )?([A-Za-z][\w+#-]*)\b")
# A binary operator between two operands ("2x + 5", "a < b", "3*4"; not the hyphen of "6-year-old").
_OPERAND = r"(?:\b\d+(?:\.\d+)?[a-zA-Z]?\b|\b[a-zA-Z]\b|[)\]])"
OPERATOR = re.compile(_OPERAND + r"\s*(==|!=|<=|>=|[-+*/^<>=×÷])\s*(?=[(\[]|\d|\b[a-zA-Z]\b)")
# Connectors whose two sides are not interchangeable: a word moved across one, while another moves the
# other way, asks something else ("JSON to a dict" / "a dict to JSON", "Rust faster than Go").
_DIRECTED = ("to", "into", "onto", "from", "over", "than", "before", "after", "instead", "toward", "towards")
# Words whose opposites ask the opposite: one text with one side, the other with the other.
_OPPOSITE_PAIRS = [
    ("more", "less"), ("greater", "less"), ("increase", "decrease"), ("increasing", "decreasing"),
    ("add", "subtract"), ("plus", "minus"), ("multiply", "divide"), ("above", "below"), ("higher", "lower"),
    ("larger", "smaller"), ("bigger", "smaller"), ("faster", "slower"), ("longer", "shorter"),
    ("maximum", "minimum"), ("max", "min"), ("ascending", "descending"), ("cheaper", "expensive"),
    ("easier", "harder"), ("better", "worse"), ("best", "worst"), ("most", "least"), ("before", "after"),
    ("first", "last"), ("buy", "sell"), ("start", "stop"), ("enable", "disable"), ("install", "uninstall"),
    ("encrypt", "decrypt"), ("encode", "decode"), ("import", "export"), ("upload", "download"),
    ("push", "pull"), ("open", "close"), ("lose", "gain"), ("advantages", "disadvantages"), ("pros", "cons"),
    ("true", "false"), ("always", "never"), ("upper", "lower"), ("inner", "outer"), ("left", "right"),
    ("old", "new"), ("hot", "cold"), ("positive", "negative"), ("fastest", "slowest"), ("largest", "smallest"),
    ("highest", "lowest"), ("cheapest", "expensive"), ("easiest", "hardest"), ("male", "female"),
    ("rich", "poor"),
]  # fmt: skip
_OPPOSITES: dict[str, frozenset[str]] = {
    w: frozenset(b for a, b in [*_OPPOSITE_PAIRS, *((y, x) for x, y in _OPPOSITE_PAIRS)] if a == w)
    for w in {w for pair in _OPPOSITE_PAIRS for w in pair}
}
# People and audiences ("for an adult" / "for my 6-year-old", "my son" / "my boss").
_PEOPLE = {
    "child", "children", "kid", "kids", "adult", "adults", "beginner", "beginners", "expert", "experts",
    "boss", "wife", "husband", "son", "daughter", "mother", "father", "mom", "dad", "friend", "girlfriend",
    "boyfriend", "student", "students", "teacher", "baby", "teenager", "toddler", "manager", "employee",
    "customer", "doctor", "patient", "parent", "parents", "grandmother", "dog", "cat", "man", "woman", "men",
    "women", "boy", "girl", "brother", "sister", "senior",
}  # fmt: skip
_AGE = re.compile(r"\b(\d{1,3})[- ]years?[- ]old\b", re.I)
_PRONOUNS = {"i", "me", "my", "mine", "myself", "you", "your", "yours", "yourself", "we", "us", "our",
             "he", "him", "his", "she", "her", "they", "them", "their", "someone", "somebody", "anyone"}  # fmt: skip
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
    "align_min", "align_max", "worst_match", "unmatched_idf_max", "idf_jaccard", "idf_symdiff",
    "idf_words_jaccard", "order_discordance", "pronoun_symdiff", "role_swap",
]  # fmt: skip
# +1: the feature can only raise the probability of "same request"; -1: only lower it.
MONOTONIC = [
    1, 1, 1, 0, 0, 1,
    1, -1, -1, 1, 0,
    1, -1, -1, -1, -1,
    1, 1, -1, -1, -1,
    1, 1, 1, -1, 1, -1,
    1, -1, -1, -1,
]  # fmt: skip
# A content word counts as matched when the other text has a word at least this similar.
MATCHED_SIMILARITY = 0.8
# The features that need word vectors, the costly part of a row (in the order ``_row`` gives them):
# the serving path computes them last, and only for candidates whose score could still reach the serving
# threshold whatever their values (``Forest.upper_bound``).
VECTOR_FEATURES = ("diff_cosine", "align_min", "align_max", "worst_match", "unmatched_idf_max")
_VECTOR_COLUMNS = [FEATURE_NAMES.index(name) for name in VECTOR_FEATURES]
_NO_VECTORS = (0.0, 0.0, 0.0, 0.0, 0.0)
# Texts whose analysis is remembered (candidates recur across lookups): ~7 KB each for a 100-character
# question, so ~60 MB at most. Word vectors are not copied per text: they stay in the embedder's word cache.
TEXT_CACHE_SIZE = 8192
# Candidates the trees score under this never reach the second stage (no policy serves them by default).
SECOND_STAGE_FLOOR = 0.5
SECOND_STAGE_MODEL = "minilm-l6-int8"


class PairEncoder(Protocol):
    """What the second stage needs (``gateway.cache.minilm_onnx.SentenceEncoder``)."""

    def cosines(self, cached: Sequence[str], new: str) -> np.ndarray: ...


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
    word_set: frozenset[str]
    bigrams: frozenset[tuple[str, str]]
    length: int
    order: dict[str, int]  # content word -> position, for words that occur once
    pronouns: frozenset[str]
    roles: frozenset[tuple[str, str, str]]  # (x, connector, y) for "x to y" and the like
    operators: tuple[str, ...]  # binary operators between operands, sorted ("2x + 5 = 17": "+", "=")
    people: frozenset[str]  # people and audiences named, ages as "age:6"


def _parse(text: str) -> _Parsed:
    words = [w.lower() for w in _WORD.findall(text)]
    numbers = {w for w in words if w[0].isdigit()} | {_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS}
    content = [w for w in words if w not in _STOP]
    counts = Counter(content)
    return _Parsed(
        words=words,
        content=frozenset(content),
        numbers=frozenset(numbers),
        negations=sum(w in _NEGATIONS or w.endswith("n't") for w in words),
        entities=frozenset(w.lower() for m in _CAPITALISED.findall(text.strip()) for w in _WORD.findall(m)),
        question_words=frozenset(w for w in words[:12] if w in _QUESTION_WORDS),
        contrast=frozenset(w for w in words if w in _CONTRAST),
        symbols="".join(sorted(_SYMBOL.findall(text))),
        word_set=frozenset(words),
        bigrams=frozenset(itertools.pairwise(words)),
        length=max(len(text), 1),
        order={w: i for i, w in enumerate(content) if counts[w] == 1},
        pronouns=frozenset(w for w in words if w in _PRONOUNS),
        roles=frozenset(
            (m[0].lower(), m[1], m[3].lower())
            for m in ROLE.findall(text)
            if m[0].lower() not in _STOP and m[3].lower() not in _STOP and m[0].lower() != m[3].lower()
        ),
        operators=tuple(sorted(OPERATOR.findall(text))),
        people=frozenset(w for w in words if w in _PEOPLE) | {f"age:{m}" for m in _AGE.findall(text)},
    )


def _crossed(a: list[str], b: list[str]) -> bool:
    """Whether, around a directional connector both texts hold once, one shared content word moved from
    before it to after it while another moved the other way ("JSON to a dict" / "a dict to JSON")."""
    ca, cb = Counter(a), Counter(b)
    for connector in _DIRECTED:
        if ca[connector] != 1 or cb[connector] != 1:
            continue
        ia, ib = a.index(connector), b.index(connector)
        shared = [w for w, n in ca.items() if n == 1 and cb[w] == 1 and w not in _STOP and w not in _DIRECTED]
        before_a = {w for w in shared if a.index(w) < ia}
        before_b = {w for w in shared if b.index(w) < ib}
        if before_a - before_b and before_b - before_a:
            return True
    return False


def _opposed(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether one text holds a word and the other (only) its opposite ("increase" / "decrease")."""
    only_b = b - a
    return any(w not in b and _OPPOSITES[w] & only_b for w in a if w in _OPPOSITES)


# Vetoes: changes that make a different request whatever the trees say. Each takes both parsed texts.
VETOES = {
    "direction_swapped": lambda a, b: _crossed(a.words, b.words),
    "operator_changed": lambda a, b: bool(a.operators) and bool(b.operators) and a.operators != b.operators,
    "opposite_words": lambda a, b: _opposed(a.word_set, b.word_set),
    "numbers_changed": lambda a, b: bool(a.numbers) and bool(b.numbers) and a.numbers != b.numbers,
    "person_changed": lambda a, b: bool(a.people - b.people) and bool(b.people - a.people),
}


def vetoed(a: str, b: str, names: Iterable[str] = VETOES) -> list[str]:
    """The vetoes (of ``names``) that ``a`` and ``b`` trip."""
    pa, pb = _parse(a), _parse(b)
    return [name for name in names if VETOES[name](pa, pb)]


@dataclass(frozen=True, slots=True)
class _Text:
    """A parsed text, its content words (sorted) with their IDF weights, and the IDF weights of its content
    words and of all its words, summed (for the pairs' weighted overlaps)."""

    parsed: _Parsed
    content: tuple[str, ...]
    idf: np.ndarray
    content_weight: float
    words_weight: float


def _multiset_symdiff(a: str, b: str) -> int:
    if a == b:
        return 0
    ca, cb = Counter(a), Counter(b)
    return sum(((ca - cb) + (cb - ca)).values())


def _discordance(a: dict[str, int], b: dict[str, int]) -> float:
    """Share of the pairs of words both texts hold once whose order differs ("X over Y" / "Y over X")."""
    shared = [w for w in a if w in b]
    if len(shared) < 2:
        return 0.0
    in_b = [b[w] for w in sorted(shared, key=a.__getitem__)]
    pairs = len(in_b) * (len(in_b) - 1) // 2
    return sum(x > y for i, x in enumerate(in_b) for y in in_b[i + 1 :]) / pairs


def _jaccard(a: frozenset | set, b: frozenset | set) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0


class Featuriser:
    """Computes the verifier's features; ``idf`` (word -> weight, learned from the training split) and
    ``idf_unseen`` (the weight of any other word) come with the artifact they were trained for.

    Analysed texts are remembered (bounded), so the cached side of a pair, which recurs across lookups,
    is analysed once; word vectors come from the embedder's word cache.
    """

    def __init__(self, idf: dict[str, float], idf_unseen: float, embedder: Embedder | None = None) -> None:
        self.idf, self.idf_unseen = idf, idf_unseen
        self._embedder = embedder
        self._texts: OrderedDict[str, _Text] = OrderedDict()  # O(1) eviction of the oldest

    @property
    def embedder(self) -> Embedder:
        return self._embedder or get_embedder()

    def analyse(self, texts: Sequence[str]) -> dict[str, _Text]:
        """The analyses of ``texts``: remembered ones, and the others analysed now."""
        found = {}
        for text in texts:
            if (analysis := self._texts.get(text)) is None:
                p = _parse(text)
                content = tuple(sorted(p.content))
                idf = np.array([self.idf.get(w, self.idf_unseen) for w in content], dtype=np.float64)
                analysis = _Text(p, content, idf, self.weight(p.content), self.weight(p.word_set))
                if len(self._texts) >= TEXT_CACHE_SIZE:
                    self._texts.popitem(last=False)
                self._texts[text] = analysis
            found[text] = analysis
        return found

    def _word_vectors(self, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token-vector sums of ``words`` and the same as unit vectors (zero stays zero)."""
        sums, _ = self.embedder.word_sums(words)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        return sums, np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0)

    def weight(self, words: Iterable[str]) -> float:
        return sum(self.idf.get(w, self.idf_unseen) for w in words)

    def _shared_weight(self, a: frozenset[str], b: frozenset[str]) -> float:
        """``weight(a & b)``, iterating the smaller set (the union's and symmetric difference's weights
        follow from it and each side's total: a pair costs its overlap, not all its words)."""
        small, large = (a, b) if len(a) <= len(b) else (b, a)
        return self.weight(w for w in small if w in large)

    def many(self, cached: Sequence[str], new: str, cosines: Sequence[float]) -> np.ndarray:
        """Feature rows for each cached text against ``new``."""
        cands, tb = self.texts(cached, new)
        rows = self.rows_without_vectors(cands, tb, cosines)
        self.fill_vector_features(rows, cands, tb)
        return rows

    def texts(self, cached: Sequence[str], new: str) -> tuple[list[_Text], _Text]:
        """The analyses of the ``cached`` texts and of ``new``."""
        texts = self.analyse([new, *cached])
        return [texts[a] for a in cached], texts[new]

    def rows_without_vectors(self, cands: Sequence[_Text], tb: _Text, cosines: Sequence[float]) -> np.ndarray:
        """Feature rows with the ``VECTOR_FEATURES`` columns left at 0 (``fill_vector_features``)."""
        rows = [self._row(ta, tb, c, _NO_VECTORS) for ta, c in zip(cands, cosines, strict=True)]
        return np.array(rows, dtype=np.float32).reshape(len(rows), len(FEATURE_NAMES))

    def fill_vector_features(self, rows: np.ndarray, cands: Sequence[_Text], tb: _Text) -> None:
        """Write the ``VECTOR_FEATURES`` of each candidate against ``tb`` into its row.

        One candidate at a time, as in training: a matrix product over several candidates' words rounds
        differently with other batch mates (1.0 against 0.99999994), the trees split that close to 1, and a
        pair's score must not depend on which other candidates its lookup found.
        """
        if not len(cands):
            return
        vectors = [self._vector_features([ta], tb)[0] for ta in cands]
        diff, align_a, align_b, worst, unmatched = np.array(vectors, dtype=np.float64).T
        rows[:, _VECTOR_COLUMNS] = np.column_stack(
            [diff, np.minimum(align_a, align_b), np.maximum(align_a, align_b), worst, unmatched]
        )

    def vetoed_many(self, cached: Sequence[str], new: str, names: Sequence[str]) -> np.ndarray:
        """For each cached text, whether it and ``new`` trip any of the vetoes ``names``."""
        return self.vetoed(*self.texts(cached, new), names)

    @staticmethod
    def vetoed(cands: Sequence[_Text], tb: _Text, names: Sequence[str]) -> np.ndarray:
        """``vetoed_many`` on texts already analysed."""
        pb = tb.parsed
        return np.array([any(VETOES[n](ta.parsed, pb) for n in names) for ta in cands], dtype=bool)

    def _vector_features(self, cands: Sequence[_Text], tb: _Text) -> list[tuple[float, ...]]:
        """(diff_cosine, align_a, align_b, worst, unmatched_max) for every candidate against ``tb``,
        with one matrix product and segment reductions over all candidates' words at once."""
        if not tb.content or any(not ta.content for ta in cands) or not cands:
            return [self._vector_features_one(ta, tb) for ta in cands]
        lengths = np.array([len(ta.content) for ta in cands])
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        sums, units = self._word_vectors([*(w for ta in cands for w in ta.content), *tb.content])
        n = len(sums) - len(tb.content)
        sums, units, sums_b, units_b = sums[:n], units[:n], sums[n:], units[n:]
        idf_a = np.concatenate([ta.idf for ta in cands])
        sim = units @ units_b.T  # (all candidate words, new words)
        best_a = sim.max(axis=1)
        best_b = np.maximum.reduceat(sim, starts, axis=0)  # (candidates, new words)
        align_a = np.add.reduceat(idf_a * best_a, starts) / np.add.reduceat(idf_a, starts)
        align_b = best_b @ tb.idf / tb.idf.sum()
        worst = np.minimum(np.minimum.reduceat(best_a, starts), best_b.min(axis=1))
        unmatched = np.maximum(
            np.maximum.reduceat(np.where(best_a < MATCHED_SIMILARITY, idf_a, 0.0), starts),
            np.where(best_b < MATCHED_SIMILARITY, tb.idf, 0.0).max(axis=1),
        )
        # The words each side holds alone, summed: the embedding of those bags (diff_cosine).
        new_words = tb.parsed.content
        only_a = np.array([w not in new_words for ta in cands for w in ta.content])
        va = np.add.reduceat(sums * only_a[:, None], starts)
        only_b = np.array([[w not in ta.parsed.content for w in tb.content] for ta in cands])
        vb = only_b.astype(np.float32) @ sums_b
        na, nb = np.linalg.norm(va, axis=1), np.linalg.norm(vb, axis=1)
        any_a = np.add.reduceat(only_a, starts) > 0
        any_b = only_b.any(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = np.where((na > 0) & (nb > 0), np.einsum("ij,ij->i", va, vb) / (na * nb), 0.0)
        diff = np.where(any_a & any_b, diff, np.where(any_a | any_b, 0.0, 1.0))
        return list(zip(diff.tolist(), align_a.tolist(), align_b.tolist(), worst.tolist(), unmatched.tolist(),
                        strict=True))  # fmt: skip

    def _vector_features_one(self, ta: _Text, tb: _Text) -> tuple[float, ...]:
        """``_vector_features`` for one candidate, word by word (also the reference in tests)."""
        pa, pb = ta.parsed, tb.parsed
        (sums_a, units_a), (sums_b, units_b) = self._word_vectors(ta.content), self._word_vectors(tb.content)
        only_a, only_b = pa.content - pb.content, pb.content - pa.content
        if only_a and only_b:
            va = sums_a[[i for i, w in enumerate(ta.content) if w in only_a]].sum(axis=0)
            vb = sums_b[[i for i, w in enumerate(tb.content) if w in only_b]].sum(axis=0)
            na, nb = float(np.linalg.norm(va)), float(np.linalg.norm(vb))
            diff_cosine = float(va @ vb) / (na * nb) if na > 0 and nb > 0 else 0.0
        else:
            diff_cosine = 1.0 if not (only_a or only_b) else 0.0
        # Token alignment: each content word's best match among the other text's content words.
        if ta.content and tb.content:
            sim = units_a @ units_b.T
            best_a, best_b = sim.max(axis=1), sim.max(axis=0)
            align_a = float(ta.idf @ best_a / ta.idf.sum())
            align_b = float(tb.idf @ best_b / tb.idf.sum())
            worst = float(min(best_a.min(), best_b.min()))
            unmatched = [*ta.idf[best_a < MATCHED_SIMILARITY], *tb.idf[best_b < MATCHED_SIMILARITY]]
            unmatched_max = float(max(unmatched)) if unmatched else 0.0
        elif ta.content or tb.content:
            align_a = align_b = worst = 0.0
            unmatched_max = float(max(ta.idf.max(initial=0.0), tb.idf.max(initial=0.0)))
        else:
            align_a = align_b = worst = 1.0
            unmatched_max = 0.0
        return diff_cosine, align_a, align_b, worst, unmatched_max

    def _row(self, ta: _Text, tb: _Text, cosine: float, vector: tuple[float, ...]) -> list[float]:
        pa, pb = ta.parsed, tb.parsed
        only_a, only_b = pa.content - pb.content, pb.content - pa.content
        diff_cosine, align_a, align_b, worst, unmatched_max = vector
        content_shared = self._shared_weight(pa.content, pb.content)
        content_union = ta.content_weight + tb.content_weight - content_shared
        words_shared = self._shared_weight(pa.word_set, pb.word_set)
        words_union = ta.words_weight + tb.words_weight - words_shared
        return [
            cosine,
            diff_cosine,
            min(pa.length, pb.length) / max(pa.length, pb.length),
            min(len(pa.words), len(pb.words)),
            max(len(pa.words), len(pb.words)),
            _jaccard(pa.word_set, pb.word_set),
            _jaccard(pa.content, pb.content),
            min(len(only_a), len(only_b)),
            max(len(only_a), len(only_b)),
            _jaccard(pa.bigrams, pb.bigrams),
            float(bool(pa.numbers or pb.numbers)),
            float(pa.numbers == pb.numbers),
            len(pa.numbers ^ pb.numbers),
            abs(pa.negations - pb.negations),
            float((pa.negations % 2) != (pb.negations % 2)),
            len(pa.entities - pb.word_set) + len(pb.entities - pa.word_set),
            float(pa.question_words == pb.question_words),
            float(bool(pa.words) and bool(pb.words) and pa.words[0] == pb.words[0]),
            len(pa.contrast ^ pb.contrast),
            max(len(pa.word_set - pb.word_set), len(pb.word_set - pa.word_set)),
            _multiset_symdiff(pa.symbols, pb.symbols),
            min(align_a, align_b),
            max(align_a, align_b),
            worst,
            unmatched_max,
            content_shared / content_union if content_union > 0 else 1.0,
            max(content_union - content_shared, 0.0),
            words_shared / words_union if words_union > 0 else 1.0,
            _discordance(pa.order, pb.order),
            len(pa.pronouns ^ pb.pronouns),
            sum((y, c, x) in pb.roles for x, c, y in pa.roles),
        ]


def learn_idf(texts: Iterable[str], min_count: int = 2) -> tuple[dict[str, float], float]:
    """Smoothed inverse document frequency of each word seen in ``min_count`` texts or more, and the
    weight given to every other word (that of a word seen once)."""
    unique = set(texts)
    counts = Counter(w for t in unique for w in _parse(t).word_set)
    n = len(unique)
    idf = {w: math.log((n + 1) / (c + 1)) + 1.0 for w, c in counts.items() if c >= min_count}
    return idf, math.log((n + 1) / 2) + 1.0


def pair_features(a: str, b: str, cosine: float, featuriser: Featuriser | None = None) -> np.ndarray:
    """The verifier's feature vector for texts ``a`` and ``b`` whose embedding cosine is ``cosine``
    (with the shipped artifact's IDF unless ``featuriser`` is given)."""
    return (featuriser or get_verifier().featuriser).many([a], b, [cosine])[0]


def save_artifact(
    path: Path,
    forest: Forest,
    threshold: float,
    min_cosine: float,
    featuriser: Featuriser,
    second_stage_min_cosine: float | None = None,
    vetoes: Sequence[str] = (),
) -> None:
    words = sorted(featuriser.idf)
    second = {} if second_stage_min_cosine is None else {
        "second_stage_model": np.array(SECOND_STAGE_MODEL),
        "second_stage_min_cosine": np.array(second_stage_min_cosine),
        "second_stage_floor": np.array(SECOND_STAGE_FLOOR),
    }  # fmt: skip
    np.savez_compressed(path, **forest.arrays(), features=np.array(FEATURE_NAMES),
                        operating_threshold=np.array(threshold), min_cosine=np.array(min_cosine),
                        idf_words=np.array(words), idf_values=np.array([featuriser.idf[w] for w in words]),
                        idf_unseen=np.array(featuriser.idf_unseen), vetoes=np.array(list(vetoes), dtype=str),
                        **second)  # fmt: skip


_AUTO = object()


class Verifier:
    """Scores (cached text, new text, cosine) as the probability that both ask the same thing.

    ``encoder``: the second stage's sentence encoder; by default the local MiniLM export
    (``gateway.cache.minilm_onnx.get_encoder``, None when absent); None turns the second stage off.
    """

    def __init__(
        self, path: Path = ARTIFACT, embedder: Embedder | None = None, encoder: object = _AUTO
    ) -> None:
        with np.load(path) as bundle:
            if list(bundle["features"]) != FEATURE_NAMES:
                raise ValueError(f"{path} was trained on other features; retrain with `cache train-verifier`")
            self.forest = Forest({k: bundle[k] for k in bundle.files})
            self.default_threshold: float = float(bundle["operating_threshold"])
            self.min_cosine: float = float(bundle["min_cosine"])
            idf = dict(zip(bundle["idf_words"].tolist(), bundle["idf_values"].tolist(), strict=True))
            self.featuriser = Featuriser(idf, float(bundle["idf_unseen"]), embedder)
            second = "second_stage_min_cosine" in bundle.files
            self.second_stage_min_cosine: float | None = (
                float(bundle["second_stage_min_cosine"]) if second else None
            )
            self.second_stage_floor = float(bundle["second_stage_floor"]) if second else SECOND_STAGE_FLOOR
            self.vetoes: list[str] = bundle["vetoes"].tolist() if "vetoes" in bundle.files else []
        if unknown := set(self.vetoes) - set(VETOES):
            raise ValueError(
                f"{path} names unknown vetoes {sorted(unknown)}; retrain with `cache train-verifier`"
            )
        self._encoder = encoder

    @property
    def encoder(self) -> PairEncoder | None:
        """The second stage's encoder, or None when it is off (no export, or not in the artifact)."""
        if self.second_stage_min_cosine is None:
            return None
        if self._encoder is _AUTO:
            from gateway.cache.minilm_onnx import get_encoder

            self._encoder = get_encoder()
        return self._encoder  # type: ignore[return-value]

    @property
    def second_stage_active(self) -> bool:
        return self.encoder is not None

    def score_many(self, cached: Sequence[str], new: str, cosines: Sequence[float]) -> np.ndarray:
        """Scores of several cached candidates against one new text: the first stage for all, then
        the second stage (when active) for those at ``second_stage_floor`` or more."""
        return self.second_stage(cached, new, self.first_stage_many(cached, new, cosines))

    def asks_second_stage(self, scores: np.ndarray, threshold: float | None = None) -> bool:
        """Whether ``second_stage`` would run the transformer for these first-stage scores."""
        return self.encoder is not None and bool(np.any(scores >= self._second_stage_bar(threshold)))

    def second_stage(
        self, cached: Sequence[str], new: str, scores: np.ndarray, threshold: float | None = None
    ) -> np.ndarray:
        """``scores`` with the candidates the transformer rejects set to 0 (milliseconds per text:
        async callers run it in a thread). With a serving ``threshold``, only candidates that would be
        served are asked: the same decisions, fewer transformer calls."""
        encoder = self.encoder
        if encoder is None or self.second_stage_min_cosine is None:
            return scores
        asked = np.flatnonzero(scores >= self._second_stage_bar(threshold))
        if len(asked):
            transformer = encoder.cosines([cached[i] for i in asked], new)
            scores = scores.copy()
            scores[asked[transformer < self.second_stage_min_cosine]] = 0.0
        return scores

    def _second_stage_bar(self, threshold: float | None) -> float:
        return self.second_stage_floor if threshold is None else max(self.second_stage_floor, threshold)

    def first_stage_many(
        self, cached: Sequence[str], new: str, cosines: Sequence[float], threshold: float | None = None
    ) -> np.ndarray:
        """The trees' scores alone, in one model evaluation. Candidates under ``min_cosine``, and those that
        trip one of the artifact's vetoes (``VETOES``: a swapped direction, a changed operator, ...), score 0.

        With a serving ``threshold``, a candidate whose score cannot reach it, whatever its
        ``VECTOR_FEATURES`` turn out to be, scores 0 without computing them: the same decisions at that
        threshold, and most near misses never pay for word vectors.
        """
        scores = np.zeros(len(cached))
        eligible = np.flatnonzero(np.asarray(cosines, dtype=np.float64) >= self.min_cosine)
        if not len(eligible):
            return scores
        cands, tb = self.featuriser.texts([cached[i] for i in eligible], new)
        if self.vetoes:
            allowed = np.flatnonzero(~self.featuriser.vetoed(cands, tb, self.vetoes))
            eligible, cands = eligible[allowed], [cands[i] for i in allowed]
        rows = self.featuriser.rows_without_vectors(cands, tb, [cosines[i] for i in eligible])
        if threshold is not None:
            reachable = np.flatnonzero(self.forest.upper_bound(rows, _VECTOR_COLUMNS) >= threshold)
            eligible, rows, cands = eligible[reachable], rows[reachable], [cands[i] for i in reachable]
        self.featuriser.fill_vector_features(rows, cands, tb)
        if len(eligible):
            scores[eligible] = self.forest.predict_proba(rows)
        return scores

    def score(self, cached: str, new: str, cosine: float) -> float:
        return float(self.score_many([cached], new, [cosine])[0])


@functools.cache
def get_verifier() -> Verifier:
    return Verifier()
