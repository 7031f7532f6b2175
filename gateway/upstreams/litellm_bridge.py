"""Upstreams whose wire protocol differs from OpenAI's (Anthropic, Gemini, Azure, Bedrock, ...):
litellm translates requests, responses and stream chunks to and from the OpenAI format."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.settings import Deployment
from gateway.upstreams.base import UpstreamResponse, UpstreamStream
from gateway.upstreams.errors import UpstreamError
from gateway.upstreams.stream import error_frame, frame
from gateway.upstreams.usage import from_openai

DONE = b"[DONE]"


def _litellm():
    import litellm  # slow to import (seconds): only when a translated deployment is configured

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


def _classify(exc: Exception) -> UpstreamError:
    litellm = _litellm()
    status = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", "") or exc)
    if isinstance(exc, litellm.Timeout):
        return UpstreamError("timeout", "upstream timed out", status=None)
    if isinstance(exc, litellm.APIConnectionError) and status in (None, 500):
        return UpstreamError("connect_error", f"cannot reach upstream: {message[:300]}")
    if isinstance(exc, litellm.UnsupportedParamsError):
        return UpstreamError("unsupported_params", message, status=400)
    retry_after = None
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "headers", None):
        from gateway.upstreams.errors import parse_retry_after

        retry_after = parse_retry_after(response.headers.get("retry-after"))
    return UpstreamError(
        f"http_{status}" if status else type(exc).__name__, message, status=status, retry_after=retry_after
    )


def _dump(obj: Any) -> dict[str, Any]:
    return obj.model_dump(exclude_none=True) if hasattr(obj, "model_dump") else dict(obj)


class LiteLLMUpstream:
    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._model = f"{deployment.provider}/{deployment.model}"

    def _kwargs(self, body: dict[str, Any]) -> dict[str, Any]:
        kwargs = {**self.deployment.extra_params, **body}
        kwargs.update(
            model=self._model,
            api_base=self.deployment.api_base,
            api_key=self.deployment.api_key,
            timeout=self.deployment.timeout_s,
            num_retries=0,  # the dispatcher owns retries and fallbacks
        )
        return {k: v for k, v in kwargs.items() if v is not None}

    async def complete(self, endpoint: str, body: dict[str, Any]) -> UpstreamResponse:
        litellm = _litellm()
        call = {
            "chat": litellm.acompletion,
            "completions": litellm.atext_completion,
            "embeddings": litellm.aembedding,
        }
        try:
            response = await call[endpoint](
                **self._kwargs({**body, "stream": False} if endpoint != "embeddings" else body)
            )
        except Exception as exc:  # litellm raises its own exception hierarchy for every provider
            raise _classify(exc) from exc
        data = _dump(response)
        data.pop("_hidden_params", None)
        return UpstreamResponse(body=orjson.dumps(data), data=data, usage=from_openai(data.get("usage")))

    async def stream(self, endpoint: str, body: dict[str, Any], client_wants_usage: bool) -> UpstreamStream:
        litellm = _litellm()
        call = litellm.acompletion if endpoint == "chat" else litellm.atext_completion
        body = {
            **body,
            "stream": True,
            "stream_options": {**(body.get("stream_options") or {}), "include_usage": True},
        }
        try:
            chunks = await call(**self._kwargs(body))
        except Exception as exc:
            raise _classify(exc) from exc
        result = UpstreamStream(frames=None)  # type: ignore[arg-type]
        result.frames = self._relay(chunks, result, client_wants_usage)
        return result

    async def _relay(
        self, chunks: Any, result: UpstreamStream, client_wants_usage: bool
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                data = _dump(chunk)
                if result.accumulator.add(data) and result.first_token_at is None:
                    result.first_token_at = time.perf_counter()
                if not data.get("choices"):
                    if client_wants_usage:
                        yield frame(orjson.dumps(data))
                    continue
                if not client_wants_usage:
                    data.pop("usage", None)
                yield frame(orjson.dumps(data))
            yield frame(DONE)
        except Exception as exc:  # mid-stream provider failure: tell the client, keep the ledger right
            error = _classify(exc)
            result.error_class = error.error_class
            yield error_frame(f"The upstream stream broke off: {error.message[:300]}", error.error_class)
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()

    async def aclose(self) -> None:
        """litellm manages its own HTTP clients."""
