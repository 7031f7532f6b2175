"""Token usage, normalised once: every provider's usage shape becomes one `Usage`.

Token classes are disjoint for input (uncached + cache read + cache write = all prompt tokens).
`reasoning` is the part of `output` spent on reasoning (OpenAI counts it inside completion_tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    input_uncached: int = 0
    input_cache_read: int = 0
    input_cache_write: int = 0
    input_cache_write_1h: int = 0  # of input_cache_write, the part written with a 1-hour TTL
    output: int = 0
    reasoning: int = 0  # of output, the part spent on reasoning
    estimated: bool = False  # counted by the gateway because the upstream reported none

    @property
    def input_total(self) -> int:
        return self.input_uncached + self.input_cache_read + self.input_cache_write


#: No request uses a trillion tokens; a larger count is an upstream bug, clamped so that it can
#: neither overflow the ledger's 64-bit columns nor the cost arithmetic.
MAX_TOKENS = 2**40


def _int(value: Any) -> int:
    """A token count as reported: a positive integer, else 0 (bools, floats, strings, junk)."""
    if type(value) is not int or value <= 0:
        return 0
    return min(value, MAX_TOKENS)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def from_openai(usage: dict[str, Any] | None) -> Usage | None:
    """Usage from an OpenAI-format `usage` object (OpenAI, vLLM, and litellm's translation of others).

    OpenAI's `prompt_tokens` includes cached tokens. litellm reports Anthropic usage the same way
    (prompt_tokens = input + cache reads + cache writes) and adds the cache-write counts, which is
    why cache writes are looked up in both places.
    """
    if not usage or not isinstance(usage, dict):
        return None
    prompt = _int(usage.get("prompt_tokens"))
    details = _dict(usage.get("prompt_tokens_details"))
    cache_read = min(_int(details.get("cached_tokens")) or _int(usage.get("cache_read_input_tokens")), prompt)
    cache_write = min(
        _int(details.get("cache_creation_tokens")) or _int(usage.get("cache_creation_input_tokens")),
        prompt - cache_read,
    )
    write_details = _dict(details.get("cache_creation_token_details")) or _dict(usage.get("cache_creation"))
    output = _int(usage.get("completion_tokens"))
    return Usage(
        input_uncached=prompt - cache_read - cache_write,
        input_cache_read=cache_read,
        input_cache_write=cache_write,
        # clipped to the writes actually counted (they may have been clipped to prompt_tokens)
        input_cache_write_1h=min(_int(write_details.get("ephemeral_1h_input_tokens")), cache_write),
        output=output,
        reasoning=min(_int(_dict(usage.get("completion_tokens_details")).get("reasoning_tokens")), output),
    )


def from_anthropic(usage: dict[str, Any] | None) -> Usage | None:
    """Usage from an Anthropic Messages `usage` object (native shape).

    `input_tokens` excludes cache reads and writes; `cache_creation` splits the writes by TTL
    (without it, all writes count as 5-minute writes, the API's default).
    """
    if not usage or not isinstance(usage, dict):
        return None
    cache_write = _int(usage.get("cache_creation_input_tokens"))
    split = _dict(usage.get("cache_creation"))
    return Usage(
        input_uncached=_int(usage.get("input_tokens")),
        input_cache_read=_int(usage.get("cache_read_input_tokens")),
        input_cache_write=cache_write,
        input_cache_write_1h=min(_int(split.get("ephemeral_1h_input_tokens")), cache_write),
        output=_int(usage.get("output_tokens")),
    )


def from_gemini(usage_metadata: dict[str, Any] | None) -> Usage | None:
    """Usage from a Gemini `usageMetadata` object (camelCase REST or snake_case SDK shape).

    `promptTokenCount` includes `cachedContentTokenCount`; tool-use prompt tokens are billed as
    input on top of it. Thinking tokens (`thoughtsTokenCount`) are billed as output; Gemini reports
    them outside `candidatesTokenCount` unless the counts already add up to `totalTokenCount`.
    """
    if not usage_metadata or not isinstance(usage_metadata, dict):
        return None

    def field(camel: str, snake: str) -> int:
        return _int(usage_metadata.get(camel, usage_metadata.get(snake)))

    prompt = field("promptTokenCount", "prompt_token_count") + field(
        "toolUsePromptTokenCount", "tool_use_prompt_token_count"
    )
    cached = min(field("cachedContentTokenCount", "cached_content_token_count"), prompt)
    candidates = field("candidatesTokenCount", "candidates_token_count")
    thoughts = field("thoughtsTokenCount", "thoughts_token_count")
    thoughts_inside = prompt + candidates == field("totalTokenCount", "total_token_count")
    output = candidates if thoughts_inside else candidates + thoughts
    return Usage(
        input_uncached=prompt - cached,
        input_cache_read=cached,
        output=output,
        reasoning=min(thoughts, output),
    )
