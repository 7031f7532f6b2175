"""Per-model facts the simulator needs, kept as data: tokenizer, reasoning, prompt-cache thresholds.

Lookups match the longest prefix of the model name, so dated snapshots
(`claude-sonnet-4-5-20250929`, `gpt-4o-2024-08-06`) inherit their family's facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class ModelFacts:
    encoding: str = "o200k_base"
    reasoning: bool = False
    cache_min_tokens: int = 1024


_DEFAULT = ModelFacts()

# OpenAI: automatic prompt caching from 1,024 tokens for every current model.
# Anthropic: minimum cacheable prompt length per model (docs: "Cache limitations").
# Gemini: implicit caching minimum per model (docs: "Context caching").
_FACTS: dict[str, ModelFacts] = {
    "gpt-4o": ModelFacts(),
    "gpt-4.1": ModelFacts(),
    "gpt-5": ModelFacts(reasoning=True),
    "o1": ModelFacts(reasoning=True),
    "o3": ModelFacts(reasoning=True),
    "o4": ModelFacts(reasoning=True),
    "gpt-4": ModelFacts(encoding="cl100k_base"),
    "gpt-3.5": ModelFacts(encoding="cl100k_base"),
    "text-embedding-3": ModelFacts(encoding="cl100k_base"),
    "text-embedding-ada": ModelFacts(encoding="cl100k_base"),
    "claude-opus-4-5": ModelFacts(cache_min_tokens=4096),
    "claude-opus-4": ModelFacts(cache_min_tokens=1024),
    "claude-sonnet-4": ModelFacts(cache_min_tokens=1024),
    "claude-3-7-sonnet": ModelFacts(cache_min_tokens=1024),
    "claude-3-5-sonnet": ModelFacts(cache_min_tokens=1024),
    "claude-3-opus": ModelFacts(cache_min_tokens=1024),
    "claude-haiku-4-5": ModelFacts(cache_min_tokens=4096),
    "claude-3-5-haiku": ModelFacts(cache_min_tokens=2048),
    "claude-3-haiku": ModelFacts(cache_min_tokens=2048),
    "gemini-2.5-flash": ModelFacts(cache_min_tokens=1024),
    "gemini-2.5-pro": ModelFacts(cache_min_tokens=4096),
    "gemini-3": ModelFacts(cache_min_tokens=4096),
}
_PREFIXES = sorted(_FACTS, key=len, reverse=True)


@lru_cache(maxsize=4096)
def facts_for(model: str) -> ModelFacts:
    """Facts of the longest known family prefix of `model` (defaults otherwise)."""
    for prefix in _PREFIXES:
        if model.startswith(prefix):
            return _FACTS[prefix]
    return _DEFAULT
