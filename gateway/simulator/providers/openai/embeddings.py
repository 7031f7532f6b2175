"""`POST /v1/embeddings` (deterministic unit vectors) and `GET /v1/models`."""

from __future__ import annotations

import base64
import math
import random
from array import array
from typing import Any

import orjson

from ...asgi import Request, send_json
from ...core import Simulator
from ...model_facts import facts_for
from ...tokens import encode
from ..common import (
    digest_tokens,
    new_id,
    send_response,
    wait_for_fault,
)
from .protocol import OpenAIError, draw_fault, int_param, parse_body, require_model

DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o4-mini", "text-embedding-3-small")


def _embedding(tokens: list[int], dimensions: int) -> list[float]:
    rng = random.Random(int.from_bytes(digest_tokens(tokens)[:8], "big"))
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


async def embeddings(sim: Simulator, request: Request) -> None:
    body = parse_body(request)
    model, latency = require_model(sim, request, body)
    inputs = body.get("input")
    if inputs is None or inputs == "" or inputs == []:
        raise OpenAIError(400, "'input' must not be empty.", param="input")
    if isinstance(inputs, str) or (isinstance(inputs, list) and isinstance(inputs[0], int)):
        inputs = [inputs]
    default_dimensions = (
        3072 if model.startswith("text-embedding-3-large") else sim.config.embedding_dimensions
    )
    dimensions = int_param(body, "dimensions", 1) or default_dimensions
    fault = draw_fault(sim, model, stream=False)
    if not await wait_for_fault(request, fault, stream=False):
        sim.stats.disconnects["before_response"] += 1
        return
    encoding_name = facts_for(model).encoding
    data = []
    total = 0
    for index, item in enumerate(inputs):
        tokens = list(item) if isinstance(item, list) else encode(str(item), encoding_name)
        total += len(tokens)
        vector = _embedding(tokens, dimensions)
        if body.get("encoding_format") == "base64":
            encoded: Any = base64.b64encode(array("f", vector).tobytes()).decode()
        else:
            encoded = vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    payload = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }
    headers = [(b"x-request-id", new_id("req_").encode())]
    await send_response(sim, request, fault, orjson.dumps(payload), headers, latency.ttft_ms / 1000.0)


async def list_models(sim: Simulator, request: Request) -> None:
    models = sim.config.models or DEFAULT_MODELS
    data = [{"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "system"} for m in models]
    await send_json(request.send, 200, {"object": "list", "data": data})
