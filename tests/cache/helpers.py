"""Request and response builders for the cache tests."""

from __future__ import annotations

from typing import Any


def chat(text: str, *history: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [*history, {"role": "user", "content": text}], **params}


def completion(text: str, finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    }
