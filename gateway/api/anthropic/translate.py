"""Anthropic Messages <-> the OpenAI chat format the pipeline routes, both ways.

The request and the response content go through litellm's Anthropic adapter. The request is
translated as for a Claude target (routing happens afterwards), so `cache_control` breakpoints and
`thinking` survive; `for_provider()` adapts the body once the target is known. Usage is not taken
from the adapter: it is rebuilt from the gateway's normalised `Usage` (the one the ledger prices),
so the client sees the same cache reads and the TTL split of cache writes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from gateway.upstreams.usage import Usage, from_openai

#: Translation happens before routing: translate as for a Claude model, so nothing is dropped.
_CLAUDE_TARGET = "claude"
_ANTHROPIC_PROVIDERS = frozenset({"anthropic"})


@cache
def _adapter():
    from litellm.llms.anthropic.experimental_pass_through.adapters.transformation import (
        LiteLLMAnthropicMessagesAdapter,
    )

    return LiteLLMAnthropicMessagesAdapter()


def to_openai(request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The OpenAI-format chat body for an Anthropic request, and the tool-name mapping (names
    over OpenAI's 64 characters are shortened; the response restores them)."""
    body, tool_names = _adapter().translate_anthropic_to_openai({**request, "model": _CLAUDE_TARGET})
    body = {key: value for key, value in dict(body).items() if value is not None}
    body["messages"] = [_without_nulls(message) for message in body["messages"]]
    body["model"] = request["model"]
    if request.get("stream"):
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # message_delta needs the final usage
    return body, tool_names


def _without_nulls(message: Any) -> dict[str, Any]:
    """The adapter leaves empty fields as None (`thinking_blocks`); OpenAI rejects unknown ones."""
    return {key: value for key, value in dict(message).items() if value is not None}


def for_provider(body: dict[str, Any], provider: str, model: str) -> dict[str, Any]:
    """Adapt a translated body to the deployment it was routed to. Claude gets it as it is. Other
    models get `max_completion_tokens` (OpenAI's reasoning models reject `max_tokens`), and
    `thinking` becomes `reasoning_effort` for reasoning models and is dropped for the rest (they
    would reject either)."""
    if provider in _ANTHROPIC_PROVIDERS:
        return body
    import litellm

    adapted = {key: value for key, value in body.items() if key not in ("thinking", "max_tokens")}
    if "max_tokens" in body:
        adapted["max_completion_tokens"] = body["max_tokens"]
    thinking = body.get("thinking")
    if thinking is not None and litellm.supports_reasoning(model=model, custom_llm_provider=provider):
        adapted.update(_adapter().translate_thinking_for_model(thinking, model))
    return adapted


def anthropic_usage(usage: Usage | None) -> dict[str, Any]:
    """Anthropic's usage object: `input_tokens` excludes cache reads and writes."""
    usage = usage or Usage()
    write_1h = usage.input_cache_write_1h
    return {
        "input_tokens": usage.input_uncached,
        "cache_creation_input_tokens": usage.input_cache_write,
        "cache_read_input_tokens": usage.input_cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.input_cache_write - write_1h,
            "ephemeral_1h_input_tokens": write_1h,
        },
        "output_tokens": usage.output,
    }


def to_anthropic(completion: dict[str, Any], tool_names: dict[str, str]) -> dict[str, Any]:
    """An Anthropic `message` for an OpenAI-format chat.completion."""
    from litellm import ModelResponse

    message = dict(_adapter().translate_openai_response_to_anthropic(ModelResponse(**completion), tool_names))
    message["id"] = _message_id(completion.get("id"))
    message["usage"] = anthropic_usage(from_openai(completion.get("usage")))
    if message.get("stop_details") is None:
        message.pop("stop_details", None)
    return message


def _message_id(upstream_id: Any) -> str:
    text = str(upstream_id or "")
    return text if text.startswith("msg_") else f"msg_{text.removeprefix('chatcmpl-')}"
