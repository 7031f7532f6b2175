"""The prompt as Anthropic's cache sees it: blocks in order tools -> system -> messages, with their
token counts and `cache_control` breakpoints."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from ...prompt_cache import CacheBlock
from ...tokens import count
from .protocol import AnthropicError

ENCODING = "o200k_base"  # Anthropic's tokenizer is not public; o200k_base is a close stand-in
MAX_CACHE_BREAKPOINTS = 4
MESSAGE_OVERHEAD_TOKENS = 3
# Tokens of the tool-use system prompt Anthropic adds when `tools` are given (tool-use pricing docs).
TOOL_SYSTEM_PROMPT_TOKENS = {"auto": 346, "none": 346, "any": 313, "tool": 313}


def as_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [block for block in content or () if isinstance(block, dict)]


def block_tokens(block: dict[str, Any]) -> int:
    kind = block.get("type")
    if kind == "text":
        return count(block.get("text", ""), ENCODING)
    if kind == "tool_result":
        inner = block.get("content")
        if isinstance(inner, str):
            return count(inner, ENCODING)
        return sum(block_tokens(part) for part in as_blocks(inner))
    visible = {k: v for k, v in block.items() if k != "cache_control"}
    return count(orjson.dumps(visible).decode(), ENCODING)


def breakpoint_ttl(control: Any) -> str | None:
    """The TTL a `cache_control` marker asks for ("5m" by default), None without a marker."""
    if control is None:
        return None
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise AnthropicError(400, "cache_control.type: Input should be 'ephemeral'")
    ttl = control.get("ttl", "5m")
    if ttl not in ("5m", "1h"):
        raise AnthropicError(400, "cache_control.ttl: Input should be '5m' or '1h'")
    return ttl


def cache_block(block: dict[str, Any], tokens: int, role: str, salt: bytes = b"") -> CacheBlock:
    """A prompt block as the cache sees it: content (without its cache_control) and breakpoint TTL."""
    visible = {k: v for k, v in block.items() if k != "cache_control"}
    content = salt + role.encode() + b"\x00" + orjson.dumps(visible, option=orjson.OPT_SORT_KEYS)
    return CacheBlock(tokens, content, breakpoint_ttl(block.get("cache_control")))


def message_cache_salt(body: dict[str, Any]) -> bytes:
    """Settings whose change invalidates cached message blocks but not tools or system."""
    settings = {"tool_choice": body.get("tool_choice"), "thinking": body.get("thinking")}
    return orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)


def prompt_blocks(body: dict[str, Any]) -> list[CacheBlock]:
    """The prompt in cache order (tools, system, messages), one entry per cacheable block.

    A top-level `cache_control` (automatic caching) puts a breakpoint on the last block. Changing
    `tool_choice` or `thinking` invalidates the cached messages, as documented; tools and system
    stay cached.
    """
    blocks: list[CacheBlock] = []
    tools = body.get("tools") or []
    if tools:
        choice = (body.get("tool_choice") or {}).get("type", "auto")
        overhead = TOOL_SYSTEM_PROMPT_TOKENS.get(choice, TOOL_SYSTEM_PROMPT_TOKENS["auto"])
        blocks.append(CacheBlock(overhead, b"tool-system-prompt"))
    for tool in tools:
        blocks.append(cache_block(tool, block_tokens({"type": "tool", **tool}), "tool"))
    for block in as_blocks(body.get("system")):
        blocks.append(cache_block(block, block_tokens(block), "system"))
    salt = message_cache_salt(body)
    for message in body["messages"]:
        for position, block in enumerate(as_blocks(message.get("content"))):
            overhead = MESSAGE_OVERHEAD_TOKENS if position == 0 else 0
            blocks.append(cache_block(block, block_tokens(block) + overhead, message["role"], salt))
            salt = b""  # the settings enter the prefix once, before the first message block
    automatic = breakpoint_ttl(body.get("cache_control"))
    if automatic and blocks and blocks[-1].ttl is None:
        blocks[-1] = replace(blocks[-1], ttl=automatic)
    breakpoints = [block.ttl for block in blocks if block.ttl]
    if len(breakpoints) > MAX_CACHE_BREAKPOINTS:
        raise AnthropicError(
            400,
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(breakpoints)}.",
        )
    if "5m" in breakpoints and "1h" in breakpoints[breakpoints.index("5m") :]:
        raise AnthropicError(
            400, "cache_control: a ttl='1h' cache_control block cannot come after a ttl='5m' block."
        )
    return blocks
