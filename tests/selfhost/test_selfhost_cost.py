from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfhost.catalogue import Cost
from selfhost.cost import (
    CostMeter,
    NoTrafficError,
    TokenCounters,
    at_capacity,
    fleet_price,
    measured_price,
    request_cost_micro_usd,
)
from selfhost.pool import Replica
from selfhost.probe import ReplicaLoad


def test_one_hour_at_two_dollars_over_two_million_tokens_is_one_dollar_per_million():
    price = measured_price(
        Cost(hourly_usd=Decimal("2.00")),
        TokenCounters(prompt_tokens=0, generation_tokens=0, at=100.0),
        TokenCounters(prompt_tokens=1_000_000, generation_tokens=1_000_000, at=3700.0),
    )
    assert price.input_micro_usd_per_million == price.output_micro_usd_per_million == 1_000_000
    assert price.tokens_per_hour == 2_000_000
    assert price.utilisation is None


def test_output_weight_shares_the_same_hourly_cost_differently():
    price = measured_price(
        Cost(hourly_usd=Decimal("2.00"), output_token_weight=Decimal(4)),
        TokenCounters(0, 0, 0.0),
        TokenCounters(1_000_000, 1_000_000, 3600.0),
    )
    assert (price.input_micro_usd_per_million, price.output_micro_usd_per_million) == (400_000, 1_600_000)
    window_cost = request_cost_micro_usd(price, 1_000_000, 1_000_000)
    assert window_cost == 2_000_000  # the whole hour, no more, no less


def test_utilisation_against_benchmarked_capacity_and_the_price_floor():
    cost = Cost(hourly_usd=Decimal("3.60"), capacity_tokens_per_second=Decimal(1000))
    price = measured_price(cost, TokenCounters(0, 0, 0.0), TokenCounters(200, 50, 1.0))
    assert price.utilisation == Decimal("0.25")
    # saturated: 3.6 M tokens/hour for $3.60 -> $1 per million
    assert at_capacity(cost) == (1_000_000, 1_000_000)


def test_idle_window_has_no_price_and_backwards_counters_are_refused():
    cost = Cost(hourly_usd=Decimal(1))
    with pytest.raises(NoTrafficError):
        measured_price(cost, TokenCounters(5, 5, 0.0), TokenCounters(5, 5, 10.0))
    with pytest.raises(ValueError, match="same server"):
        measured_price(cost, TokenCounters(50, 5, 0.0), TokenCounters(5, 5, 10.0))


@given(
    hourly=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100), places=2),
    weight=st.sampled_from([Decimal(1), Decimal(3), Decimal(4)]),
    prompt=st.integers(min_value=1, max_value=10**8),
    generation=st.integers(min_value=0, max_value=10**8),
    seconds=st.integers(min_value=1, max_value=86_400),
)
def test_ledger_charges_add_up_to_the_hardware_cost_of_the_window(
    hourly, weight, prompt, generation, seconds
):
    cost = Cost(hourly_usd=hourly, output_token_weight=weight)
    price = measured_price(cost, TokenCounters(0, 0, 0.0), TokenCounters(prompt, generation, float(seconds)))
    charged = Decimal(
        prompt * price.input_micro_usd_per_million + generation * price.output_micro_usd_per_million
    )
    window = hourly * 1_000_000 * seconds / 3600
    # only the rounding of the per-million prices to whole micro-dollars separates the two
    assert (
        abs(charged / 1_000_000 - window) <= Decimal("0.5") * (prompt + weight * generation) / 1_000_000 + 1
    )


def load(prompt: int, generation: int, at: float, healthy: bool = True) -> ReplicaLoad:
    return ReplicaLoad(healthy=healthy, prompt_tokens=prompt, generation_tokens=generation, scraped_at=at)


def test_fleet_price_charges_every_replicas_hardware_time():
    # two replicas for half an hour each at $2/hour = $2; 1.5 M + 0.5 M tokens
    price = fleet_price(
        Cost(hourly_usd=Decimal(2)),
        [
            (TokenCounters(0, 0, 0.0), TokenCounters(1_000_000, 500_000, 1800.0)),
            (TokenCounters(10, 10, 0.0), TokenCounters(10, 500_010, 1800.0)),
        ],
    )
    assert price.window_seconds == 3600
    assert price.input_micro_usd_per_million == 1_000_000
    assert price.tokens_per_hour == 2_000_000  # per replica-hour


def test_cost_meter_keeps_a_rolling_window_and_restarts_with_the_server():
    r0, r1 = Replica("r0", "http://a", "d"), Replica("r1", "http://b", "d")
    meter = CostMeter(Cost(hourly_usd=Decimal("3.60")), window_seconds=100)
    with pytest.raises(NoTrafficError):
        meter.price()
    meter.observe(r0, load(0, 0, 0.0))
    meter.observe(r0, load(500, 500, 50.0))
    meter.observe(r0, load(0, 0, 0.0, healthy=False))  # failed scrapes carry no counters
    assert meter.price().prompt_tokens == 500
    meter.observe(r0, load(1000, 1000, 150.0))  # the reading at 0 s is now outside the window
    price = meter.price()
    assert (price.window_seconds, price.prompt_tokens, price.generation_tokens) == (100, 500, 500)
    assert price.input_micro_usd_per_million == 100_000_000  # $0.10 of hardware for 1000 tokens
    meter.observe(r1, load(0, 0, 100.0))
    meter.observe(r1, load(0, 1000, 150.0))
    assert meter.price().window_seconds == 150
    meter.observe(r0, load(3, 4, 160.0))  # restarted: counters went backwards
    meter.observe(r0, load(13, 14, 170.0))
    price = meter.price()
    assert (price.window_seconds, price.prompt_tokens, price.generation_tokens) == (60, 10, 1010)
