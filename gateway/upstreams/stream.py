"""Server-sent events in OpenAI's chat.completion.chunk format: framing, and assembling the chunks
back into one chat.completion (for the ledger's usage estimate and for the response cache)."""

from __future__ import annotations

from typing import Any

import orjson

DONE_FRAME = b"data: [DONE]\n\n"


def frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def error_frame(message: str, code: str) -> bytes:
    return frame(
        orjson.dumps({"error": {"message": message, "type": "api_error", "param": None, "code": code}})
    )


class ChunkAccumulator:
    """Collects streamed chunks into the equivalent non-streamed chat.completion."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.created: int | None = None
        self.system_fingerprint: str | None = None
        self.usage: dict[str, Any] | None = None
        self._choices: dict[int, dict[str, Any]] = {}

    def add(self, chunk: dict[str, Any]) -> bool:
        """Fold in one chunk; returns True when it carried generated content (text or tool calls)."""
        self.id = self.id or chunk.get("id")
        self.model = self.model or chunk.get("model")
        self.created = self.created or chunk.get("created")
        self.system_fingerprint = self.system_fingerprint or chunk.get("system_fingerprint")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        produced = False
        for choice in chunk.get("choices") or ():
            state = self._choices.setdefault(
                choice.get("index", 0), {"role": "assistant", "content": [], "tool_calls": {}, "finish": None}
            )
            delta = choice.get("delta") or {}
            if delta.get("role"):
                state["role"] = delta["role"]
            text = delta.get("content") or choice.get("text")  # chat chunks, or legacy completion chunks
            if text:
                state["content"].append(text)
                produced = True
            for call in delta.get("tool_calls") or ():
                produced = True
                slot = state["tool_calls"].setdefault(
                    call.get("index", 0), {"id": None, "type": "function", "name": [], "arguments": []}
                )
                slot["id"] = slot["id"] or call.get("id")
                function = call.get("function") or {}
                if function.get("name"):
                    slot["name"].append(function["name"])
                if function.get("arguments"):
                    slot["arguments"].append(function["arguments"])
            if choice.get("finish_reason"):
                state["finish"] = choice["finish_reason"]
        return produced

    @property
    def text(self) -> str:
        return "".join("".join(c["content"]) for c in self._choices.values())

    @property
    def tool_call_text(self) -> str:
        return "".join(
            "".join(t["name"]) + "".join(t["arguments"])
            for c in self._choices.values()
            for t in c["tool_calls"].values()
        )

    def completion(self) -> dict[str, Any]:
        choices = []
        for index in sorted(self._choices):
            state = self._choices[index]
            message: dict[str, Any] = {"role": state["role"], "content": "".join(state["content"]) or None}
            if state["tool_calls"]:
                message["tool_calls"] = [
                    {
                        "id": slot["id"],
                        "type": slot["type"],
                        "function": {"name": "".join(slot["name"]), "arguments": "".join(slot["arguments"])},
                    }
                    for _, slot in sorted(state["tool_calls"].items())
                ]
            choices.append({"index": index, "message": message, "finish_reason": state["finish"]})
        result: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.system_fingerprint:
            result["system_fingerprint"] = self.system_fingerprint
        if self.usage:
            result["usage"] = self.usage
        return result
