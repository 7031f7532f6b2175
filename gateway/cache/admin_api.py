"""Admin endpoint to invalidate cached responses. Mount with ``app.include_router(cache_admin_router)``;
it reads the cache from ``app.state.response_cache`` and needs the admin key like every admin route."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.api.admin.routes import require_admin
from gateway.api.openapi import ADMIN_ERRORS, ErrorResponse
from gateway.cache.cache import BackendUnavailable, ResponseCache
from gateway.errors import GatewayError

cache_admin_router = APIRouter(
    prefix="/admin/cache",
    dependencies=[Depends(require_admin)],
    tags=["admin"],
    responses={
        **ADMIN_ERRORS,
        503: {"model": ErrorResponse, "description": "The cache backend is unavailable."},
    },
)


class Invalidate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [{"required": ["tenant"]}, {"required": ["policy"]}, {"required": ["entry_id"]}]
        },
    )

    tenant: str | None = Field(default=None, min_length=1)
    policy: str | None = Field(default=None, min_length=1)
    entry_id: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_target(self) -> Invalidate:
        if self.entry_id is None and self.tenant is None and self.policy is None:
            raise ValueError("give tenant, policy (or both) or entry_id")
        return self


@cache_admin_router.post("/invalidate")
async def invalidate(body: Invalidate, request: Request) -> dict[str, int]:
    cache: ResponseCache = request.app.state.response_cache
    try:
        count = await cache.invalidate(tenant=body.tenant, policy=body.policy, entry_id=body.entry_id)
    except ValueError as exc:
        raise GatewayError(400, str(exc)) from exc
    except BackendUnavailable as exc:
        raise GatewayError(
            503, "The cache backend is unavailable; nothing was invalidated.", type="api_error"
        ) from exc
    return {"invalidated": count}
