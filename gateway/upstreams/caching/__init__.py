"""Provider prompt-caching transforms on the OpenAI-format body the gateway forwards.

`apply()` is pure: it returns a new body (or the same one when nothing applies) and never adds
anything that changes the prompt itself, so repeated prefixes stay byte-identical.

- Anthropic (`anthropic.py`): `cache_control` breakpoints on tools, system and conversation.
- OpenAI (`openai.py`): a tenant-scoped `prompt_cache_key`, `prompt_cache_retention` from policy.
- Gemini, OpenAI, vLLM (`ordering.py`): tools in a stable order for implicit prefix caching.
"""

from __future__ import annotations

from typing import Any

from gateway.upstreams.caching.anthropic import place_breakpoints, without_breakpoints
from gateway.upstreams.caching.facts import min_cacheable_tokens
from gateway.upstreams.caching.openai import add_cache_key, prompt_cache_key
from gateway.upstreams.caching.ordering import stable_tool_order
from gateway.upstreams.caching.settings import PromptCacheSettings

#: litellm provider names whose prompt cache each transform targets.
ANTHROPIC_PROVIDERS = frozenset({"anthropic"})
OPENAI_PROVIDERS = frozenset({"openai"})
IMPLICIT_PREFIX_PROVIDERS = frozenset({"openai", "gemini", "vllm", "hosted_vllm", "openai_compatible"})


def apply(
    provider: str, model: str, body: dict[str, Any], *, tenant: str, settings: PromptCacheSettings
) -> dict[str, Any]:
    """The chat `body` as it should go to `provider`'s `model` for its prompt cache to hit.

    Breakpoints (`cache_control`, e.g. from a translated Anthropic request) are removed for other
    providers whether or not the transforms are enabled: they are Anthropic's vocabulary.
    """
    if not isinstance(body.get("messages"), list):
        return body
    if provider in ANTHROPIC_PROVIDERS:
        if not settings.enabled:
            return body
        return place_breakpoints(
            body, ttl=settings.anthropic_ttl, min_tokens=min_cacheable_tokens("anthropic", model)
        )
    body = without_breakpoints(body)
    if not settings.enabled:
        return body
    if settings.stable_tool_order and provider in IMPLICIT_PREFIX_PROVIDERS:
        body = stable_tool_order(body)
    if provider in OPENAI_PROVIDERS:
        body = add_cache_key(body, model, tenant=tenant, retention=settings.openai_retention)
    return body


__all__ = ["PromptCacheSettings", "apply", "prompt_cache_key"]
