"""Each provider's documented usage shape, normalised once and priced to the exact micro-dollar.

Prices (litellm's cost map, $/Mtok = µ$/token): claude-sonnet-4-5 $3 input, $0.30 cache read,
$3.75 5-minute write, $6 1-hour write, $15 output; gpt-4o $2.50 input, $1.25 cached, $10 output;
gemini-2.5-flash $0.30 input, $0.03 cached, $2.50 output (thinking billed as output).
"""

from __future__ import annotations

import pytest

from gateway.ledger.pricing import resolve_price
from gateway.settings import Deployment
from gateway.upstreams.usage import Usage, from_anthropic, from_gemini, from_openai


def price(model: str, provider: str):
    return resolve_price(Deployment(name="d", provider=provider, model=model))


def test_anthropic_reads_and_both_write_ttls():
    usage = from_anthropic(
        {
            "input_tokens": 50,
            "cache_creation_input_tokens": 1800,
            "cache_read_input_tokens": 2000,
            "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 800},
            "output_tokens": 120,
            "service_tier": "standard",
        }
    )
    assert usage == Usage(
        input_uncached=50, input_cache_read=2000, input_cache_write=1800, input_cache_write_1h=800, output=120
    )
    # 50 x 3 + 2000 x 0.3 + 1000 x 3.75 + 800 x 6 + 120 x 15
    assert price("claude-sonnet-4-5", "anthropic").cost_micros(usage) == 11_100
    assert price("claude-sonnet-4-5", "anthropic").list_cost_micros(usage) == 3850 * 3 + 120 * 15


def test_anthropic_without_ttl_split_counts_writes_as_five_minute_writes():
    usage = from_anthropic(
        {
            "input_tokens": 10,
            "cache_creation_input_tokens": 4000,
            "cache_read_input_tokens": 0,
            "output_tokens": 7,
        }
    )
    assert usage == Usage(input_uncached=10, input_cache_write=4000, output=7)
    assert price("claude-sonnet-4-5", "anthropic").cost_micros(usage) == 10 * 3 + 15_000 + 7 * 15


def test_anthropic_stream_final_usage_is_the_message_delta_totals():
    """A stream's message_delta carries cumulative counts; they price like the JSON response."""
    delta = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 3200,
        "output_tokens": 64,
    }
    usage = from_anthropic(delta)
    assert price("claude-sonnet-4-5", "anthropic").cost_micros(usage) == 12 * 3 + 960 + 64 * 15 == 1956


def test_openai_cached_tokens_are_inside_prompt_tokens():
    usage = from_openai(
        {"prompt_tokens": 2006, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1920}}
    )
    assert usage == Usage(input_uncached=86, input_cache_read=1920, output=300)
    assert price("gpt-4o", "openai").cost_micros(usage) == 86 * 2.5 + 1920 * 1.25 + 3000 == 5615


@pytest.mark.parametrize("shape", ["camel", "snake"])
def test_gemini_cached_content_is_inside_prompt_and_thoughts_are_output(shape):
    metadata = {
        "promptTokenCount": 5000,
        "cachedContentTokenCount": 4096,
        "candidatesTokenCount": 200,
        "thoughtsTokenCount": 150,
        "totalTokenCount": 5350,
    }
    if shape == "snake":
        metadata = {
            "prompt_token_count": 5000,
            "cached_content_token_count": 4096,
            "candidates_token_count": 200,
            "thoughts_token_count": 150,
            "total_token_count": 5350,
        }
    usage = from_gemini(metadata)
    assert usage == Usage(input_uncached=904, input_cache_read=4096, output=350, reasoning=150)
    # 904 x 0.3 + 4096 x 0.03 + 350 x 2.5 = 1269.08
    assert price("gemini-2.5-flash", "gemini").cost_micros(usage) == 1269


def test_gemini_candidates_that_already_include_thoughts_are_not_counted_twice():
    usage = from_gemini(
        {
            "promptTokenCount": 100,
            "candidatesTokenCount": 200,
            "thoughtsTokenCount": 150,
            "totalTokenCount": 300,
        }
    )
    assert usage == Usage(input_uncached=100, output=200, reasoning=150)


def test_gemini_tool_use_prompt_tokens_are_billed_as_input():
    usage = from_gemini({"promptTokenCount": 100, "toolUsePromptTokenCount": 40, "candidatesTokenCount": 5})
    assert usage == Usage(input_uncached=140, output=5)


def test_missing_or_junk_native_usage():
    assert from_anthropic(None) is None and from_gemini({}) is None
    usage = from_anthropic({"input_tokens": "12", "cache_read_input_tokens": -4, "output_tokens": 3.5})
    assert usage == Usage()
