"""What the OpenAPI document (`/openapi.json`, `/docs`) says about each route.

The hot endpoints read their bodies themselves (see `gateway.api.fastpath`), so FastAPI cannot
infer their request schemas: `hot_route()` publishes the very pydantic models the endpoints
validate with, inlined, plus the response models and every error the route can answer. Admin
routes answer validation problems with 400 in the OpenAI error shape (see `gateway.app`), never
FastAPI's 422, so their routers declare `ADMIN_ERRORS` instead.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """OpenAI's error shape, used by every route except `/v1/messages`."""

    error: ErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicErrorResponse(BaseModel):
    """Anthropic's error shape, used by `/v1/messages`."""

    type: str = Field(json_schema_extra={"const": "error"})
    error: AnthropicErrorDetail


#: Why each status happens on the model-calling routes.
_WHY = {
    400: "Invalid request: malformed JSON, wrong types or values, or rejected by the upstream.",
    401: "Missing, invalid or revoked API key.",
    403: "The key may not do this.",
    404: "Unknown model (or no policy assigned for `auto`).",
    413: "The request body exceeds `max_body_bytes`.",
    429: "The key's budget or rate limit is exhausted.",
    502: "The upstream failed and no fallback was left.",
    503: "The upstream is overloaded or rate-limited; see `retry-after`.",
    504: "The upstream timed out.",
}

#: One server-sent event (in OpenAPI 3.1 the `schema` of an event stream describes each event).
_SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "description": "A JSON chunk, or `[DONE]` at the end (OpenAI)."},
    },
}

MODEL_CALL_STATUSES = (400, 401, 404, 413, 429, 502, 503, 504)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with every `$ref` replaced by its definition, so it can be placed
    anywhere in the OpenAPI document (the models involved are not recursive)."""
    schema = model.model_json_schema(mode="validation")
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return {**resolve(defs[ref.removeprefix("#/$defs/")]), **resolve(rest)}
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


def _header(description: str, required: bool = False, **schema: Any) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string", **schema}}


#: On every answer of a model-calling route, errors included.
_REQUEST_ID = {"x-request-id": _header("The request's id (the caller's, if it sent a valid one).", True)}
#: On answers that went through the pipeline.
_GATEWAY_HEADERS = {
    **_REQUEST_ID,
    "x-tiergate-cache": _header(
        "Response cache outcome.", True, enum=["off", "miss", "exact", "semantic", "bypass"]
    ),
    "x-tiergate-route": _header("`tier/deployment` that answered."),
    "x-tiergate-route-reason": _header("Which routing rule fired (or the cache hit)."),
    "x-tiergate-cost-usd": _header("Actual cost in USD (non-streamed answers).", pattern=r"^-?\d+\.\d{6}$"),
    "x-tiergate-overhead-ms": _header("Time the gateway added, in milliseconds.", pattern=r"^\d+\.\d+$"),
}


def _errors(statuses: tuple[int, ...], error_model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": error_model, "description": _WHY[status], "headers": _REQUEST_ID}
        for status in statuses
    }


def hot_route(
    request_model: type[BaseModel],
    response_model: type[BaseModel],
    *,
    examples: dict[str, dict[str, Any]],
    streams: bool,
    error_model: type[BaseModel] = ErrorResponse,
) -> dict[str, Any]:
    """Keyword arguments for a hot route's `@router.post(...)`: request body, responses, errors."""
    success: dict[str, Any] = {
        "model": response_model,
        "description": "The upstream's answer (or the cache's).",
        "headers": _GATEWAY_HEADERS,
    }
    if streams:
        success["description"] += " With `stream: true`, server-sent events."
        success["content"] = {"text/event-stream": {"schema": _SSE_EVENT}}
    return {
        "responses": {200: success, **_errors(MODEL_CALL_STATUSES, error_model)},
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": inline_schema(request_model),
                        "examples": {name: {"value": value} for name, value in examples.items()},
                    }
                },
            }
        },
    }


#: Error responses of the authenticated read-only routes (`/v1/models`).
KEY_ERRORS = _errors((401,), ErrorResponse)

#: Error responses of every admin route. Declaring the `4XX` range also keeps FastAPI from
#: documenting a 422 the gateway never sends (validation problems are 400s).
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid parameters or body."},
    401: {"model": ErrorResponse, "description": "Missing or wrong admin key."},
    403: {"model": ErrorResponse, "description": "The admin API is disabled (no admin key configured)."},
    404: {"model": ErrorResponse, "description": "No such key, policy or version."},
    "4XX": {"model": ErrorResponse, "description": "Other client errors, e.g. 405 for a wrong method."},
}
