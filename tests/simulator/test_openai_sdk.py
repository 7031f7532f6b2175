"""The OpenAI SDK (sync, async, streaming) against the simulator."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from gateway.simulator import SimulatorConfig, SimulatorServer
from gateway.simulator.providers.openai import chat_prompt_tokens

from .conftest import long_text

MESSAGES = [{"role": "user", "content": "Tell me something short."}]


@pytest.fixture
def client(sim: SimulatorServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)


def test_chat_completion_shape_and_usage(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    choice = response.choices[0]
    assert response.object == "chat.completion"
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    usage = response.usage
    assert usage.prompt_tokens == len(chat_prompt_tokens({"messages": MESSAGES}, "o200k_base"))
    assert usage.completion_tokens == len(choice.message.content.split())  # one token per word
    assert 16 <= usage.completion_tokens <= 32
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_content_is_deterministic_per_prompt_and_seed(client: openai.OpenAI) -> None:
    def content(seed: int, text: str = "Tell me something short.") -> str:
        messages = [{"role": "user", "content": text}]
        response = client.chat.completions.create(model="gpt-4o", messages=messages, seed=seed, temperature=0)
        return response.choices[0].message.content

    assert content(1) == content(1)
    assert content(1) != content(2)
    assert content(1) != content(1, "Something else entirely.")


async def test_async_client(sim: SimulatorServer) -> None:
    client = openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)
    response = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, seed=3)
    assert response.choices[0].message.content
    await client.close()


def test_stream_matches_the_json_response(client: openai.OpenAI) -> None:
    expected = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, seed=7)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, seed=7, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == expected.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_n_choices(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, n=3, seed=1)
    contents = [choice.message.content for choice in response.choices]
    assert [choice.index for choice in response.choices] == [0, 1, 2]
    assert len(set(contents)) == 3
    assert response.usage.completion_tokens == sum(len(c.split()) for c in contents)
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, n=3, seed=1, stream=True)
    streamed = ["", "", ""]
    for chunk in stream:
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
    assert streamed == contents


def test_max_tokens_truncates_with_finish_reason_length(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=5)
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 5
    response = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_completion_tokens=3)
    assert response.usage.completion_tokens == 3


def test_stop_sequence_cuts_the_content(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, seed=5).choices[0]
    words = full.message.content.split()
    stop = " " + words[4]
    cut = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, seed=5, stop=[stop])
    expected = full.message.content[: full.message.content.find(stop)]
    assert cut.choices[0].message.content == expected
    assert cut.choices[0].finish_reason == "stop"


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}


def test_tool_call_when_required(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="required"
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"city", "unit"}
    assert arguments["unit"] == "celsius"


def test_tool_call_when_the_prompt_asks_and_text_after_the_result(client: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "Please call get_weather for Paris."}]
    response = client.chat.completions.create(model="gpt-4o", messages=ask, tools=[WEATHER_TOOL])
    call = response.choices[0].message.tool_calls[0]
    follow_up = [
        *ask,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'},
    ]
    answer = client.chat.completions.create(model="gpt-4o", messages=follow_up, tools=[WEATHER_TOOL])
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content
    plain = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL])
    assert plain.choices[0].message.tool_calls is None


def test_streamed_tool_call_deltas_assemble_valid_json(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="required", stream=True
    )
    name, arguments, finish = None, "", None
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or ():
            name = call.function.name or name
            arguments += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather"
    assert set(json.loads(arguments)) == {"city", "unit"}
    assert finish == "tool_calls"


def test_response_format_json_schema(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "score": {"type": "number"}, "tags": {"type": "array"}},
        "required": ["title", "score", "tags"],
        "additionalProperties": False,
    }
    response = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "r", "schema": schema, "strict": True},
        },
    )
    value = json.loads(response.choices[0].message.content)
    assert set(value) == {"title", "score", "tags"}
    assert isinstance(value["score"], float)
    json_object = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(json_object.choices[0].message.content), dict)


def test_reasoning_model_reports_reasoning_tokens(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(model="o4-mini", messages=MESSAGES, reasoning_effort="low")
    details = response.usage.completion_tokens_details
    assert details.reasoning_tokens == 32
    visible = len(response.choices[0].message.content.split())
    assert response.usage.completion_tokens == visible + 32
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="o4-mini", messages=MESSAGES, max_tokens=10)
    assert error.value.code == "unsupported_parameter"


def test_prompt_caching_in_128_token_increments(sim: SimulatorServer, client: openai.OpenAI) -> None:
    system = {"role": "system", "content": long_text(1500)}
    first = [system, {"role": "user", "content": "first question"}]
    second = [system, {"role": "user", "content": "another question entirely"}]
    prompt_tokens = len(chat_prompt_tokens({"messages": first}, "o200k_base"))

    cold = client.chat.completions.create(model="gpt-4o", messages=first)
    assert cold.usage.prompt_tokens == prompt_tokens
    assert cold.usage.prompt_tokens_details.cached_tokens == 0

    repeat = client.chat.completions.create(model="gpt-4o", messages=first)
    cached = repeat.usage.prompt_tokens_details.cached_tokens
    assert cached == 1024 + (prompt_tokens - 1024) // 128 * 128
    assert repeat.usage.prompt_tokens == prompt_tokens  # prompt_tokens includes the cached ones

    shared_prefix = 1500 + 2  # system message content plus its start and role tokens
    other = client.chat.completions.create(model="gpt-4o", messages=second)
    assert other.usage.prompt_tokens_details.cached_tokens == 1024 + (shared_prefix - 1024) // 128 * 128

    keyed = client.chat.completions.create(model="gpt-4o", messages=first, prompt_cache_key="tenant-b")
    assert keyed.usage.prompt_tokens_details.cached_tokens == 0
    other_model = client.chat.completions.create(model="gpt-4o-mini", messages=first)
    assert other_model.usage.prompt_tokens_details.cached_tokens == 0


def test_prompt_cache_expires_and_24h_retention_survives(sim: SimulatorServer, client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": long_text(1200, "ttl")}]
    client.chat.completions.create(model="gpt-4o", messages=messages)
    client.chat.completions.create(
        model="gpt-4o", messages=messages, prompt_cache_key="k", prompt_cache_retention="24h"
    )
    sim.simulator.clock.advance(301)

    expired = client.chat.completions.create(model="gpt-4o", messages=messages)
    assert expired.usage.prompt_tokens_details.cached_tokens == 0
    kept = client.chat.completions.create(model="gpt-4o", messages=messages, prompt_cache_key="k")
    assert kept.usage.prompt_tokens_details.cached_tokens == 1152


def test_short_prompts_are_never_cached(client: openai.OpenAI) -> None:
    for _ in range(2):
        response = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert response.usage.prompt_tokens_details.cached_tokens == 0


def test_errors_in_openai_shape(sim: SimulatorServer) -> None:
    anonymous = httpx.post(
        f"{sim.openai_base_url}/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES}
    )
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "invalid_request_error"
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0)
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, n=0)
    assert error.value.param == "n"
    assert error.value.code == "integer_below_min_value"
    assert error.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="gpt-4o", messages=[])
    assert error.value.code == "empty_array"


def test_unknown_model_is_404_when_models_are_configured() -> None:
    with SimulatorServer(SimulatorConfig(models=("gpt-4o",))) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
        with pytest.raises(openai.NotFoundError) as error:
            client.chat.completions.create(model="gpt-5-nano", messages=MESSAGES)
        assert error.value.code == "model_not_found"
        assert [m.id for m in client.models.list()] == ["gpt-4o"]


def test_embeddings_base64_and_float(client: openai.OpenAI) -> None:
    default = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    floats = client.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="float"
    )
    assert len(default.data) == 2
    assert len(default.data[0].embedding) == 1536
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert sum(x * x for x in floats.data[0].embedding) == pytest.approx(1.0)
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.usage.prompt_tokens == 2
    small = client.embeddings.create(model="text-embedding-3-small", input="alpha", dimensions=64)
    assert len(small.data[0].embedding) == 64


def test_legacy_completions(client: openai.OpenAI) -> None:
    response = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say this", max_tokens=4)
    assert response.object == "text_completion"
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 4
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="Say this", max_tokens=4, stream=True
        )
    )
    assert streamed == response.choices[0].text


def test_latency_from_model_name_and_headers(client: openai.OpenAI) -> None:
    started = time.perf_counter()
    client.chat.completions.create(model="gpt-4o@ttft=150,tokens=4", messages=MESSAGES)
    assert time.perf_counter() - started >= 0.15
    response = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, extra_headers={"x-sim-tokens": "3"}
    )
    assert response.usage.completion_tokens == 3


def test_only_configured_keys_are_accepted() -> None:
    with SimulatorServer(SimulatorConfig(api_keys=("sk-good",))) as server:
        good = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-good", max_retries=0)
        assert good.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices
        bad = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-bad", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as error:
            bad.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert error.value.code == "invalid_api_key"
