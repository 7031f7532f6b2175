"""What every OpenAI endpoint shares: authentication, request parsing, errors in OpenAI's shape."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ...asgi import Headers, Request, send_json
from ...config import Latency
from ...core import Simulator
from ...faults import FaultRule

PROVIDER = "openai"


class OpenAIError(Exception):
    """An error answered in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Headers | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        self.headers = headers or []


def fault_error(fault: FaultRule) -> OpenAIError:
    """The error OpenAI returns for an injected status."""
    if fault.status == 429:
        headers = [
            (b"retry-after", str(math.ceil(fault.retry_after)).encode()),
            (b"retry-after-ms", str(int(fault.retry_after * 1000)).encode()),
            (b"x-ratelimit-limit-requests", b"10000"),
            (b"x-ratelimit-remaining-requests", b"0"),
            (b"x-ratelimit-reset-requests", f"{fault.retry_after}s".encode()),
            (b"x-ratelimit-limit-tokens", b"30000000"),
            (b"x-ratelimit-remaining-tokens", b"0"),
            (b"x-ratelimit-reset-tokens", f"{fault.retry_after}s".encode()),
        ]
        message = "Rate limit reached for requests. Please try again later."
        return OpenAIError(429, message, "requests", None, "rate_limit_exceeded", headers)
    if fault.status >= 500:
        message = "The server had an error while processing your request. Sorry about that!"
        return OpenAIError(fault.status, message, "server_error")
    return OpenAIError(fault.status, "Injected error.", "invalid_request_error")


def authenticate(sim: Simulator, request: Request) -> None:
    """Require `Authorization: Bearer <key>` (and an accepted key when keys are configured)."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise OpenAIError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    if not sim.key_accepted(key.strip()):
        raise OpenAIError(401, "Incorrect API key provided.", code="invalid_api_key")


def parse_body(request: Request) -> dict[str, Any]:
    """The JSON object body, or a 400."""
    try:
        body = request.json()
    except orjson.JSONDecodeError:
        raise OpenAIError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "The request body must be a JSON object.")
    return body


def require_model(sim: Simulator, request: Request, body: dict[str, Any]) -> tuple[str, Latency]:
    """The model (options stripped) and the latency for this request; 404 for unknown models."""
    requested = body.get("model")
    if not isinstance(requested, str) or not requested:
        raise OpenAIError(400, "you must provide a model parameter")
    try:
        model, latency = sim.resolve(requested, request.headers)
    except ValueError as exc:
        raise OpenAIError(400, str(exc), param="model") from None
    if not sim.knows_model(model):
        raise OpenAIError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    sim.stats.models[model] += 1
    return model, latency


def int_param(body: dict[str, Any], name: str, minimum: int, maximum: int | None = None) -> int | None:
    """An optional integer parameter within bounds, validated as OpenAI does."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise OpenAIError(
            400, f"Invalid type for '{name}': expected an integer.", param=name, code="invalid_type"
        )
    if value < minimum:
        raise OpenAIError(
            400,
            f"Invalid '{name}': integer below minimum value. Expected a value >= {minimum}, got {value}.",
            param=name,
            code="integer_below_min_value",
        )
    if maximum is not None and value > maximum:
        raise OpenAIError(
            400,
            f"Invalid '{name}': integer above maximum value. Expected a value <= {maximum}, got {value}.",
            param=name,
            code="integer_above_max_value",
        )
    return value


def draw_fault(sim: Simulator, model: str, stream: bool) -> FaultRule | None:
    """The fault for this request: error statuses are raised, the others returned to apply."""
    fault = sim.faults.draw(PROVIDER, model)
    if fault is None:
        return None
    if fault.kind == "status" or (fault.kind == "stream_error" and not stream):
        sim.stats.faults[str(fault.status if fault.kind == "status" else 500)] += 1
        raise fault_error(fault if fault.kind == "status" else FaultRule(status=500))
    sim.stats.faults[fault.kind] += 1
    return fault


async def handle(
    sim: Simulator, request: Request, endpoint: Callable[[Simulator, Request], Awaitable[None]]
) -> None:
    """Run an endpoint, answering OpenAI-shaped errors."""
    sim.stats.requests[request.path] += 1
    try:
        authenticate(sim, request)
        await endpoint(sim, request)
    except OpenAIError as error:
        sim.stats.statuses[str(error.status)] += 1
        await send_json(request.send, error.status, error.body, error.headers)
    else:
        sim.stats.statuses["200"] += 1


def stream_error_frame() -> bytes:
    """The error event OpenAI sends when a stream fails part-way."""
    error = {"message": "The server had an error while processing your request.", "type": "server_error"}
    return b"data: " + orjson.dumps({"error": {**error, "param": None, "code": None}}) + b"\n\n"
