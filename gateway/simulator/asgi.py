"""The few ASGI primitives the simulator needs, kept minimal for throughput.

Responses that take time (latency, hangs, streams) watch the connection while they wait, so a
client that goes away is noticed at once and counted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

Headers = list[tuple[bytes, bytes]]
JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


class Request:
    """The parts of an HTTP request the handlers read."""

    __slots__ = ("_disconnected", "body", "headers", "method", "path", "query", "receive", "send")

    def __init__(self, scope: dict[str, Any], receive: Any, send: Any, body: bytes) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers: dict[str, str] = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        raw_query = scope.get("query_string", b"")
        self.query: dict[str, str] = dict(parse_qsl(raw_query.decode())) if raw_query else {}
        self.body = body
        self.receive = receive
        self.send = send
        self._disconnected: asyncio.Future[None] | None = None

    def json(self) -> Any:
        """The body parsed as JSON (raises `orjson.JSONDecodeError`)."""
        return orjson.loads(self.body)

    def disconnected(self) -> asyncio.Future[None]:
        """A future that completes when the client closes the connection."""
        if self._disconnected is None:
            self._disconnected = asyncio.ensure_future(_wait_for_disconnect(self.receive))
        return self._disconnected

    async def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; False if the client disconnected meanwhile."""
        if seconds <= 0:
            return True
        watcher = self.disconnected()
        done, _ = await asyncio.wait((watcher,), timeout=seconds)
        return not done

    def close(self) -> None:
        if self._disconnected is not None and not self._disconnected.done():
            self._disconnected.cancel()


async def _wait_for_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def read_body(receive: Any) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    while message.get("more_body"):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


async def send_bytes(send: Any, status: int, body: bytes, headers: Headers) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Any, status: int, payload: Any, headers: Headers | None = None) -> None:
    await send_bytes(send, status, orjson.dumps(payload), JSON_HEADERS + (headers or []))


@dataclass(slots=True)
class StreamPlan:
    """Frames to send, each after a delay; `reset` drops the connection after the last frame."""

    frames: list[tuple[float, bytes]]
    reset: bool = False


async def send_stream(request: Request, status: int, headers: Headers, plan: StreamPlan) -> str:
    """Send a plan's frames; returns "completed", "cancelled" (the client left) or "reset"."""
    send = request.send
    await send({"type": "http.response.start", "status": status, "headers": headers})
    try:
        pending: list[bytes] = []  # frames due at the same moment go out in one write
        for delay, frame in plan.frames:
            if delay > 0:
                if pending:
                    await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
                    pending.clear()
                if not await request.wait(delay):
                    return "cancelled"
            pending.append(frame)
        if pending:
            await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
        if plan.reset:
            return "reset"  # returning with the body incomplete makes the server close the socket
        await send({"type": "http.response.body", "body": b""})
        return "completed"
    finally:
        request.close()
