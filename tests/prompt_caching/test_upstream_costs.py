"""The transforms against the simulated providers, through the gateway's upstream clients:
what the provider receives, what it caches, and what the ledger would charge, to the micro-dollar.

Each request sent through litellm (or relayed on the OpenAI wire) is then replayed natively to the
simulator with the same prompt cache state, and the native usage shape (Anthropic `usage`, Gemini
`usageMetadata`) must normalise to the same `Usage` as the translated one.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import aiohttp
import httpx
import pytest

from gateway.ledger.pricing import resolve_price
from gateway.settings import Deployment
from gateway.upstreams.base import UpstreamResponse
from gateway.upstreams.caching import PromptCacheSettings, apply
from gateway.upstreams.litellm_bridge import LiteLLMUpstream
from gateway.upstreams.openai_wire import OpenAIWireUpstream
from gateway.upstreams.usage import Usage, from_anthropic, from_gemini, from_openai
from tests.prompt_caching.test_transforms import TOOLS, chat

KEY = "sk-sim"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_KEY", KEY)


def micros(*terms: tuple[int, str]) -> int:
    """Σ tokens x $/Mtok (= µ$ per token), rounded half-even to whole micro-dollars."""
    total = sum(Decimal(tokens) * Decimal(rate) for tokens, rate in terms)
    return int(total.to_integral_value(rounding=ROUND_HALF_EVEN))


def deployment(sim, provider: str, model: str) -> Deployment:
    base = {"anthropic": sim.base_url, "gemini": sim.gemini_base_url}.get(provider, sim.openai_base_url)
    return Deployment(name=model, provider=provider, model=model, api_base=base, api_key_env="SIM_KEY")


async def call(upstream, body: dict[str, Any], stream: bool) -> Usage:
    if not stream:
        response: UpstreamResponse = await upstream.complete("chat", body)
        return response.usage
    result = await upstream.stream("chat", body, client_wants_usage=False)
    async for _ in result.frames:
        pass
    return from_openai(result.accumulator.usage)


def replay_natively(sim, path: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same requests, non-streamed, in the provider's own protocol, from a cold cache."""
    sim.simulator.clear_caches()
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "x-goog-api-key": KEY}
    out = []
    for body in bodies:
        native_path = path.replace("streamGenerateContent", "generateContent")
        reply = httpx.post(
            sim.base_url + native_path,
            json={**body, "stream": False} if "messages" in path else body,
            headers=headers,
        )
        assert reply.status_code == 200, reply.text
        out.append(reply.json())
    return out


@pytest.mark.parametrize("ttl", ["5m", "1h"])
async def test_anthropic_breakpoints_reach_the_provider_and_each_turn_reads_the_last(
    recording_simulator, ttl
):
    sim = recording_simulator
    upstream = LiteLLMUpstream(deployment(sim, "anthropic", "claude-sonnet-4-5"))
    settings = PromptCacheSettings(anthropic_ttl=ttl)
    usages = []
    for turns, stream in [(1, False), (2, True), (3, False), (4, True)]:
        body = apply("anthropic", "claude-sonnet-4-5", chat(turns), tenant="team-a", settings=settings)
        usages.append(await call(upstream, body, stream))

    sent = [body for path, body in sim.received if path == "/v1/messages"]
    control = {"type": "ephemeral", "ttl": "1h"} if ttl == "1h" else {"type": "ephemeral"}
    last = sent[-1]
    assert last["tools"][-1]["cache_control"] == control  # litellm carried every breakpoint through
    assert last["system"][-1]["cache_control"] == control
    assert last["messages"][-1]["content"][-1]["cache_control"] == control
    assert sum("cache_control" in block for m in last["messages"] for block in m["content"]) == 2

    first, *later = usages
    assert first.input_cache_read == 0 and first.input_cache_write > 2000
    for previous, usage in zip(usages, later, strict=False):
        # everything the previous turn sent is read; only the new turn is written
        assert usage.input_cache_read == previous.input_cache_read + previous.input_cache_write
        assert 0 < usage.input_cache_write < 200
    assert all(u.input_cache_write_1h == (u.input_cache_write if ttl == "1h" else 0) for u in usages)

    native = replay_natively(sim, "/v1/messages", sent)
    assert [from_anthropic(reply["usage"]) for reply in native] == usages
    price = resolve_price(deployment(sim, "anthropic", "claude-sonnet-4-5"))
    write_rate = "6" if ttl == "1h" else "3.75"  # 2x or 1.25x the $3 input rate
    for reply, usage in zip(native, usages, strict=True):
        u = reply["usage"]
        expected = micros(
            (u["input_tokens"], "3"),
            (u["cache_read_input_tokens"], "0.3"),
            (u["cache_creation_input_tokens"], write_rate),
            (u["output_tokens"], "15"),
        )
        assert price.cost_micros(usage) == expected


async def test_openai_prompt_cache_key_shares_the_system_prompt_within_a_tenant_only(recording_simulator):
    sim = recording_simulator
    async with aiohttp.ClientSession() as session:
        upstream = OpenAIWireUpstream(deployment(sim, "openai", "gpt-4o-mini"), session)
        settings = PromptCacheSettings()

        def body(tenant: str, question: str) -> dict[str, Any]:
            request = {**chat(1), "messages": [chat(1)["messages"][0], {"role": "user", "content": question}]}
            return apply("openai", "gpt-4o-mini", request, tenant=tenant, settings=settings)

        cold = await call(upstream, body("team-a", "first conversation"), stream=False)
        warm = await call(upstream, body("team-a", "a different conversation"), stream=True)
        other_tenant = await call(upstream, body("team-b", "a different conversation"), stream=False)

    sent = [b for path, b in sim.received if path.endswith("/chat/completions")]
    assert sent[0]["prompt_cache_key"] == sent[1]["prompt_cache_key"] != sent[2]["prompt_cache_key"]
    assert cold.input_cache_read == 0 and other_tenant.input_cache_read == 0
    assert warm.input_cache_read >= 1024 and warm.input_cache_read % 128 == 0
    price = resolve_price(deployment(sim, "openai", "gpt-4o-mini"))
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per Mtok
    assert price.cost_micros(warm) == micros(
        (warm.input_uncached, "0.15"), (warm.input_cache_read, "0.075"), (warm.output, "0.6")
    )
    assert price.list_cost_micros(warm) == micros((warm.input_total, "0.15"), (warm.output, "0.6"))


async def test_gemini_stable_tool_order_turns_a_miss_into_an_implicit_cache_hit(recording_simulator):
    sim = recording_simulator
    upstream = LiteLLMUpstream(deployment(sim, "gemini", "gemini-2.5-flash"))
    shuffled = [TOOLS[1], TOOLS[2], TOOLS[0]]
    on, off = PromptCacheSettings(), PromptCacheSettings(enabled=False)
    results = {}
    for name, settings in [("off", off), ("on", on)]:
        sim.simulator.clear_caches()
        first = apply("gemini", "gemini-2.5-flash", chat(1), tenant="t", settings=settings)
        second = apply("gemini", "gemini-2.5-flash", chat(2, tools=shuffled), tenant="t", settings=settings)
        await call(upstream, first, stream=False)
        results[name] = await call(upstream, second, stream=name == "on")
    assert results["off"].input_cache_read == 0  # tools came in another order: a different prefix
    assert results["on"].input_cache_read > 1024

    sent = [body for path, body in sim.received if path.startswith("/v1beta/")][-2:]  # the "on" pair
    native = replay_natively(sim, "/v1beta/models/gemini-2.5-flash:generateContent", sent)
    metadata = native[1]["usageMetadata"]
    assert from_gemini(metadata) == results["on"]
    assert metadata["cachedContentTokenCount"] == results["on"].input_cache_read
    price = resolve_price(deployment(sim, "gemini", "gemini-2.5-flash"))
    # gemini-2.5-flash: $0.30 input, $0.03 cached input, $2.50 output per Mtok
    assert price.cost_micros(results["on"]) == micros(
        (metadata["promptTokenCount"] - metadata["cachedContentTokenCount"], "0.3"),
        (metadata["cachedContentTokenCount"], "0.03"),
        (metadata["candidatesTokenCount"], "2.5"),
    )
