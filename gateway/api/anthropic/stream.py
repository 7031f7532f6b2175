"""OpenAI chat.completion.chunk SSE -> Anthropic Messages SSE, as the pipeline relays it.

Anthropic's event sequence: `message_start`, then per content block `content_block_start`,
`content_block_delta`s (text_delta / thinking_delta + signature_delta / input_json_delta) and
`content_block_stop` (a `ping` after the first block opens), then `message_delta` (stop_reason and
the cumulative usage) and `message_stop`. OpenAI-format streams report usage only at the end, so
`message_start` carries zeros and `message_delta` the real counts, cache reads and writes included
(the Anthropic SDKs take the `message_delta` counts as final).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.api.anthropic.protocol import error_body
from gateway.api.anthropic.translate import anthropic_usage
from gateway.upstreams.usage import from_openai

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class StreamTranslator:
    """Folds OpenAI chunks (dicts) into Anthropic events (bytes); one instance per response."""

    def __init__(self, model: str, tool_names: dict[str, str] | None = None) -> None:
        self.model = model
        self.tool_names = tool_names or {}
        self.started = False
        self.done = False
        self._index = -1  # Anthropic index of the open content block
        self._open: tuple[str, int] | None = None  # ("text" | "thinking" | "tool_use", OpenAI tool index)
        self._pinged = False
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if not self.started:
            out.append(self._message_start(chunk))
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # Anthropic messages have one choice
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                out += self._delta(
                    ("thinking", 0), {"type": "thinking_delta", "thinking": delta["reasoning_content"]}
                )
            for block in delta.get("thinking_blocks") or ():
                if block.get("signature"):
                    out += self._delta(
                        ("thinking", 0), {"type": "signature_delta", "signature": block["signature"]}
                    )
            if delta.get("content"):
                out += self._delta(("text", 0), {"type": "text_delta", "text": delta["content"]})
            for call in delta.get("tool_calls") or ():
                out += self._tool_call(call)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> list[bytes]:
        """The closing events, once the upstream stream completed."""
        out = [] if self.started else [self._message_start({})]
        out += self._close()
        usage = anthropic_usage(from_openai(self._usage))
        usage.pop("cache_creation")  # not part of message_delta's usage
        stop = {
            "stop_reason": STOP_REASONS.get(self._finish_reason or "stop", "end_turn"),
            "stop_sequence": None,
        }
        out.append(event("message_delta", {"type": "message_delta", "delta": stop, "usage": usage}))
        out.append(event("message_stop", {"type": "message_stop"}))
        self.done = True
        return out

    def error(self, status: int, message: str) -> bytes:
        self.done = True
        return event("error", error_body(status, message))

    def _message_start(self, chunk: dict[str, Any]) -> bytes:
        self.started = True
        upstream_id = str(chunk.get("id") or "")
        message = {
            "id": upstream_id
            if upstream_id.startswith("msg_")
            else f"msg_{upstream_id.removeprefix('chatcmpl-')}",
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model") or self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return event("message_start", {"type": "message_start", "message": message})

    def _open_block(self, kind: tuple[str, int], block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self._index += 1
        self._open = kind
        out.append(
            event(
                "content_block_start",
                {"type": "content_block_start", "index": self._index, "content_block": block},
            )
        )
        if not self._pinged:
            self._pinged = True
            out.append(event("ping", {"type": "ping"}))
        return out

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [event("content_block_stop", {"type": "content_block_stop", "index": self._index})]

    def _delta(self, kind: tuple[str, int], delta: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if self._open != kind:
            opening = (
                {"type": "text", "text": ""}
                if kind[0] == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
            out = self._open_block(kind, opening)
        out.append(
            event(
                "content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta}
            )
        )
        return out

    def _tool_call(self, call: dict[str, Any]) -> list[bytes]:
        kind = ("tool_use", call.get("index", 0))
        function = call.get("function") or {}
        out: list[bytes] = []
        if self._open != kind:
            name = function.get("name") or ""
            block = {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": self.tool_names.get(name, name),
                "input": {},
            }
            out = self._open_block(kind, block)
        if function.get("arguments"):
            delta = {"type": "input_json_delta", "partial_json": function["arguments"]}
            out.append(
                event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": self._index, "delta": delta},
                )
            )
        return out


async def translate_stream(
    frames: AsyncIterator[bytes], translator: StreamTranslator
) -> AsyncIterator[bytes]:
    """Anthropic SSE for the pipeline's OpenAI SSE `frames`; closes `frames` (which writes the
    ledger row) however it ends."""
    buffer = b""
    try:
        async for data in frames:
            buffer += data
            while b"\n\n" in buffer and not translator.done:
                raw, buffer = buffer.split(b"\n\n", 1)
                for out in _translate_event(raw, translator):
                    yield out
            if translator.done:
                break
        if not translator.done:
            yield translator.error(502, "The upstream stream ended before it was complete.")
    finally:
        await frames.aclose()  # type: ignore[attr-defined]


def _translate_event(raw: bytes, translator: StreamTranslator) -> list[bytes]:
    payload = b"".join(line[5:].strip() for line in raw.split(b"\n") if line.startswith(b"data:"))
    if not payload:
        return []
    if payload == b"[DONE]":
        return translator.finish()
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return []
    if isinstance(chunk.get("error"), dict) and "choices" not in chunk:
        return [translator.error(502, str(chunk["error"].get("message") or "The upstream stream failed."))]
    return translator.feed(chunk)
