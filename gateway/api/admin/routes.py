"""Admin API: virtual keys. Reachable only with the admin key (`TIERGATE_ADMIN_KEY`)."""

from __future__ import annotations

import hmac
from decimal import Decimal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.openapi import ADMIN_ERRORS
from gateway.auth.keys import TENANT_NAME_PATTERN, KeyStore, key_to_dict
from gateway.errors import GatewayError, forbidden, invalid_request, unauthorized
from gateway.pipeline import _bearer_key


def require_admin(request: Request) -> None:
    configured = request.app.state.settings.admin_key
    if configured is None:
        raise forbidden("The admin API is disabled: set TIERGATE_ADMIN_KEY to enable it.")
    presented = _bearer_key(request) or ""
    if not hmac.compare_digest(presented.encode(), configured.get_secret_value().encode()):
        raise unauthorized("Admin endpoints need the admin key.")


router = APIRouter(
    prefix="/admin", dependencies=[Depends(require_admin)], tags=["admin"], responses=ADMIN_ERRORS
)


def _keys(request: Request) -> KeyStore:
    return request.app.state.keys


#: Team and project names: no `/` (the cache's tenant is `team/project`, which must not be
#: ambiguous) and no `*` (the wildcard of policy assignments), no surrounding whitespace.
TENANT_NAME = TENANT_NAME_PATTERN
MAX_BUDGET_USD = Decimal(1_000_000_000)  # a billion dollars a period: fits the ledger's integers


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: str = Field(min_length=1, max_length=128, pattern=TENANT_NAME)
    project: str | None = Field(default=None, min_length=1, max_length=128, pattern=TENANT_NAME)
    name: str | None = Field(default=None, max_length=128)
    budget_daily_usd: Decimal | None = Field(default=None, ge=0, le=MAX_BUDGET_USD)
    budget_monthly_usd: Decimal | None = Field(default=None, ge=0, le=MAX_BUDGET_USD)
    rpm_limit: int | None = Field(default=None, gt=0, le=2**31 - 1, strict=True)


@router.post("/keys", status_code=201, summary="Create a virtual key (the key is shown only here)")
async def create_key(request: Request, spec: KeyCreate) -> dict:
    try:
        key, row = await _keys(request).create(**spec.model_dump())
    except ValueError as exc:
        raise invalid_request(str(exc), code="invalid_value") from None
    return {"key": key, **key_to_dict(row)}


@router.get("/keys", summary="List virtual keys")
async def list_keys(request: Request, include_revoked: bool = False) -> dict:
    rows = await _keys(request).list(include_revoked=include_revoked)
    return {"data": [key_to_dict(row) for row in rows]}


@router.delete("/keys/{key_id}", summary="Revoke a virtual key")
async def revoke_key(request: Request, key_id: str) -> dict:
    if not await _keys(request).revoke(key_id):
        raise GatewayError(404, f"No active key with id {key_id!r}.", code="key_not_found", param="key_id")
    return {"id": key_id, "revoked": True}
