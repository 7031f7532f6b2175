"""OpenAI wire protocol: chat completions, legacy completions, embeddings, models."""

from .chat import chat_completions, chat_prompt_tokens
from .completions import completions
from .embeddings import embeddings, list_models
from .protocol import handle

__all__ = ["chat_completions", "chat_prompt_tokens", "completions", "embeddings", "handle", "list_models"]
