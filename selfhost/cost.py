"""On-prem cost model: what a self-hosted token costs, from the replica's price and vLLM's own counters.

For a measurement window of ``seconds`` during which vLLM's counters ``vllm:prompt_tokens_total`` and
``vllm:generation_tokens_total`` grew by ``P`` and ``G``::

    window cost (micro-USD)       C = hourly_usd × 1,000,000 × seconds / 3600
    weighted tokens               W = P + w × G            (w = output_token_weight, default 1)
    input price per 1M tokens       = C × 1,000,000 / W    (micro-USD, rounded half-even to an integer)
    output price per 1M tokens      = w × input price
    utilisation                     = (P + G) / seconds ÷ capacity_tokens_per_second   (when configured)

For a deployment, C and W are summed over its replicas (``fleet_price``); ``CostMeter`` keeps the readings of
a rolling window from the pool's scrapes. The hardware is paid for whether or not it is busy, so an idle replica makes tokens expensive: that is the
honest number for finance. ``at_capacity`` gives the floor the same hardware reaches when saturated.
All arithmetic is ``Decimal``; prices are integer micro-dollars.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from selfhost.catalogue import Cost
from selfhost.pool import Replica
from selfhost.probe import ReplicaLoad

MICRO = Decimal(1_000_000)
MILLION = Decimal(1_000_000)
SECONDS_PER_HOUR = Decimal(3600)


@dataclass(frozen=True)
class TokenCounters:
    """A reading of vLLM's cumulative token counters at ``at`` (seconds on any monotonic clock)."""

    prompt_tokens: int
    generation_tokens: int
    at: float

    @classmethod
    def from_load(cls, load: ReplicaLoad) -> TokenCounters:
        return cls(load.prompt_tokens, load.generation_tokens, load.scraped_at)


@dataclass(frozen=True)
class SelfHostedPrice:
    input_micro_usd_per_million: int
    output_micro_usd_per_million: int
    window_seconds: Decimal
    prompt_tokens: int
    generation_tokens: int
    tokens_per_hour: int
    utilisation: Decimal | None  # fraction of capacity_tokens_per_second, when configured


class NoTrafficError(ValueError):
    """No tokens were processed in the window, so a per-token price is undefined."""


def measured_price(cost: Cost, before: TokenCounters, after: TokenCounters) -> SelfHostedPrice:
    """Price of one replica over the window between two readings of its counters."""
    return fleet_price(cost, [(before, after)])


def fleet_price(cost: Cost, windows: list[tuple[TokenCounters, TokenCounters]]) -> SelfHostedPrice:
    """Price of a deployment: the hardware time of all its replicas' windows over all their tokens.

    ``window_seconds`` is then replica-seconds, and ``tokens_per_hour`` / ``utilisation`` are per replica."""
    seconds, prompt, generation = Decimal(0), 0, 0
    for before, after in windows:
        dp, dg = (
            after.prompt_tokens - before.prompt_tokens,
            after.generation_tokens - before.generation_tokens,
        )
        dt = Decimal(repr(after.at)) - Decimal(repr(before.at))
        if dt <= 0 or dp < 0 or dg < 0:
            raise ValueError("counters must come from the same server, `after` taken later than `before`")
        seconds, prompt, generation = seconds + dt, prompt + dp, generation + dg
    weighted = prompt + cost.output_token_weight * generation
    if weighted == 0:
        raise NoTrafficError(f"no tokens processed in {seconds} replica-seconds")
    window_cost = cost.hourly_usd * MICRO * seconds / SECONDS_PER_HOUR
    input_price = window_cost * MILLION / weighted
    tokens_per_second = (prompt + generation) / seconds
    utilisation = (
        tokens_per_second / cost.capacity_tokens_per_second if cost.capacity_tokens_per_second else None
    )
    return SelfHostedPrice(
        input_micro_usd_per_million=_micro(input_price),
        output_micro_usd_per_million=_micro(input_price * cost.output_token_weight),
        window_seconds=seconds,
        prompt_tokens=prompt,
        generation_tokens=generation,
        tokens_per_hour=int((tokens_per_second * SECONDS_PER_HOUR).to_integral_value(ROUND_HALF_EVEN)),
        utilisation=utilisation,
    )


class CostMeter:
    """Rolling window of each replica's counters, giving the deployment's current price.

    Plug it into the pool so every scrape feeds it: ``ReplicaPool(..., on_scrape=meter.observe)``. A replica
    whose counters go backwards has restarted, and its window starts again."""

    def __init__(self, cost: Cost, window_seconds: float = 900.0):
        self.cost = cost
        self.window_seconds = window_seconds
        self._readings: dict[str, deque[TokenCounters]] = {}

    def observe(self, replica: Replica, load: ReplicaLoad) -> None:
        if not load.healthy:
            return
        reading = TokenCounters.from_load(load)
        readings = self._readings.setdefault(replica.id, deque())
        if readings and (
            reading.prompt_tokens < readings[-1].prompt_tokens
            or reading.generation_tokens < readings[-1].generation_tokens
        ):
            readings.clear()
        readings.append(reading)
        while len(readings) > 2 and reading.at - readings[1].at >= self.window_seconds:
            readings.popleft()

    def price(self) -> SelfHostedPrice:
        windows = [(r[0], r[-1]) for r in self._readings.values() if len(r) >= 2]
        if not windows:
            raise NoTrafficError("fewer than two readings of any replica yet")
        return fleet_price(self.cost, windows)


def at_capacity(cost: Cost, output_share: Decimal = Decimal("0.5")) -> tuple[int, int]:
    """(input, output) micro-USD per 1M tokens when saturated, for a traffic mix with ``output_share``
    of the tokens being output tokens."""
    if cost.capacity_tokens_per_second is None:
        raise ValueError("cost.capacity_tokens_per_second is not configured")
    tokens_per_hour = cost.capacity_tokens_per_second * SECONDS_PER_HOUR
    weighted_per_token = (1 - output_share) + output_share * cost.output_token_weight
    input_price = cost.hourly_usd * MICRO * MILLION / (tokens_per_hour * weighted_per_token)
    return _micro(input_price), _micro(input_price * cost.output_token_weight)


def request_cost_micro_usd(price: SelfHostedPrice, prompt_tokens: int, completion_tokens: int) -> int:
    """What the ledger records for one self-hosted request."""
    total = (
        prompt_tokens * price.input_micro_usd_per_million
        + completion_tokens * price.output_micro_usd_per_million
    )
    return _micro(Decimal(total) / MILLION)


def _micro(value: Decimal) -> int:
    return int(value.to_integral_value(ROUND_HALF_EVEN))
