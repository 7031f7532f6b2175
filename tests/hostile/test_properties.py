"""Property tests: usage parsing never trusts upstream shapes, pricing is exact and monotone, and
request validation turns any JSON into either an accepted body or an OpenAI-style 400."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.api.anthropic.protocol import MessagesRequest
from gateway.api.body import validate
from gateway.api.openai.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from gateway.cache import keys as cache_keys
from gateway.errors import GatewayError
from gateway.ledger.pricing import Price, micros_to_usd
from gateway.upstreams.usage import MAX_TOKENS, Usage, from_anthropic, from_gemini, from_openai

FIELDS = (
    "input_uncached",
    "input_cache_read",
    "input_cache_write",
    "input_cache_write_1h",
    "output",
    "reasoning",
)

# --- strategies ---------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
counts = st.one_of(st.integers(min_value=-5, max_value=10**9), scalars)


def shaped(keys: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Dicts with the real field names holding anything, plus entirely unexpected shapes."""
    return st.one_of(
        st.fixed_dictionaries({}, optional=keys),
        json_values,
    )


OPENAI_USAGE = shaped(
    {
        "prompt_tokens": counts,
        "completion_tokens": counts,
        "total_tokens": counts,
        "prompt_tokens_details": shaped({"cached_tokens": counts, "cache_creation_tokens": counts,
                                         "cache_creation_token_details": shaped({"ephemeral_1h_input_tokens": counts})}),
        "completion_tokens_details": shaped({"reasoning_tokens": counts}),
        "cache_read_input_tokens": counts,
        "cache_creation_input_tokens": counts,
        "cache_creation": shaped({"ephemeral_1h_input_tokens": counts, "ephemeral_5m_input_tokens": counts}),
    }
)  # fmt: skip
ANTHROPIC_USAGE = shaped(
    {
        "input_tokens": counts,
        "output_tokens": counts,
        "cache_read_input_tokens": counts,
        "cache_creation_input_tokens": counts,
        "cache_creation": shaped({"ephemeral_1h_input_tokens": counts, "ephemeral_5m_input_tokens": counts}),
    }
)
GEMINI_USAGE = shaped(
    {
        name: counts
        for name in (
            "promptTokenCount", "candidatesTokenCount", "totalTokenCount", "cachedContentTokenCount",
            "thoughtsTokenCount", "toolUsePromptTokenCount", "prompt_token_count", "candidates_token_count",
            "total_token_count", "cached_content_token_count", "thoughts_token_count",
        )
    }
)  # fmt: skip


def _valid_count(value: Any) -> int | None:
    return min(value, MAX_TOKENS) if type(value) is int and value >= 0 else None


def assert_sane(usage: Usage | None) -> None:
    if usage is None:
        return
    for name in FIELDS:
        value = getattr(usage, name)
        assert type(value) is int and value >= 0, (name, value)
    assert usage.input_cache_write_1h <= usage.input_cache_write
    assert usage.reasoning <= usage.output


# --- usage parsing ------------------------------------------------------------------------------


@given(OPENAI_USAGE)
def test_openai_usage_never_raises_and_is_consistent(raw):
    usage = from_openai(raw)
    assert_sane(usage)
    prompt = _valid_count(raw.get("prompt_tokens")) if isinstance(raw, dict) else None
    if usage is not None and prompt is not None:
        assert usage.input_total == prompt  # the classes partition prompt_tokens exactly
    completion = _valid_count(raw.get("completion_tokens")) if isinstance(raw, dict) else None
    if usage is not None and completion is not None:
        assert usage.output == completion


@given(ANTHROPIC_USAGE)
def test_anthropic_usage_never_raises_and_is_consistent(raw):
    usage = from_anthropic(raw)
    assert_sane(usage)
    if usage is not None:
        for field, name in (("input_uncached", "input_tokens"), ("output", "output_tokens"),
                            ("input_cache_read", "cache_read_input_tokens")):  # fmt: skip
            expected = _valid_count(raw.get(name))
            assert getattr(usage, field) == (expected or 0)


@given(GEMINI_USAGE)
def test_gemini_usage_never_raises_and_is_consistent(raw):
    usage = from_gemini(raw)
    assert_sane(usage)
    if usage is not None:
        prompt = (_valid_count(raw.get("promptTokenCount", raw.get("prompt_token_count"))) or 0) + (
            _valid_count(raw.get("toolUsePromptTokenCount", raw.get("tool_use_prompt_token_count"))) or 0
        )
        assert usage.input_total == prompt


# --- pricing ------------------------------------------------------------------------------------

rates = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False)
prices = st.builds(Price, rates, rates, rates, rates, rates, rates)
tokens = st.integers(min_value=0, max_value=10**9)


@st.composite
def usages(draw) -> Usage:
    write = draw(tokens)
    output = draw(tokens)
    return Usage(
        input_uncached=draw(tokens),
        input_cache_read=draw(tokens),
        input_cache_write=write,
        input_cache_write_1h=draw(st.integers(0, write)),
        output=output,
        reasoning=draw(st.integers(0, output)),
    )


def exact_cost(price: Price, u: Usage) -> Fraction:
    f = Fraction
    return (
        u.input_uncached * f(price.input)
        + u.input_cache_read * f(price.cache_read)
        + (u.input_cache_write - u.input_cache_write_1h) * f(price.cache_write)
        + u.input_cache_write_1h * f(price.cache_write_1h)
        + (u.output - u.reasoning) * f(price.output)
        + u.reasoning * f(price.reasoning)
    )


def round_half_even(value: Fraction) -> int:
    return round(value)  # Fraction.__round__ rounds half to even


@given(prices, usages())
def test_cost_is_exact_and_never_negative(price, usage):
    cost = price.cost_micros(usage)
    assert type(cost) is int and cost >= 0
    assert cost == round_half_even(exact_cost(price, usage))
    assert price.list_cost_micros(usage) >= 0


@given(prices, usages(), st.sampled_from(FIELDS), st.integers(min_value=1, max_value=10**6))
def test_cost_is_monotone_in_tokens(price, usage, field, extra):
    """Adding tokens of any class never makes a request cheaper (a 1-hour write is also a write,
    reasoning is also output)."""
    grown = {name: getattr(usage, name) for name in FIELDS}
    grown[field] += extra
    if field == "input_cache_write_1h":
        grown["input_cache_write"] += extra
    if field == "reasoning":
        grown["output"] += extra
    bigger = Usage(**grown)
    assert price.cost_micros(bigger) >= price.cost_micros(usage)
    assert price.list_cost_micros(bigger) >= price.list_cost_micros(usage)


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_micros_to_usd_round_trips(micros):
    assert Decimal(micros_to_usd(micros)) * 1_000_000 == micros


@given(OPENAI_USAGE, prices)
def test_parsed_upstream_usage_always_prices_non_negative(raw, price):
    """Whatever an upstream reports, the ledger never records a negative cost."""
    for usage in (from_openai(raw), from_anthropic(raw), from_gemini(raw)):
        if usage is not None:
            assert price.cost_micros(usage) >= 0


# --- request validation and normalisation ---------------------------------------------------------

#: What a JSON parser can hand the gateway: orjson turns integers past 64 bits into floats.
parsed_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


SCHEMAS = [ChatCompletionRequest, CompletionRequest, EmbeddingRequest, MessagesRequest]

message = st.fixed_dictionaries(
    {"role": st.one_of(st.sampled_from(["system", "user", "assistant", "tool", "wizard"]), parsed_json)},
    optional={"content": st.one_of(st.text(max_size=20), parsed_json), "name": parsed_json},
)
bodies = st.one_of(
    st.dictionaries(st.text(max_size=10), parsed_json, max_size=6),
    st.fixed_dictionaries(
        {"model": st.one_of(st.just("gpt-4o-mini"), parsed_json), "messages": st.one_of(st.lists(message, max_size=3), parsed_json)},
        optional={
            "temperature": parsed_json, "max_tokens": parsed_json, "n": parsed_json, "stream": parsed_json,
            "tools": parsed_json, "stop": parsed_json, "prompt": parsed_json, "input": parsed_json,
        },
    ),
)  # fmt: skip


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
@given(body=bodies)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_validation_is_a_400_or_a_body_the_gateway_can_use(schema, body):
    try:
        validate(schema, body)
    except GatewayError as error:
        assert error.status == 400
        assert error.body()["error"]["message"]
        assert error.code == "invalid_value"
        return
    assert isinstance(body["model"], str) and body["model"]
    orjson.dumps(body)  # what the gateway forwards must serialise
    if schema is ChatCompletionRequest:
        normalised = cache_keys.normalise(body)
        cache_keys.exact_digest(("t", "p"), normalised)
        text = cache_keys.final_user_text(normalised)
        assert text is None or isinstance(text, str)


@given(body=st.dictionaries(st.text(max_size=10), parsed_json, max_size=6), data=st.data())
def test_cache_key_ignores_key_order_and_transport_fields(body, data):
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}
    shuffled = dict(reversed(list(base.items())))
    assert cache_keys.exact_digest(("t", "p"), cache_keys.normalise(base)) == cache_keys.exact_digest(
        ("t", "p"), cache_keys.normalise(shuffled)
    )
    with_transport = {**base, "stream": data.draw(st.booleans()), "user": data.draw(st.text(max_size=5))}
    assert cache_keys.exact_digest(("t", "p"), cache_keys.normalise(base)) == cache_keys.exact_digest(
        ("t", "p"), cache_keys.normalise(with_transport)
    )


# --- what the published schemas admit, the gateway can handle ---------------------------------------


def _operation(path: str):
    import schemathesis

    from gateway.app import create_app
    from gateway.settings import Settings

    document = create_app(Settings(deployments=[])).openapi()
    return schemathesis.openapi.from_dict(document)[path]["POST"]


def _valid_bodies(path: str, schema) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies generated from the published OpenAPI document that the gateway's validation accepts."""

    def as_received(case) -> dict[str, Any] | None:
        """The body as the gateway would parse it off the wire (orjson), if it is accepted."""
        try:
            body = orjson.loads(json.dumps(case.body))
            validate(schema, body)
        except (orjson.JSONDecodeError, GatewayError):
            return None
        return body

    return _operation(path).as_strategy().map(as_received).filter(lambda body: body is not None)


@given(body=_valid_bodies("/v1/chat/completions", ChatCompletionRequest))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_valid_chat_body_can_be_keyed_counted_and_routed(body):
    from gateway.pipeline import Pipeline, _approx_prompt_tokens
    from gateway.tokens import count_messages

    normalised = cache_keys.normalise(body)
    cache_keys.exact_digest(("t", "p"), normalised)
    if cache_keys.final_user_text(normalised) is not None:
        cache_keys.partition_digest(("t", "p"), normalised)
    assert count_messages(body["messages"]) > 0  # the estimate used when an upstream reports no usage
    assert _approx_prompt_tokens(body) >= 0
    messages, _tools = Pipeline._conversation("chat", body)
    assert messages


@given(body=_valid_bodies("/v1/messages", MessagesRequest))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_valid_anthropic_body_translates(body):
    from gateway.api.anthropic.translate import to_openai

    translated, _names = to_openai(body)
    assert translated["model"] == body["model"]
    assert isinstance(translated["messages"], list)


@given(name=st.text(max_size=12))
def test_tenant_names_are_judged_alike_by_the_api_and_the_key_store(name):
    """The admin API (pydantic's regex engine) and the key store (Python's) must agree, or a name
    one accepts and the other refuses becomes a 500."""
    from pydantic import ValidationError

    from gateway.api.admin.routes import KeyCreate
    from gateway.auth.keys import check_tenant_name

    try:
        KeyCreate(team=name)
        api_accepts = True
    except ValidationError:
        api_accepts = False
    try:
        check_tenant_name("team", name)
        store_accepts = True
    except ValueError:
        store_accepts = False
    assert api_accepts == store_accepts
    if api_accepts:
        assert "/" not in name and "*" not in name and name == name.strip(" ")
