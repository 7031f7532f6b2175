"""OpenTelemetry traces with the GenAI semantic conventions; optional, off unless configured.

The pipeline calls `record(RequestTrace(...))` once per request, when it writes the ledger row:
that yields a SERVER span for the gateway request ("chat auto") and, when an upstream was called,
a CLIENT child span for the model call ("chat gpt-4o-mini") carrying the `gen_ai.*` attributes, both
with the request's real start and end times. Recording after the fact keeps tracing off the
streaming path. An incoming W3C `traceparent` header makes the spans part of the caller's trace.

`configure("otlp" | "console" | "none")` installs an SDK tracer provider with a batching exporter;
without it (or without the `opentelemetry-sdk` package) spans cost nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

# GenAI semantic convention attribute names (opentelemetry-semantic-conventions, gen_ai_attributes).
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_CREATION_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
ERROR_TYPE = "error.type"
HTTP_STATUS = "http.response.status_code"
SERVER_ADDRESS = "server.address"

OPERATIONS = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}
# litellm provider names -> the conventions' well-known gen_ai.provider.name values
PROVIDERS = {
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
    "mistral": "mistral_ai",
}

_tracer = None


@dataclass(frozen=True, slots=True)
class RequestTrace:
    """What the pipeline knows about a finished request. Times in seconds; money in micro-dollars."""

    request_id: str
    endpoint: str
    requested_model: str | None
    status: int
    duration_s: float
    upstream_s: float = 0.0
    deployment: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    upstream_host: str | None = None
    tier: str | None = None
    stream: bool = False
    ttft_s: float | None = None
    input_tokens: int = 0  # every input class, cached or not (as the conventions define it)
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    max_tokens: int | None = None
    error_class: str | None = None
    cache_outcome: str = "off"
    cost_micros: int = 0
    baseline_cost_micros: int = 0
    route_reason: str | None = None
    complexity_score: float | None = None
    policy: str | None = None
    team: str | None = None
    project: str | None = None
    traceparent: str | None = None
    end_ns: int | None = None


def configure(
    exporter: str | None = None, service_name: str = "tiergate", endpoint: str | None = None
) -> bool:
    """Install a tracer provider. `exporter`: otlp, console or none (default: $OTEL_TRACES_EXPORTER,
    else none). OTLP/HTTP needs `opentelemetry-exporter-otlp-proto-http` and honours the standard
    OTEL_EXPORTER_OTLP_* variables. Returns whether tracing is on."""
    global _tracer
    exporter = (exporter or os.environ.get("OTEL_TRACES_EXPORTER") or "none").lower()
    if exporter == "none":
        _tracer = None
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    elif exporter == "console":
        span_exporter = ConsoleSpanExporter()
    else:
        raise ValueError(f"unknown trace exporter {exporter!r}: use otlp, console or none")
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    use_provider(provider)
    log.info("tracing on: %s exporter", exporter)
    return True


def use_provider(provider) -> None:
    """Trace with this tracer provider (tests pass one with an in-memory exporter)."""
    global _tracer
    _tracer = provider.get_tracer("tiergate.gateway")


def enabled() -> bool:
    """Whether spans are recorded (callers skip building a RequestTrace when not)."""
    return _tracer is not None


def record(trace: RequestTrace) -> None:
    """Emit the spans of one finished request (no-op when tracing is off)."""
    if _tracer is None:
        return
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

    end_ns = trace.end_ns or time.time_ns()
    start_ns = end_ns - int(trace.duration_s * 1e9)
    operation = OPERATIONS.get(trace.endpoint, trace.endpoint)
    parent = extract({"traceparent": trace.traceparent}) if trace.traceparent else None
    failed = trace.status >= 400 or trace.error_class is not None
    server = _tracer.start_span(
        f"{operation} {trace.requested_model or ''}".strip(),
        context=parent,
        kind=SpanKind.SERVER,
        start_time=start_ns,
        attributes=_drop_none(
            {
                OPERATION: operation,
                REQUEST_MODEL: trace.requested_model,
                HTTP_STATUS: trace.status,
                "tiergate.request_id": trace.request_id,
                "tiergate.cache": trace.cache_outcome,
                "tiergate.route.reason": trace.route_reason,
                "tiergate.route.tier": trace.tier,
                "tiergate.route.deployment": trace.deployment,
                "tiergate.policy": trace.policy,
                "tiergate.complexity_score": trace.complexity_score,
                "tiergate.team": trace.team,
                "tiergate.project": trace.project,
                "tiergate.cost_usd": _usd(trace.cost_micros),
                "tiergate.baseline_cost_usd": _usd(trace.baseline_cost_micros),
                "tiergate.overhead_ms": round((trace.duration_s - trace.upstream_s) * 1000, 3),
                ERROR_TYPE: trace.error_class if failed else None,
            }
        ),
    )
    if failed:
        server.set_status(Status(StatusCode.ERROR, trace.error_class or str(trace.status)))
    if trace.deployment and trace.upstream_s > 0:
        client = _tracer.start_span(
            f"{operation} {trace.upstream_model or trace.deployment}",
            context=set_span_in_context(server),
            kind=SpanKind.CLIENT,
            start_time=end_ns - int(trace.upstream_s * 1e9),
            attributes=_drop_none(
                {
                    OPERATION: operation,
                    PROVIDER: PROVIDERS.get(trace.provider or "", trace.provider),
                    REQUEST_MODEL: trace.upstream_model,
                    RESPONSE_MODEL: trace.upstream_model,
                    REQUEST_MAX_TOKENS: trace.max_tokens,
                    REQUEST_STREAM: trace.stream,
                    SERVER_ADDRESS: trace.upstream_host,
                    INPUT_TOKENS: trace.input_tokens,
                    OUTPUT_TOKENS: trace.output_tokens,
                    CACHE_READ_TOKENS: trace.cache_read_tokens or None,
                    CACHE_CREATION_TOKENS: trace.cache_write_tokens or None,
                    REASONING_TOKENS: trace.reasoning_tokens or None,
                    TIME_TO_FIRST_CHUNK: trace.ttft_s,
                    ERROR_TYPE: trace.error_class if failed else None,
                    "tiergate.tier": trace.tier,
                }
            ),
        )
        if failed:
            client.set_status(Status(StatusCode.ERROR, trace.error_class or str(trace.status)))
        client.end(end_time=end_ns)
    server.end(end_time=end_ns)


def _usd(micros: int) -> str:
    from gateway.ledger.pricing import micros_to_usd

    return micros_to_usd(micros)


def _drop_none(attributes: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in attributes.items() if v is not None}
