"""`POST /v1/completions` (the legacy text-completion endpoint)."""

from __future__ import annotations

import orjson

from ...asgi import SSE_HEADERS, Request
from ...core import Simulator
from ...generation import Generated
from ...model_facts import facts_for
from ...tokens import encode
from ..common import (
    digest_tokens,
    generate,
    new_id,
    now_seconds,
    plan_stream,
    response_delay,
    run_stream,
    send_response,
    string_list,
    token_delays,
    wait_for_fault,
)
from .chat import SYSTEM_FINGERPRINT
from .protocol import OpenAIError, draw_fault, int_param, parse_body, require_model, stream_error_frame


async def completions(sim: Simulator, request: Request) -> None:
    body = parse_body(request)
    model, latency = require_model(sim, request, body)
    prompts = body.get("prompt")
    if prompts is None:
        raise OpenAIError(
            400, "Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter"
        )
    if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
        prompts = [prompts]
    n = int_param(body, "n", 1, 128) or 1
    budget = int_param(body, "max_tokens", 1)
    budget = 16 if budget is None else budget  # the legacy endpoint's documented default
    stream = bool(body.get("stream"))
    fault = draw_fault(sim, model, stream)
    if not await wait_for_fault(request, fault, stream):
        sim.stats.disconnects["before_response"] += 1
        return

    encoding_name = facts_for(model).encoding
    stop = string_list(body.get("stop"))
    results: list[tuple[int, Generated]] = []
    prompt_tokens = 0
    for prompt in prompts:
        tokens = list(prompt) if isinstance(prompt, list) else encode(str(prompt), encoding_name)
        prompt_tokens += len(tokens)
        digest = digest_tokens(tokens)
        results.extend(
            (len(results), generate(digest, body.get("seed"), i, latency, budget, stop)) for i in range(n)
        )
    completion_tokens = sum(len(g.pieces) for _, g in results)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    base = {"id": new_id("cmpl-"), "object": "text_completion", "created": now_seconds(), "model": model}
    finish = {"stop": "stop", "stop_sequence": "stop", "length": "length"}
    headers = [(b"x-request-id", new_id("req_").encode())]
    if not stream:
        choices = [
            {"text": g.text, "index": i, "logprobs": None, "finish_reason": finish[g.finish]}
            for i, g in results
        ]
        payload = {**base, "choices": choices, "usage": usage, "system_fingerprint": SYSTEM_FINGERPRINT}
        delay = response_delay(max(len(g.pieces) for _, g in results), latency)
        await send_response(sim, request, fault, orjson.dumps(payload), headers, delay)
        return

    frames: list[tuple[float, bytes]] = []
    for index, generated in results:
        delays = token_delays(len(generated.pieces) + 1, latency)
        texts = [*generated.pieces, ""]
        for position, (delay, text) in enumerate(zip(delays, texts, strict=True)):
            reason = finish[generated.finish] if position == len(texts) - 1 else None
            choice = {"text": text, "index": index, "logprobs": None, "finish_reason": reason}
            frames.append((delay, b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"))
    if (body.get("stream_options") or {}).get("include_usage"):
        frames.append((0.0, b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n"))
    frames.append((0.0, b"data: [DONE]\n\n"))
    plan = plan_stream(frames, fault, fault.after_tokens if fault else 0, stream_error_frame())
    await run_stream(sim, request, SSE_HEADERS + headers, plan)
