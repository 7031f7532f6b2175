"""A shortcut past FastAPI's routing and dependency layers for the hot OpenAI endpoints.

Profiling the pass-through path showed FastAPI's per-request machinery (router, dependency
solving, exit stacks) costing more CPU than the gateway's own work. The endpoints stay declared
on the FastAPI router (OpenAPI schema, docs); this middleware calls the very same endpoint
functions directly when the method and path match exactly, and hands everything else to FastAPI.

It also bounds every other route's request body (`max_body_bytes`) before FastAPI reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import GatewayError, invalid_request, too_large
from gateway.observability.logging import log_unexpected

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


class FastPath:
    def __init__(self, app: ASGIApp, routes: dict[str, Endpoint]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = (
            self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        )
        if endpoint is None:
            if scope["type"] == "http" and _has_body(scope):
                receive = await self._bounded_body(scope, receive, send)
                if receive is None:
                    return
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except GatewayError as error:
            response = error.response()
        except Exception as exc:
            log_unexpected(log, "unhandled error on POST %s", scope["path"], exc=exc)
            response = GatewayError(
                500, "Internal gateway error.", type="api_error", code="internal_error"
            ).response()
        await response(scope, receive, send)

    async def _bounded_body(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Every other route's body (admin, feedback...), read here within `max_body_bytes` before
        the framework buffers it, then replayed: FastAPI reads a body before the route's
        dependencies run, so without this an unauthenticated client could make the gateway hold
        any number of bytes. Answers 413 (or 400 for a flood of JSON containers) and returns None."""
        settings = scope["app"].state.settings
        limit, max_containers = settings.max_body_bytes, settings.max_json_containers
        declared = Headers(scope=scope).get("content-length", "")
        error: GatewayError | None = (
            too_large(limit) if declared.isdigit() and int(declared) > limit else None
        )
        chunks: list[bytes] = []
        size = 0
        while error is None:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                error = too_large(limit)
                break
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if (
            error is None
            and len(body) > 2 * max_containers
            and body.count(b"{") + body.count(b"[") > max_containers
        ):
            error = invalid_request(
                f"The request body has more than {max_containers} JSON objects and arrays.",
                code="invalid_json",
            )
        if error is not None:
            await error.response()(scope, receive, send)
            return None
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _has_body(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    return headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers
