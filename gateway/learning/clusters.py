"""Task clusters: a coarse task type per request, from the router's own structural features.

We chose rules over the dense features the complexity scorer already extracts
(`gateway.routing.features`) rather than k-means over an embedding: the shipped scorer computes no
embedding, the rules are stable across versions (a k-means label would change meaning on every
refit), and their names say what they are. First match wins:

    code            code fences, or at least a fifth of the lines look like code
    math            LaTeX commands, or several math symbols
    multiple_choice at least two lettered options (A. / (b) ...)
    reasoning       reasoning words (prove, explain why, step by step ...)
    creative        creative-writing words (story, poem ...)
    long_context    more than 2,000 tokens
    chat            everything else
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.routing import features as F

CLUSTERS = ("code", "math", "multiple_choice", "reasoning", "creative", "long_context", "chat")
_INDEX = {name: i for i, name in enumerate(F.DENSE_FEATURES)}


def _log_count(value: float) -> float:
    """Invert the features' log1p counts."""
    return math.expm1(value)


def task_cluster(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None
) -> str:
    dense = F.extract(messages, tools, with_terms=False).dense
    get = lambda name: float(dense[_INDEX[name]])  # noqa: E731
    if get("log_code_fences") > 0 or get("frac_code_lines") >= 0.2:
        return "code"
    if _log_count(get("log_latex_commands")) >= 1 or _log_count(get("log_math_symbols")) >= 3:
        return "math"
    if _log_count(get("log_choice_options")) >= 2:
        return "multiple_choice"
    if get("log_reasoning_words") > 0:
        return "reasoning"
    if get("log_creative_words") > 0:
        return "creative"
    if _log_count(get("log_tokens_total")) > 2000:
        return "long_context"
    return "chat"
