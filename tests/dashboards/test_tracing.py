"""Traces: GenAI semantic-convention attributes, server/client span shape, caller's trace context."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.trace import SpanKind, StatusCode

from gateway.observability import tracing


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing._tracer = None


def test_attribute_names_are_the_semantic_conventions():
    assert tracing.OPERATION == gen_ai.GEN_AI_OPERATION_NAME
    assert tracing.PROVIDER == gen_ai.GEN_AI_PROVIDER_NAME
    assert tracing.REQUEST_MODEL == gen_ai.GEN_AI_REQUEST_MODEL
    assert tracing.RESPONSE_MODEL == gen_ai.GEN_AI_RESPONSE_MODEL
    assert tracing.INPUT_TOKENS == gen_ai.GEN_AI_USAGE_INPUT_TOKENS
    assert tracing.OUTPUT_TOKENS == gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
    assert tracing.CACHE_READ_TOKENS == gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
    assert tracing.CACHE_CREATION_TOKENS == gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
    assert tracing.REASONING_TOKENS == gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
    assert tracing.REQUEST_STREAM == gen_ai.GEN_AI_REQUEST_STREAM
    assert tracing.TIME_TO_FIRST_CHUNK == gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
    assert tracing.REQUEST_MAX_TOKENS == gen_ai.GEN_AI_REQUEST_MAX_TOKENS


def test_a_routed_request_is_a_server_span_with_a_genai_client_child(spans):
    parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    tracing.record(
        tracing.RequestTrace(
            request_id="req-1",
            endpoint="chat",
            requested_model="auto",
            status=200,
            duration_s=0.5,
            upstream_s=0.45,
            deployment="claude-sonnet",
            provider="anthropic",
            upstream_model="claude-sonnet-4-5",
            tier="frontier",
            stream=True,
            ttft_s=0.1,
            input_tokens=1200,
            cache_read_tokens=1000,
            output_tokens=80,
            cost_micros=1234,
            baseline_cost_micros=5000,
            route_reason="policy balanced v1: score 0.71 -> claude-sonnet",
            traceparent=f"00-{parent_trace}-00f067aa0ba902b7-01",
            end_ns=2_000_000_000_000,
        )
    )
    client, server = spans.get_finished_spans()
    assert server.name == "chat auto" and server.kind == SpanKind.SERVER
    assert client.name == "chat claude-sonnet-4-5" and client.kind == SpanKind.CLIENT
    assert client.parent.span_id == server.context.span_id
    assert format(server.context.trace_id, "032x") == parent_trace  # joined the caller's trace
    assert server.end_time - server.start_time == 500_000_000
    assert client.end_time - client.start_time == 450_000_000
    attrs = client.attributes
    assert attrs[gen_ai.GEN_AI_OPERATION_NAME] == "chat"
    assert attrs[gen_ai.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert attrs[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] == 1200
    assert attrs[gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 1000
    assert attrs[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] == 80
    assert gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS not in attrs
    assert server.attributes["tiergate.cost_usd"] == "0.001234"
    assert server.attributes["tiergate.overhead_ms"] == pytest.approx(50.0)
    assert server.status.status_code == StatusCode.UNSET


def test_failures_carry_error_type_and_cache_hits_have_no_client_span(spans):
    tracing.record(
        tracing.RequestTrace(
            request_id="r2", endpoint="chat", requested_model="gpt-4o", status=502, duration_s=1.0,
            upstream_s=0.9, deployment="gpt-4o", provider="openai", upstream_model="gpt-4o",
            error_class="upstream_unavailable",
        )
    )  # fmt: skip
    tracing.record(
        tracing.RequestTrace(
            request_id="r3", endpoint="completions", requested_model="auto", status=200,
            duration_s=0.002, cache_outcome="exact",
        )
    )  # fmt: skip
    client, server, cached = spans.get_finished_spans()
    assert server.status.status_code == client.status.status_code == StatusCode.ERROR
    assert client.attributes["error.type"] == "upstream_unavailable"
    assert cached.name == "text_completion auto" and cached.attributes["tiergate.cache"] == "exact"


def test_off_by_default_and_unknown_exporters_are_refused():
    assert tracing.configure("none") is False
    tracing.record(tracing.RequestTrace("r", "chat", "auto", 200, 0.1))  # a no-op
    with pytest.raises(ValueError, match="unknown trace exporter"):
        tracing.configure("zipkin-over-carrier-pigeon")
