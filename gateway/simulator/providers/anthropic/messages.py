"""`POST /v1/messages` and `POST /v1/messages/count_tokens`.

Usage as documented: `input_tokens` counts only the tokens after the last cache breakpoint (it
excludes cache reads and writes); `cache_creation_input_tokens` is split by TTL in
`cache_creation`. Streams emit message_start, content_block_start, ping, content_block_delta
(text_delta / input_json_delta / thinking_delta), content_block_stop, message_delta (stop_reason
and cumulative usage), message_stop.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from ...asgi import SSE_HEADERS, Request, send_json
from ...config import Latency
from ...core import Simulator
from ...faults import FaultRule
from ...generation import rng_for, value_for_schema
from ...model_facts import facts_for
from ...prompt_cache import CacheUsage
from ...tokens import vocabulary
from ..common import (
    SLOT,
    digest_bytes,
    frame_template,
    generate,
    new_id,
    plan_stream,
    response_delay,
    run_stream,
    send_response,
    string_list,
    token_delays,
    token_pieces,
    wait_for_fault,
)
from .prompt import ENCODING, as_blocks, prompt_blocks
from .protocol import PROVIDER, AnthropicError, answer, api_key, authenticate, fault_error, parse_request

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence"}
MIN_THINKING_BUDGET = 1024
THINKING_CHOICE = 1  # thinking text is drawn like a second choice, so it differs from the answer


async def handle(sim: Simulator, request: Request) -> None:
    """`POST /v1/messages`."""
    await answer(sim, request, _messages)


async def handle_count_tokens(sim: Simulator, request: Request) -> None:
    """`POST /v1/messages/count_tokens`: the prompt's input tokens, nothing generated or cached."""
    await answer(sim, request, _count_tokens)


def _tool_to_use(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [tool for tool in body.get("tools") or () if isinstance(tool, dict) and "name" in tool]
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type", "auto")
    if not tools or kind == "none":
        return None
    if kind == "tool":
        match = next((tool for tool in tools if tool["name"] == choice.get("name")), None)
        if match is None:
            raise AnthropicError(400, f"tool_choice: no tool named {choice.get('name')!r}")
        return match
    last = body["messages"][-1]
    blocks = as_blocks(last.get("content"))
    if last["role"] == "user" and not any(b.get("type") == "tool_result" for b in blocks):
        text = " ".join(str(b.get("text", "")) for b in blocks)
        named = next((tool for tool in tools if tool["name"] in text), None)
        if named is not None:
            return named
    return tools[0] if kind == "any" else None


def _usage(total: int, cache: CacheUsage, output: int) -> dict[str, Any]:
    return {
        "input_tokens": total - cache.read - cache.written,
        "cache_creation_input_tokens": cache.written,
        "cache_read_input_tokens": cache.read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache.written_5m,
            "ephemeral_1h_input_tokens": cache.written_1h,
        },
        "output_tokens": output,
        "service_tier": "standard",
    }


async def _count_tokens(sim: Simulator, request: Request, request_id: str) -> None:
    authenticate(sim, request)
    body, _, _ = parse_request(sim, request, generating=False)
    total = sum(block.tokens for block in prompt_blocks(body))
    await send_json(request.send, 200, {"input_tokens": total}, [(b"request-id", request_id.encode())])


async def _messages(sim: Simulator, request: Request, request_id: str) -> None:
    authenticate(sim, request)
    body, model, latency = parse_request(sim, request)
    sim.stats.models[model] += 1
    blocks = prompt_blocks(body)
    stream = bool(body.get("stream"))
    fault = sim.faults.draw(PROVIDER, model)
    if fault is not None:
        if fault.kind == "status" or (fault.kind == "stream_error" and not stream):
            status = fault.status if fault.kind == "status" else 529
            sim.stats.faults[str(status)] += 1
            raise fault_error(fault if fault.kind == "status" else FaultRule(status=529))
        sim.stats.faults[fault.kind] += 1
    if not await wait_for_fault(request, fault, stream):
        sim.stats.disconnects["before_response"] += 1
        return

    total = sum(block.tokens for block in blocks)
    organisation = api_key(request)
    cache = sim.anthropic_cache.read_and_write(
        (organisation, model), blocks, facts_for(model).cache_min_tokens
    )
    digest = digest_bytes(b"".join(block.content for block in blocks))
    reply = _reply(body, digest, latency)
    output = sum(len(pieces) for _, pieces in reply.blocks)
    usage = _usage(total, cache, output)
    sim.stats.tokens["prompt"] += total
    sim.stats.tokens["cached"] += cache.read
    sim.stats.tokens["cache_written"] += cache.written
    sim.stats.tokens["completion"] += output
    message = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block for block, _ in reply.blocks],
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": usage,
    }
    headers = [(b"request-id", request_id.encode())]
    if not stream:
        delay = response_delay(output, latency)
        await send_response(sim, request, fault, orjson.dumps(message), headers, delay)
        return
    frames, token_frames = _stream_frames(message, reply, latency)
    cut = len(frames) - 3  # by default: after the last token, before the closing events
    if fault is not None and fault.after_tokens < len(token_frames):
        cut = token_frames[fault.after_tokens]
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    plan = plan_stream(frames, fault, cut, _event("error", error))
    await run_stream(sim, request, SSE_HEADERS + headers, plan)


@dataclass(slots=True)
class _Reply:
    """Content blocks with the token pieces each is streamed in, and why the turn ended."""

    blocks: list[tuple[dict[str, Any], list[str]]]
    stop_reason: str
    stop_sequence: str | None = None


def _thinking_budget(body: dict[str, Any]) -> int | None:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < MIN_THINKING_BUDGET:
        raise AnthropicError(
            400,
            f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_THINKING_BUDGET}",
        )
    if budget >= body["max_tokens"]:
        raise AnthropicError(400, "`max_tokens` must be greater than `thinking.budget_tokens`.")
    return budget


def _reply(body: dict[str, Any], digest: bytes, latency: Latency) -> _Reply:
    """Optional thinking, then a tool call or text, within `max_tokens`."""
    budget: int = body["max_tokens"]
    blocks: list[tuple[dict[str, Any], list[str]]] = []
    thinking_budget = _thinking_budget(body)
    if thinking_budget is not None:
        thought = generate(digest, None, THINKING_CHOICE, latency, thinking_budget, [])
        signature = base64.b64encode(digest + thought.text.encode()[:32]).decode()
        blocks.append(
            ({"type": "thinking", "thinking": thought.text, "signature": signature}, thought.pieces)
        )
        budget -= len(thought.pieces)
    tool = _tool_to_use(body)
    if tool is not None:
        schema = tool.get("input_schema") or {"type": "object"}
        value = value_for_schema(schema, rng_for(digest, None), vocabulary())
        pieces = token_pieces(orjson.dumps(value).decode(), ENCODING)
        stop_reason = "tool_use"
        if len(pieces) > budget:
            pieces, stop_reason = pieces[:budget], "max_tokens"
        blocks.append(
            ({"type": "tool_use", "id": new_id("toolu_"), "name": tool["name"], "input": value}, pieces)
        )
        return _Reply(blocks, stop_reason)
    generated = generate(digest, None, 0, latency, budget, string_list(body.get("stop_sequences")))
    blocks.append(({"type": "text", "text": generated.text}, generated.pieces))
    return _Reply(blocks, STOP_REASONS[generated.finish], generated.stop_sequence)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _stream_frames(
    message: dict[str, Any], reply: _Reply, latency: Latency
) -> tuple[list[tuple[float, bytes]], list[int]]:
    """The SSE events of a message, and the positions of the events that carry a token."""
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": 1}
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    tokens = sum(len(pieces) for _, pieces in reply.blocks)
    delays = iter(token_delays(tokens + 1, latency))
    frames = [(next(delays), _event("message_start", {"type": "message_start", "message": start}))]
    token_frames: list[int] = []
    for index, (block, pieces) in enumerate(reply.blocks):
        opening, delta = _block_opening(block)
        frames.append(
            (
                0.0,
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": opening},
                ),
            )
        )
        if index == 0:
            frames.append((0.0, _event("ping", {"type": "ping"})))
        token_frame = frame_template(
            {"type": "content_block_delta", "index": index, "delta": delta},
            b"event: content_block_delta\ndata: ",
        )
        for piece in pieces:
            token_frames.append(len(frames))
            frames.append((next(delays), token_frame(piece)))
        if block["type"] == "thinking":
            signature = {"type": "signature_delta", "signature": block["signature"]}
            event = {"type": "content_block_delta", "index": index, "delta": signature}
            frames.append((0.0, _event("content_block_delta", event)))
        frames.append((0.0, _event("content_block_stop", {"type": "content_block_stop", "index": index})))
    final_usage = {
        k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    }
    final_usage["output_tokens"] = usage["output_tokens"]
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    frames += [
        (0.0, _event("message_delta", {"type": "message_delta", "delta": stop, "usage": final_usage})),
        (0.0, _event("message_stop", {"type": "message_stop"})),
    ]
    return frames, token_frames


def _block_opening(block: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A block as content_block_start announces it, and the delta shape its tokens use."""
    if block["type"] == "tool_use":
        return {**block, "input": {}}, {"type": "input_json_delta", "partial_json": SLOT}
    if block["type"] == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}, {
            "type": "thinking_delta",
            "thinking": SLOT,
        }
    return {"type": "text", "text": ""}, {"type": "text_delta", "text": SLOT}
