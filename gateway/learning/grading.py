"""Grading a served answer against the reference deployment's answer to the same prompt.

Two graders, both giving a grade in [0, 1] (1 = as good as the reference):

* ``similarity``: cosine similarity of the two answers as hashed word 1-2-gram count vectors
  (scikit-learn's HashingVectorizer). Costs no call; a crude but cheap proxy.
* ``judge``: an LLM judge (a configured deployment) reads the prompt and both answers and replies
  with an integer 1-10; the grade is (n - 1) / 9. The prompt is ``JUDGE_PROMPT`` (documented in
  README.md); the judge sees the reference answer as the yardstick, not which model wrote which.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.metrics.pairwise import cosine_similarity

JUDGE_SYSTEM = (
    "You grade an AI assistant's answer against a reference answer to the same request. "
    "Judge correctness, completeness and helpfulness relative to the reference; ignore style and length. "
    "Reply with only an integer from 1 (much worse than the reference) to 10 (as good as or better)."
)
JUDGE_PROMPT = (
    "<request>\n{request}\n</request>\n\n"
    "<reference_answer>\n{reference}\n</reference_answer>\n\n"
    "<candidate_answer>\n{candidate}\n</candidate_answer>\n\n"
    "Grade the candidate answer: one integer from 1 to 10."
)
JUDGE_MAX_TOKENS = 8
MAX_SECTION_CHARS = 12_000  # each of request / reference / candidate, so a judge call stays bounded
_INTEGER = re.compile(r"\b(10|[1-9])\b")


@cache
def _vectorizer() -> HashingVectorizer:
    return HashingVectorizer(ngram_range=(1, 2), n_features=2**18, alternate_sign=False, norm=None)


def similarity_grade(candidate: str, reference: str) -> float:
    """Cosine similarity of the answers' word 1-2-gram counts; two empty answers are identical."""
    if not candidate.strip() and not reference.strip():
        return 1.0
    vectors = _vectorizer().transform([candidate, reference])
    return float(min(max(cosine_similarity(vectors[0], vectors[1])[0, 0], 0.0), 1.0))


def request_text(messages: list[dict[str, Any]]) -> str:
    """The conversation as plain text for the judge (text parts only)."""
    lines = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if content:
            lines.append(f"{message.get('role', 'user')}: {content}")
    return "\n".join(lines)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_SECTION_CHARS else text[:MAX_SECTION_CHARS] + " …"


def judge_messages(messages: list[dict[str, Any]], reference: str, candidate: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {
            "role": "user",
            "content": JUDGE_PROMPT.format(
                request=_clip(request_text(messages)), reference=_clip(reference), candidate=_clip(candidate)
            ),
        },
    ]


def parse_judge(reply: str) -> float | None:
    """(n - 1) / 9 for the first integer 1-10 in the judge's reply; None when it gave none."""
    found = _INTEGER.search(reply or "")
    return None if found is None else (int(found.group(1)) - 1) / 9


def answer_text(completion: dict[str, Any]) -> str:
    """The first choice's text (or its tool-call arguments) of an OpenAI chat completion."""
    choices = completion.get("choices") or []
    if not choices:
        return ""
    message = choices[0].get("message") or {}
    if message.get("content"):
        return str(message["content"])
    calls = message.get("tool_calls") or []
    return " ".join(str((c.get("function") or {}).get("arguments", "")) for c in calls)
