"""Token counting with tiktoken, used only when an upstream reports no usage (e.g. a client hung up
mid-stream). tiktoken normally downloads its BPE files on first use; litellm ships cl100k_base and
o200k_base, so we point tiktoken at those and stay offline."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

import tiktoken


@functools.cache
def _encoding(name: str) -> tiktoken.Encoding:
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        litellm_dir = Path(importlib.util.find_spec("litellm").origin).parent  # no import: it is slow
        os.environ["TIKTOKEN_CACHE_DIR"] = str(litellm_dir / "litellm_core_utils" / "tokenizers")
    return tiktoken.get_encoding(name)


def encoding_for(model: str | None) -> tiktoken.Encoding:
    """o200k_base for current OpenAI models and as the default; cl100k_base for the GPT-4/3.5 family."""
    legacy = model and ("gpt-4-" in model or model in {"gpt-4", "gpt-3.5-turbo"} or "gpt-3.5" in model)
    return _encoding("cl100k_base" if legacy else "o200k_base")


def count_text(text: str, model: str | None = None) -> int:
    return len(encoding_for(model).encode(text, disallowed_special=())) if text else 0


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def count_messages(messages: list[dict[str, Any]], model: str | None = None) -> int:
    """Prompt tokens of a chat request, with OpenAI's documented per-message framing (3 + 3 tokens)."""
    total = 3
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += 3 + count_text(_text_of(message.get("content")), model)
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {} if isinstance(call, dict) else {}
            total += count_text(str(function.get("name", "")) + str(function.get("arguments", "")), model)
    return total
