"""The Anthropic SDK against the simulator: messages, streaming events, prompt caching."""

from __future__ import annotations

import warnings

import anthropic
import httpx
import pytest

from gateway.simulator import SimulatorServer
from gateway.simulator.providers.anthropic import MESSAGE_OVERHEAD_TOKENS
from gateway.simulator.tokens import count

from .conftest import long_text

MODEL = "claude-sonnet-4-5"
QUESTION = "What is the answer?"
QUESTION_TOKENS = count(QUESTION, "o200k_base") + MESSAGE_OVERHEAD_TOKENS

warnings.filterwarnings("ignore", message=".*deprecated.*", category=DeprecationWarning)


@pytest.fixture
def client(sim: SimulatorServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.base_url, api_key="sk-ant-test", max_retries=0)


def cached_system(words: int, ttl: str | None = None, salt: str = "") -> list[dict]:
    control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return [{"type": "text", "text": long_text(words, salt), "cache_control": control}]


def ask(client: anthropic.Anthropic, system: list[dict] | None = None, model: str = MODEL, **kwargs):
    messages = kwargs.pop("messages", [{"role": "user", "content": QUESTION}])
    return client.messages.create(
        model=model, max_tokens=64, system=system or anthropic.omit, messages=messages, **kwargs
    )


def test_message_shape_and_usage(client: anthropic.Anthropic) -> None:
    message = ask(client)
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.usage.input_tokens == QUESTION_TOKENS
    assert message.usage.output_tokens == len(message.content[0].text.split())
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.cache_read_input_tokens == 0


def test_stream_events_in_documented_order(sim: SimulatorServer, client: anthropic.Anthropic) -> None:
    expected = ask(client)
    raw = httpx.post(
        f"{sim.base_url}/v1/messages",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        json={
            "model": MODEL,
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    names = [line.removeprefix("event: ") for line in raw.text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}

    events = list(ask(client, stream=True))  # the SDK drops pings
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[0].message.usage.input_tokens == QUESTION_TOKENS
    text = "".join(event.delta.text for event in events if event.type == "content_block_delta")
    assert text == expected.content[0].text
    delta = events[-2]
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == expected.usage.output_tokens


def test_cache_write_then_read_with_exact_usage(client: anthropic.Anthropic) -> None:
    system = cached_system(1500)
    write = ask(client, system).usage
    assert write.cache_creation_input_tokens == 1500
    assert write.cache_creation.ephemeral_5m_input_tokens == 1500
    assert write.cache_creation.ephemeral_1h_input_tokens == 0
    assert write.cache_read_input_tokens == 0
    assert write.input_tokens == QUESTION_TOKENS  # excludes cache reads and writes

    read = ask(client, system).usage
    assert read.cache_read_input_tokens == 1500
    assert read.cache_creation_input_tokens == 0
    assert read.input_tokens == QUESTION_TOKENS

    with client.messages.stream(
        model=MODEL, max_tokens=64, system=system, messages=[{"role": "user", "content": QUESTION}]
    ) as stream:
        final = stream.get_final_message().usage
    assert final.cache_read_input_tokens == 1500
    assert final.input_tokens == QUESTION_TOKENS


def test_one_hour_ttl_is_reported_separately(client: anthropic.Anthropic) -> None:
    usage = ask(client, cached_system(1100, ttl="1h")).usage
    assert usage.cache_creation.ephemeral_1h_input_tokens == 1100
    assert usage.cache_creation.ephemeral_5m_input_tokens == 0


def test_ttl_expiry_and_refresh_on_read(sim: SimulatorServer, client: anthropic.Anthropic) -> None:
    system = cached_system(1200, salt="ttl")
    ask(client, system)
    sim.simulator.clock.advance(200)
    assert ask(client, system).usage.cache_read_input_tokens == 1200  # the read refreshes the TTL
    sim.simulator.clock.advance(200)
    assert ask(client, system).usage.cache_read_input_tokens == 1200
    sim.simulator.clock.advance(301)
    expired = ask(client, system).usage
    assert expired.cache_read_input_tokens == 0
    assert expired.cache_creation_input_tokens == 1200


def test_below_the_model_minimum_nothing_is_cached(client: anthropic.Anthropic) -> None:
    system = cached_system(1500, salt="haiku")
    for _ in range(2):
        usage = ask(client, system, model="claude-3-5-haiku-20241022").usage  # minimum 2048
        assert usage.cache_creation_input_tokens == 0
        assert usage.cache_read_input_tokens == 0
        assert usage.input_tokens == 1500 + QUESTION_TOKENS


def test_growing_conversation_reads_the_earlier_breakpoint(client: anthropic.Anthropic) -> None:
    def turn(text: str, cached: bool) -> dict:
        block = {"type": "text", "text": text}
        if cached:
            block["cache_control"] = {"type": "ephemeral"}
        return {"role": "user", "content": [block]}

    history = [turn(long_text(1300, "h"), True)]
    first = ask(client, messages=history).usage
    assert first.cache_creation_input_tokens == 1300 + MESSAGE_OVERHEAD_TOKENS

    history = [
        turn(long_text(1300, "h"), False),
        {"role": "assistant", "content": "Noted."},
        turn("And now?", True),
    ]
    second = ask(client, messages=history).usage
    # The breakpoint moved to the last block; lookback finds the prefix written by the first call.
    assert second.cache_read_input_tokens == 1300 + MESSAGE_OVERHEAD_TOKENS
    new_tokens = count("Noted.", "o200k_base") + count("And now?", "o200k_base") + 2 * MESSAGE_OVERHEAD_TOKENS
    assert second.cache_creation_input_tokens == new_tokens
    assert second.input_tokens == 0


def test_more_than_four_breakpoints_is_rejected(client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError) as error:
        ask(client, system)
    assert error.value.body["error"] == {
        "type": "invalid_request_error",
        "message": "A maximum of 4 blocks with cache_control may be provided. Found 5.",
    }


def test_tool_use_and_streamed_input_json(client: anthropic.Anthropic) -> None:
    tools = [
        {
            "name": "lookup_order",
            "description": "Find an order",
            "input_schema": {
                "type": "object",
                "properties": {"order_id": {"type": "integer"}, "verbose": {"type": "boolean"}},
                "required": ["order_id"],
            },
        }
    ]
    message = ask(client, tools=tools, tool_choice={"type": "any"})
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use"
    assert block.name == "lookup_order"
    assert isinstance(block.input["order_id"], int)
    with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        tools=tools,
        messages=[{"role": "user", "content": "Please use lookup_order for order 7"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use"
    assert set(final.content[0].input) == {"order_id"}


def test_stop_sequences_and_max_tokens(client: anthropic.Anthropic) -> None:
    text = ask(client).content[0].text
    stop = " " + text.split()[3]
    stopped = ask(client, stop_sequences=[stop])
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == stop
    assert stopped.content[0].text == text[: text.find(stop)]
    short = client.messages.create(
        model=MODEL, max_tokens=2, messages=[{"role": "user", "content": QUESTION}]
    )
    assert short.stop_reason == "max_tokens"
    assert short.usage.output_tokens == 2


def test_validation_and_auth_errors(sim: SimulatorServer) -> None:
    url = f"{sim.base_url}/v1/messages"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    missing = httpx.post(url, json=body, headers=headers)
    assert missing.status_code == 400
    assert missing.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    anonymous = httpx.post(url, json={**body, "max_tokens": 5}, headers={"anthropic-version": "2023-06-01"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    ok = httpx.post(url, json={**body, "max_tokens": 5}, headers=headers)
    assert ok.status_code == 200
    assert ok.headers["request-id"].startswith("req_")


def test_top_level_cache_control_caches_up_to_the_last_block(client: anthropic.Anthropic) -> None:
    messages = [{"role": "user", "content": long_text(1400, "auto")}]
    first = ask(client, messages=messages, extra_body={"cache_control": {"type": "ephemeral"}}).usage
    assert first.cache_creation_input_tokens == 1400 + MESSAGE_OVERHEAD_TOKENS
    assert first.input_tokens == 0
    second = ask(client, messages=messages, extra_body={"cache_control": {"type": "ephemeral"}}).usage
    assert second.cache_read_input_tokens == 1400 + MESSAGE_OVERHEAD_TOKENS


def test_one_hour_breakpoints_must_precede_five_minute_ones(client: anthropic.Anthropic) -> None:
    system = [
        {"type": "text", "text": "a", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "c", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    with pytest.raises(anthropic.BadRequestError):
        ask(client, system)
    assert ask(client, system[:2]).stop_reason == "end_turn"


def test_count_tokens_matches_the_billed_input(client: anthropic.Anthropic) -> None:
    system = cached_system(1100, salt="count")
    counted = client.messages.count_tokens(
        model=MODEL, system=system, messages=[{"role": "user", "content": QUESTION}]
    )
    usage = ask(client, system).usage
    total = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
    assert counted.input_tokens == total == 1100 + QUESTION_TOKENS


def test_extended_thinking_blocks_and_output_tokens(client: anthropic.Anthropic) -> None:
    thinking = {"type": "enabled", "budget_tokens": 2048}
    message = client.messages.create(
        model=MODEL, max_tokens=4096, thinking=thinking, messages=[{"role": "user", "content": QUESTION}]
    )
    first, second = message.content
    assert first.type == "thinking"
    assert first.signature
    assert second.type == "text"
    assert message.usage.output_tokens == len(first.thinking.split()) + len(second.text.split())
    assert first.thinking != second.text

    with client.messages.stream(
        model=MODEL, max_tokens=4096, thinking=thinking, messages=[{"role": "user", "content": QUESTION}]
    ) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == first.thinking
    assert final.content[0].signature == first.signature
    assert final.content[1].text == second.text

    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model=MODEL, max_tokens=1000, thinking=thinking, messages=[{"role": "user", "content": QUESTION}]
        )


def test_changing_tool_choice_keeps_system_but_not_messages_cached(client: anthropic.Anthropic) -> None:
    tools = [{"name": "noop", "description": "does nothing", "input_schema": {"type": "object"}}]
    system = cached_system(1200, salt="choice")
    history = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": long_text(900, "m"), "cache_control": {"type": "ephemeral"}}
            ],
        }
    ]

    def usage(choice: str):
        return ask(client, system, tools=tools, tool_choice={"type": choice}, messages=history).usage

    first = usage("auto")
    assert first.cache_read_input_tokens == 0
    assert usage("auto").cache_read_input_tokens == first.cache_creation_input_tokens
    switched = usage("none")
    system_prefix = first.cache_creation_input_tokens - (900 + MESSAGE_OVERHEAD_TOKENS)
    assert switched.cache_read_input_tokens == system_prefix  # tools + system survive
    assert switched.cache_creation_input_tokens == 900 + MESSAGE_OVERHEAD_TOKENS
