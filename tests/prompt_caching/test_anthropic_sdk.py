"""The official anthropic SDK, unchanged, through the gateway's `POST /v1/messages`: same keys,
routing and ledger as the OpenAI endpoints, to Claude and (translated) to OpenAI deployments."""

from __future__ import annotations

import anthropic
import pytest

from tests.gateway.test_openai_sdk import ledger_rows
from tests.prompt_caching.conftest import prose

SYSTEM = prose(2500, seed=3)  # well above Claude Sonnet's 1,024-token minimum


def client(gw, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)


def test_message_to_claude_with_cache_breakpoint_is_read_on_the_next_turn(anthropic_gateway, simulator):
    simulator.simulator.clear_caches()
    gw = anthropic_gateway()
    sdk = client(gw, gw.create_key())
    system = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    first = sdk.messages.create(
        model="claude-sonnet", max_tokens=30, system=system, messages=[{"role": "user", "content": "Hello"}]
    )
    assert first.type == "message" and first.role == "assistant" and first.content[0].type == "text"
    assert first.stop_reason in ("end_turn", "max_tokens")
    written_1h = first.usage.cache_creation.ephemeral_1h_input_tokens
    assert written_1h > 2000 and first.usage.cache_read_input_tokens == 0  # the client's 1h breakpoint
    second = sdk.messages.with_raw_response.create(
        model="claude-sonnet", max_tokens=30, system=system, messages=[{"role": "user", "content": "Again"}]
    )
    message = second.parse()
    assert message.usage.cache_read_input_tokens == written_1h  # same system prompt, other question
    assert second.headers["x-tiergate-route"] == "frontier/claude-sonnet"

    rows = ledger_rows(gw)
    assert [r.input_cache_write_1h_tokens for r in rows] == [written_1h, 0]
    assert rows[0].input_cache_write_tokens == first.usage.cache_creation_input_tokens
    assert rows[1].input_cache_read_tokens == message.usage.cache_read_input_tokens
    assert rows[1].input_uncached_tokens == message.usage.input_tokens
    # claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 5-minute / $6 1-hour write, $15 output per Mtok.
    u = first.usage
    written_5m = u.cache_creation_input_tokens - written_1h
    expected = u.input_tokens * 3 + written_5m * 3.75 + written_1h * 6 + u.output_tokens * 15
    assert rows[0].cost_micros == round(expected)
    u = message.usage
    expected = u.input_tokens * 3 + u.cache_read_input_tokens * 0.3 + u.cache_creation_input_tokens * 3.75
    assert rows[1].cost_micros == round(expected + u.output_tokens * 15)


def test_streamed_message_has_anthropic_event_sequence_and_final_usage(anthropic_gateway, simulator):
    simulator.simulator.clear_caches()
    gw = anthropic_gateway()
    sdk = client(gw, gw.create_key())
    system = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    kwargs = dict(model="claude-sonnet", max_tokens=25, system=system)
    sdk.messages.create(**kwargs, messages=[{"role": "user", "content": "Hi"}])
    with sdk.messages.stream(**kwargs, messages=[{"role": "user", "content": "Stream please"}]) as stream:
        raw = {"message_start", "content_block_start", "content_block_delta", "content_block_stop"}
        kinds = [e.type for e in stream if e.type in raw | {"message_delta", "message_stop"}]
        final = stream.get_final_message()
    deltas = kinds.count("content_block_delta")
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert deltas == final.usage.output_tokens  # the simulator streams one token per delta
    assert final.content[0].text and final.usage.output_tokens > 0
    assert final.usage.cache_read_input_tokens > 1000  # the system prompt written by the first call
    rows = ledger_rows(gw)
    assert rows[1].stream and rows[1].input_cache_read_tokens == final.usage.cache_read_input_tokens
    assert rows[1].output_tokens == final.usage.output_tokens


def test_message_routed_to_an_openai_deployment_is_translated_both_ways(anthropic_gateway):
    gw = anthropic_gateway()
    sdk = client(gw, gw.create_key())
    tools = [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    message = sdk.messages.create(
        model="gpt-4o-mini",
        max_tokens=50,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        tools=tools,
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    [block] = [b for b in message.content if b.type == "tool_use"]
    assert block.name == "get_weather" and isinstance(block.input, dict) and "city" in block.input
    assert message.stop_reason == "tool_use"
    with sdk.messages.stream(
        model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": "Tell me a story"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text and final.usage.output_tokens > 0
    rows = ledger_rows(gw)
    assert [r.deployment for r in rows] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert rows[1].output_tokens == final.usage.output_tokens
    assert rows[1].input_uncached_tokens == final.usage.input_tokens


def test_errors_come_back_in_anthropic_shape(anthropic_gateway):
    gw = anthropic_gateway()
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        client(gw, "sk-wrong").messages.create(
            model="claude-sonnet", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert bad_key.value.status_code == 401
    assert (
        bad_key.value.body["type"] == "error"
        and bad_key.value.body["error"]["type"] == "authentication_error"
    )
    sdk = client(gw, gw.create_key())
    with pytest.raises(anthropic.NotFoundError) as unknown:
        sdk.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert unknown.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as invalid:
        sdk.messages.create(model="claude-sonnet", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert invalid.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in invalid.value.body["error"]["message"]
