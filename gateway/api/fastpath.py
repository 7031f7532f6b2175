"""A shortcut past FastAPI's routing and dependency layers for the hot OpenAI endpoints.

Profiling the pass-through path showed FastAPI's per-request machinery (router, dependency
solving, exit stacks) costing more CPU than the gateway's own work. The endpoints stay declared
on the FastAPI router (OpenAPI schema, docs); this middleware calls the very same endpoint
functions directly when the method and path match exactly, and hands everything else to FastAPI.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import GatewayError
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
