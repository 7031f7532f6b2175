"""Replay a cached ``chat.completion`` as the ``chat.completion.chunk`` SSE stream OpenAI would send."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson


def _frame(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _delta(message: Mapping[str, Any]) -> dict[str, Any]:
    delta: dict[str, Any] = {"role": message.get("role", "assistant")}
    for key in ("content", "refusal", "tool_calls", "function_call"):
        if message.get(key) is not None:
            delta[key] = message[key]
    if "tool_calls" in delta:
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(delta["tool_calls"])]
    return delta


def sse_frames(completion: Mapping[str, Any], include_usage: bool = False) -> Iterator[bytes]:
    """Frames for ``completion``: per choice one delta chunk and one finish chunk, then (when
    ``stream_options.include_usage`` was asked for) a usage chunk with empty choices, then ``[DONE]``.

    The stored usage is passed through unchanged: it counts the tokens of the answer being delivered.
    """
    base = {
        "id": completion.get("id", ""),
        "object": "chat.completion.chunk",
        "created": completion.get("created", 0),
        "model": completion.get("model", ""),
    }
    if completion.get("system_fingerprint") is not None:
        base["system_fingerprint"] = completion["system_fingerprint"]
    for choice in completion.get("choices", []):
        index = choice.get("index", 0)
        yield _frame(
            {**base, "choices": [{"index": index, "delta": _delta(choice.get("message", {})),
                                  "logprobs": choice.get("logprobs"), "finish_reason": None}]}
        )  # fmt: skip
        yield _frame(
            {**base, "choices": [{"index": index, "delta": {}, "logprobs": None,
                                  "finish_reason": choice.get("finish_reason")}]}
        )  # fmt: skip
    if include_usage:
        yield _frame({**base, "choices": [], "usage": completion.get("usage")})
    yield b"data: [DONE]\n\n"


def wants_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options") or {}
    return bool(isinstance(options, Mapping) and options.get("include_usage"))
