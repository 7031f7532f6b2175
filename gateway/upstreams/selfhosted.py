"""The self-hosted vLLM tier as an upstream: one deployment, several replicas.

Each request goes to a replica chosen by the `ReplicaPool` (health-checked from every replica's
`/metrics`; requests sharing a prompt prefix land on the same replica so vLLM's prefix cache hits).
Spill-over to the next tier is a routing decision (`saturated()` with the policy's limits); here a
request only fails over when no replica is healthy at all. A replica that dies under a request (its
connection refused or cut before an answer came back) costs that request nothing: it is retried on
the next healthy replica, and a refused connection takes the replica out of the pool at once. A connect
timeout is retried the same way, but takes no replica out (see `_on_a_replica`). The
price is the on-prem cost model's: the hardware's $/hour over the tokens vLLM's own counters say
were processed (`selfhost.cost`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp

from gateway.ledger.pricing import Price
from gateway.observability import metrics
from gateway.settings import Deployment, Tier
from gateway.upstreams.base import UpstreamResponse, UpstreamStream
from gateway.upstreams.errors import UpstreamError
from gateway.upstreams.openai_wire import OpenAIWireUpstream
from selfhost import catalogue
from selfhost.cost import CostMeter, NoTrafficError, at_capacity
from selfhost.launcher import plan
from selfhost.pool import ANY_LOAD, LoadLimits, Replica, ReplicaPool
from selfhost.probe import ReplicaLoad

log = logging.getLogger(__name__)

PREFIX_CHARS = 2048  # how much of the conversation's start decides prefix-cache affinity
#: Failures before the replica answered (nothing reached the client yet; a stream that already relayed
#: bytes breaks off instead): safe to send the request again, to this replica or another.
NOT_ANSWERED = frozenset({"connect_error", "connect_timeout", "connection_reset"})
#: Of those, the ones a live replica can cause: worth once more on the same replica before the next.
SEND_ONCE_MORE = frozenset({"connect_timeout", "connection_reset"})

T = TypeVar("T")


def gateway_deployment(entry: catalogue.Deployment, timeout_s: float = 600.0) -> Deployment:
    """The gateway's view of a catalogue entry (its api_base is the first replica; requests use the pool)."""
    first = plan(entry, vllm="vllm")[0]
    return Deployment(
        name=entry.name,
        provider="vllm",
        model=entry.served_model_name,
        api_base=f"{first.base_url}/v1",
        tier=Tier.selfhost,
        max_input_tokens=entry.memory.max_model_len,
        timeout_s=timeout_s,
        max_retries=0,
    )


def prefix_key(body: dict[str, Any]) -> str:
    """A digest of the conversation's first PREFIX_CHARS characters (system prompt, tools, first turns)."""
    head = repr(body.get("tools") or "") + repr(body.get("messages") or body.get("prompt") or "")
    return hashlib.blake2b(head[:PREFIX_CHARS].encode(), digest_size=8).hexdigest()


def _price_per_token(micro_usd_per_million: int) -> Decimal:
    return Decimal(micro_usd_per_million) / Decimal(1_000_000)


class SelfHostedUpstream:
    def __init__(
        self, entry: catalogue.Deployment, deployment: Deployment, session: aiohttp.ClientSession
    ) -> None:
        self.entry = entry
        replicas = [Replica(p.id, p.base_url, entry.name) for p in plan(entry, vllm="vllm")]
        self.meter = CostMeter(entry.cost)
        self.pool = ReplicaPool(
            replicas, ANY_LOAD, on_scrape=self._scraped, capacity=entry.batching.max_num_seqs
        )
        self._upstreams = {
            r.id: OpenAIWireUpstream(deployment.model_copy(update={"api_base": f"{r.base_url}/v1"}), session)
            for r in replicas
        }

    async def start(self) -> None:
        await self.pool.start()

    def _scraped(self, replica: Replica, load: ReplicaLoad) -> None:
        self.meter.observe(replica, load)
        if load.healthy:
            for signal, value in (
                ("running", load.running),
                ("waiting", load.waiting),
                ("kv_cache_usage", load.kv_cache_usage),
            ):
                metrics.SELFHOST_LOAD.labels(self.entry.name, replica.id, signal).set(value)

    async def aclose(self) -> None:
        await self.pool.aclose()

    def saturated(self, limits: LoadLimits) -> bool:
        """True when no in-service replica is within `limits` (the policy's spill-over limits)."""
        return not any(state.within(limits) for state in self.pool.states())

    async def _on_a_replica(
        self, body: dict[str, Any], call: Callable[[OpenAIWireUpstream], Awaitable[T]]
    ) -> T:
        """`call` on the replica the pool picks; on a replica that is gone, on the next one. The pool
        counts the request in flight on its replica until it is answered (a stream: until closed)."""
        key, tried, resent = prefix_key(body), set(), set()
        while (replica := self.pool.pick(key, exclude=tried)) is not None:
            held = False
            try:
                result = await call(self._upstreams[replica.id])
                if isinstance(result, UpstreamStream):
                    result.closers.append(lambda r=replica.id: self.pool.release(r))
                    held = True
                return result
            except UpstreamError as exc:
                if exc.error_class not in NOT_ANSWERED:
                    raise
                last = exc
                if exc.error_class in SEND_ONCE_MORE and replica.id not in resent:
                    # A reset before an answer: the replica died, or it closed the pooled keep-alive
                    # connection just as we reused it (vLLM's uvicorn closes idle ones after its keep-alive,
                    # counted from its write, our pool from our read: under CPU starvation they drift).
                    # A connect timeout: the replica was slow to accept, or, far more often beside a CPU
                    # vLLM, our event loop was starved past the deadline and never saw the connection the
                    # kernel had accepted. Either way no answer came back: once more on the same replica
                    # (a dead one then refuses the connection and is marked down; a live one answers),
                    # then the next one. A timeout is never a reason to mark a replica down: its scrapes
                    # decide that.
                    resent.add(replica.id)
                    log.info(
                        "replica %s: %s (%s); sending once more", replica.id, exc.error_class, exc.message
                    )
                    continue
                tried.add(replica.id)
                log.warning("replica %s failed (%s); trying another replica", replica.id, exc.message)
                if exc.error_class == "connect_error":  # refused: the server is gone
                    self.pool.mark_down(replica.id, exc.message)
            finally:
                if not held:
                    self.pool.release(replica.id)
        if tried or resent:
            raise last
        raise UpstreamError("no_healthy_replica", f"no healthy replica of {self.entry.name}", status=503)

    async def complete(self, endpoint: str, body: dict[str, Any]) -> UpstreamResponse:
        return await self._on_a_replica(body, lambda replica: replica.complete(endpoint, body))

    async def stream(self, endpoint: str, body: dict[str, Any], client_wants_usage: bool) -> UpstreamStream:
        return await self._on_a_replica(
            body, lambda replica: replica.stream(endpoint, body, client_wants_usage)
        )

    def price(self) -> Price:
        """The measured on-prem price (rolling window); before any traffic, the at-capacity price if the
        catalogue states a capacity, else zero (and the ledger row says so through its zero cost)."""
        try:
            measured = self.meter.price()
            per_input, per_output = (
                measured.input_micro_usd_per_million,
                measured.output_micro_usd_per_million,
            )
        except NoTrafficError:
            if self.entry.cost.capacity_tokens_per_second is None:
                return Price(*(Decimal(0),) * 6)
            per_input, per_output = at_capacity(self.entry.cost)
        input_, output = _price_per_token(per_input), _price_per_token(per_output)
        # vLLM bills no separate cache classes: cached prompt tokens cost the same hardware time.
        return Price(input_, output, input_, input_, input_, output)
