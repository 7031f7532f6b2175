"""Fault rules, deterministic generation and latency settings."""

from __future__ import annotations

import random

import pytest

from gateway.simulator import FaultRule, Latency
from gateway.simulator.faults import FaultInjector
from gateway.simulator.generation import generate_text, value_for_schema
from gateway.simulator.model_facts import facts_for
from gateway.simulator.tokens import count, vocabulary


def test_fault_specs_parse_like_the_control_api() -> None:
    rule = FaultRule.from_spec("status=429,count=3,model=gpt-4o,retry_after=0.5")
    assert (rule.kind, rule.status, rule.count, rule.model, rule.retry_after) == (
        "status",
        429,
        3,
        "gpt-4o",
        0.5,
    )
    assert FaultRule.from_spec("kind=reset,rate=0.1").rate == 0.1
    for bad in ("status=200", "kind=explode", "bogus=1", "rate=2", "count=0"):
        with pytest.raises(ValueError):
            FaultRule.from_spec(bad)


def test_injector_counts_down_and_filters_by_provider() -> None:
    injector = FaultInjector([FaultRule(status=500, count=2, provider="anthropic")])
    assert injector.draw("openai", "gpt-4o") is None
    assert injector.draw("anthropic", "claude") is not None
    assert injector.draw("anthropic", "claude") is not None
    assert injector.draw("anthropic", "claude") is None
    assert injector.describe() == []


def test_generated_words_are_single_tokens() -> None:
    generated = generate_text(random.Random(1), vocabulary(), 40, None, [])
    assert count(generated.text, "o200k_base") == len(generated.pieces) == 40
    assert count(generated.text, "cl100k_base") == 40


def test_generation_stops_and_truncates() -> None:
    full = generate_text(random.Random(2), vocabulary(), 20, None, [])
    capped = generate_text(random.Random(2), vocabulary(), 20, 5, [])
    assert capped.pieces == full.pieces[:5]
    assert capped.finish == "length"
    stop = full.pieces[6][:3]  # a stop sequence inside a token
    stopped = generate_text(random.Random(2), vocabulary(), 20, None, [stop])
    assert stopped.text == full.text[: full.text.find(stop)]
    assert (stopped.finish, stopped.stop_sequence) == ("stop_sequence", stop)


def test_values_satisfy_their_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 3, "maximum": 5},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "mode": {"enum": ["a", "b"]},
            "optional": {"type": "boolean"},
            "nested": {"type": "object", "properties": {"x": {"type": ["null", "number"]}}},
        },
        "required": ["name", "age", "tags", "mode", "nested"],
    }
    value = value_for_schema(schema, random.Random(0), vocabulary())
    assert set(value) == {"name", "age", "tags", "mode", "nested"}
    assert 3 <= value["age"] <= 5
    assert len(value["tags"]) == 2
    assert value["mode"] == "a"
    assert isinstance(value["nested"]["x"], float)


def test_model_facts_match_the_longest_family_prefix() -> None:
    assert facts_for("claude-opus-4-5-20251101").cache_min_tokens == 4096
    assert facts_for("claude-opus-4-1-20250805").cache_min_tokens == 1024
    assert facts_for("claude-3-haiku-20240307").cache_min_tokens == 2048
    assert facts_for("gpt-4-turbo").encoding == "cl100k_base"
    assert facts_for("gpt-4o-mini").encoding == "o200k_base"
    assert facts_for("o3-mini").reasoning


def test_latency_updates_validate() -> None:
    latency = Latency().updated({"tokens": 8, "ttft_ms": 5})
    assert (latency.min_tokens, latency.max_tokens, latency.ttft_ms) == (8, 8, 5.0)
    with pytest.raises(ValueError):
        Latency(min_tokens=10, max_tokens=2)
