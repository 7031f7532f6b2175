"""Turning one answered chat request into a stored sample: redaction, the conversation, its hash."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from gateway.distill.redact import Hook, redact_message

_SPACE = re.compile(r"\s+")
# What a chat message may carry in a fine-tuning file; provider extras (refusal, annotations,
# audio, reasoning, the legacy function_call) are dropped.
_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


def clean_message(message: dict[str, Any]) -> dict[str, Any]:
    out = {key: message[key] for key in _MESSAGE_KEYS if message.get(key) is not None}
    if out.get("role") == "developer":  # fine-tuning files know system, user, assistant and tool
        out["role"] = "system"
    if "tool_calls" in out:
        out["tool_calls"] = [
            {
                "id": call.get("id"),
                "type": call.get("type") or "function",
                "function": {
                    "name": call["function"].get("name"),
                    "arguments": call["function"].get("arguments") or "",
                },
            }
            for call in out["tool_calls"]
        ]
    return out


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return content or ""


def prompt_hash(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    """SHA-256 of the prompt normalised for deduplication: roles, case- and whitespace-folded text,
    tool calls, and the names of the offered tools."""
    normal = [
        [
            m.get("role"),
            _SPACE.sub(" ", _text(m.get("content"))).strip().casefold(),
            [[c["function"]["name"], c["function"]["arguments"]] for c in m.get("tool_calls") or []],
        ]
        for m in messages
    ]
    names = sorted(str((t.get("function") or {}).get("name")) for t in tools or [])
    return hashlib.sha256(orjson.dumps([normal, names])).hexdigest()


def build_sample(pending: dict[str, Any], hook: Hook | None) -> dict[str, Any]:
    """A `distill_samples` row from what the observer queued (runs in a worker thread)."""
    messages = [clean_message(m) for m in pending.pop("messages")]
    answer = clean_message(pending.pop("answer"))
    redacted = hook is not None
    if redacted:
        messages = [redact_message(m, hook) for m in messages]
        answer = redact_message(answer, hook)
    tools = pending.pop("tools")
    return {
        **pending,
        "messages": messages,
        "completion": answer,
        "tools": tools,
        "redacted": redacted,
        "prompt_hash": prompt_hash(messages, tools),
    }
