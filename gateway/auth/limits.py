"""Per-key budgets (USD per UTC day and month) and requests-per-minute limits.

Admission happens once the request is routed, when its price is known:

- **Estimate.** Prompt tokens (tiktoken, tools included) at the dearest input rate (cache writes
  included) plus the output allowance (`max_tokens`/`max_completion_tokens` × `n`, else
  `default_output_tokens`, capped by the model's output limit) at the output rate, on the dearest
  target of the fallback chain: an upper bound of what the request can cost.
- **Rule**, per period (UTC day, month): refuse when spent >= budget; otherwise admit when
  spent + reserved + estimate <= budget, *or when nothing is reserved*. "Reserved" is the estimates
  of the key's requests in flight. So a key whose budget is not exhausted can always run one request
  at a time (a budget smaller than one request lets exactly one through), and concurrent requests
  overspend a budget by at most one request's cost as long as estimates hold.
- **Settlement.** The admitted estimate is reserved; `settle` replaces it with the actual cost when
  the ledger row is written (success, upstream error, client disconnect). A reservation whose replica
  died expires after `reservation_ttl_s`.
- **RPM.** Fixed one-minute windows; refused requests do not count. Cache hits count against the rate
  limit and are refused once the budget is exhausted, but reserve nothing.

`MemoryLimits` keeps this in process memory (the embedded default: one replica). `RedisLimits`
(when `redis_url` is set) keeps counters and reservations in Redis (>= 7) and makes each admission
one Lua script, so any number of replicas share one budget atomically. Spend counters are seeded
from the ledger at start with SET NX: the first replica seeds, later ones keep the live counters.
When Redis is unreachable a replica enforces limits from its own memory (starting from the last
spend it saw in Redis) with a warning and `tiergate_limits_degraded` = 1, and never fails a request
for it; a background probe reconnects, replays the spend Redis missed (or re-seeds from the ledger
if Redis lost its data) and switches back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.keys import KeyInfo
from gateway.db.models import LedgerEntry
from gateway.deadline import BackendDeadline, redis_client
from gateway.errors import GatewayError
from gateway.ledger import pricing
from gateway.observability import metrics
from gateway.tokens import count_messages, count_text

if TYPE_CHECKING:
    from gateway.settings import Deployment
    from gateway.upstreams.registry import Target

log = logging.getLogger(__name__)

#: Output tokens assumed for a request that sets no `max_tokens` (capped by the model's own limit).
DEFAULT_OUTPUT_TOKENS = 2048
#: How long a reservation outlives a replica that never settled it (longer than any request).
RESERVATION_TTL_S = 900.0

_REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


def _periods(now: datetime) -> tuple[str, str]:
    return now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")


def _budgeted(key: KeyInfo) -> bool:
    return key.budget_daily_micros is not None or key.budget_monthly_micros is not None


@dataclass(slots=True)
class Admission:
    """A request let through: the estimate it reserved (if any), to be settled by `Limits.settle`."""

    reservation: str | None
    reserved_micros: int
    shared: bool = False  # granted by Redis (every replica sees it), else by this process


class Limits:
    """The interface the pipeline uses, and what both implementations share (estimates, refusals)."""

    def __init__(self, default_output_tokens: int = DEFAULT_OUTPUT_TOKENS) -> None:
        self.default_output_tokens = default_output_tokens
        self._output_caps: dict[str, int | None] = {}

    async def start(self, engine: AsyncEngine) -> None:
        """Load the spend the ledger already holds for this month."""

    async def close(self) -> None:
        pass

    async def admit(
        self, key: KeyInfo, endpoint: str, body: dict[str, Any], chain: Sequence[Target]
    ) -> Admission | None:
        """Admit the request or raise 429; `chain` is where it may go (empty: a cache hit, free)."""
        if not _budgeted(key) and key.rpm_limit is None:
            return None
        estimate = self.estimate_micros(endpoint, body, chain) if _budgeted(key) else 0
        return await self._admit(key, estimate)

    def settle(self, key: KeyInfo, admission: Admission | None, cost_micros: int) -> None:
        """Replace the request's reservation with its actual cost. Never blocks, never raises."""
        raise NotImplementedError

    async def _admit(self, key: KeyInfo, estimate_micros: int) -> Admission:
        raise NotImplementedError

    # --- estimates ------------------------------------------------------------------------

    def estimate_micros(self, endpoint: str, body: dict[str, Any], chain: Sequence[Target]) -> int:
        """An upper bound of the request's cost on the dearest target of `chain`."""
        if not chain:
            return 0
        prompt = _prompt_tokens(endpoint, body, chain[0].deployment.model)
        if endpoint == "embeddings":
            requested = 0
        else:
            requested = body.get("max_completion_tokens") or body.get("max_tokens")
            requested = int(requested) if isinstance(requested, int) and requested > 0 else None
        choices = body.get("n") if isinstance(body.get("n"), int) and body.get("n") > 0 else 1
        dearest = 0
        for target in chain:
            price = target.current_price()
            output = self.default_output_tokens if requested is None else requested
            cap = self._output_cap(target.deployment)
            if cap is not None:
                output = min(output, cap)
            cost = prompt * max(price.input, price.cache_write, price.cache_write_1h) + (
                output * choices * max(price.output, price.reasoning)
            )
            dearest = max(dearest, math.ceil(cost))
        return dearest

    def _output_cap(self, deployment: Deployment) -> int | None:
        if deployment.name not in self._output_caps:
            info = pricing._cost_map_entry(deployment)  # litellm's model map (cached here per deployment)
            cap = info.get("max_output_tokens") or info.get("max_tokens")
            self._output_caps[deployment.name] = int(cap) if cap else None
        return self._output_caps[deployment.name]

    # --- refusals -------------------------------------------------------------------------

    @staticmethod
    def _refused(code: str, message: str, retry_after: int | None = None) -> GatewayError:
        metrics.LIMITED.labels(code).inc()
        headers = {"retry-after": str(retry_after)} if retry_after else {}
        return GatewayError(
            429,
            message,
            type="rate_limit_error" if code.startswith("rate") else "insufficient_quota",
            code=code,
            headers=headers,
        )

    @classmethod
    def _over_budget(cls, period: str, in_flight: bool) -> GatewayError:
        if in_flight:
            return cls._refused(
                "budget_exceeded",
                f"The key's remaining {period} budget is committed to requests in flight; "
                "this request's estimated cost does not fit.",
            )
        return cls._refused("budget_exceeded", f"The key's {period} budget is exhausted.")

    @classmethod
    def _over_rate(cls, limit: int) -> GatewayError:
        return cls._refused(
            "rate_limit_exceeded",
            f"Rate limit of {limit} requests per minute reached.",
            retry_after=60 - int(time.time() % 60),
        )


def _prompt_tokens(endpoint: str, body: dict[str, Any], model: str) -> int:
    if endpoint == "chat":
        tokens = count_messages(body.get("messages") or [], model)
        if body.get("tools"):
            tokens += count_text(orjson.dumps(body["tools"]).decode(), model)
        return tokens
    source = body.get("prompt") if endpoint == "completions" else body.get("input")
    if isinstance(source, str):
        return count_text(source, model)
    return count_text(orjson.dumps(source).decode(), model) if source else 0


async def _ledger_spend(engine: AsyncEngine) -> list[tuple[str, int, int]]:
    """(key id, spend today, spend this month) for every key the ledger has rows for this month."""
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    is_today = LedgerEntry.created_at >= day_start
    query = (
        select(
            LedgerEntry.key_id,
            func.sum(LedgerEntry.cost_micros).filter(is_today),
            func.sum(LedgerEntry.cost_micros),
        )
        .where(LedgerEntry.created_at >= month_start, LedgerEntry.key_id.is_not(None))
        .group_by(LedgerEntry.key_id)
    )
    async with engine.connect() as conn:
        rows = await conn.execute(query)
        return [(key_id, int(day or 0), int(month or 0)) for key_id, day, month in rows]


class MemoryLimits(Limits):
    """Counters in this process: exact for one replica, per replica when there are several."""

    def __init__(
        self, default_output_tokens: int = DEFAULT_OUTPUT_TOKENS, reservation_ttl_s: float = RESERVATION_TTL_S
    ) -> None:
        super().__init__(default_output_tokens)
        self.reservation_ttl_s = reservation_ttl_s
        self._spend: defaultdict[tuple[str, str], int] = defaultdict(int)  # (key id, period) -> µ$
        self._reserved: defaultdict[str, dict[str, tuple[int, float]]] = defaultdict(
            dict
        )  # id -> (µ$, expiry)
        self._window: dict[str, tuple[int, int]] = {}  # key id -> (minute, requests in it)

    async def start(self, engine: AsyncEngine) -> None:
        day, month = _periods(datetime.now(UTC))
        for key_id, day_total, month_total in await _ledger_spend(engine):
            self._spend[(key_id, day)] = day_total
            self._spend[(key_id, month)] = month_total

    def observe(self, key_id: str, day: tuple[str, int], month: tuple[str, int]) -> None:
        """Spend seen elsewhere (Redis): the floor of what this process believes."""
        for period, spent in (day, month):
            self._spend[(key_id, period)] = max(self._spend[(key_id, period)], spent)

    def charge(self, key_id: str, cost_micros: int) -> None:
        day, month = _periods(datetime.now(UTC))
        self._spend[(key_id, day)] += cost_micros
        self._spend[(key_id, month)] += cost_micros

    async def _admit(self, key: KeyInfo, estimate_micros: int) -> Admission:
        reservations = self._reserved[key.id]
        now = time.monotonic()
        for rid in [rid for rid, (_, expiry) in reservations.items() if expiry <= now]:
            del reservations[rid]
        reserved = sum(micros for micros, _ in reservations.values())
        day, month = _periods(datetime.now(UTC))
        for period, name, budget in (
            (day, "daily", key.budget_daily_micros),
            (month, "monthly", key.budget_monthly_micros),
        ):
            if budget is None:
                continue
            spent = self._spend[(key.id, period)]
            if spent >= budget:
                raise self._over_budget(name, in_flight=False)
            if estimate_micros and reserved and spent + reserved + estimate_micros > budget:
                raise self._over_budget(name, in_flight=True)
        if key.rpm_limit is not None:
            minute = int(time.time() // 60)
            window_minute, count = self._window.get(key.id, (minute, 0))
            if window_minute != minute:
                count = 0
            if count >= key.rpm_limit:
                raise self._over_rate(key.rpm_limit)
            self._window[key.id] = (minute, count + 1)
        if not (estimate_micros and _budgeted(key)):
            return Admission(None, 0)
        rid = uuid.uuid4().hex
        reservations[rid] = (estimate_micros, now + self.reservation_ttl_s)
        return Admission(rid, estimate_micros)

    def settle(self, key: KeyInfo, admission: Admission | None, cost_micros: int) -> None:
        if admission is not None and admission.reservation is not None:
            self._reserved[key.id].pop(admission.reservation, None)
        if cost_micros and _budgeted(key):
            self.charge(key.id, cost_micros)


# KEYS: rpm window, day spend, month spend, reservation expiries (zset), reservation amounts (hash)
# ARGV: rpm limit (-1: none), daily budget, monthly budget (-1: none), estimate, reservation id,
#       reservation ttl (s)
# Returns {verdict, day spent, month spent}; verdict: ok, rate, daily, monthly, daily_in_flight, ...
_ADMIT = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 1000)
if #expired > 0 then
  local freed = 0
  for _, amount in ipairs(redis.call('HMGET', KEYS[5], unpack(expired))) do
    if amount then freed = freed + tonumber(amount) end
  end
  redis.call('ZREM', KEYS[4], unpack(expired))
  redis.call('HDEL', KEYS[5], unpack(expired))
  redis.call('HINCRBY', KEYS[5], 'total', -freed)
end
local reserved = tonumber(redis.call('HGET', KEYS[5], 'total') or '0')
local estimate = tonumber(ARGV[4])
local day = tonumber(redis.call('GET', KEYS[2]) or '0')
local month = tonumber(redis.call('GET', KEYS[3]) or '0')
local function verdict(spent, budget, name)
  if budget < 0 then return nil end
  if spent >= budget then return name end
  if estimate > 0 and reserved > 0 and spent + reserved + estimate > budget then
    return name .. '_in_flight'
  end
  return nil
end
local refused = verdict(day, tonumber(ARGV[2]), 'daily') or verdict(month, tonumber(ARGV[3]), 'monthly')
if refused then return {refused, day, month} end
local rpm_limit = tonumber(ARGV[1])
if rpm_limit >= 0 then
  if tonumber(redis.call('GET', KEYS[1]) or '0') >= rpm_limit then return {'rate', day, month} end
  redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], 120)
end
if estimate > 0 and (tonumber(ARGV[2]) >= 0 or tonumber(ARGV[3]) >= 0) then
  local ttl = tonumber(ARGV[6])
  redis.call('ZADD', KEYS[4], now + ttl, ARGV[5])
  redis.call('HSET', KEYS[5], ARGV[5], estimate)
  redis.call('HINCRBY', KEYS[5], 'total', estimate)
  redis.call('EXPIRE', KEYS[4], 2 * ttl)
  redis.call('EXPIRE', KEYS[5], 2 * ttl)
end
return {'ok', day, month}
"""

# KEYS: day spend, month spend, reservation expiries, reservation amounts
# ARGV: reservation id ('' for none), cost; returns {day spent, month spent}
_SETTLE = """
if ARGV[1] ~= '' then
  local amount = redis.call('HGET', KEYS[4], ARGV[1])
  if amount then
    redis.call('HDEL', KEYS[4], ARGV[1])
    redis.call('ZREM', KEYS[3], ARGV[1])
    redis.call('HINCRBY', KEYS[4], 'total', -tonumber(amount))
  end
end
local cost = tonumber(ARGV[2])
if cost > 0 then
  redis.call('INCRBY', KEYS[1], cost)
  redis.call('EXPIRE', KEYS[1], 2 * 86400 + 3600)
  redis.call('INCRBY', KEYS[2], cost)
  redis.call('EXPIRE', KEYS[2], 32 * 86400)
end
return {tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(redis.call('GET', KEYS[2]) or '0')}
"""

#: Present while Redis holds the counters seeded from the ledger; gone means Redis lost its data.
SEEDED_MARKER = "tg:lim:seeded"


def _keys(key_id: str, day: str, month: str) -> tuple[str, str, str, str]:
    base = f"tg:lim:{{{key_id}}}"  # one hash slot per key: the scripts work on Redis Cluster too
    return f"{base}:d:{day}", f"{base}:m:{month}", f"{base}:res:exp", f"{base}:res:amt"


@dataclass(slots=True)
class _Unrecorded:
    """A settlement Redis did not get; replayed when it is back."""

    key_id: str
    reservation: str | None
    cost_micros: int
    day: str
    month: str


class RedisLimits(Limits):
    """Counters and reservations in Redis, shared by every replica; this process's memory when
    Redis is unreachable."""

    def __init__(
        self,
        client: aioredis.Redis,
        default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
        reservation_ttl_s: float = RESERVATION_TTL_S,
        retry_interval_s: float = 1.0,
        timeout_s: float = 0.25,
    ) -> None:
        super().__init__(default_output_tokens)
        self.client = client
        self.timeout_s = timeout_s
        self.reservation_ttl_s = reservation_ttl_s
        self.retry_interval_s = retry_interval_s
        self.local = MemoryLimits(default_output_tokens, reservation_ttl_s)
        self.degraded = False
        self._admit_script = client.register_script(_ADMIT)
        self._settle_script = client.register_script(_SETTLE)
        self._engine: AsyncEngine | None = None
        self._unrecorded: list[_Unrecorded] = []
        self._tasks: set[asyncio.Task] = set()
        self._recovery: asyncio.Task | None = None
        metrics.LIMITS_DEGRADED.set(0)

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 0.25, **options: Any) -> RedisLimits:
        """Admissions and settlements fail within `timeout_s` of the event loop's waiting (busy time does
        not count: `BackendDeadline`): a hung Redis degrades limits instead of stalling requests, a busy
        loop does not. The socket timeout is a backstop for the other commands."""
        return cls(redis_client(url, timeout_s), timeout_s=timeout_s, **options)

    async def start(self, engine: AsyncEngine) -> None:
        self._engine = engine
        spend = await _ledger_spend(engine)
        day, month = _periods(datetime.now(UTC))
        for key_id, day_total, month_total in spend:
            self.local.observe(key_id, (day, day_total), (month, month_total))
        try:
            await self._seed(spend)
        except _REDIS_ERRORS as exc:
            self._degrade(exc)

    async def _seed(self, spend: list[tuple[str, int, int]]) -> None:
        """SET NX: the first replica to start seeds; the others leave the live counters alone."""
        day, month = _periods(datetime.now(UTC))
        async with self.client.pipeline(transaction=False) as pipe:
            for key_id, day_total, month_total in spend:
                day_key, month_key, _, _ = _keys(key_id, day, month)
                pipe.set(day_key, day_total, nx=True, ex=2 * 86400 + 3600)
                pipe.set(month_key, month_total, nx=True, ex=32 * 86400)
            pipe.set(SEEDED_MARKER, datetime.now(UTC).isoformat())
            await pipe.execute()

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        await self.client.aclose()

    async def _admit(self, key: KeyInfo, estimate_micros: int) -> Admission:
        if self.degraded:
            return await self.local._admit(key, estimate_micros)
        day, month = _periods(datetime.now(UTC))
        day_key, month_key, expiries, amounts = _keys(key.id, day, month)
        rpm_key = f"tg:lim:{{{key.id}}}:rpm:{int(time.time() // 60)}"
        rid = uuid.uuid4().hex
        none = -1
        try:
            async with BackendDeadline(self.timeout_s):
                verdict, day_spent, month_spent = await self._admit_script(
                    keys=[rpm_key, day_key, month_key, expiries, amounts],
                    args=[
                        none if key.rpm_limit is None else key.rpm_limit,
                        none if key.budget_daily_micros is None else key.budget_daily_micros,
                        none if key.budget_monthly_micros is None else key.budget_monthly_micros,
                        estimate_micros if _budgeted(key) else 0,
                        rid,
                        math.ceil(self.reservation_ttl_s),
                    ],
                )
        except _REDIS_ERRORS as exc:
            self._degrade(exc)
            return await self.local._admit(key, estimate_micros)
        self.local.observe(key.id, (day, int(day_spent)), (month, int(month_spent)))
        verdict = verdict.decode() if isinstance(verdict, bytes) else verdict
        if verdict == "rate":
            raise self._over_rate(key.rpm_limit)
        if verdict != "ok":
            raise self._over_budget(verdict.split("_")[0], in_flight=verdict.endswith("_in_flight"))
        reserved = estimate_micros if estimate_micros and _budgeted(key) else 0
        return Admission(rid if reserved else None, reserved, shared=True)

    def settle(self, key: KeyInfo, admission: Admission | None, cost_micros: int) -> None:
        if not _budgeted(key) or (cost_micros <= 0 and (admission is None or admission.reservation is None)):
            return
        day, month = _periods(datetime.now(UTC))
        if admission is not None and not admission.shared:  # admitted from memory while Redis was away
            self.local.settle(key, admission, cost_micros)
            if cost_micros > 0:
                self._unrecorded.append(_Unrecorded(key.id, None, cost_micros, day, month))
            return
        entry = _Unrecorded(key.id, admission.reservation if admission else None, cost_micros, day, month)
        if self.degraded:
            self._record_later(entry)
            return
        task = asyncio.create_task(self._settle_shared(entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_shared(self, entry: _Unrecorded) -> None:
        try:
            day_spent, month_spent = await self._run_settle(entry)
        except _REDIS_ERRORS as exc:
            self._degrade(exc)
            self._record_later(entry)
            return
        self.local.observe(entry.key_id, (entry.day, int(day_spent)), (entry.month, int(month_spent)))

    async def _run_settle(self, entry: _Unrecorded) -> list[int]:
        day_key, month_key, expiries, amounts = _keys(entry.key_id, entry.day, entry.month)
        async with BackendDeadline(self.timeout_s):
            return await self._settle_script(
                keys=[day_key, month_key, expiries, amounts],
                args=[entry.reservation or "", entry.cost_micros],
            )

    def _record_later(self, entry: _Unrecorded) -> None:
        if entry.cost_micros > 0:
            self.local.charge(entry.key_id, entry.cost_micros)
        self._unrecorded.append(entry)

    # --- Redis outages --------------------------------------------------------------------

    def _degrade(self, exc: BaseException) -> None:
        if self.degraded:
            return
        self.degraded = True
        metrics.LIMITS_DEGRADED.set(1)
        log.warning(
            "Redis unreachable for budgets and rate limits (%s: %s): enforcing them from this "
            "replica's memory until it is back",
            type(exc).__name__,
            exc,
        )
        with contextlib.suppress(RuntimeError):  # no running loop: the next call retries
            self._recovery = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval_s)
            try:
                await self._reconnect()
            except _REDIS_ERRORS:
                continue
            self.degraded = False
            metrics.LIMITS_DEGRADED.set(0)
            log.warning("Redis is back: budgets and rate limits are shared across replicas again")
            return

    async def _reconnect(self) -> None:
        """Replay the settlements Redis missed; if it lost its data instead, re-seed from the ledger
        (which by now holds those requests) and drop them."""
        if await self.client.exists(SEEDED_MARKER):
            while self._unrecorded:
                await self._run_settle(self._unrecorded[0])
                self._unrecorded.pop(0)
            return
        spend: list[tuple[str, int, int]] = []
        if self._engine is not None:
            try:
                spend = await _ledger_spend(self._engine)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("could not re-seed spend from the ledger: %s", exc)
        await self._seed(spend)
        self._unrecorded.clear()


def create_limits(redis_url: str | None, **options: Any) -> Limits:
    """Shared limits in Redis when `redis_url` is set, else this process's memory."""
    return RedisLimits.from_url(redis_url, **options) if redis_url else MemoryLimits(**options)
