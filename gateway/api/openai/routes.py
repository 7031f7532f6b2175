"""OpenAI-compatible HTTP endpoints. Thin: parse, validate, hand over to the pipeline."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from gateway.api.body import log_request, read_json, validate
from gateway.api.openai.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
    ModelList,
)
from gateway.api.openapi import KEY_ERRORS, hot_route
from gateway.errors import GatewayError
from gateway.observability import logging as log_hygiene
from gateway.pipeline import Pipeline

router = APIRouter()


def _pipeline(request: Request) -> Pipeline:
    return request.app.state.pipeline


async def _serve(request: Request, endpoint: str, schema: type[BaseModel]) -> Response:
    pipeline = _pipeline(request)
    ex = pipeline.begin(request, endpoint)
    try:
        body = await read_json(
            request, pipeline.settings.max_body_bytes, pipeline.settings.max_json_containers
        )
        pipeline.authenticate(request, ex)
    except GatewayError as error:
        return error.response({"x-request-id": ex.request_id})
    if log_hygiene.prompts_allowed():
        log_request(ex.request_id, endpoint, body)
    try:
        validate(schema, body)
    except GatewayError as error:
        ex.requested_model = body.get("model") if isinstance(body.get("model"), str) else None
        pipeline.finish(ex, status=error.status, error_class=error.code)
        return error.response({"x-request-id": ex.request_id})
    return await pipeline.handle(request, ex, body)


_HI = [{"role": "user", "content": "Say hi."}]


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion (OpenAI-compatible)",
    **hot_route(
        ChatCompletionRequest,
        ChatCompletion,
        streams=True,
        examples={
            "deployment": {"model": "gpt-4o-mini", "messages": _HI},
            "policy": {"model": "auto", "messages": _HI, "max_tokens": 16},
            "stream": {"model": "gpt-4o-mini", "messages": _HI, "stream": True},
        },
    ),
)
async def chat_completions(request: Request) -> Response:
    return await _serve(request, "chat", ChatCompletionRequest)


@router.post(
    "/v1/completions",
    summary="Create a text completion (OpenAI-compatible, legacy)",
    **hot_route(
        CompletionRequest,
        Completion,
        streams=True,
        examples={"prompt": {"model": "gpt-4o-mini", "prompt": "Say hi.", "max_tokens": 16}},
    ),
)
async def completions(request: Request) -> Response:
    return await _serve(request, "completions", CompletionRequest)


@router.post(
    "/v1/embeddings",
    summary="Create embeddings (OpenAI-compatible)",
    **hot_route(
        EmbeddingRequest,
        EmbeddingList,
        streams=False,
        examples={"text": {"model": "gpt-4o-mini", "input": ["Say hi.", "Say bye."]}},
    ),
)
async def embeddings(request: Request) -> Response:
    return await _serve(request, "embeddings", EmbeddingRequest)


#: Served by `gateway.api.fastpath.FastPath` ahead of FastAPI's router (same functions).
HOT_ROUTES = {
    "/v1/chat/completions": chat_completions,
    "/v1/completions": completions,
    "/v1/embeddings": embeddings,
}


@router.get(
    "/v1/models",
    summary="Models this key may call: its policy, named policies, deployments",
    response_model=ModelList,
    responses=KEY_ERRORS,
)
async def list_models(request: Request) -> dict:
    pipeline = _pipeline(request)
    key = pipeline.authenticate(request, pipeline.begin(request, "models"))
    book = pipeline.policies.book
    models = []
    if book.for_caller(key.team, key.project) is not None:
        models.append({"id": "auto", "object": "model", "created": 0, "owned_by": "tiergate:policy"})
    models += [
        {"id": f"policy/{name}", "object": "model", "created": 0, "owned_by": "tiergate:policy"}
        for name in sorted(book.routers)
    ]
    models += [
        {"id": name, "object": "model", "created": 0, "owned_by": f"tiergate:{target.deployment.tier}"}
        for name, target in pipeline.upstreams.targets.items()
    ]
    return {"object": "list", "data": models}
