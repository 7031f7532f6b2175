"""Admin API for routing policies: validate, create versions, show, diff, activate, roll back,
simulate against history, assign to teams/projects, audit log. Admin key only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.admin.routes import require_admin
from gateway.api.openapi import ADMIN_ERRORS
from gateway.errors import GatewayError, invalid_request
from gateway.routing.policy import PolicyError, PolicySpec, Router
from gateway.routing.simulate import simulate
from gateway.routing.store import PolicyReloader, PolicyStore

router = APIRouter(
    prefix="/admin", dependencies=[Depends(require_admin)], tags=["admin: policies"], responses=ADMIN_ERRORS
)


def _reloader(request: Request) -> PolicyReloader:
    return request.app.state.policies


def _store(request: Request) -> PolicyStore:
    return _reloader(request).store


def _actor(request: Request) -> str:
    return request.headers.get("x-tiergate-actor", "admin")[:128]


def _not_found(exc: LookupError) -> GatewayError:
    return GatewayError(404, str(exc).strip("'\""), code="policy_not_found")


def _invalid(exc: PolicyError) -> GatewayError:
    return invalid_request(f"Invalid policy: {exc}", param="document", code="invalid_policy")


#: Versions are database integers: larger numbers are a 400, not an overflow in the driver.
MAX_VERSION = 2**31 - 1
Version = Annotated[int, Query(ge=1, le=MAX_VERSION)]


class PolicyDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document: dict[str, Any]
    comment: str | None = Field(default=None, max_length=512)


class Activation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=MAX_VERSION, strict=True)


class Assignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: str = Field(min_length=1, max_length=128, description="'*' assigns the default policy.")
    project: str | None = Field(default=None, max_length=128)
    policy: str = Field(min_length=1, max_length=128)


class SimulationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        default=None, ge=1, le=MAX_VERSION, strict=True, description="A stored version (default: the latest)."
    )
    document: dict[str, Any] | None = Field(default=None, description="Or an unsaved candidate document.")
    last: int = Field(default=1000, ge=1, le=1_000_000, strict=True)
    team: str | None = None


@router.get("/policies/schema", summary="JSON schema of policy documents")
async def policy_schema() -> dict:
    return PolicySpec.model_json_schema(by_alias=True)


@router.get("/policies", summary="Policies with their latest and active versions")
async def list_policies(request: Request) -> dict:
    return {"data": await _store(request).list()}


@router.post("/policies/validate", summary="Validate a policy document without storing it")
async def validate_policy(request: Request, body: PolicyDocument) -> dict:
    try:
        spec = _store(request).validate(body.document)
    except PolicyError as exc:
        raise _invalid(exc) from None
    return {"valid": True, "name": spec.name}


@router.post("/policies", status_code=201, summary="Store a new version (not activated)")
async def create_policy(request: Request, body: PolicyDocument) -> dict:
    try:
        version = await _store(request).create(body.document, _actor(request), body.comment)
    except PolicyError as exc:
        raise _invalid(exc) from None
    await _reloader(request).reload_if_changed()
    return {"name": body.document.get("name"), "version": version, "active": False}


@router.get("/policies/{name}", summary="A version of a policy (default: the active one)")
async def show_policy(request: Request, name: str, version: Version | None = None) -> dict:
    try:
        return await _store(request).get(name, version)
    except LookupError as exc:
        raise _not_found(exc) from None


@router.get("/policies/{name}/diff", summary="Unified diff between two versions")
async def diff_policy(request: Request, name: str, from_version: Version, to_version: Version) -> dict:
    try:
        return {"diff": await _store(request).diff(name, from_version, to_version)}
    except LookupError as exc:
        raise _not_found(exc) from None


@router.post("/policies/{name}/activate", summary="Make a version live on every replica")
async def activate_policy(request: Request, name: str, body: Activation) -> dict:
    try:
        await _store(request).activate(name, body.version, _actor(request))
    except LookupError as exc:
        raise _not_found(exc) from None
    except PolicyError as exc:
        raise _invalid(exc) from None
    await _reloader(request).reload_if_changed()
    return {"name": name, "active_version": body.version}


@router.post("/policies/{name}/rollback", summary="Re-activate the version live before the last change")
async def rollback_policy(request: Request, name: str) -> dict:
    try:
        version = await _store(request).rollback(name, _actor(request))
    except LookupError as exc:
        raise _not_found(exc) from None
    except PolicyError as exc:
        raise _invalid(exc) from None
    await _reloader(request).reload_if_changed()
    return {"name": name, "active_version": version}


@router.post("/policies/{name}/simulate", summary="Project a candidate against the last N ledger rows")
async def simulate_policy(request: Request, name: str, body: SimulationRequest) -> dict:
    store = _store(request)
    try:
        if body.document is not None:
            document, version = body.document, 0
            if document.get("name") != name:
                raise PolicyError(f"document name {document.get('name')!r} does not match {name!r}")
        else:
            latest = await store.get(name, body.version or max(1, (await _latest(store, name))))
            document, version = latest["document"], latest["version"]
        candidate = Router(store.validate(document), version, store.deployments)
    except LookupError as exc:
        raise _not_found(exc) from None
    except PolicyError as exc:
        raise _invalid(exc) from None
    active = _reloader(request).book.routers.get(name)
    return await simulate(
        request.app.state.engine, candidate, active, store.deployments, body.last, body.team
    )


async def _latest(store: PolicyStore, name: str) -> int:
    for row in await store.list():
        if row["name"] == name:
            return row["latest_version"]
    raise LookupError(f"no policy {name!r}")


@router.get("/assignments", summary="Which teams and projects use which policy")
async def list_assignments(request: Request) -> dict:
    book = _reloader(request).book
    return {
        "data": [{"team": t, "project": p, "policy": n} for (t, p), n in sorted(book.assignments.items())]
    }


@router.put("/assignments", summary="Assign a policy to a team, a project, or the default (team '*')")
async def assign_policy(request: Request, body: Assignment) -> dict:
    try:
        await _store(request).assign(body.team, body.project, body.policy, _actor(request))
    except LookupError as exc:
        raise _not_found(exc) from None
    except PolicyError as exc:
        raise invalid_request(str(exc), param="policy", code="policy_not_active") from None
    await _reloader(request).reload_if_changed()
    return body.model_dump()


@router.get("/audit", summary="Policy changes: who, when, what")
async def audit_log(request: Request, policy: str | None = None, limit: int = 100) -> dict:
    return {"data": await _store(request).audit(min(max(limit, 1), 1000), policy)}
