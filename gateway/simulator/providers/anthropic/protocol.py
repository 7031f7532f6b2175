"""What Anthropic endpoints share: authentication, request checks, errors in Anthropic's shape
(`{"type": "error", "error": {"type", "message"}, "request_id"}`)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ...asgi import Headers, Request, send_json
from ...config import Latency
from ...core import Simulator
from ...faults import FaultRule
from ..common import (
    new_id,
)

PROVIDER = "anthropic"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {429: "Number of request tokens has exceeded your per-minute rate limit", 529: "Overloaded"}


class AnthropicError(Exception):
    """An error answered in Anthropic's shape."""

    def __init__(self, status: int, message: str, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = {"type": ERROR_TYPES.get(status, "api_error"), "message": message}
        self.headers = headers or []


def fault_error(fault: FaultRule) -> AnthropicError:
    headers: Headers = []
    if fault.status == 429:
        headers = [
            (b"retry-after", str(math.ceil(fault.retry_after)).encode()),
            (b"retry-after-ms", str(int(fault.retry_after * 1000)).encode()),
            (b"anthropic-ratelimit-requests-limit", b"4000"),
            (b"anthropic-ratelimit-requests-remaining", b"0"),
            (b"anthropic-ratelimit-input-tokens-limit", b"2000000"),
            (b"anthropic-ratelimit-input-tokens-remaining", b"0"),
        ]
    return AnthropicError(fault.status, ERROR_MESSAGES.get(fault.status, "Internal server error"), headers)


async def answer(
    sim: Simulator, request: Request, endpoint: Callable[[Simulator, Request, str], Awaitable[None]]
) -> None:
    """Run an endpoint with a request id, answering Anthropic-shaped errors."""
    sim.stats.requests[request.path] += 1
    request_id = new_id("req_")
    try:
        await endpoint(sim, request, request_id)
    except AnthropicError as error:
        sim.stats.statuses[str(error.status)] += 1
        payload = {"type": "error", "error": error.error, "request_id": request_id}
        await send_json(
            request.send, error.status, payload, [(b"request-id", request_id.encode()), *error.headers]
        )
    else:
        sim.stats.statuses["200"] += 1


def api_key(request: Request) -> str | None:
    """The key from `x-api-key`, or from `Authorization: Bearer` (what recent SDKs send)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return request.headers.get("x-api-key") or (token.strip() if scheme.lower() == "bearer" else None)


def authenticate(sim: Simulator, request: Request) -> None:
    """Require a key (and, as the API does, the `anthropic-version` header)."""
    key = api_key(request)
    if not key:
        raise AnthropicError(401, "x-api-key header is required")
    if not sim.key_accepted(key):
        raise AnthropicError(401, "invalid x-api-key")
    if "anthropic-version" not in request.headers:
        raise AnthropicError(400, "anthropic-version: header is required")


def parse_request(
    sim: Simulator, request: Request, generating: bool = True
) -> tuple[dict[str, Any], str, Latency]:
    """The checked body, the model (options stripped) and the latency for this request."""
    try:
        body = request.json()
    except orjson.JSONDecodeError:
        raise AnthropicError(400, "There was an error parsing the body of your request.") from None
    if not isinstance(body, dict):
        raise AnthropicError(400, "The request body must be a JSON object.")
    for field in ("model", "messages", "max_tokens") if generating else ("model", "messages"):
        if field not in body:
            raise AnthropicError(400, f"{field}: Field required")
    max_tokens = body.get("max_tokens", 1)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise AnthropicError(400, "max_tokens: Input should be greater than or equal to 1")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise AnthropicError(400, "messages: at least one message is required")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise AnthropicError(400, f"messages.{index}.role: Input should be 'user' or 'assistant'")
    try:
        model, latency = sim.resolve(str(body["model"]), request.headers)
    except ValueError as exc:
        raise AnthropicError(400, str(exc)) from None
    if not sim.knows_model(model):
        raise AnthropicError(404, f"model: {model}")
    return body, model, latency
