"""Feature extraction for the complexity router: the one module both training and serving call.

A request (OpenAI chat ``messages`` plus optional ``tools``) becomes:

* ``conversation_text``: the conversation clipped to a fixed character budget. The last user message
  comes first, then the system prompt, tool definitions and earlier turns (newest first); every
  segment is clipped head + tail, so the cost of extraction is bounded whatever the input size.
* ``dense``: structural statistics (length in tiktoken tokens, code, math, constraints, lists,
  multiple choice, ...), see ``DENSE_FEATURES``.
* ``terms``: lower-cased word unigrams and bigrams (numbers folded to one token) that a
  ``TermWeights`` vocabulary turns into a sparse, L2-normalised TF-IDF vector.

Nothing here depends on scikit-learn: serving stays numpy + stdlib + tiktoken. Without network
access tiktoken reads the rank files litellm vendors (``TIKTOKEN_CACHE_DIR`` is pointed there when
unset, as litellm itself does on import).
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import tiktoken

CHAR_BUDGET = 4000
"""Characters of the conversation that are analysed; the rest only counts towards length."""

TIKTOKEN_ENCODING = "o200k_base"

DENSE_FEATURES: tuple[str, ...] = (
    "log_tokens_total",
    "log_tokens_last_user",
    "tokens_per_char",
    "log_words",
    "log_lines",
    "mean_word_len",
    "type_token_ratio",
    "frac_digit",
    "frac_upper",
    "frac_punct",
    "frac_non_ascii",
    "log_code_fences",
    "frac_code_lines",
    "log_math_symbols",
    "log_latex_commands",
    "log_numbers",
    "log_question_marks",
    "log_choice_options",
    "log_list_items",
    "log_constraint_words",
    "log_reasoning_words",
    "log_creative_words",
)

_WORD = re.compile(r"[^\W\d_]+|\d+(?:[.,]\d+)*")
_CODE_LINE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import|#include|public |private |function |const |let |var |"
    r"return\b|for\s*\(|if\s*\(|while\s*\(|SELECT\b|<\w+[^>]*>|[}{\])]\s*;?\s*$)|[;{]\s*$",
    re.MULTILINE,
)
_LATEX = re.compile(r"\\[a-zA-Z]+|\$")
_CHOICE_OPTION = re.compile(r"^\s*\(?[A-Ja-j][.)]\s", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s", re.MULTILINE)


_PUNCT = np.zeros(128, dtype=bool)
_PUNCT[[ord(c) for c in "!\"#%&'()*,-./:;?@[\\]_{}"]] = True
_MATH_SYMBOLS = "=+*/^<>≤≥≠±√∑∏∫πθαβλ∞"
_MATH_WORDS = frozenset(["sin", "cos", "tan", "log", "ln", "lim", "mod"])


@dataclass(frozen=True, slots=True)
class _Keywords:
    """A keyword family: single words matched on the word list, phrases counted in the lowered text."""

    words: frozenset[str]
    phrases: tuple[str, ...]

    @classmethod
    def of(cls, *keywords: str) -> _Keywords:
        return cls(
            frozenset(k for k in keywords if " " not in k),
            tuple(f" {k} " for k in keywords if " " in k),
        )

    def count(self, word_counts: Counter[str], spaced: str) -> int:
        """Occurrences among ``word_counts`` and in ``spaced`` (the words joined, space-padded)."""
        if len(word_counts) < len(self.words):  # iterate over the smaller side
            words = sum(n for w, n in word_counts.items() if w in self.words)
        else:
            words = sum(word_counts.get(w, 0) for w in self.words)
        return words + sum(spaced.count(p) for p in self.phrases)


_CONSTRAINT = _Keywords.of(
    "must", "should", "exactly", "without", "only", "never", "always", "ensure", "each", "every",
    "format", "word", "words", "sentence", "sentences", "limit", "strictly",
    "at least", "at most", "no more than", "no less than", "do not", "don t", "make sure",
)  # fmt: skip
_REASONING = _Keywords.of(
    "prove", "proof", "derive", "why", "analyze", "analyse", "compare", "evaluate", "optimize",
    "optimise", "design", "implement", "debug", "algorithm", "complexity", "calculate", "compute",
    "solve", "probability", "determine",
    "show that", "step by step", "explain why", "how many", "find all",
)  # fmt: skip
_CREATIVE = _Keywords.of(
    "write", "story", "poem", "essay", "script", "song", "lyrics", "character", "fiction", "creative",
    "imagine", "roleplay", "role play",
)  # fmt: skip
_NUM_TOKEN = "<num>"


def content_text(content: Any) -> str:
    """Text of an OpenAI message ``content``: a string, ``None`` or a list of parts (non-text ignored)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        content = [content]
    if not isinstance(content, Iterable):
        return ""
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
            texts.append(part["text"])
    return "\n".join(texts)


def _tool_calls_text(message: Mapping[str, Any]) -> str:
    calls = message.get("tool_calls")
    calls = list(calls) if isinstance(calls, list | tuple) else []
    legacy = message.get("function_call")
    if isinstance(legacy, Mapping):
        calls = [*calls, {"function": legacy}]
    texts = []
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            texts.append(f"{function.get('name') or ''}({function.get('arguments') or ''})")
    return "\n".join(texts)


def tools_text(tools: Sequence[Mapping[str, Any]] | None) -> str:
    """Names, descriptions and parameter names of OpenAI tool definitions."""
    texts = []
    for tool in tools or ():
        if not isinstance(tool, Mapping):
            continue
        function = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        names = " ".join(properties) if isinstance(properties, Mapping) else ""
        texts.append(f"{function.get('name') or ''}: {function.get('description') or ''} {names}".strip())
    return "\n".join(texts)


def _message_text(message: Mapping[str, Any]) -> str:
    text = content_text(message.get("content"))
    calls = _tool_calls_text(message)
    return f"{text}\n{calls}" if text and calls else text or calls


def _clip(text: str, limit: int) -> str:
    """Head and tail of ``text`` within ``limit`` characters (two thirds head, one third tail)."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return f"{text[:head]}\n{text[len(text) - (limit - head) :]}"


@dataclass(frozen=True, slots=True)
class ConversationText:
    analysed: str
    """The clipped text every feature is computed from (last user message first)."""
    last_user: str
    """The clipped last user message: ``analysed`` starts with it."""
    context: str
    """The rest of ``analysed``: system prompt, tools and earlier turns, clipped."""
    total_chars: int
    """Characters of the whole conversation, before clipping."""


def conversation_text(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    budget: int = CHAR_BUDGET,
) -> ConversationText:
    """Flatten a conversation into one bounded text, most informative segments first."""
    messages = [m for m in messages if isinstance(m, Mapping)]
    last_user_index = next(
        (i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), None
    )
    system = [m for m in messages if m.get("role") in ("system", "developer")]
    turns = [
        m
        for i, m in enumerate(messages)
        if i != last_user_index and m.get("role") not in ("system", "developer")
    ]
    segments = [_message_text(messages[last_user_index])] if last_user_index is not None else [""]
    segments += [_message_text(m) for m in system]
    segments.append(tools_text(tools))
    segments += [_message_text(m) for m in reversed(turns)]

    total = sum(len(s) for s in segments)
    clipped: list[str] = []
    remaining = budget
    for segment in segments:
        if not segment:
            continue
        piece = _clip(segment, remaining)
        clipped.append(piece)
        remaining -= len(piece)
        if remaining <= 0:
            break
    if segments[0]:
        last_user, context = clipped[0], "\n".join(clipped[1:])
    else:
        last_user, context = "", "\n".join(clipped)
    return ConversationText(
        analysed="\n".join(clipped), last_user=last_user, context=context, total_chars=total
    )


@cache
def encoding() -> tiktoken.Encoding:
    # No network here: fall back to the rank files litellm vendors (what litellm itself does).
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        spec = importlib.util.find_spec("litellm")
        if spec and spec.submodule_search_locations:
            bundled = Path(next(iter(spec.submodule_search_locations)), "litellm_core_utils", "tokenizers")
            os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
    return tiktoken.get_encoding(TIKTOKEN_ENCODING)


def count_tokens(text: str) -> int:
    return len(encoding().encode_ordinary(text)) if text else 0


def terms(text: str) -> list[str]:
    """Word unigrams and bigrams of ``text``, lower-cased, every number folded to ``<num>``."""
    words = [_NUM_TOKEN if w[0].isdigit() else w for w in _WORD.findall(text.lower())]
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


def _log_count(pattern: re.Pattern[str], text: str) -> float:
    return math.log1p(sum(1 for _ in pattern.finditer(text)))


def dense_features(conversation: ConversationText) -> np.ndarray:
    """The ``DENSE_FEATURES`` vector of a conversation."""
    text = conversation.analysed
    n_chars = max(len(text), 1)
    tokens_last_user = count_tokens(conversation.last_user)
    analysed_tokens = tokens_last_user + count_tokens(conversation.context)
    tokens_total = analysed_tokens * conversation.total_chars / n_chars
    words = _WORD.findall(text.lower())
    n_words = max(len(words), 1)
    word_counts = Counter(words)
    total_word_chars = numbers = 0
    for word, count in word_counts.items():
        total_word_chars += len(word) * count
        if word[0].isdigit():
            numbers += count
    lines = text.count("\n") + 1
    codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    ascii_codepoints = codepoints[codepoints < 128]
    spaced = f" {' '.join(words)} "  # phrases match across punctuation: "don't" -> " don t "
    values = (
        math.log1p(tokens_total),
        math.log1p(tokens_last_user),
        analysed_tokens / n_chars,
        math.log1p(len(words)),
        math.log1p(lines),
        total_word_chars / n_words,
        len(word_counts) / n_words,
        np.count_nonzero((ascii_codepoints >= 48) & (ascii_codepoints <= 57)) / n_chars,
        np.count_nonzero((ascii_codepoints >= 65) & (ascii_codepoints <= 90)) / n_chars,
        np.count_nonzero(_PUNCT[ascii_codepoints]) / n_chars,
        (len(codepoints) - len(ascii_codepoints)) / n_chars,
        math.log1p(text.count("```") + text.count("~~~")),
        sum(1 for _ in _CODE_LINE.finditer(text)) / lines,
        math.log1p(sum(map(text.count, _MATH_SYMBOLS)) + sum(word_counts[w] for w in _MATH_WORDS)),
        _log_count(_LATEX, text),
        math.log1p(numbers),
        math.log1p(text.count("?")),
        _log_count(_CHOICE_OPTION, text),
        _log_count(_LIST_ITEM, text),
        math.log1p(_CONSTRAINT.count(word_counts, spaced)),
        math.log1p(_REASONING.count(word_counts, spaced)),
        math.log1p(_CREATIVE.count(word_counts, spaced)),
    )
    return np.asarray(values, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Features:
    dense: np.ndarray
    terms: list[str] | None
    """Term features, only computed when asked for (the model may not use them)."""


def extract(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    with_terms: bool = True,
) -> Features:
    """The router features of one request."""
    conversation = conversation_text(messages, tools)
    return Features(
        dense=dense_features(conversation),
        terms=terms(conversation.analysed) if with_terms else None,
    )


def embedding_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text whose embedding the router uses: the last user message, as the semantic cache embeds it."""
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return content_text(message.get("content")).strip()
    return ""


def prompt_messages(prompt: str) -> list[dict[str, str]]:
    """A single-turn conversation, how dataset prompts enter the same path as live requests."""
    return [{"role": "user", "content": prompt}]


@dataclass(frozen=True, slots=True)
class TermWeights:
    """Vocabulary and IDF of the term features: sublinear TF x IDF, L2-normalised."""

    vocabulary: dict[str, int]
    idf: np.ndarray

    @classmethod
    def fit(cls, documents: Iterable[list[str]], min_df: int = 5, max_terms: int = 50_000) -> TermWeights:
        """Keep the ``max_terms`` most frequent terms seen in at least ``min_df`` documents."""
        document_frequency: Counter[str] = Counter()
        n_documents = 0
        for document in documents:
            document_frequency.update(set(document))
            n_documents += 1
        kept = [t for t, df in document_frequency.most_common(max_terms) if df >= min_df]
        kept.sort()
        idf = np.array([math.log((1 + n_documents) / (1 + document_frequency[t])) + 1 for t in kept])
        return cls(vocabulary={t: i for i, t in enumerate(kept)}, idf=idf)

    def vectorize(self, document: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Sparse TF-IDF of one document as (column indices, values)."""
        counts: Counter[int] = Counter()
        vocabulary = self.vocabulary
        for term in document:
            index = vocabulary.get(term)
            if index is not None:
                counts[index] += 1
        if not counts:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        indices = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = (1.0 + np.log(tf)) * self.idf[indices]
        return indices, values / np.linalg.norm(values)
