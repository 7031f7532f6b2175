"""Anthropic Messages wire protocol, with prompt caching and extended thinking."""

from .messages import handle, handle_count_tokens
from .prompt import MESSAGE_OVERHEAD_TOKENS, prompt_blocks

__all__ = ["MESSAGE_OVERHEAD_TOKENS", "handle", "handle_count_tokens", "prompt_blocks"]
