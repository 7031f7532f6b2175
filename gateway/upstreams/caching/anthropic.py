"""Anthropic `cache_control` breakpoints, placed on the OpenAI-format body litellm translates.

Anthropic caches the prompt prefix that ends at a block marked `cache_control`, in the order
tools -> system -> messages, at most 4 breakpoints per request, and only when the prefix reaches
the model's minimum length. The gateway marks, in this priority order:

1. the end of the conversation (the next turn shares everything sent now),
2. the end of the system prompt (shared by every conversation using it),
3. the end of the tool definitions (shared even when the system prompt varies),
4. the end of the previous turn (read exactly even when the new turn adds more than the
   provider's 20-block lookback).

Breakpoints the client sent are kept as they are and count towards the 4; a block that already has
one is never marked twice. litellm carries a message-level `cache_control` to the message's last
Anthropic block (a tool message's `tool_result`), and a part-level one to that part; an assistant
message with tool calls would lose it, so such messages are never marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

MAX_BREAKPOINTS = 4
BYTES_PER_TOKEN = 4  # cheap estimate: exact counting of long prompts would cost milliseconds


@dataclass(slots=True)
class _Unit:
    """A tool or a message, in cache order, with the prompt length up to and including it."""

    kind: str  # "tool", "system" or "message"
    role: str | None
    index: int  # in body["tools"] or body["messages"]
    end_tokens: int
    client_ttls: tuple[str, ...]  # TTLs of the breakpoints the client put on it
    markable: bool


def _control(ttl: str) -> dict[str, str]:
    return {"type": "ephemeral", "ttl": "1h"} if ttl == "1h" else {"type": "ephemeral"}


def _ttl(control: Any) -> str:
    return "1h" if isinstance(control, dict) and control.get("ttl") == "1h" else "5m"


def _client_ttls(item: dict[str, Any]) -> tuple[str, ...]:
    content = item.get("content")
    parts = [part for part in content if isinstance(part, dict)] if isinstance(content, list) else []
    marked = [p["cache_control"] for p in [*parts, item] if p.get("cache_control") is not None]
    return tuple(_ttl(control) for control in marked)


def _markable(message: dict[str, Any]) -> bool:
    content = message.get("content")
    if message.get("role") == "assistant" and (message.get("tool_calls") or message.get("function_call")):
        return False
    if isinstance(content, list):
        return bool(content) and isinstance(content[-1], dict)
    return isinstance(content, str) and bool(content)


def _units(body: dict[str, Any]) -> list[_Unit]:
    units: list[_Unit] = []
    total = 0

    def add(kind: str, index: int, item: dict[str, Any], markable: bool) -> None:
        nonlocal total
        total += len(orjson.dumps(item)) // BYTES_PER_TOKEN
        units.append(_Unit(kind, item.get("role"), index, total, _client_ttls(item), markable))

    for index, tool in enumerate(body.get("tools") or ()):
        if isinstance(tool, dict):
            add("tool", index, tool, True)
    messages = [m for m in enumerate(body.get("messages") or ()) if isinstance(m[1], dict)]
    for index, message in messages:  # litellm sends every system message as Anthropic's `system`
        if message.get("role") == "system":
            add("system", index, message, _markable(message))
    for index, message in messages:
        if message.get("role") != "system":
            add("message", index, message, _markable(message))
    return units


def _candidates(units: list[_Unit]) -> list[int]:
    """Positions worth a breakpoint, most valuable first (see the module docstring)."""
    conversation = [i for i, u in enumerate(units) if u.kind == "message"]
    chosen: list[int] = []
    end = next((i for i in reversed(conversation) if units[i].markable), None)
    if end is not None:
        chosen.append(end)
    for kind in ("system", "tool"):
        last = next((i for i in reversed(range(len(units))) if units[i].kind == kind), None)
        if last is not None and units[last].markable:
            chosen.append(last)
    replies = [i for i in conversation if end is not None and i < end and units[i].role == "assistant"]
    if replies:
        previous = next((i for i in reversed(conversation) if i < replies[-1] and units[i].markable), None)
        if previous is not None:
            chosen.append(previous)
    return chosen


def place_breakpoints(body: dict[str, Any], *, ttl: str, min_tokens: int) -> dict[str, Any]:
    """`body` with the gateway's breakpoints added (a new dict; the input is not modified)."""
    units = _units(body)
    taken = sum(len(unit.client_ttls) for unit in units) + (1 if body.get("cache_control") else 0)
    picks: list[int] = []
    for position in _candidates(units):
        if len(picks) + taken >= MAX_BREAKPOINTS:
            break
        unit = units[position]
        if not unit.client_ttls and unit.end_tokens >= min_tokens and position not in picks:
            picks.append(position)
    if not picks:
        return body
    body = {**body, "messages": list(body.get("messages") or ())}
    if any(units[p].kind == "tool" for p in picks):
        body["tools"] = list(body["tools"])
    for position in picks:
        unit = units[position]
        control = _control(_compatible_ttl(units, position, ttl))
        if unit.kind == "tool":
            body["tools"][unit.index] = {**body["tools"][unit.index], "cache_control": control}
        else:
            body["messages"][unit.index] = _mark(body["messages"][unit.index], control)
    return body


def _compatible_ttl(units: list[_Unit], position: int, ttl: str) -> str:
    """Anthropic wants 1-hour breakpoints before 5-minute ones: fit in with the client's."""
    if any("1h" in u.client_ttls for u in units[position + 1 :]):
        return "1h"
    if any("5m" in u.client_ttls for u in units[:position]):
        return "5m"
    return ttl


def _mark(message: dict[str, Any], control: dict[str, str]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, list) and message.get("role") != "tool":
        return {**message, "content": [*content[:-1], {**content[-1], "cache_control": control}]}
    return {**message, "cache_control": control}


def without_breakpoints(body: dict[str, Any]) -> dict[str, Any]:
    """`body` without `cache_control` markers (for providers that reject or misuse them: litellm
    turns them into paid explicit context caches on Gemini)."""
    if b"cache_control" not in orjson.dumps(body):
        return body
    body = {k: v for k, v in body.items() if k != "cache_control"}
    if isinstance(body.get("tools"), list):
        body["tools"] = [_strip(tool) for tool in body["tools"]]
    if isinstance(body.get("messages"), list):
        body["messages"] = [_strip(message, parts=True) for message in body["messages"]]
    return body


def _strip(item: Any, parts: bool = False) -> Any:
    if not isinstance(item, dict):
        return item
    item = {k: v for k, v in item.items() if k != "cache_control"}
    if parts and isinstance(item.get("content"), list):
        item["content"] = [_strip(part) for part in item["content"]]
    return item
