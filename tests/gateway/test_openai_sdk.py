"""The official openai SDK, unchanged, against the running gateway and the simulated upstream."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from sqlalchemy import create_engine, select

from gateway.db.models import LedgerEntry


def ledger_rows(gw) -> list[LedgerEntry]:
    gw.flush_ledger()
    url = gw.settings.database_url.replace("+aiosqlite", "")
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = list(conn.execute(select(LedgerEntry).order_by(LedgerEntry.created_at)))
    engine.dispose()
    return rows


def test_sync_chat_completion_is_ledgered_with_cost_and_headers(make_gateway):
    gw = make_gateway()
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], seed=7, temperature=0
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert raw.headers["x-tiergate-route"] == "economy/gpt-4o-mini"
    assert raw.headers["x-tiergate-cache"] == "miss"
    assert len(raw.headers["x-request-id"]) >= 8
    assert float(raw.headers["x-tiergate-overhead-ms"]) >= 0

    [row] = ledger_rows(gw)
    assert row.id == raw.headers["x-request-id"]
    assert (row.team, row.project, row.deployment, row.tier) == ("team-a", "proj", "gpt-4o-mini", "economy")
    assert row.input_uncached_tokens == completion.usage.prompt_tokens
    assert row.output_tokens == completion.usage.completion_tokens
    # gpt-4o-mini: $0.15 / $0.60 per Mtok; baseline gpt-4o: $2.50 / $10 per Mtok (litellm's cost map).
    expected = round(completion.usage.prompt_tokens * 0.15 + completion.usage.completion_tokens * 0.6)
    baseline = round(completion.usage.prompt_tokens * 2.5 + completion.usage.completion_tokens * 10)
    assert row.cost_micros == expected
    assert row.baseline_cost_micros == baseline
    assert raw.headers["x-tiergate-cost-usd"] == f"{expected / 1e6:.6f}"
    assert row.status_code == 200 and row.error_class is None and not row.stream


async def test_async_client_and_streaming_with_usage(make_gateway):
    gw = make_gateway()
    client = openai.AsyncOpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Tell me a story"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, chunks = [], None, 0
    async for chunk in stream:
        chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert chunks > 3 and "".join(text)
    assert usage is not None and usage.completion_tokens > 0
    [row] = ledger_rows(gw)
    assert row.stream and row.output_tokens == usage.completion_tokens and not row.usage_estimated
    assert row.ttft_ms is not None and row.ttft_ms <= row.latency_ms
    await client.close()


def test_stream_without_include_usage_hides_usage_but_ledger_still_has_it(make_gateway):
    gw = make_gateway()
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    [row] = ledger_rows(gw)
    assert row.output_tokens > 0 and not row.usage_estimated


def test_stream_is_relayed_chunk_by_chunk_not_buffered(make_gateway, simulator):
    """With 50 ms between tokens, the first chunk must arrive long before the last."""
    import time

    gw = make_gateway()
    key = gw.create_key()
    httpx.post(
        f"{simulator.base_url}/_sim/latency", json={"model": "gpt-4o-mini", "itl_ms": 50, "tokens": 20}
    )
    try:
        arrivals = []
        start = time.perf_counter()
        with httpx.stream(
            "POST",
            f"{gw.openai_base_url}/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count"}], "stream": True},
            timeout=30,
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    arrivals.append(time.perf_counter() - start)
        assert len(arrivals) >= 20
        assert arrivals[-1] - arrivals[0] > 0.5  # spread out as the upstream produced them
    finally:
        httpx.post(
            f"{simulator.base_url}/_sim/latency", json={"model": "gpt-4o-mini", "itl_ms": 0, "tokens": 24}
        )


def test_parameters_pass_through_faithfully(make_gateway, simulator):
    gw = make_gateway()
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=tools,
        tool_choice="required",
        n=2,
        max_completion_tokens=50,
        seed=3,
    )
    assert len(completion.choices) == 2
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)
    assert completion.choices[0].finish_reason == "tool_calls"

    structured = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Give JSON"}],
        response_format={"type": "json_object"},
        stop=["\n\n"],
        max_tokens=5,
    )
    assert structured.choices[0].message.content is not None

    limited = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Write a lot"}], max_tokens=3
    )
    assert limited.choices[0].finish_reason == "length" and limited.usage.completion_tokens == 3


def test_completions_embeddings_and_models(make_gateway):
    gw = make_gateway()
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    completion = client.completions.create(model="gpt-4o-mini", prompt="Once upon a time", max_tokens=8)
    assert completion.choices[0].text
    embedding = client.embeddings.create(model="gpt-4o-mini", input=["one", "two"])
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) > 10
    models = {m.id for m in client.models.list()}
    assert models == {"gpt-4o", "gpt-4o-mini", "claude-sonnet", "local-small"}
    rows = ledger_rows(gw)
    assert [r.endpoint for r in rows] == ["completions", "embeddings"]
    assert rows[1].input_uncached_tokens > 0 and rows[1].output_tokens == 0


def test_anthropic_deployment_through_litellm(make_gateway):
    gw = make_gateway()
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    completion = client.chat.completions.create(
        model="claude-sonnet", messages=[{"role": "user", "content": "hello"}], max_tokens=40
    )
    assert completion.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="claude-sonnet",
            messages=[{"role": "user", "content": "hello again"}],
            max_tokens=40,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert any(c.usage for c in chunks)
    rows = ledger_rows(gw)
    assert [r.provider for r in rows] == ["anthropic", "anthropic"]
    assert all(r.output_tokens > 0 and r.cost_micros > 0 for r in rows)


def test_wrong_key_is_401_in_openai_format(make_gateway):
    gw = make_gateway()
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key="tg-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "invalid_api_key"
    assert ledger_rows(gw) == []


def test_missing_key_is_401(make_gateway):
    gw = make_gateway()
    response = httpx.post(
        f"{gw.openai_base_url}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
