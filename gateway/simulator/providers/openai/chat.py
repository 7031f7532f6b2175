"""`POST /v1/chat/completions`.

Usage `prompt_tokens` includes `prompt_tokens_details.cached_tokens`; reasoning tokens are part of
`completion_tokens`. Streams send the role first, then content (or tool-call) deltas, the finish
reason, an optional usage chunk with no choices (`stream_options.include_usage`), then
`data: [DONE]`.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...asgi import SSE_HEADERS, Request
from ...config import Latency
from ...core import Simulator
from ...generation import Generated, rng_for, value_for_schema
from ...model_facts import facts_for
from ...quality import degrade, judge_verdict, quality_for
from ...tokens import encode, vocabulary
from ..common import (
    SLOT,
    digest_tokens,
    frame_template,
    generate,
    new_id,
    now_seconds,
    plan_stream,
    response_delay,
    run_stream,
    send_response,
    string_list,
    token_delays,
    token_pieces,
    wait_for_fault,
)
from .protocol import (
    OpenAIError,
    draw_fault,
    int_param,
    parse_body,
    require_model,
    stream_error_frame,
)

SYSTEM_FINGERPRINT = "fp_tiergate_sim"
# Token ids outside every real vocabulary mark message boundaries, like the chat template's
# special tokens: each message costs 3 tokens on top of its content, the reply primer 3 more.
_MESSAGE_START, _MESSAGE_END, _IMAGE = 300_000, 300_001, 300_002
_IMAGE_TOKENS = 85  # a low-detail image
CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
REASONING_TOKENS = {"none": 0, "minimal": 0, "low": 32, "medium": 96, "high": 256}


def _content_tokens(content: Any, encoding_name: str, out: list[int]) -> None:
    if content is None:
        return
    if isinstance(content, str):
        out.extend(encode(content, encoding_name))
        return
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            out.extend(encode(part.get("text", ""), encoding_name))
        elif kind == "image_url":
            marker = digest_tokens(encode(orjson.dumps(part).decode(), encoding_name))
            out.extend([_IMAGE + marker[0]] * _IMAGE_TOKENS)
        else:
            out.extend(encode(orjson.dumps(part).decode(), encoding_name))


def chat_prompt_tokens(body: dict[str, Any], encoding_name: str) -> list[int]:
    """The prompt as token ids, in cache-prefix order: tools, response format, then messages."""
    tokens: list[int] = []
    for tool in body.get("tools") or ():
        tokens.extend(encode(orjson.dumps(tool).decode(), encoding_name))
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        tokens.extend(encode(orjson.dumps(response_format).decode(), encoding_name))
    for message in body["messages"]:
        tokens.append(_MESSAGE_START)
        tokens.extend(encode(str(message.get("role", "")), encoding_name))
        _content_tokens(message.get("content"), encoding_name, tokens)
        if message.get("tool_calls"):
            tokens.extend(encode(orjson.dumps(message["tool_calls"]).decode(), encoding_name))
        tokens.append(_MESSAGE_END)
    tokens.extend((_MESSAGE_START, _MESSAGE_END, _MESSAGE_END))
    return tokens


def _validate_chat(body: dict[str, Any], model: str) -> None:
    messages = body.get("messages")
    if messages is None:
        raise OpenAIError(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list) or not messages:
        raise OpenAIError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
            raise OpenAIError(
                400,
                f"Invalid value for 'messages[{index}].role'.",
                param=f"messages[{index}].role",
                code="invalid_value",
            )
    if facts_for(model).reasoning and body.get("max_tokens") is not None:
        raise OpenAIError(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            param="max_tokens",
            code="unsupported_parameter",
        )
    temperature = body.get("temperature")
    if temperature is not None and not (isinstance(temperature, int | float) and 0 <= temperature <= 2):
        raise OpenAIError(
            400, "Invalid 'temperature': expected a number between 0 and 2.", param="temperature"
        )
    if body.get("tool_choice") not in (None, "none", "auto") and not body.get("tools"):
        raise OpenAIError(
            400,
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            param="tool_choice",
        )


def _chosen_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function to call, if tool_choice demands one or the last user turn names one."""
    tools = [t["function"] for t in body.get("tools") or () if isinstance(t, dict) and "function" in t]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        match = next((tool for tool in tools if tool.get("name") == name), None)
        if match is None:
            raise OpenAIError(400, f"Invalid 'tool_choice': no function named {name!r}.", param="tool_choice")
        return match
    last = body["messages"][-1]
    if last.get("role") == "user":
        content = last.get("content")
        text = content if isinstance(content, str) else orjson.dumps(content).decode()
        named = next((tool for tool in tools if tool.get("name") and tool["name"] in text), None)
        if named is not None:
            return named
    return tools[0] if choice == "required" else None


def _json_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The schema a JSON reply must satisfy ({} for json_object), or None for free text."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return {"type": "object", "properties": {"answer": {"type": "string"}}}
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
    return None


class _Choice:
    """One generated choice: visible pieces, optional tool call, finish reason, token counts."""

    __slots__ = ("finish", "pieces", "reasoning_tokens", "tokens", "tool_call")

    def __init__(
        self,
        pieces: list[str],
        finish: str,
        tokens: int,
        reasoning_tokens: int = 0,
        tool_call: dict[str, Any] | None = None,
    ) -> None:
        self.pieces = pieces
        self.finish = finish
        self.tokens = tokens
        self.reasoning_tokens = reasoning_tokens
        self.tool_call = tool_call

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if self.tool_call else "".join(self.pieces),
            "refusal": None,
            "annotations": [],
        }
        if self.tool_call:
            message["tool_calls"] = [
                {
                    "id": self.tool_call["id"],
                    "type": "function",
                    "function": {"name": self.tool_call["name"], "arguments": "".join(self.pieces)},
                }
            ]
        return message


def _generate_choice(
    sim: Simulator,
    body: dict[str, Any],
    model: str,
    digest: bytes,
    index: int,
    latency: Latency,
    budget: int | None,
) -> _Choice:
    facts = facts_for(model)
    seed = body.get("seed")
    reasoning = 0
    if facts.reasoning:
        reasoning = REASONING_TOKENS.get(str(body.get("reasoning_effort", "medium")), 96)
        if budget is not None:
            reasoning = min(reasoning, budget)
            budget -= reasoning
    tool = _chosen_tool(body)
    schema = _json_schema(body)
    if tool is not None or schema is not None:
        rng = rng_for(digest, seed, index)
        if tool is not None:
            value = value_for_schema(tool.get("parameters") or {"type": "object"}, rng, vocabulary())
        else:
            value = value_for_schema(schema or {}, rng, vocabulary())
        pieces = token_pieces(orjson.dumps(value).decode(), facts.encoding)
        finish = "tool_calls" if tool is not None else "stop"
        if budget is not None and len(pieces) > budget:
            pieces, finish = pieces[:budget], "length"
        tool_call = {"id": new_id("call_"), "name": tool["name"]} if tool is not None else None
        return _Choice(pieces, finish, len(pieces) + reasoning, reasoning, tool_call)
    if model in sim.judges and (verdict := judge_verdict(body)) is not None:
        return _Choice([verdict], "stop", 1 + reasoning, reasoning)
    generated: Generated = generate(digest, seed, index, latency, budget, string_list(body.get("stop")))
    finish = "length" if generated.finish == "length" else "stop"
    quality = quality_for(body, model, sim.model_quality)
    pieces = degrade(generated.pieces, quality, digest, seed, index)
    return _Choice(pieces, finish, len(pieces) + reasoning, reasoning)


def _cached_tokens(
    sim: Simulator, request: Request, body: dict[str, Any], model: str, tokens: list[int]
) -> int:
    retention = body.get("prompt_cache_retention")
    ttl = sim.config.openai_extended_cache_ttl_s if retention == "24h" else sim.config.openai_cache_ttl_s
    organisation = request.headers.get("authorization", "")
    namespace = (organisation, model, body.get("prompt_cache_key"))
    return sim.openai_cache.read_and_write(namespace, tokens, facts_for(model).cache_min_tokens, ttl)


def _usage(prompt: int, cached: int, choices: list[_Choice]) -> dict[str, Any]:
    completion = sum(choice.tokens for choice in choices)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": sum(choice.reasoning_tokens for choice in choices),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


async def chat_completions(sim: Simulator, request: Request) -> None:
    body = parse_body(request)
    model, latency = require_model(sim, request, body)
    _validate_chat(body, model)
    n = int_param(body, "n", 1, 128) or 1
    budget = int_param(body, "max_completion_tokens", 1)
    if budget is None:
        budget = int_param(body, "max_tokens", 1)
    stream = bool(body.get("stream"))
    fault = draw_fault(sim, model, stream)
    if not await wait_for_fault(request, fault, stream):
        sim.stats.disconnects["before_response"] += 1
        return

    encoding_name = facts_for(model).encoding
    prompt = chat_prompt_tokens(body, encoding_name)
    cached = _cached_tokens(sim, request, body, model, prompt)
    digest = digest_tokens(prompt)
    choices = [_generate_choice(sim, body, model, digest, i, latency, budget) for i in range(n)]
    usage = _usage(len(prompt), cached, choices)
    sim.stats.tokens["prompt"] += usage["prompt_tokens"]
    sim.stats.tokens["cached"] += cached
    sim.stats.tokens["completion"] += usage["completion_tokens"]
    completion_id = new_id("chatcmpl-")
    created = now_seconds()
    headers = [(b"x-request-id", new_id("req_").encode())]

    if not stream:
        payload = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": i, "message": c.message(), "logprobs": None, "finish_reason": c.finish}
                for i, c in enumerate(choices)
            ],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        delay = response_delay(max(c.tokens for c in choices), latency)
        await send_response(sim, request, fault, orjson.dumps(payload), headers, delay)
        return

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    frames = _chat_stream_frames(completion_id, created, model, choices, usage, include_usage, latency)
    plan = plan_stream(frames, fault, n + (fault.after_tokens * n if fault else 0), stream_error_frame())
    await run_stream(sim, request, SSE_HEADERS + headers, plan)


def _chat_stream_frames(
    completion_id: str,
    created: int,
    model: str,
    choices: list[_Choice],
    usage: dict[str, Any],
    include_usage: bool,
    latency: Latency,
) -> list[tuple[float, bytes]]:
    base: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if include_usage:
        base["usage"] = None

    def frame(choice: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"

    deltas: list[list[bytes]] = []
    for index, choice in enumerate(choices):
        frames = [frame(_delta(index, {"role": "assistant", "content": "", "refusal": None}))]
        if choice.tool_call:
            call = {
                "index": 0,
                "id": choice.tool_call["id"],
                "type": "function",
                "function": {"name": choice.tool_call["name"], "arguments": ""},
            }
            frames[0] = frame(_delta(index, {"role": "assistant", "content": None, "tool_calls": [call]}))
            argument = {"tool_calls": [{"index": 0, "function": {"arguments": SLOT}}]}
            token_frame = frame_template({**base, "choices": [_delta(index, argument)]})
        else:
            token_frame = frame_template({**base, "choices": [_delta(index, {"content": SLOT})]})
        frames.extend(map(token_frame, choice.pieces))
        frames.append(frame(_delta(index, {}, choice.finish)))
        deltas.append(frames)

    delays = token_delays(max(len(f) for f in deltas), latency)
    out: list[tuple[float, bytes]] = []
    for position, delay in enumerate(delays):  # interleave the choices token by token
        first = True
        for frames in deltas:
            if position < len(frames):
                out.append((delay if first else 0.0, frames[position]))
                first = False
    if include_usage:
        out.append((0.0, b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n"))
    out.append((0.0, b"data: [DONE]\n\n"))
    return out


def _delta(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
