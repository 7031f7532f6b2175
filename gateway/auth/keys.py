"""Virtual keys: created and revoked by admins, stored as SHA-256 hashes, resolved from memory.

Keys carry 256 bits of randomness, so a plain SHA-256 is the right hash (a slow password hash buys
nothing against brute force at that entropy and would cost milliseconds per request). Lookups go
through an in-memory map refreshed from the database every few seconds, so a revoked key stops
working on every replica within one refresh interval.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.models import VirtualKey
from gateway.observability import metrics
from gateway.periodic import Periodic

log = logging.getLogger(__name__)

KEY_PREFIX = "tg-"

#: Team and project names. The response cache's tenant is `team/project` and `*` is the wildcard of
#: policy assignments: names with `/` or `*` would let two tenants share one cache partition
#: (`a/b` + `c` and `a` + `b/c`), so they are refused, as are control characters and surrounding
#: spaces. Explicit ranges, not `\s`: pydantic's regex engine and Python's disagree on `\s`.
TENANT_NAME_PATTERN = r"^[^/*\x00-\x20\x7f](?:[^/*\x00-\x1f\x7f]*[^/*\x00-\x20\x7f])?$"
_TENANT_NAME = re.compile(TENANT_NAME_PATTERN)


def check_tenant_name(what: str, value: str) -> None:
    if not _TENANT_NAME.match(value):
        raise ValueError(
            f"{what} {value!r} is not allowed: no '/', '*' or control characters, no surrounding spaces"
        )


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def usd_to_micros(usd: Decimal | float | str | None) -> int | None:
    if usd is None:
        return None
    value = Decimal(str(usd))
    if value < 0:
        raise ValueError("budgets must not be negative")
    return int(value * 1_000_000)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the request path knows about the caller."""

    id: str
    team: str
    project: str | None
    name: str | None
    budget_daily_micros: int | None
    budget_monthly_micros: int | None
    rpm_limit: int | None
    key_hash: str

    @classmethod
    def from_row(cls, row: VirtualKey) -> KeyInfo:
        return cls(
            id=row.id,
            team=row.team,
            project=row.project,
            name=row.name,
            budget_daily_micros=row.budget_daily_micros,
            budget_monthly_micros=row.budget_monthly_micros,
            rpm_limit=row.rpm_limit,
            key_hash=row.key_hash,
        )


def key_to_dict(row: VirtualKey) -> dict:
    """Admin view of a key (never the key itself)."""
    return {
        "id": row.id,
        "key_prefix": row.key_prefix,
        "name": row.name,
        "team": row.team,
        "project": row.project,
        "budget_daily_usd": _usd(row.budget_daily_micros),
        "budget_monthly_usd": _usd(row.budget_monthly_micros),
        "rpm_limit": row.rpm_limit,
        "created_at": row.created_at.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


class KeyStore:
    def __init__(self, engine: AsyncEngine, refresh_interval_s: float = 2.0) -> None:
        self._engine = engine
        self._by_hash: dict[str, KeyInfo] = {}
        self._refresher = Periodic("key-refresh", refresh_interval_s, self.refresh, self._refresh_failed)

    def authenticate(self, presented: str | None) -> KeyInfo | None:
        if not presented:
            return None
        digest = hash_key(presented)
        info = self._by_hash.get(digest)
        # The dict lookup is keyed by a hash the caller cannot steer byte by byte; the final
        # comparison is constant-time anyway.
        if info is None or not hmac.compare_digest(info.key_hash, digest):
            return None
        return info

    async def refresh(self) -> None:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(VirtualKey).where(VirtualKey.revoked_at.is_(None)))).all()
        self._by_hash = {row.key_hash: KeyInfo.from_row(row) for row in rows}
        _export_budgets(self._by_hash.values())

    async def start(self) -> None:
        await self.refresh()
        self._refresher.start()

    async def close(self) -> None:
        await self._refresher.stop()

    def _refresh_failed(self, exc: Exception) -> None:
        # Keep serving with the last known keys while the database is away.
        log.warning(
            "keys: refresh failed (%s); keeping %d cached keys", type(exc).__name__, len(self._by_hash)
        )

    # --- admin operations -------------------------------------------------------------------

    async def create(
        self,
        *,
        team: str,
        project: str | None = None,
        name: str | None = None,
        budget_daily_usd: Decimal | float | str | None = None,
        budget_monthly_usd: Decimal | float | str | None = None,
        rpm_limit: int | None = None,
    ) -> tuple[str, VirtualKey]:
        """Create a key; returns the plaintext key (shown once) and the stored row."""
        if not team or not team.strip():
            raise ValueError("team is required")
        team = team.strip()
        check_tenant_name("team", team)
        if project is not None:
            check_tenant_name("project", project)
        if rpm_limit is not None and rpm_limit <= 0:
            raise ValueError("rpm_limit must be positive")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        row = VirtualKey(
            id=uuid.uuid4().hex,
            key_hash=hash_key(key),
            key_prefix=key[:10],
            name=name,
            team=team.strip(),
            project=project,
            budget_daily_micros=usd_to_micros(budget_daily_usd),
            budget_monthly_micros=usd_to_micros(budget_monthly_usd),
            rpm_limit=rpm_limit,
            created_at=datetime.now(UTC),
        )
        async with self._engine.begin() as conn:
            await conn.execute(VirtualKey.__table__.insert().values(**_columns(row)))
        self._by_hash[row.key_hash] = KeyInfo.from_row(row)
        return key, row

    async def list(self, include_revoked: bool = False) -> list[VirtualKey]:
        query = select(VirtualKey).order_by(VirtualKey.created_at)
        if not include_revoked:
            query = query.where(VirtualKey.revoked_at.is_(None))
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def revoke(self, key_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(VirtualKey)
                .where(VirtualKey.id == key_id, VirtualKey.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        self._by_hash = {h: k for h, k in self._by_hash.items() if k.id != key_id}
        return result.rowcount > 0


def _export_budgets(keys: Iterable[KeyInfo]) -> None:
    """Per team, the sum of its active keys' budgets (the denominator of budget burn-rate alerts)."""
    totals: dict[tuple[str, str], int] = {}
    for key in keys:
        for period, micros in (("daily", key.budget_daily_micros), ("monthly", key.budget_monthly_micros)):
            if micros is not None:
                totals[(key.team, period)] = totals.get((key.team, period), 0) + micros
    metrics.BUDGET.clear()
    for (team, period), micros in totals.items():
        metrics.BUDGET.labels(team, period).set(micros / 1e6)


def _usd(micros: int | None) -> str | None:
    return None if micros is None else str(Decimal(micros) / 1_000_000)


def _columns(row: VirtualKey) -> dict:
    return {c.name: getattr(row, c.name) for c in VirtualKey.__table__.columns}
