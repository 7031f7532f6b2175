"""Pieces every provider module shares: ids, prompt digests, timing of streamed tokens."""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from array import array
from collections.abc import Callable
from typing import Any

import orjson

from ..asgi import JSON_HEADERS, Headers, Request, StreamPlan, send_bytes, send_stream
from ..config import Latency
from ..core import Simulator
from ..faults import FaultRule
from ..generation import Generated, generate_text, rng_for
from ..tokens import encoding, vocabulary

_PROCESS_TAG = secrets.token_hex(6)
_SEQUENCE = itertools.count()


def new_id(prefix: str) -> str:
    """A unique id (random per process, then a counter: cheaper than fresh randomness each time)."""
    return f"{prefix}{_PROCESS_TAG}{next(_SEQUENCE):012x}"


def now_seconds() -> int:
    return int(time.time())


def digest_bytes(data: bytes) -> bytes:
    """A stable digest of a prompt, the root of every deterministic choice about the response."""
    return hashlib.blake2b(data, digest_size=16).digest()


def digest_tokens(tokens: list[int]) -> bytes:
    return digest_bytes(array("I", tokens).tobytes())


def generate(
    digest: bytes,
    seed: int | None,
    index: int,
    latency: Latency,
    max_tokens: int | None,
    stop: list[str],
) -> Generated:
    """Deterministic text for choice `index` of a prompt."""
    rng = rng_for(digest, seed, index)
    length = rng.randint(latency.min_tokens, latency.max_tokens)
    return generate_text(rng, vocabulary(), length, max_tokens, stop)


SLOT = "\x00slot\x00"  # a placeholder no real content contains
_SLOT_JSON = orjson.dumps(SLOT)


def frame_template(payload: Any, lead: bytes = b"data: ", trail: bytes = b"\n\n") -> Callable[[str], bytes]:
    """A fast serializer for frames that differ in one string: put `SLOT` where the string goes.

    Streams send one frame per token; serializing the constant part once keeps that cheap.
    """
    head, _, tail = orjson.dumps(payload).partition(_SLOT_JSON)
    head, tail = lead + head, tail + trail
    return lambda text: head + orjson.dumps(text) + tail


def token_pieces(text: str, encoding_name: str) -> list[str]:
    """`text` split at its token boundaries (for streaming JSON content or tool arguments)."""
    enc = encoding(encoding_name)
    return [enc.decode([token]) for token in enc.encode_ordinary(text)]


def token_delays(count: int, latency: Latency) -> list[float]:
    """Seconds to wait before each of `count` tokens: TTFT before the first, ITL after that."""
    if count == 0:
        return []
    return [latency.ttft_ms / 1000.0] + [latency.itl_ms / 1000.0] * (count - 1)


def response_delay(tokens: int, latency: Latency) -> float:
    """How long a non-streamed response takes to produce `tokens` tokens."""
    return (latency.ttft_ms + latency.itl_ms * max(tokens - 1, 0)) / 1000.0


async def wait_for_fault(request: Request, fault: FaultRule | None, stream: bool) -> bool:
    """Apply a `hang` fault due before the response starts; False if the client left meanwhile.

    JSON responses always hang before their headers; streams only when `after_tokens` is 0
    (otherwise `plan_stream` stalls them mid-way).
    """
    if fault is not None and fault.kind == "hang" and (not stream or fault.after_tokens == 0):
        return await request.wait(fault.hang_s)
    return True


def string_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [item for item in value if isinstance(item, str)]


async def send_response(
    sim: Simulator, request: Request, fault: FaultRule | None, body: bytes, headers: Headers, delay: float
) -> None:
    """A JSON response after `delay`; a `reset` fault cuts the connection half-way through the body."""
    answered = await request.wait(delay)
    request.close()
    if not answered:
        sim.stats.disconnects["before_response"] += 1
        return
    headers = JSON_HEADERS + headers
    if fault is not None and fault.kind == "reset":
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await request.send({"type": "http.response.start", "status": 200, "headers": headers})
        await request.send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
        return
    await send_bytes(request.send, 200, body, headers)


def plan_stream(
    frames: list[tuple[float, bytes]], fault: FaultRule | None, cut: int, error_frame: bytes
) -> StreamPlan:
    """Apply a mid-stream fault at frame `cut` (the frame that would carry token `after_tokens`)."""
    if fault is None or fault.kind == "status":
        return StreamPlan(frames)
    cut = min(cut, len(frames))
    if fault.kind == "reset":
        return StreamPlan(frames[:cut], reset=True)
    if fault.kind == "stream_error":
        return StreamPlan([*frames[:cut], (0.0, error_frame)])
    if cut < len(frames) and fault.after_tokens > 0:  # hang: stall before this frame, then carry on
        delay, frame = frames[cut]
        frames[cut] = (delay + fault.hang_s, frame)
    return StreamPlan(frames)


async def run_stream(sim: Simulator, request: Request, headers: Headers, plan: StreamPlan) -> None:
    sim.stats.streams["started"] += 1
    outcome = await send_stream(request, 200, headers, plan)
    sim.stats.streams[outcome] += 1
