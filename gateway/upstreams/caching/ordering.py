"""Stable prompt prefixes for providers that cache them implicitly (Gemini, OpenAI, vLLM).

Implicit caching reads only an identical prefix. Tool definitions come first in it, and clients
often build the tool list from a dict or registry whose order varies between processes; sorting by
name (stable, so equal names keep their order) makes the same tool set the same prefix. The order
of tools carries no meaning for the model's choice of tool.
"""

from __future__ import annotations

from typing import Any


def _tool_name(tool: Any) -> str:
    if not isinstance(tool, dict):
        return ""
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else tool.get("name")
    return name if isinstance(name, str) else ""


def stable_tool_order(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with its tools sorted by name (the same dict when nothing moves)."""
    tools = body.get("tools")
    if not isinstance(tools, list) or len(tools) < 2:
        return body
    ordered = sorted(tools, key=_tool_name)
    return body if ordered == tools else {**body, "tools": ordered}
