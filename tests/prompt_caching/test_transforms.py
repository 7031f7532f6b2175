"""The prompt-caching transforms as pure functions: where breakpoints go, what keys are derived."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.upstreams.caching import PromptCacheSettings, apply, prompt_cache_key
from gateway.upstreams.caching.facts import min_cacheable_tokens, supports_extended_retention
from tests.prompt_caching.conftest import prose

ON = PromptCacheSettings()
LONG = prose(1500)  # ~2,000 tokens by the gateway's 4-bytes-per-token estimate
TOOLS = [
    {
        "type": "function",
        "function": {"name": name, "description": prose(200, i), "parameters": {"type": "object"}},
    }
    for i, name in enumerate(["search", "calculator", "browse"])
]
FIVE_MINUTES = {"type": "ephemeral"}
ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}


def chat(turns: int, system: str = LONG, tools: list[dict[str, Any]] | None = TOOLS) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for turn in range(turns):
        messages.append({"role": "user", "content": f"question {turn}: {prose(30, turn)}"})
        if turn < turns - 1:
            messages.append({"role": "assistant", "content": f"answer {turn}"})
    body: dict[str, Any] = {"model": "claude", "max_tokens": 100, "messages": messages}
    if tools:
        body["tools"] = tools
    return body


def claude(body: dict[str, Any], model: str = "claude-sonnet-4-5", **options: Any) -> dict[str, Any]:
    return apply("anthropic", model, body, tenant="team-a", settings=PromptCacheSettings(**options))


def controls(body: dict[str, Any]) -> dict[str, Any]:
    """Where the body carries cache_control: ("tool", i) / ("message", i) / ("part", i)."""
    found: dict[Any, Any] = {}
    for i, tool in enumerate(body.get("tools") or ()):
        if "cache_control" in tool:
            found["tool", i] = tool["cache_control"]
    for i, message in enumerate(body["messages"]):
        if "cache_control" in message:
            found["message", i] = message["cache_control"]
        if isinstance(message.get("content"), list):
            for part in message["content"]:
                if "cache_control" in part:
                    found["part", i] = part["cache_control"]
    return found


def test_breakpoints_on_conversation_end_system_tools_and_previous_turn():
    body = chat(turns=3)
    original = copy.deepcopy(body)
    placed = claude(body)
    assert body == original  # pure: the input is not modified
    # messages: 0 system, 1 user, 2 assistant, 3 user, 4 assistant, 5 user (last)
    assert controls(placed) == {
        ("message", 5): FIVE_MINUTES,
        ("message", 0): FIVE_MINUTES,
        ("tool", 2): FIVE_MINUTES,
        ("message", 3): FIVE_MINUTES,
    }


def test_one_hour_ttl_from_policy():
    placed = claude(chat(turns=1, tools=None), anthropic_ttl="1h")
    assert controls(placed) == {("message", 1): ONE_HOUR, ("message", 0): ONE_HOUR}


def test_content_parts_get_the_marker_on_their_last_part():
    body = chat(turns=1, tools=None)
    body["messages"][1]["content"] = [{"type": "text", "text": "look"}, {"type": "text", "text": "here"}]
    placed = claude(body)
    assert placed["messages"][1]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "text", "text": "here", "cache_control": FIVE_MINUTES},
    ]


def test_client_breakpoints_are_kept_count_towards_four_and_are_never_duplicated():
    body = chat(turns=3)
    body["messages"][5]["content"] = [{"type": "text", "text": "last", "cache_control": ONE_HOUR}]
    body["tools"] = [*TOOLS[:2], {**TOOLS[2], "cache_control": ONE_HOUR}]
    placed = claude(body)
    found = controls(placed)
    assert found[("part", 5)] == ONE_HOUR and found[("tool", 2)] == ONE_HOUR  # untouched
    assert "cache_control" not in placed["messages"][5]  # not marked a second time
    # two slots left: the system prompt, then the previous turn; both before a 1h breakpoint -> 1h
    assert len(found) == 4
    assert found[("message", 0)] == ONE_HOUR and found[("message", 3)] == ONE_HOUR


def test_no_breakpoint_after_a_client_five_minute_one_may_be_one_hour():
    body = chat(turns=2, tools=None)
    body["messages"][0] = {
        "role": "system",
        "content": [{"type": "text", "text": LONG, "cache_control": FIVE_MINUTES}],
    }
    placed = claude(body, anthropic_ttl="1h")
    assert controls(placed)[("message", 3)] == FIVE_MINUTES


def test_four_client_breakpoints_leave_the_body_alone():
    body = chat(turns=3)
    body["tools"] = [{**tool, "cache_control": FIVE_MINUTES} for tool in TOOLS]
    body["messages"][1] = {**body["messages"][1], "cache_control": FIVE_MINUTES}
    assert claude(body) is body


def test_only_prefixes_above_the_models_minimum_are_marked():
    short = chat(turns=1, system="Be brief.", tools=None)
    assert controls(claude(short)) == {}
    medium = chat(turns=1, system=prose(2500), tools=None)  # ~3,300 estimated tokens
    assert controls(claude(medium, model="claude-sonnet-4-5"))  # minimum 1,024
    assert controls(claude(medium, model="claude-haiku-4-5")) == {}  # minimum 4,096
    assert min_cacheable_tokens("anthropic", "claude-3-5-haiku-20241022") == 2048
    assert min_cacheable_tokens("anthropic", "anthropic/claude-opus-4-5") == 4096
    assert min_cacheable_tokens("gemini", "gemini-2.5-pro") == 4096


def test_tool_calls_are_not_marked_but_tool_results_are():
    body = chat(turns=1)
    body["messages"] += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "result"}]},
    ]
    placed = claude(body)
    found = controls(placed)
    assert ("message", 2) not in found  # litellm would drop a marker on a tool_calls-only message
    assert placed["messages"][3]["cache_control"] == FIVE_MINUTES  # message level: becomes tool_result's
    assert ("message", 1) in found  # the previous turn ended with the user's question


def test_disabled_settings_change_nothing_for_anthropic():
    body = chat(turns=2)
    assert claude(body, enabled=False) is body


@settings(max_examples=200, deadline=None)
@given(
    turns=st.integers(1, 6),
    client_marks=st.lists(
        st.tuples(st.integers(0, 20), st.sampled_from([FIVE_MINUTES, ONE_HOUR])), max_size=4
    ),
    ttl=st.sampled_from(["5m", "1h"]),
)
def test_never_more_than_four_and_client_markers_unchanged(turns, client_marks, ttl):
    body = chat(turns=turns)
    client: dict[int, dict[str, str]] = {}
    for index, control in client_marks:
        index %= len(body["messages"])
        body["messages"][index] = {**body["messages"][index], "cache_control": control}
        client[index] = control
    # the API needs 1h breakpoints before 5m ones: only send valid client requests
    ttls = [client[i].get("ttl", "5m") for i in sorted(client)]
    if "5m" in ttls and "1h" in ttls[ttls.index("5m") :]:
        return
    placed = claude(body, anthropic_ttl=ttl)
    found = controls(placed)
    assert len(found) <= 4
    for index, control in client.items():
        assert found[("message", index)] == control
        assert not any(key == ("part", index) for key in found)
    order = [found[key].get("ttl", "5m") for key in sorted(found, key=_cache_order(placed))]
    assert not ("5m" in order and "1h" in order[order.index("5m") :])


def _cache_order(body: dict[str, Any]):
    def position(key: tuple[str, int]) -> tuple[int, int]:
        kind, index = key
        if kind == "tool":
            return (0, index)
        return (1, index) if body["messages"][index]["role"] == "system" else (2, index)

    return position


# --- OpenAI: prompt_cache_key and retention --------------------------------------------------


def openai(
    body: dict[str, Any], tenant: str = "team-a", model: str = "gpt-4o", **options: Any
) -> dict[str, Any]:
    return apply("openai", model, body, tenant=tenant, settings=PromptCacheSettings(**options))


def test_prompt_cache_key_is_stable_across_turns_and_requests_of_a_tenant():
    first, later = openai(chat(turns=1)), openai(chat(turns=4))
    later_with_ids = openai({**chat(turns=2), "user": "u-123", "metadata": {"request": "r-9"}, "seed": 4})
    assert first["prompt_cache_key"] == later["prompt_cache_key"] == later_with_ids["prompt_cache_key"]
    assert first["prompt_cache_key"].startswith("tg-") and len(first["prompt_cache_key"]) == 35


def test_prompt_cache_key_separates_tenants_and_prefixes():
    keys = {
        openai(chat(turns=1))["prompt_cache_key"],
        openai(chat(turns=1), tenant="team-b")["prompt_cache_key"],
        openai(chat(turns=1, system="Another system prompt."))["prompt_cache_key"],
        openai(chat(turns=1, tools=TOOLS[:2]))["prompt_cache_key"],
    }
    assert len(keys) == 4


def test_prompt_cache_key_ignores_tool_order_and_scopes_a_client_key_to_the_tenant():
    shuffled = chat(turns=1, tools=[TOOLS[2], TOOLS[0], TOOLS[1]])
    assert openai(shuffled)["prompt_cache_key"] == openai(chat(turns=1))["prompt_cache_key"]
    own = {**chat(turns=1), "prompt_cache_key": "my-app-v1"}
    mine, theirs = openai(own)["prompt_cache_key"], openai(own, tenant="team-b")["prompt_cache_key"]
    assert mine != theirs and mine != openai(chat(turns=1))["prompt_cache_key"]
    assert prompt_cache_key(own, "team-a") == mine


def test_retention_only_for_models_that_accept_it_and_never_over_the_client():
    assert openai(chat(turns=1), model="gpt-4.1", openai_retention="24h")["prompt_cache_retention"] == "24h"
    assert "prompt_cache_retention" not in openai(chat(turns=1), model="gpt-4o", openai_retention="24h")
    assert "prompt_cache_retention" not in openai(chat(turns=1), model="gpt-4.1")
    client = {**chat(turns=1), "prompt_cache_retention": "in_memory"}
    assert openai(client, model="gpt-4.1", openai_retention="24h")["prompt_cache_retention"] == "in_memory"
    assert supports_extended_retention("gpt-5.1-2025-11-13") and not supports_extended_retention("gpt-5-mini")


@pytest.mark.parametrize("provider", ["openai", "gemini", "vllm"])
def test_other_providers_get_sorted_tools_and_no_anthropic_markers(provider):
    body = chat(turns=2, tools=[TOOLS[2], {**TOOLS[0], "cache_control": FIVE_MINUTES}, TOOLS[1]])
    body["messages"][0] = {
        "role": "system",
        "content": [{"type": "text", "text": LONG, "cache_control": ONE_HOUR}],
    }
    out = apply(provider, "m", body, tenant="t", settings=ON)
    assert [t["function"]["name"] for t in out["tools"]] == ["browse", "calculator", "search"]
    assert controls(out) == {}
    assert out["messages"][0]["content"][0] == {"type": "text", "text": LONG}
    assert ("prompt_cache_key" in out) == (provider == "openai")
    disabled = apply(provider, "m", body, tenant="t", settings=PromptCacheSettings(enabled=False))
    assert controls(disabled) == {} and disabled["tools"] == [
        {k: v for k, v in t.items() if k != "cache_control"} for t in body["tools"]
    ]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_nothing_the_gateway_adds_changes_the_prompt(provider):
    """Stripping what the transforms add (markers, routing key) gives back the request unchanged
    (tools already in name order: sorting them is the one intended change)."""
    body = chat(turns=3, tools=sorted(TOOLS, key=lambda tool: tool["function"]["name"]))
    out = apply(provider, "claude-sonnet-4-5", body, tenant="t", settings=ON)
    out.pop("prompt_cache_key", None)
    stripped = apply("gemini", "x", out, tenant="t", settings=PromptCacheSettings(stable_tool_order=False))
    assert stripped == body


def test_every_client_marker_counts_even_several_in_one_message():
    body = chat(turns=3)
    marked = [
        {"type": "text", "text": "a", "cache_control": FIVE_MINUTES},
        {"type": "text", "text": "b", "cache_control": FIVE_MINUTES},
    ]
    body["messages"][1] = {"role": "user", "content": marked}
    body["messages"][3] = {"role": "user", "content": marked}
    assert claude(body) is body  # four client breakpoints in two messages: no slot left
