"""Capture through the gateway (simulated upstream, openai SDK): which requests are kept, redaction
of both sides before storage, streams and tool calls, and storage on PostgreSQL."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from tests.distill.conftest import capture_policy, install_policy, samples

PII_PROMPT = (
    "Email jane.roe@example.com or call +1 415-555-0132 about card 4111 1111 1111 1111, "
    "IBAN DE89 3704 0044 0532 0130 00, server 10.1.2.3, key sk-proj-a1b2c3d4e5f6g7h8i9j0k1l2, SSN 123-45-6789."
)
WEATHER_TOOL = {
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


def client_for(gw, team: str, project: str | None = "proj") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gw.openai_base_url, api_key=gw.create_key(team=team, project=project), max_retries=0
    )


def test_policy_routed_frontier_answer_is_captured_redacted(make_gateway):
    gw = make_gateway()
    install_policy(gw, capture_policy())
    client = client_for(gw, "research")
    raw = client.chat.completions.with_raw_response.create(
        model="policy/distilled",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": PII_PROMPT}],
    )
    answer = raw.parse()
    (sample,) = samples(gw)
    assert sample.id == raw.headers["x-request-id"]  # the ledger row's id: feedback and grades join on it
    assert (sample.team, sample.project, sample.policy) == ("research", "proj", "distilled")
    assert (sample.deployment, sample.tier, sample.redacted) == ("gpt-4o", "frontier", True)
    stored = sample.messages[1]["content"]
    for secret in ("jane.roe@", "415-555", "4111 1111", "DE89", "10.1.2.3", "sk-proj", "123-45-6789"):
        assert secret not in stored
    for label in ("[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]", "[IP]", "[SECRET]", "[SSN]"):
        assert label in stored
    assert sample.messages[0] == {"role": "system", "content": "Be brief."}
    assert sample.completion == {"role": "assistant", "content": answer.choices[0].message.content}


def test_explicit_deployment_uses_the_callers_assigned_policy_and_its_tiers(make_gateway):
    gw = make_gateway()
    install_policy(gw, capture_policy(tiers=["frontier"]), team="search")
    search = client_for(gw, "search")
    search.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "frontier one"}])
    search.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "economy one"}])
    client_for(gw, "other-team").chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "no policy for this team"}]
    )
    captured = samples(gw)
    assert [(s.team, s.deployment, s.messages[-1]["content"]) for s in captured] == [
        ("search", "gpt-4o", "frontier one")
    ]


def test_capture_off_tier_lists_and_redact_false(make_gateway):
    gw = make_gateway()
    install_policy(gw, capture_policy(name="off", capture=False), team="a")
    install_policy(
        gw,
        capture_policy(name="economy", deployment="gpt-4o-mini", tiers=["economy"], redact=False),
        team="b",
    )
    client_for(gw, "a").chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    client_for(gw, "b").chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "mail a@b.io"}]
    )
    (sample,) = samples(gw)
    assert (sample.team, sample.tier, sample.redacted) == ("b", "economy", False)
    assert sample.messages[0]["content"] == "mail a@b.io"


def test_streamed_answers_and_tool_calls_are_captured(make_gateway):
    gw = make_gateway()
    install_policy(gw, capture_policy(), team="tools")
    client = client_for(gw, "tools")
    history = [
        {"role": "user", "content": "Weather in Paris? Reply to bob@corp.example"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city": "Paris", "notify": "bob@corp.example"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, from 192.168.0.7"},
        {"role": "user", "content": "And get_weather for Rome?"},
    ]
    called = client.chat.completions.create(
        model="auto",
        messages=history,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    call = called.choices[0].message.tool_calls[0]
    chunks = list(
        client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "stream this"}], stream=True
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    by_prompt = {s.messages[-1]["content"]: s for s in samples(gw)}
    tool_sample = by_prompt["And get_weather for Rome?"]
    assert tool_sample.tools == [WEATHER_TOOL]
    assert tool_sample.messages[1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris", "notify": "[EMAIL]"}',
    }
    assert tool_sample.messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "18C, from [IP]"}
    assert tool_sample.completion["tool_calls"] == [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": call.function.arguments},
        }
    ]
    assert json.loads(call.function.arguments)  # valid JSON arguments survive redaction untouched
    assert by_prompt["stream this"].completion == {"role": "assistant", "content": streamed}


def test_cache_replays_are_not_captured_twice(make_gateway):
    gw = make_gateway()
    install_policy(gw, capture_policy(), team="t")
    client = client_for(gw, "t")
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "same"}], seed=1)
    assert len(samples(gw)) == 1


@pytest.mark.postgres
def test_capture_on_postgres(make_gateway, postgres_url):
    gw = make_gateway(database_url=postgres_url)
    install_policy(gw, capture_policy(), team="pg")
    client_for(gw, "pg").chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "ping me at ops@example.org"}]
    )
    (sample,) = samples(gw)
    assert sample.messages == [{"role": "user", "content": "ping me at [EMAIL]"}]
    assert sample.created_at.tzinfo is not None


def test_anthropic_messages_are_captured_in_openai_form(make_gateway):
    gw = make_gateway()
    install_policy(gw, capture_policy(), team="claude-users")
    client = anthropic.Anthropic(
        base_url=gw.base_url, api_key=gw.create_key(team="claude-users"), max_retries=0
    )
    message = client.messages.create(
        model="claude-sonnet",
        max_tokens=256,
        system="You are terse.",
        messages=[{"role": "user", "content": "Reach me at kim@example.net"}],
    )
    (sample,) = samples(gw)
    assert (sample.deployment, sample.tier) == ("claude-sonnet", "frontier")
    assert sample.messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Reach me at [EMAIL]"},
    ]
    assert sample.completion == {"role": "assistant", "content": message.content[0].text}


def test_the_answering_deployment_decides_after_a_fallback(make_gateway, simulator):
    """gpt-4o fails twice (its retry included) and gpt-4o-mini answers: an economy answer, not kept."""
    gw = make_gateway()
    install_policy(gw, {**capture_policy(), "fallbacks": {"gpt-4o": ["gpt-4o-mini"]}}, team="fb")
    client = client_for(gw, "fb")
    httpx.post(
        f"{simulator.base_url}/_sim/faults", json={"status": 500, "count": 2, "model": "gpt-4o"}
    ).raise_for_status()
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "fall back please"}]
        )
    finally:
        httpx.delete(f"{simulator.base_url}/_sim/faults").raise_for_status()
    assert raw.headers["x-tiergate-route"] == "economy/gpt-4o-mini"
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "no fault now"}])
    assert [s.messages[0]["content"] for s in samples(gw)] == ["no fault now"]


def shout(text: str) -> str:
    """A redaction hook for the test below: configured by dotted path, applied to both sides."""
    return text.upper()


def test_the_configured_redaction_hook_replaces_the_default(make_gateway):
    gw = make_gateway(distill_redaction_hook="tests.distill.test_capture:shout")
    install_policy(gw, capture_policy())
    client_for(gw, "research").chat.completions.create(
        model="policy/distilled", messages=[{"role": "user", "content": "mail jane@example.com please"}]
    )
    (sample,) = samples(gw)
    assert sample.messages[-1]["content"] == "MAIL JANE@EXAMPLE.COM PLEASE"  # the hook's doing, not [EMAIL]
    assert sample.completion["content"] == sample.completion["content"].upper()
