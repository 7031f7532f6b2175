"""Upstreams that speak OpenAI's wire protocol (OpenAI, vLLM, any OpenAI-compatible server).

The client already speaks this protocol, so the gateway relays bytes instead of translating: it
swaps in the upstream model name, asks for usage on streams, and forwards SSE frames as they
arrive. litellm's per-call CPU cost (about 5 ms here, measured in BENCHMARKS.md) would be most of
the gateway's overhead budget, so it is kept for the providers that need translation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from gateway.settings import Deployment
from gateway.upstreams.base import ENDPOINT_PATHS, UpstreamResponse, UpstreamStream
from gateway.upstreams.errors import UpstreamError, parse_retry_after
from gateway.upstreams.stream import error_frame, frame
from gateway.upstreams.usage import from_openai

DEFAULT_API_BASE = "https://api.openai.com/v1"
CONNECT_TIMEOUT_S = 10.0


def _error_message(body: bytes) -> str:
    try:
        error = orjson.loads(body).get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    except (orjson.JSONDecodeError, AttributeError):
        pass
    return body[:500].decode(errors="replace") or "no error message"


def _connection_error(exc: BaseException) -> UpstreamError:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        # Before the request was sent. Not necessarily a slow server: aiohttp's connect deadline is checked
        # by our event loop, and a loop starved of CPU for longer than the deadline (measured: 15-27 s
        # stalls beside a CPU vLLM) sees it expire even when the kernel accepted the connection at once.
        return UpstreamError("connect_timeout", f"upstream timed out: {exc}")
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamError("timeout", "upstream timed out")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError("connect_error", f"cannot connect to upstream: {exc.os_error}")
    return UpstreamError("connection_reset", f"upstream connection failed: {type(exc).__name__}")


class OpenAIWireUpstream:
    def __init__(self, deployment: Deployment, session: aiohttp.ClientSession) -> None:
        self.deployment = deployment
        self._session = session
        self._base = (deployment.api_base or DEFAULT_API_BASE).rstrip("/")
        self._headers = {"content-type": "application/json"}
        if deployment.api_key:
            self._headers["authorization"] = f"Bearer {deployment.api_key}"
        self._timeout = aiohttp.ClientTimeout(total=deployment.timeout_s, sock_connect=CONNECT_TIMEOUT_S)
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=deployment.timeout_s
        )

    def _payload(self, body: dict[str, Any]) -> bytes:
        return orjson.dumps({**self.deployment.extra_params, **body, "model": self.deployment.model})

    async def _send(self, url: str, payload: bytes, limits: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        """POST, once more when the server closed a pooled keep-alive connection just as it was reused: it
        disconnects without a byte of answer, so the request was never read and sending it again is safe
        (not a retry of the upstream's decision: retries and backoff stay the registry's)."""
        try:
            return await self._session.post(url, data=payload, headers=self._headers, timeout=limits)
        except aiohttp.ServerDisconnectedError:
            return await self._session.post(url, data=payload, headers=self._headers, timeout=limits)

    async def complete(self, endpoint: str, body: dict[str, Any]) -> UpstreamResponse:
        url = self._base + ENDPOINT_PATHS[endpoint]
        try:
            async with await self._send(url, self._payload(body), self._timeout) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise UpstreamError(
                        f"http_{resp.status}",
                        _error_message(raw),
                        status=resp.status,
                        retry_after=parse_retry_after(resp.headers.get("retry-after")),
                    )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _connection_error(exc) from exc
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("bad_response", "upstream returned invalid JSON", status=502) from exc
        return UpstreamResponse(body=raw, data=data, usage=from_openai(data.get("usage")))

    async def stream(self, endpoint: str, body: dict[str, Any], client_wants_usage: bool) -> UpstreamStream:
        """Open the stream; errors before the first byte raise (so they can be retried)."""
        url = self._base + ENDPOINT_PATHS[endpoint]
        # Always ask for usage: the ledger needs it even when the client did not.
        body = {
            **body,
            "stream": True,
            "stream_options": {**(body.get("stream_options") or {}), "include_usage": True},
        }
        try:
            resp = await self._send(url, self._payload(body), self._stream_timeout)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _connection_error(exc) from exc
        if resp.status != 200:
            try:
                raw = await resp.read()
            except (TimeoutError, aiohttp.ClientError):
                raw = b""
            resp.release()
            raise UpstreamError(
                f"http_{resp.status}",
                _error_message(raw),
                status=resp.status,
                retry_after=parse_retry_after(resp.headers.get("retry-after")),
            )
        result = UpstreamStream(frames=None)  # type: ignore[arg-type]
        result.frames = self._relay(resp, result, client_wants_usage)
        result.closers.append(resp.close)  # a no-op once the relay released the connection to the pool
        return result

    async def _relay(
        self, resp: aiohttp.ClientResponse, result: UpstreamStream, client_wants_usage: bool
    ) -> AsyncIterator[bytes]:
        """Forward SSE events as they arrive, folding each into the accumulator on the way.

        Whatever the socket has delivered is forwarded at once as one write (never waiting for more),
        so a burst of events costs one send instead of one per event.
        """
        finished = False
        pending = b""
        try:
            async for data in resp.content.iter_any():
                *lines, pending = (pending + data).split(b"\n")
                out: list[bytes] = []
                for line in lines:
                    if finished or not line.startswith(b"data:"):
                        continue  # blank separators, comments (": keep-alive"), the tail after [DONE]
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        finished = True
                        out.append(frame(payload))
                        continue
                    try:
                        chunk = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        continue
                    if "error" in chunk and "choices" not in chunk:
                        result.error_class = "upstream_stream_error"
                        yield b"".join(out) + frame(payload)
                        return
                    if result.accumulator.add(chunk) and result.first_token_at is None:
                        result.first_token_at = time.perf_counter()
                    if not client_wants_usage:
                        if not chunk.get("choices"):
                            continue  # the usage-only chunk we asked for on the ledger's behalf
                        if "usage" in chunk:
                            del chunk["usage"]
                            payload = orjson.dumps(chunk)
                    out.append(frame(payload))
                if out:
                    yield b"".join(out)
            if not finished:
                result.error_class = "stream_truncated"
        except (TimeoutError, aiohttp.ClientError) as exc:
            error = _connection_error(exc)
            result.error_class = error.error_class
            yield error_frame(f"The upstream stream broke off: {error.message}", error.error_class)
        finally:
            # A finished stream goes back to the pool; anything else (client gone, upstream broke
            # off) closes the connection, which is what cancels generation at the upstream.
            if finished:
                resp.release()
            else:
                resp.close()

    async def aclose(self) -> None:
        """The shared session is owned by the registry."""
