"""What every upstream client returns, whatever wire protocol it speaks underneath."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.upstreams.stream import ChunkAccumulator
from gateway.upstreams.usage import Usage

ENDPOINT_PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}


@dataclass
class UpstreamResponse:
    """A complete (non-streamed) OpenAI-format response."""

    body: bytes
    data: dict[str, Any]
    usage: Usage | None


@dataclass
class UpstreamStream:
    """A streamed response: `frames` yields OpenAI SSE frames ready for the client.

    While it runs it fills `accumulator` (the assembled completion, including usage when the
    upstream sent it), `first_token_at` (perf_counter of the first generated content) and, if the
    stream broke off, `error_class`. `aclose()` releases the upstream connection (cancelling the
    upstream generation) and is safe to call more than once; it also runs `closers`, which is what
    releases what a stream holds even when `frames` was never started (a generator that never ran
    does not run its `finally`).
    """

    frames: AsyncIterator[bytes]
    accumulator: ChunkAccumulator = field(default_factory=ChunkAccumulator)
    first_token_at: float | None = None
    error_class: str | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    async def aclose(self) -> None:
        try:
            await self.frames.aclose()  # type: ignore[attr-defined]
        finally:
            closers, self.closers = self.closers, []
            for close in closers:
                close()


class Upstream(Protocol):
    async def complete(self, endpoint: str, body: dict[str, Any]) -> UpstreamResponse: ...

    async def stream(
        self, endpoint: str, body: dict[str, Any], client_wants_usage: bool
    ) -> UpstreamStream: ...

    async def aclose(self) -> None: ...
