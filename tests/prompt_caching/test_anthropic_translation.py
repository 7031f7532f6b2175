"""Anthropic Messages <-> OpenAI chat translation: requests, JSON responses and SSE streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.api.anthropic.stream import StreamTranslator, translate_stream
from gateway.api.anthropic.translate import for_provider, to_anthropic, to_openai

CACHE = {"type": "ephemeral", "ttl": "1h"}
REQUEST: dict[str, Any] = {
    "model": "auto",
    "max_tokens": 200,
    "system": [{"type": "text", "text": "You are terse.", "cache_control": CACHE}],
    "messages": [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Weather?", "cache_control": {"type": "ephemeral"}}],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ],
    "tools": [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "cache_control": CACHE,
        }
    ],
    "tool_choice": {"type": "any"},
    "stop_sequences": ["END"],
    "metadata": {"user_id": "user-7"},
    "temperature": 0.2,
}


def test_request_becomes_an_openai_chat_body_with_breakpoints_kept():
    body, tool_names = to_openai(REQUEST)
    assert tool_names == {}
    assert body["model"] == "auto" and body["max_tokens"] == 200 and body["temperature"] == 0.2
    assert body["stop"] == ["END"] and body["user"] == "user-7" and body["tool_choice"] == "required"
    system, question, reply, result, follow_up = body["messages"]
    assert system == {
        "role": "system",
        "content": [{"type": "text", "text": "You are terse.", "cache_control": CACHE}],
    }
    assert question["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert reply["content"] == "Checking." and reply["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    assert "thinking_blocks" not in reply  # no None-valued fields for strict OpenAI upstreams
    assert result == {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"}
    assert follow_up == {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]}
    [tool] = body["tools"]
    assert tool["function"]["parameters"]["properties"] == {"city": {"type": "string"}}
    assert tool["cache_control"] == CACHE
    assert "stream" not in body


def test_streaming_request_asks_for_usage():
    body, _ = to_openai({**REQUEST, "stream": True})
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_thinking_becomes_reasoning_effort_for_non_claude_targets():
    body, _ = to_openai({**REQUEST, "thinking": {"type": "enabled", "budget_tokens": 2048}})
    assert for_provider(body, "anthropic", "claude-sonnet-4-5")["thinking"]["budget_tokens"] == 2048
    adapted = for_provider(body, "openai", "o3")
    assert "thinking" not in adapted and adapted["reasoning_effort"] in ("low", "medium", "high")
    plain = for_provider(body, "openai", "gpt-4o-mini")  # no reasoning: it would reject both
    assert "thinking" not in plain and "reasoning_effort" not in plain
    assert plain["max_completion_tokens"] == 200 and "max_tokens" not in plain
    assert for_provider({"model": "m", "messages": []}, "openai", "o3") == {"model": "m", "messages": []}


def test_completion_becomes_a_message_with_cache_usage():
    completion = {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1,
        "model": "claude-sonnet-4-5",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me look.",
                    "tool_calls": [
                        {
                            "id": "toolu_9",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        # litellm's shape for an Anthropic response: prompt_tokens includes reads and writes
        "usage": {
            "prompt_tokens": 3100,
            "completion_tokens": 40,
            "prompt_tokens_details": {
                "cached_tokens": 2000,
                "cache_creation_tokens": 1000,
                "cache_creation_token_details": {
                    "ephemeral_5m_input_tokens": 600,
                    "ephemeral_1h_input_tokens": 400,
                },
            },
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 2000,
        },
    }
    message = to_anthropic(completion, {})
    assert message["id"] == "msg_abc" and message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Oslo"}},
    ]
    assert message["stop_reason"] == "tool_use" and message["stop_sequence"] is None
    assert message["usage"] == {
        "input_tokens": 100,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 2000,
        "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 400},
        "output_tokens": 40,
    }


def sse(*chunks: Any) -> list[bytes]:
    return [b"data: " + (c if isinstance(c, bytes) else orjson.dumps(c)) + b"\n\n" for c in chunks]


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict | None = None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    out = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": choices}
    if usage:
        out["usage"] = usage
    return out


class Frames:
    """The pipeline's frame iterator: records that it was closed (that is what writes the ledger row)."""

    def __init__(self, frames: list[bytes]) -> None:
        self._frames = iter(frames)
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            return next(self._frames)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.closed = True


async def events(
    frames: list[bytes], tool_names: dict[str, str] | None = None
) -> tuple[list[tuple[str, dict]], Frames]:
    source = Frames(frames)
    out = [e async for e in translate_stream(source, StreamTranslator("auto", tool_names))]
    parsed = []
    for raw in out:
        name, data = raw.decode().rstrip("\n").split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        parsed.append((name[7:], orjson.loads(data[6:])))
    return parsed, source


async def test_text_stream_has_the_exact_anthropic_event_sequence():
    usage = {"prompt_tokens": 2100, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 2048}}
    frames = sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hello"}),
        chunk({"content": " there"}),
        chunk({}, finish="stop"),
        chunk(None, usage=usage),
        b"[DONE]",
    )
    parsed, source = await events(frames)
    assert [name for name, _ in parsed] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = parsed[0][1]["message"]
    assert start["id"] == "msg_1" and start["content"] == [] and start["model"] == "gpt-4o"
    assert parsed[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert parsed[4][1]["delta"] == {"type": "text_delta", "text": " there"}
    assert parsed[6][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 52,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 2048,
            "output_tokens": 2,
        },
    }
    assert source.closed


async def test_tool_call_stream_opens_a_tool_use_block_with_json_deltas():
    frames = sse(
        chunk({"content": "Sure."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_w", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Rome"}'}}]}),
        chunk({}, finish="tool_calls"),
        b"[DONE]",
    )
    parsed, _ = await events(frames, tool_names={"get_w": "get_weather_for_a_very_long_name"})
    names = [name for name, _ in parsed]
    assert names.count("content_block_start") == 2 and names.count("content_block_stop") == 2
    tool_start = [d for n, d in parsed if n == "content_block_start"][1]
    assert tool_start == {
        "type": "content_block_start",
        "index": 1,
        "content_block": {
            "type": "tool_use",
            "id": "call_1",
            "name": "get_weather_for_a_very_long_name",
            "input": {},
        },
    }
    json_parts = [
        d["delta"]["partial_json"] for n, d in parsed if n == "content_block_delta" and d["index"] == 1
    ]
    assert "".join(json_parts) == '{"city":"Rome"}'
    assert parsed[-2][1]["delta"]["stop_reason"] == "tool_use"


async def test_upstream_error_mid_stream_becomes_an_error_event():
    error = {
        "error": {"message": "The upstream stream broke off", "type": "api_error", "code": "connection_reset"}
    }
    parsed, source = await events(sse(chunk({"content": "Hel"}), error))
    assert [name for name, _ in parsed][-1] == "error"
    assert parsed[-1][1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "The upstream stream broke off"},
    }
    assert "message_stop" not in [name for name, _ in parsed] and source.closed


async def test_truncated_stream_ends_with_an_error_not_a_clean_stop():
    parsed, _ = await events(sse(chunk({"content": "Hel"})))
    assert parsed[-1][0] == "error" and "message_stop" not in [name for name, _ in parsed]


async def test_frames_split_across_reads_are_reassembled():
    whole = b"".join(sse(chunk({"content": "Hi"}), chunk({}, finish="length"), b"[DONE]"))
    parsed, _ = await events([whole[:17], whole[17:60], whole[60:]])
    assert [name for name, _ in parsed][-2:] == ["message_delta", "message_stop"]
    assert parsed[-2][1]["delta"]["stop_reason"] == "max_tokens"
