"""A cached completion replayed as SSE must read, through the OpenAI SDK's types, like the original."""

from __future__ import annotations

import json

from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.cache import sse_frames, wants_usage
from tests.cache.helpers import completion


def parse(frames: list[bytes]) -> tuple[list[ChatCompletionChunk], bytes]:
    assert all(f.startswith(b"data: ") and f.endswith(b"\n\n") for f in frames)
    *events, done = frames
    return [ChatCompletionChunk.model_validate(json.loads(f[6:])) for f in events], done


def test_replay_reassembles_to_the_stored_completion_with_usage() -> None:
    stored = completion("Use reversed(), or slice with [::-1].")
    chunks, done = parse(list(sse_frames(stored, include_usage=True)))
    assert done == b"data: [DONE]\n\n"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Use reversed(), or slice with [::-1]."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump(exclude_none=True) == stored["usage"]
    assert {c.id for c in chunks} == {stored["id"]} and {c.model for c in chunks} == {stored["model"]}
    ChatCompletion.model_validate(stored)


def test_replay_without_usage_and_with_tool_calls() -> None:
    stored = completion("", finish_reason="tool_calls")
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
    stored["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": [call]}
    chunks, _ = parse(list(sse_frames(stored)))
    assert all(c.usage is None for c in chunks)
    delta = chunks[0].choices[0].delta
    assert delta.tool_calls is not None and delta.tool_calls[0].index == 0
    assert delta.tool_calls[0].function is not None and delta.tool_calls[0].function.name == "lookup"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_wants_usage() -> None:
    assert wants_usage({"stream": True, "stream_options": {"include_usage": True}})
    assert not wants_usage({"stream": True})
