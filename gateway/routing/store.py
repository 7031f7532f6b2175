"""Routing policies in the database: versions, activation, rollback, assignments and the audit log,
plus `PolicyBook`, the in-memory view every replica keeps and reloads when anything changes.

Every change writes one audit row; replicas poll the audit log's highest id and reload on change,
so an activation reaches all replicas within one poll interval. Requests already in flight keep
the `Router` they started with (the book swaps whole dictionaries, never mutates them).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.models import Policy, PolicyAssignment, PolicyAudit, PolicyVersion
from gateway.periodic import Periodic
from gateway.routing.policy import (
    DeploymentFacts,
    PolicyError,
    PolicySpec,
    Router,
    check_references,
    parse_policy,
)

log = logging.getLogger(__name__)

ANY = "*"


def now() -> datetime:
    return datetime.now(UTC)


def to_yaml(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)


@dataclass
class PolicyBook:
    """Active routers by policy name and who uses which; replaced wholesale on reload."""

    routers: dict[str, Router] = field(default_factory=dict)
    assignments: dict[tuple[str, str], str] = field(default_factory=dict)
    change_id: int = 0

    def for_caller(self, team: str, project: str | None) -> Router | None:
        """Project assignment, else team assignment, else the default (team '*')."""
        for key in ((team, project or ANY), (team, ANY), (ANY, ANY)):
            name = self.assignments.get(key)
            if name is not None and name in self.routers:
                return self.routers[name]
        return None


class PolicyStore:
    def __init__(self, engine: AsyncEngine, deployments: Mapping[str, DeploymentFacts]) -> None:
        self._engine = engine
        self.deployments = deployments

    # --- reading ---------------------------------------------------------------------------

    def validate(self, document: Mapping[str, Any]) -> PolicySpec:
        spec = parse_policy(document)
        check_references(spec, self.deployments)
        return spec

    async def change_id(self) -> int:
        async with self._engine.connect() as conn:
            return (await conn.execute(select(func.max(PolicyAudit.id)))).scalar() or 0

    async def load(self) -> PolicyBook:
        """The active version of every policy, built into routers, and the assignments."""
        async with self._engine.connect() as conn:
            change = (await conn.execute(select(func.max(PolicyAudit.id)))).scalar() or 0
            active = await conn.execute(
                select(PolicyVersion.name, PolicyVersion.version, PolicyVersion.document).join(
                    Policy,
                    (Policy.name == PolicyVersion.name) & (Policy.active_version == PolicyVersion.version),
                )
            )
            routers = {}
            for name, version, document in active:
                try:
                    routers[name] = Router(parse_policy(document), version, self.deployments)
                except PolicyError as exc:  # e.g. a deployment removed from the config since activation
                    log.error("policy %s v%d cannot be served with this config: %s", name, version, exc)
            assignments = {
                (team, project): policy
                for team, project, policy in await conn.execute(
                    select(PolicyAssignment.team, PolicyAssignment.project, PolicyAssignment.policy)
                )
            }
        return PolicyBook(routers, assignments, change)

    async def list(self) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            latest = dict(
                (
                    await conn.execute(
                        select(PolicyVersion.name, func.max(PolicyVersion.version)).group_by(
                            PolicyVersion.name
                        )
                    )
                ).all()
            )
            active = dict((await conn.execute(select(Policy.name, Policy.active_version))).all())
            assigned: dict[str, list[str]] = {}
            for team, project, policy in await conn.execute(
                select(PolicyAssignment.team, PolicyAssignment.project, PolicyAssignment.policy)
            ):
                assigned.setdefault(policy, []).append("default" if team == ANY else f"{team}/{project}")
        return [
            {
                "name": name,
                "latest_version": latest[name],
                "active_version": active.get(name),
                "assigned_to": assigned.get(name, []),
            }
            for name in sorted(latest)
        ]

    async def get(self, name: str, version: int | None = None) -> dict[str, Any]:
        """A version's document and metadata; without `version`, the active one (else the latest)."""
        async with self._engine.connect() as conn:
            if version is None:
                version = (
                    await conn.execute(select(Policy.active_version).where(Policy.name == name))
                ).scalar()
            query = select(PolicyVersion).where(PolicyVersion.name == name)
            query = (
                query.where(PolicyVersion.version == version)
                if version
                else query.order_by(PolicyVersion.version.desc())
            )
            row = (await conn.execute(query.limit(1))).first()
            active = (await conn.execute(select(Policy.active_version).where(Policy.name == name))).scalar()
        if row is None:
            raise LookupError(f"no policy {name!r}" + (f" version {version}" if version else ""))
        return {
            "name": row.name,
            "version": row.version,
            "active": row.version == active,
            "created_at": row.created_at.isoformat(),
            "created_by": row.created_by,
            "comment": row.comment,
            "document": row.document,
        }

    async def diff(self, name: str, old: int, new: int) -> str:
        a, b = await self.get(name, old), await self.get(name, new)
        return "".join(
            difflib.unified_diff(
                to_yaml(a["document"]).splitlines(keepends=True),
                to_yaml(b["document"]).splitlines(keepends=True),
                fromfile=f"{name} v{old}",
                tofile=f"{name} v{new}",
            )
        )

    async def audit(self, limit: int = 100, policy: str | None = None) -> list[dict[str, Any]]:
        query = select(PolicyAudit).order_by(PolicyAudit.id.desc()).limit(limit)
        if policy:
            query = query.where(PolicyAudit.policy == policy)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            {
                "id": r.id,
                "at": r.at.isoformat(),
                "actor": r.actor,
                "action": r.action,
                "policy": r.policy,
                "version": r.version,
                "detail": r.detail,
            }
            for r in rows
        ]

    # --- changing (each change writes exactly one audit row) ---------------------------------

    async def create(self, document: Mapping[str, Any], actor: str, comment: str | None = None) -> int:
        """Store a new version (validated, not activated); returns its number."""
        spec = self.validate(document)
        canonical = spec.model_dump(mode="json", by_alias=True)
        async with self._engine.begin() as conn:
            latest = (
                await conn.execute(
                    select(func.max(PolicyVersion.version)).where(PolicyVersion.name == spec.name)
                )
            ).scalar() or 0
            version = latest + 1
            await conn.execute(
                PolicyVersion.__table__.insert().values(
                    name=spec.name,
                    version=version,
                    document=canonical,
                    created_at=now(),
                    created_by=actor,
                    comment=comment,
                )
            )
            await self._audit(
                conn, actor, "create", spec.name, version, {"comment": comment} if comment else None
            )
        return version

    async def activate(self, name: str, version: int, actor: str, *, action: str = "activate") -> None:
        """Make `version` live. It is validated again against today's deployments first."""
        document = (await self.get(name, version))["document"]
        self.validate(document)
        async with self._engine.begin() as conn:
            previous = (await conn.execute(select(Policy.active_version).where(Policy.name == name))).scalar()
            await self._upsert(
                conn, Policy, {"name": name, "active_version": version, "updated_at": now()}, ["name"]
            )
            await self._audit(conn, actor, action, name, version, {"previous_version": previous})

    async def rollback(self, name: str, actor: str) -> int:
        """Re-activate the version that was live before the current one; returns it."""
        async with self._engine.connect() as conn:
            history = (
                await conn.execute(
                    select(PolicyAudit.version, PolicyAudit.detail)
                    .where(PolicyAudit.policy == name, PolicyAudit.action.in_(("activate", "rollback")))
                    .order_by(PolicyAudit.id.desc())
                    .limit(1)
                )
            ).first()
        previous = (history.detail or {}).get("previous_version") if history else None
        if previous is None:
            raise LookupError(f"policy {name!r} has no earlier active version to roll back to")
        await self.activate(name, previous, actor, action="rollback")
        return previous

    async def assign(self, team: str, project: str | None, policy: str, actor: str) -> None:
        """Assign `policy` to a team (all projects), one project, or the default (team '*')."""
        await self.get(policy)  # must exist
        async with self._engine.connect() as conn:
            active = (await conn.execute(select(Policy.active_version).where(Policy.name == policy))).scalar()
        if active is None:
            raise PolicyError(f"policy {policy!r} has no active version; activate one before assigning it")
        async with self._engine.begin() as conn:
            row = {"team": team, "project": project or ANY, "policy": policy, "updated_at": now()}
            await self._upsert(conn, PolicyAssignment, row, ["team", "project"])
            await self._audit(
                conn, actor, "assign", policy, active, {"team": team, "project": project or ANY}
            )

    async def _audit(
        self,
        conn: AsyncConnection,
        actor: str,
        action: str,
        policy: str | None,
        version: int | None,
        detail: Any,
    ) -> None:
        await conn.execute(
            PolicyAudit.__table__.insert().values(
                at=now(), actor=actor, action=action, policy=policy, version=version, detail=detail
            )
        )

    async def _upsert(
        self, conn: AsyncConnection, model: Any, values: dict[str, Any], keys: list[str]
    ) -> None:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        statement = insert(model).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=keys, set_={k: v for k, v in values.items() if k not in keys}
        )
        await conn.execute(statement)


class PolicyReloader:
    """Keeps a `PolicyBook` current by polling the audit log's change counter."""

    def __init__(self, store: PolicyStore, interval_s: float) -> None:
        self.store = store
        self.book = PolicyBook()
        self._poller = Periodic("policy-reload", interval_s, self.reload_if_changed, self._reload_failed)

    async def start(self) -> None:
        self.book = await self.store.load()
        self._poller.start()

    async def close(self) -> None:
        await self._poller.stop()

    def _reload_failed(self, exc: Exception) -> None:
        # Keep routing with the last good book while the database is away.
        log.warning("policies: reload failed (%s); keeping the current versions", type(exc).__name__)

    async def reload_if_changed(self) -> bool:
        if await self.store.change_id() == self.book.change_id:
            return False
        self.book = await self.store.load()
        log.info(
            "policies reloaded: %s",
            ", ".join(f"{n} v{r.version}" for n, r in self.book.routers.items()) or "none",
        )
        return True
