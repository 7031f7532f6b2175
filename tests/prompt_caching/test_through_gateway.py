"""Prompt caching through the running gateway: the pipeline applies the transforms per target and
the ledger prices what the provider reports. Skipped until the pipeline applies the transforms
(the policy's `cache.prompt` settings exist)."""

from __future__ import annotations

import anthropic
import openai
import pytest

from gateway.routing.policy import CacheSettings
from tests.gateway.test_openai_sdk import ledger_rows
from tests.prompt_caching.conftest import prose

pytestmark = pytest.mark.skipif(
    "prompt" not in CacheSettings.model_fields, reason="the pipeline does not apply prompt caching yet"
)
SYSTEM = prose(2500, seed=11)


def test_anthropic_sdk_without_breakpoints_gets_cache_reads_from_the_gateways(anthropic_gateway, simulator):
    simulator.simulator.clear_caches()
    gw = anthropic_gateway()
    sdk = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.create_key(), max_retries=0)
    messages = [{"role": "user", "content": "First question about the rules"}]
    first = sdk.messages.create(model="claude-sonnet", max_tokens=30, system=SYSTEM, messages=messages)
    messages += [
        {"role": "assistant", "content": first.content[0].text},
        {"role": "user", "content": "A follow-up question"},
    ]
    with sdk.messages.stream(
        model="claude-sonnet", max_tokens=30, system=SYSTEM, messages=messages
    ) as stream:
        second = stream.get_final_message()
    assert first.usage.cache_creation_input_tokens > 2000 and first.usage.cache_read_input_tokens == 0
    total_first = first.usage.input_tokens + first.usage.cache_creation_input_tokens
    assert second.usage.cache_read_input_tokens == total_first  # the whole first turn was read
    rows = ledger_rows(gw)
    assert [r.input_cache_read_tokens for r in rows] == [0, second.usage.cache_read_input_tokens]
    assert rows[1].input_cache_write_tokens == second.usage.cache_creation_input_tokens
    # claude-sonnet-4-5: $3 input, $0.30 read, $3.75 5-minute write, $15 output per Mtok
    u = second.usage
    expected = u.input_tokens * 3 + u.cache_read_input_tokens * 0.3 + u.cache_creation_input_tokens * 3.75
    assert rows[1].cost_micros == round(expected + u.output_tokens * 15)
    assert rows[1].cost_micros < rows[1].baseline_cost_micros


def test_openai_sdk_repeated_system_prompt_is_read_from_the_providers_cache(make_gateway, simulator):
    simulator.simulator.clear_caches()
    gw = make_gateway()
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    usages = []
    for question in ("one conversation", "another conversation"):
        completion = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        )
        usages.append(completion.usage)
    assert usages[1].prompt_tokens_details.cached_tokens >= 1024
    rows = ledger_rows(gw)
    assert rows[1].input_cache_read_tokens == usages[1].prompt_tokens_details.cached_tokens
    assert rows[1].input_uncached_tokens == usages[1].prompt_tokens - rows[1].input_cache_read_tokens


def test_anthropic_thinking_request_is_adapted_to_the_openai_model_it_is_routed_to(
    anthropic_gateway, recording_simulator
):
    deployments = [
        {
            "name": name,
            "provider": "openai",
            "model": name,
            "api_base": recording_simulator.openai_base_url,
            "api_key_env": "SIM_KEY",
            "max_retries": 0,
        }
        for name in ("gpt-4o-mini", "o3")
    ]
    gw = anthropic_gateway(deployments=deployments, baseline_deployment=None)
    sdk = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.create_key(), max_retries=0)
    for model in ("gpt-4o-mini", "o3"):
        message = sdk.messages.create(
            model=model,
            max_tokens=3000,
            system=SYSTEM,
            thinking={"type": "enabled", "budget_tokens": 2048},
            messages=[{"role": "user", "content": "Think, then answer"}],
        )
        assert message.content[-1].type == "text" and message.content[-1].text
    plain, reasoning = [
        body for path, body in recording_simulator.received if path.endswith("/chat/completions")
    ]
    assert "thinking" not in plain and "reasoning_effort" not in plain  # gpt-4o-mini would reject both
    assert "thinking" not in reasoning and reasoning["reasoning_effort"] in ("low", "medium", "high")
    assert plain["max_completion_tokens"] == reasoning["max_completion_tokens"] == 3000
    assert plain["prompt_cache_key"] == reasoning["prompt_cache_key"]  # same tenant, same system prompt
    assert plain["messages"][0] == {"role": "system", "content": SYSTEM}  # nothing added to the prompt
