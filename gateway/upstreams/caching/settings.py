"""What a routing policy says about provider prompt caching (embedded in the policy's cache section)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PromptCacheSettings(BaseModel):
    """Provider-side prompt caching: which transforms run on requests routed by this policy."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Apply the prompt-caching transforms at all.")
    anthropic_ttl: Literal["5m", "1h"] = Field(
        default="5m",
        description="TTL of the breakpoints the gateway places (writes cost 1.25x input for 5m, 2x for 1h).",
    )
    openai_retention: Literal["in_memory", "24h"] | None = Field(
        default=None,
        description="`prompt_cache_retention` sent to OpenAI models that support it (None: provider default).",
    )
    stable_tool_order: bool = Field(
        default=True,
        description="Sort tool definitions by name for providers with implicit prefix caching.",
    )
