"""The cache invalidation admin endpoint, mounted on a bare FastAPI app."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from gateway.cache import CacheScope, ResponseCache
from gateway.cache.admin_api import cache_admin_router
from gateway.errors import GatewayError
from tests.cache.helpers import chat, completion


async def test_invalidate_by_tenant_needs_the_admin_key() -> None:
    cache = ResponseCache()
    scope = CacheScope("team-a", "default")
    await cache.store(await cache.lookup(scope, chat("Who wrote Hamlet?"), {}), completion("Shakespeare"))
    app = FastAPI()
    app.include_router(cache_admin_router)

    @app.exception_handler(GatewayError)
    async def as_json(_: Request, exc: GatewayError) -> JSONResponse:
        return JSONResponse({"error": {"message": exc.message}}, status_code=exc.status)

    app.state.settings = SimpleNamespace(admin_key=SecretStr("admin-secret"))
    app.state.response_cache = cache
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        denied = await client.post("/admin/cache/invalidate", json={"tenant": "team-a"})
        assert denied.status_code == 401
        assert (await cache.lookup(scope, chat("Who wrote Hamlet?"), {})).outcome == "exact"
        ok = await client.post(
            "/admin/cache/invalidate",
            json={"tenant": "team-a"},
            headers={"authorization": "Bearer admin-secret"},
        )
        assert ok.status_code == 200 and ok.json() == {"invalidated": 1}
        empty = await client.post(
            "/admin/cache/invalidate", json={}, headers={"authorization": "Bearer admin-secret"}
        )
        assert empty.status_code == 422
    assert (await cache.lookup(scope, chat("Who wrote Hamlet?"), {})).outcome == "miss"
