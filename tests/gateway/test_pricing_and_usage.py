"""Usage normalisation and exact micro-dollar costs from litellm's cost map."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ledger.pricing import UnknownPriceError, resolve_price
from gateway.settings import Deployment
from gateway.upstreams.usage import Usage, from_openai


def deployment(model: str, provider: str = "openai", **extra) -> Deployment:
    return Deployment(name="d", provider=provider, model=model, **extra)


def test_openai_usage_cached_tokens_are_inside_prompt_tokens():
    usage = from_openai(
        {
            "prompt_tokens": 3000,
            "completion_tokens": 500,
            "prompt_tokens_details": {"cached_tokens": 2000},
            "completion_tokens_details": {"reasoning_tokens": 120},
        }
    )
    assert usage == Usage(input_uncached=1000, input_cache_read=2000, output=500, reasoning=120)
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per Mtok = µ$ per token.
    assert (
        resolve_price(deployment("gpt-4o-mini")).cost_micros(usage) == 1000 * 0.15 + 2000 * 0.075 + 500 * 0.6
    )


def test_anthropic_usage_as_litellm_reports_it_prices_reads_and_both_write_ttls():
    # litellm folds Anthropic's input_tokens (100) + cache reads (2000) + writes (1000) into prompt_tokens.
    usage = from_openai(
        {
            "prompt_tokens": 3100,
            "completion_tokens": 50,
            "prompt_tokens_details": {
                "cached_tokens": 2000,
                "cache_creation_tokens": 1000,
                "cache_creation_token_details": {
                    "ephemeral_5m_input_tokens": 600,
                    "ephemeral_1h_input_tokens": 400,
                },
            },
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 2000,
        }
    )
    assert usage == Usage(
        input_uncached=100, input_cache_read=2000, input_cache_write=1000, input_cache_write_1h=400, output=50
    )
    price = resolve_price(deployment("claude-sonnet-4-5", "anthropic"))
    # $3 input, $0.30 read (0.1x), $3.75 5-minute write (1.25x), $6 1-hour write (2x), $15 output.
    assert price.cost_micros(usage) == 100 * 3 + 2000 * 0.3 + 600 * 3.75 + 400 * 6 + 50 * 15 == 6300
    assert price.list_cost_micros(usage) == 3100 * 3 + 50 * 15


def test_costs_round_half_even_to_whole_micro_dollars():
    price = resolve_price(deployment("gpt-4o-mini"))
    assert price.cost_micros(Usage(input_uncached=10)) == 2  # 1.5 µ$ -> 2
    assert price.cost_micros(Usage(input_uncached=30)) == 4  # 4.5 µ$ -> 4 (half to even)


def test_price_override_wins_field_by_field():
    price = resolve_price(deployment("gpt-4o-mini", price={"input_per_mtok": "1", "output_per_mtok": 2}))
    assert (price.input, price.output) == (Decimal(1), Decimal(2))
    assert price.cache_read == Decimal("0.075")  # not overridden: still from the cost map


def test_unknown_model_needs_an_explicit_price():
    with pytest.raises(UnknownPriceError, match="set `price:"):
        resolve_price(deployment("my-finetune-v3"))
    selfhosted = resolve_price(deployment("my-finetune-v3", "vllm", tier="selfhost"))
    assert selfhosted.cost_micros(Usage(input_uncached=10_000, output=10_000)) == 0


@given(
    prompt=st.integers(-5, 10**7),
    completion=st.integers(-5, 10**7),
    cached=st.one_of(st.none(), st.integers(-5, 10**7)),
    written=st.one_of(st.none(), st.integers(-5, 10**7)),
    junk=st.sampled_from([None, "12", 3.5, [], {}]),
)
def test_usage_normalisation_never_goes_negative_or_over_count(prompt, completion, cached, written, junk):
    usage = from_openai(
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached, "cache_creation_tokens": written},
            "total_tokens": junk,
            "completion_tokens_details": {"reasoning_tokens": junk},
        }
    )
    fields = (
        usage.input_uncached,
        usage.input_cache_read,
        usage.input_cache_write,
        usage.output,
        usage.reasoning,
    )
    assert min(fields) >= 0
    assert usage.input_total == max(prompt, 0)
    assert usage.reasoning <= usage.output


def test_missing_usage_is_none():
    assert from_openai(None) is None and from_openai({}) is None
