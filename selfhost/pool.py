"""Health and load of a deployment's replicas, and the choice of one replica per request.

``ReplicaPool`` scrapes every replica in the background (``selfhost.probe``), takes a replica out of service
after ``fail_threshold`` failed scrapes in a row and puts it back after ``recover_threshold`` good ones. A
scrape that gets no answer in time is not a failure but a sign of load: routing with limits spills over.
``pick`` returns ``None`` when no in-service replica is within the ``LoadLimits``: the routing policy then
spills the request over to its next tier. Besides the scraped queue, a replica's limits count the requests
this process has in flight on it (``pick`` to ``release``) against its ``max-num-seqs``, which reacts to a
burst at once instead of at the next scrape.

Requests that share a long prefix should land on the same replica so vLLM's prefix cache hits. ``pick`` ranks
replicas by rendezvous (highest-random-weight) hashing of the caller's prefix key: the ranking of a key only
changes for the replica that joins or leaves, and when the first choice is past its limits the request goes
to that key's second choice rather than scattering.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import httpx

from selfhost.probe import Histogram, ReplicaLoad, probe


@dataclass(frozen=True)
class Replica:
    id: str
    base_url: str
    deployment: str


@dataclass(frozen=True)
class LoadLimits:
    """A replica is past its limits when any set limit is exceeded (``None`` disables that check)."""

    max_waiting: int | None = 0
    max_kv_cache_usage: float | None = 0.95
    max_ttft_p95_s: float | None = None


ANY_LOAD = LoadLimits(max_waiting=None, max_kv_cache_usage=None, max_ttft_p95_s=None)


@dataclass
class ReplicaState:
    replica: Replica
    in_service: bool = True
    load: ReplicaLoad | None = None
    recent_ttft: Histogram = field(default_factory=Histogram)  # first tokens since the previous scrape
    failures: int = 0  # consecutive
    successes: int = 0  # consecutive
    picked_since_scrape: int = 0
    last_error: str | None = None
    slow: bool = False  # the last scrape timed out (see `within`)
    in_flight: int = 0  # requests this process sent to the replica that have not finished yet
    capacity: int | None = None  # the replica's max-num-seqs, when the catalogue states it
    max_age: float | None = None  # seconds after which the last scrape no longer tells the queue (`within`)

    @property
    def queue_unknown(self) -> bool:
        """Whether the last scrape no longer tells the replica's queue: it got no answer in time (`slow`: a
        replica too busy to answer /metrics is the usual reason), or it is older than the refresh loop takes
        (this process was starved of CPU: beside a CPU vLLM its event loop stalls for 15-27 s, measured, and
        a queue that built up meanwhile must not pass for the idle one scraped before)."""
        stale = (
            self.max_age is not None
            and self.load is not None
            and time.monotonic() - self.load.scraped_at > self.max_age
        )
        return self.slow or stale

    def within(self, limits: LoadLimits) -> bool:
        load = self.load
        if not self.in_service or load is None:
            return False
        if limits != ANY_LOAD and self.queue_unknown:
            return False  # requests with nowhere else to go still get it; the rest spill
        if limits.max_waiting is not None and load.waiting > limits.max_waiting:
            return False
        # The scrape is up to a refresh interval old; what this process has in flight is not. Without
        # this, a burst between two scrapes all lands on a replica that looked idle at the last one.
        # One more request must not queue beyond `max_waiting` behind the ones already in flight.
        if (
            limits.max_waiting is not None
            and self.capacity is not None
            and self.in_flight + 1 - self.capacity > limits.max_waiting
        ):
            return False
        if limits.max_kv_cache_usage is not None and load.kv_cache_usage > limits.max_kv_cache_usage:
            return False
        p95 = self.recent_ttft.quantile(0.95)
        return not (limits.max_ttft_p95_s is not None and p95 is not None and p95 > limits.max_ttft_p95_s)

    def busyness(self) -> tuple[int, float]:
        load = self.load or ReplicaLoad(healthy=False)
        return (load.running + load.waiting + self.picked_since_scrape, load.kv_cache_usage)


class ReplicaPool:
    def __init__(
        self,
        replicas: Sequence[Replica],
        limits: LoadLimits | None = None,
        *,
        refresh_interval: float = 1.0,
        probe_timeout: float = 2.0,
        fail_threshold: int = 2,
        recover_threshold: int = 2,
        client: httpx.AsyncClient | None = None,
        on_scrape: Callable[[Replica, ReplicaLoad], None] | None = None,
        capacity: int | None = None,
    ):
        self.limits = limits or LoadLimits()
        self.refresh_interval = refresh_interval
        self.probe_timeout = probe_timeout
        self.fail_threshold = fail_threshold
        self.recover_threshold = recover_threshold
        # A scrape is due every refresh_interval and takes up to probe_timeout; one missed is tolerated.
        max_age = 2 * refresh_interval + probe_timeout
        self._states = {r.id: ReplicaState(r, capacity=capacity, max_age=max_age) for r in replicas}
        self._client = client or httpx.AsyncClient()
        self._owns_client = client is None
        self._task: asyncio.Task | None = None
        self._on_scrape = on_scrape

    async def __aenter__(self) -> ReplicaPool:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Scrape once (so ``pick`` has data at once), then keep refreshing in the background."""
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_forever(), name="replica-pool-refresh")

    async def aclose(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._owns_client:
            await self._client.aclose()

    async def refresh(self) -> None:
        states = list(self._states.values())
        loads = await asyncio.gather(
            *(probe(self._client, s.replica.base_url, self.probe_timeout) for s in states)
        )
        for state, load in zip(states, loads, strict=True):
            self._record(state, load)
            if self._on_scrape:
                self._on_scrape(state.replica, load)

    def states(self) -> list[ReplicaState]:
        return list(self._states.values())

    def pick(self, prefix_key: str | None = None, exclude: Collection[str] = ()) -> Replica | None:
        """The replica for the next request, or ``None`` when every replica (but those in ``exclude``,
        e.g. already tried for this request) is out or past its limits."""
        states = [s for s in self._states.values() if s.replica.id not in exclude]
        if prefix_key is None:
            ready = [s for s in states if s.within(self.limits)]
            chosen = min(ready, key=ReplicaState.busyness, default=None)
        else:
            ranked = sorted(states, key=lambda s: _rendezvous(s.replica.id, prefix_key))
            chosen = next((s for s in reversed(ranked) if s.within(self.limits)), None)
        if chosen is None:
            return None
        chosen.picked_since_scrape += 1
        chosen.in_flight += 1
        return chosen.replica

    def release(self, replica_id: str) -> None:
        """A request ``pick`` sent to this replica has finished (answered, failed or cancelled)."""
        state = self._states[replica_id]
        state.in_flight = max(state.in_flight - 1, 0)

    def mark_down(self, replica_id: str, error: str) -> None:
        """A request could not even connect (the server is gone): out of service now rather than after
        ``fail_threshold`` scrapes; back in after ``recover_threshold`` good scrapes, as usual."""
        state = self._states[replica_id]
        state.in_service, state.last_error = False, error
        state.successes, state.failures = 0, max(state.failures, self.fail_threshold)

    def _record(self, state: ReplicaState, load: ReplicaLoad) -> None:
        state.slow = load.slow
        if (
            load.slow
        ):  # busy, not down: a vLLM saturating the CPU answers /metrics only when its batch is done
            state.last_error = load.error
            state.picked_since_scrape = 0
            return
        if load.healthy:
            state.recent_ttft = load.ttft.since(state.load.ttft) if state.load else Histogram()
            state.load = load
            state.failures, state.successes = 0, state.successes + 1
            if not state.in_service and state.successes >= self.recover_threshold:
                state.in_service = True
        else:  # keep the last good load: one failed scrape does not take a replica out
            state.last_error = load.error
            state.successes, state.failures = 0, state.failures + 1
            if state.failures >= self.fail_threshold:
                state.in_service = False
        state.picked_since_scrape = 0

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            await self.refresh()


def _rendezvous(replica_id: str, key: str) -> int:
    digest = hashlib.blake2b(f"{replica_id}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
