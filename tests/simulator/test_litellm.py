"""litellm — how the gateway calls providers — parses the simulator's responses, usage included."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network: use the bundled cost map

import litellm
import pytest

from gateway.simulator import FaultRule, SimulatorServer

from .conftest import long_text

warnings.filterwarnings("ignore", category=DeprecationWarning)


def cached_messages(words: int) -> list[dict]:
    system = {"type": "text", "text": long_text(words, "litellm"), "cache_control": {"type": "ephemeral"}}
    return [{"role": "system", "content": [system]}, {"role": "user", "content": "hello"}]


async def test_openai_json_and_cached_tokens(sim: SimulatorServer) -> None:
    messages = cached_messages(1500)
    kwargs = {
        "model": "openai/gpt-4o",
        "api_base": sim.openai_base_url,
        "api_key": "sk-test",
        "messages": messages,
    }
    cold = await litellm.acompletion(**kwargs)
    warm = await litellm.acompletion(**kwargs)
    assert cold.choices[0].message.content == warm.choices[0].message.content
    assert cold.usage.prompt_tokens_details.cached_tokens == 0
    assert warm.usage.prompt_tokens_details.cached_tokens == 1408
    assert warm.usage.prompt_tokens == cold.usage.prompt_tokens
    assert warm.usage.completion_tokens == len(warm.choices[0].message.content.split())


async def test_openai_stream_with_usage(sim: SimulatorServer) -> None:
    kwargs = {
        "model": "openai/gpt-4o-mini",
        "api_base": sim.openai_base_url,
        "api_key": "sk-test",
        "messages": [{"role": "user", "content": "stream please"}],
    }
    expected = await litellm.acompletion(**kwargs)
    stream = await litellm.acompletion(**kwargs, stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = getattr(chunk, "usage", None) or usage
    assert text == expected.choices[0].message.content
    assert usage.completion_tokens == expected.usage.completion_tokens
    assert usage.prompt_tokens == expected.usage.prompt_tokens


async def test_anthropic_cache_usage_fields(sim: SimulatorServer) -> None:
    kwargs = {
        "model": "anthropic/claude-sonnet-4-5",
        "api_base": sim.base_url,
        "api_key": "sk-ant-test",
        "messages": cached_messages(1500),
        "max_tokens": 40,
    }
    write = (await litellm.acompletion(**kwargs)).usage
    read = (await litellm.acompletion(**kwargs)).usage
    assert write.cache_creation_input_tokens == 1500
    assert write.prompt_tokens_details.cached_tokens == 0
    assert read.cache_read_input_tokens == 1500
    assert read.prompt_tokens_details.cached_tokens == 1500
    assert read.prompt_tokens == write.prompt_tokens  # litellm adds cache reads and writes back in

    stream = await litellm.acompletion(**kwargs, stream=True, stream_options={"include_usage": True})
    usage = None
    async for chunk in stream:
        usage = getattr(chunk, "usage", None) or usage
    assert usage.cache_read_input_tokens == 1500
    assert usage.prompt_tokens == read.prompt_tokens


async def test_anthropic_tool_call_through_litellm(sim: SimulatorServer) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"type": "string"}},
                "required": ["zone"],
            },
        },
    }
    response = await litellm.acompletion(
        model="anthropic/claude-sonnet-4-5",
        api_base=sim.base_url,
        api_key="sk-ant-test",
        messages=[{"role": "user", "content": "what time is it?"}],
        tools=[tool],
        tool_choice="required",
        max_tokens=40,
    )
    call = response.choices[0].message.tool_calls[0]
    assert call.function.name == "get_time"
    assert response.choices[0].finish_reason == "tool_calls"


async def test_rate_limit_surfaces_as_litellm_error(sim: SimulatorServer) -> None:
    sim.simulator.faults.add(FaultRule(status=429, count=1))
    with pytest.raises(litellm.RateLimitError):
        await litellm.acompletion(
            model="openai/gpt-4o",
            api_base=sim.openai_base_url,
            api_key="sk-test",
            messages=[{"role": "user", "content": "hi"}],
            max_retries=0,
        )


async def test_anthropic_thinking_becomes_reasoning_content(sim: SimulatorServer) -> None:
    response = await litellm.acompletion(
        model="anthropic/claude-sonnet-4-5",
        api_base=sim.base_url,
        api_key="sk-ant-test",
        messages=[{"role": "user", "content": "think first"}],
        reasoning_effort="low",
        max_tokens=4096,
    )
    message = response.choices[0].message
    thinking_words, answer_words = len(message.reasoning_content.split()), len(message.content.split())
    assert response.usage.completion_tokens == thinking_words + answer_words
