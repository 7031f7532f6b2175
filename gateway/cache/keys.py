"""Request normalisation and cache keys.

- The **exact key** hashes the normalised request: model, messages, tools, response format and every
  parameter that changes the output. Transport-only fields (``stream``, ``stream_options``, ``user``,
  ``metadata``…) are left out, so a streamed and a non-streamed request share one entry.
- The **partition key** hashes the same request without its final user turn: entries that can answer
  each other semantically must agree on the system prompt, earlier turns, tools and parameters.
- The **final user text** is what gets embedded and compared.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

# Fields that never change the generated answer.
TRANSPORT_FIELDS = frozenset(
    {"stream", "stream_options", "user", "metadata", "store", "service_tier", "safety_identifier",
     "prompt_cache_key"}
)  # fmt: skip


def _digest(value: Any) -> str:
    return hashlib.blake2b(orjson.dumps(value, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


def short_hash(text: str) -> str:
    """A stable, Redis-key-safe name for a tenant or policy."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def content_text(content: Any) -> str | None:
    """The text of a message's content; None when it holds anything but text (images, audio…)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                return None
            parts.append(str(part.get("text", "")))
        return "\n".join(parts).strip()
    return None


def _normalise_message(message: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in message.items() if v is not None}
    text = content_text(out.get("content"))
    if text is not None:
        out["content"] = text
    return out


def normalise(body: dict[str, Any]) -> dict[str, Any]:
    """The request reduced to what determines the answer (text parts joined, ``None`` fields dropped)."""
    out = {k: v for k, v in body.items() if k not in TRANSPORT_FIELDS and v is not None}
    out["messages"] = [_normalise_message(m) for m in body.get("messages") or [] if isinstance(m, dict)]
    return out


def exact_digest(namespace: tuple[str, ...], normalised: dict[str, Any]) -> str:
    return _digest([*namespace, normalised])


def final_user_text(normalised: dict[str, Any]) -> str | None:
    """The final turn's text when it is a plain-text user message, else None."""
    messages = normalised.get("messages") or []
    if not messages or messages[-1].get("role") != "user":
        return None
    content = messages[-1].get("content")
    return content if isinstance(content, str) and content else None


def partition_digest(namespace: tuple[str, ...], normalised: dict[str, Any]) -> str:
    context = dict(normalised, messages=normalised["messages"][:-1])
    return _digest([*namespace, context])
