"""`POST /v1/messages`: the Anthropic Messages API over the same pipeline as the OpenAI endpoints.

Thin: read and validate the Anthropic request, translate it to the OpenAI chat format, let the
pipeline authenticate, route, call the upstream and ledger it, then translate the response (JSON,
SSE or error) back to Anthropic's format. The gateway's `x-tiergate-*` headers are kept.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse

from gateway.api.anthropic.protocol import (
    MessageResponse,
    MessagesRequest,
    error_response,
    from_gateway_error,
)
from gateway.api.anthropic.stream import StreamTranslator, translate_stream
from gateway.api.anthropic.translate import for_provider, to_anthropic, to_openai
from gateway.api.body import log_request, read_json, validation_error
from gateway.api.openapi import AnthropicErrorResponse, hot_route
from gateway.errors import GatewayError, invalid_request
from gateway.observability import logging as log_hygiene
from gateway.pipeline import Pipeline, RelayResponse

router = APIRouter()

#: Headers of the pipeline's response that describe the body, not the request: not copied.
_BODY_HEADERS = frozenset({"content-length", "content-type"})


@router.post(
    "/v1/messages",
    summary="Create a message (Anthropic Messages API)",
    **hot_route(
        MessagesRequest,
        MessageResponse,
        streams=True,
        error_model=AnthropicErrorResponse,
        examples={
            "message": {
                "model": "claude-sonnet",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "Say hi."}],
            }
        },
    ),
)
async def messages(request: Request) -> Response:
    pipeline: Pipeline = request.app.state.pipeline
    ex = pipeline.begin(request, "chat")
    try:
        body = await read_json(
            request, pipeline.settings.max_body_bytes, pipeline.settings.max_json_containers
        )
        pipeline.authenticate(request, ex)
    except GatewayError as error:
        return from_gateway_error(error, {"x-request-id": ex.request_id})
    if log_hygiene.prompts_allowed():
        log_request(ex.request_id, "messages", body)
    try:
        MessagesRequest.model_validate(body)
    except ValidationError as exc:
        error = validation_error(exc)
        ex.requested_model = body.get("model") if isinstance(body.get("model"), str) else None
        pipeline.finish(ex, status=error.status, error_class=error.code)
        return from_gateway_error(error, {"x-request-id": ex.request_id})
    try:
        openai_body, tool_names = to_openai(body)
    except Exception as exc:  # litellm's adapter trusts its input: odd shapes must not become 500s
        error = invalid_request(f"The request could not be translated: {type(exc).__name__}.")
        ex.requested_model = body["model"]
        pipeline.finish(ex, status=error.status, error_class="untranslatable_request")
        return from_gateway_error(error, {"x-request-id": ex.request_id})
    ex.adapt_body = for_provider  # once routed: e.g. `thinking` -> `reasoning_effort` for non-Claude models
    response = await pipeline.handle(request, ex, openai_body)
    return _to_anthropic(response, body["model"], tool_names)


def _headers(response: Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in _BODY_HEADERS}


def _to_anthropic(response: Response, model: str, tool_names: dict[str, str]) -> Response:
    headers = _headers(response)
    if isinstance(response, StreamingResponse):
        frames = translate_stream(response.body_iterator, StreamTranslator(model, tool_names))
        on_close = response.on_close if isinstance(response, RelayResponse) else None
        return RelayResponse(frames, media_type="text/event-stream", headers=headers, on_close=on_close)
    data: dict[str, Any] = orjson.loads(response.body)
    if response.status_code != 200:
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        message = str(error.get("message") or "The request failed.")
        return error_response(response.status_code, message, headers)
    return Response(
        orjson.dumps(to_anthropic(data, tool_names)), media_type="application/json", headers=headers
    )
