"""One request, top to bottom: authenticate -> resolve the policy -> response cache (a hit is
replayed) -> score and route -> budgets and rate limits (the estimated cost is reserved) -> upstream
(prompt-caching transforms, retries, fallbacks) -> respond -> ledger row (the reservation settled
with the actual cost), metrics, cache store.

Each step is a call into the package that owns it; this module only sequences them and keeps the
per-request facts (`Exchange`) that end up in the ledger row and the response headers.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.auth.keys import KeyInfo, KeyStore
from gateway.auth.limits import Admission, Limits
from gateway.cache import CacheLookup, CacheScope, ResponseCache, sse_frames, wants_usage
from gateway.errors import GatewayError, invalid_request, model_not_found, unauthorized
from gateway.ledger.pricing import micros_to_usd
from gateway.ledger.report import attribute_savings
from gateway.ledger.writer import LedgerWriter, ledger_row, token_columns
from gateway.observability import metrics, tracing
from gateway.routing.policy import CacheSettings, PolicyError, Router
from gateway.routing.scorer import Scorer
from gateway.routing.store import PolicyReloader
from gateway.settings import Settings
from gateway.tokens import count_messages, count_text
from gateway.upstreams import caching
from gateway.upstreams.base import UpstreamResponse, UpstreamStream
from gateway.upstreams.errors import UpstreamError
from gateway.upstreams.registry import Target, UpstreamRegistry
from gateway.upstreams.usage import Usage, from_openai
from selfhost.pool import LoadLimits

log = logging.getLogger(__name__)


@dataclass
class Exchange:
    """Everything known about one request so far; becomes its ledger row."""

    request_id: str
    endpoint: str
    started: float
    key: KeyInfo | None = None
    requested_model: str | None = None
    target: Target | None = None
    route_reason: str | None = None
    policy: Router | None = None
    score: float | None = None
    baseline: Target | None = None
    stream: bool = False
    attempts: int = 0
    upstream_s: float = 0.0
    ttft_s: float | None = None
    usage: Usage | None = None
    cache_outcome: str = "off"
    cost_micros: int = 0
    baseline_micros: int = 0
    traceparent: str | None = None  # the caller's W3C trace context, for our spans
    cache_settings: CacheSettings | None = None
    cache_lookup: CacheLookup | None = None
    admission: Admission | None = None  # the budget reservation `finish` settles
    # set by API surfaces that translate requests: (body, provider, model) -> body for that target
    adapt_body: Callable[[dict[str, Any], str, str], dict[str, Any]] | None = None

    def headers(self) -> dict[str, str]:
        headers = {"x-request-id": self.request_id, "x-tiergate-cache": self.cache_outcome}
        if self.target:
            headers["x-tiergate-route"] = f"{self.target.deployment.tier}/{self.target.deployment.name}"
        if self.route_reason:
            headers["x-tiergate-route-reason"] = self.route_reason
        return headers


class RelayResponse(StreamingResponse):
    """A StreamingResponse that always closes its iterator and then runs `on_close`, also when the
    client disconnects, so the upstream call is cancelled and the ledger row written at once rather
    than at GC time. `on_close` covers a client gone before the first byte: an iterator that never
    started does not run its `finally`."""

    def __init__(self, content: Any, *, on_close: Callable[[], Any] | None = None, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.on_close = on_close

    async def stream_response(self, send) -> None:
        try:
            await super().stream_response(send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
                if self.on_close is not None:
                    await self.on_close()


def _request_id(request: Request) -> str:
    supplied = request.headers.get("x-request-id", "")
    if 8 <= len(supplied) <= 64 and supplied.replace("-", "").replace("_", "").isalnum():
        return supplied
    return uuid.uuid4().hex


def _tags(request: Request) -> list[str]:
    raw = request.headers.get("x-tiergate-tags")
    return [tag.strip() for tag in raw.split(",") if tag.strip()] if raw else []


def _approx_prompt_tokens(body: dict[str, Any]) -> int:
    """A cheap upper-end estimate (4 bytes per token) for context-window checks; exact counting of
    long prompts would cost milliseconds on the request path."""
    return len(orjson.dumps(body.get("messages") or body.get("prompt") or body.get("input") or "")) // 4


def _bearer_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


class Observer(Protocol):
    """Sees every successful upstream answer (never cache replays), after its ledger row is recorded.

    Called on the request path: it must only look and schedule its own work (shadow grading,
    distillation capture), never block or raise."""

    def observe(self, ex: Exchange, body: dict[str, Any], completion: dict[str, Any]) -> None: ...


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        keys: KeyStore,
        limits: Limits,
        upstreams: UpstreamRegistry,
        ledger: LedgerWriter,
        policies: PolicyReloader,
        scorer: Scorer,
        cache: ResponseCache | None,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.limits = limits
        self.upstreams = upstreams
        self.ledger = ledger
        self.policies = policies
        self.scorer = scorer
        self.cache = cache
        self.observers = list(observers)
        # Requests without a policy: exact-match caching only, until the verifier meets its precision target.
        self.default_cache_settings = CacheSettings(enabled=settings.response_cache, semantic=False)
        self._background: set[asyncio.Task] = set()
        self.baseline = upstreams.get(settings.baseline_deployment) if settings.baseline_deployment else None

    # --- the request path -----------------------------------------------------------------

    def begin(self, request: Request, endpoint: str) -> Exchange:
        return Exchange(
            request_id=_request_id(request),
            endpoint=endpoint,
            started=time.perf_counter(),
            traceparent=request.headers.get("traceparent"),
        )

    def authenticate(self, request: Request, ex: Exchange) -> KeyInfo:
        key = self.keys.authenticate(_bearer_key(request))
        if key is None:
            metrics.AUTH_FAILURES.inc()
            raise unauthorized()
        ex.key = key
        return key

    async def handle(self, request: Request, ex: Exchange, body: dict[str, Any]) -> Response:
        """Serve an authenticated, validated request; every outcome is ledgered exactly once."""
        try:
            self.resolve(ex, body)
            if ex.endpoint == "chat" and self.cache is not None:
                ex.cache_lookup = await self.cache.lookup(self._cache_scope(ex), body, request.headers)
                ex.cache_outcome = ex.cache_lookup.outcome
                if ex.cache_lookup.response is not None:
                    await self.admit(ex, body, [])  # free, but rate-limited and not past the budget
                    return self.replay(ex, body, ex.cache_lookup.response)
            chain = self.choose(ex, body, _tags(request))
            await self.admit(ex, body, chain)
            if ex.stream:
                return await self.stream(ex, chain, body)
            return await self.complete(ex, chain, body)
        except GatewayError as error:
            self.finish(ex, status=error.status, error_class=error.code or error.type)
            return error.response(ex.headers())

    def resolve(self, ex: Exchange, body: dict[str, Any]) -> None:
        """Which policy (if any) serves this request, and which baseline it is measured against."""
        model = ex.requested_model = body["model"]
        ex.stream = bool(body.get("stream"))
        book = self.policies.book
        caller_policy = book.for_caller(ex.key.team, ex.key.project)
        if model == "auto" or model.startswith("policy/"):
            ex.policy = caller_policy if model == "auto" else book.routers.get(model.removeprefix("policy/"))
            if ex.policy is None:
                raise model_not_found(
                    model, "no routing policy is assigned to this key" if model == "auto" else None
                )
        elif self.upstreams.get(model) is None:
            raise model_not_found(model)
        policy = ex.policy or caller_policy
        if policy is not None and policy.spec.baseline:
            ex.baseline = self.upstreams.get(policy.spec.baseline)
        ex.cache_settings = policy.spec.cache if policy is not None else self.default_cache_settings

    def choose(self, ex: Exchange, body: dict[str, Any], tags: list[str]) -> list[Target]:
        """`auto` and `policy/<name>` are routed by score and policy; a deployment name goes there."""
        router = ex.policy
        if router is None:
            ex.route_reason = "explicit deployment"
            metrics.ROUTE_DECISIONS.labels("", ex.requested_model, "explicit").inc()
            return self.upstreams.chain(ex.requested_model)
        # The final turn's embedding, when the semantic cache already computed it: scored once per request.
        embedding = ex.cache_lookup.embedding if ex.cache_lookup is not None else None
        ex.score = self.scorer.score(*self._conversation(ex.endpoint, body), embedding)
        try:
            decision = router.decide(
                ex.score,
                tags=tags,
                prompt_tokens=_approx_prompt_tokens(body),
                saturated=self._saturation(router),
            )
        except PolicyError as exc:
            raise invalid_request(str(exc), param="model", code="no_route") from None
        ex.route_reason = decision.reason
        metrics.ROUTE_DECISIONS.labels(router.spec.name, decision.chain[0], decision.rule).inc()
        return [self.upstreams.targets[name] for name in decision.chain]

    async def admit(self, ex: Exchange, body: dict[str, Any], chain: list[Target]) -> None:
        """Budgets and rate limits (429), now that the price is known: reserves the request's estimated
        cost on the dearest target of `chain`; `finish` settles it with the actual cost."""
        ex.admission = await self.limits.admit(ex.key, ex.endpoint, body, chain)

    def _cache_scope(self, ex: Exchange) -> CacheScope:
        """Entries are partitioned by tenant (team and project) and by policy or deployment name."""
        tenant = f"{ex.key.team}/{ex.key.project or '*'}"
        return CacheScope(tenant, ex.policy.spec.name if ex.policy else ex.requested_model, ex.cache_settings)

    def replay(self, ex: Exchange, body: dict[str, Any], cached: dict[str, Any]) -> Response:
        """Answer from the cache: the stored completion as JSON or as a proper SSE stream; the ledger
        row has zero cost and the baseline cost of the tokens the answer took (the saving)."""
        lookup = ex.cache_lookup
        ex.route_reason = f"cache {lookup.outcome} hit"
        if lookup.outcome == "semantic":
            ex.route_reason += f" (similarity {lookup.similarity:.3f}, verifier {lookup.verifier_score:.3f})"
        ex.baseline = ex.baseline or self.baseline or self.upstreams.get(ex.requested_model)
        ex.usage = from_openai(cached.get("usage")) or Usage()
        self.finish(ex, status=200)
        headers = ex.headers()
        headers["x-tiergate-overhead-ms"] = f"{self._overhead_s(ex) * 1000:.3f}"
        if not ex.stream:
            headers["x-tiergate-cost-usd"] = micros_to_usd(0)
            return Response(orjson.dumps(cached), media_type="application/json", headers=headers)

        async def frames() -> AsyncIterator[bytes]:
            for frame in sse_frames(cached, include_usage=wants_usage(body)):
                yield frame

        headers["cache-control"] = "no-cache"
        return StreamingResponse(frames(), media_type="text/event-stream", headers=headers)

    def _answered(self, ex: Exchange, body: dict[str, Any], completion: dict[str, Any]) -> None:
        """A successful upstream answer: file it in the cache off the request path, show it to observers."""
        if self.cache is not None and ex.cache_lookup is not None:
            task = asyncio.create_task(self.cache.store(ex.cache_lookup, completion))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        for observer in self.observers:
            try:
                observer.observe(ex, body, completion)
            except Exception:  # an observer's bug must not fail a request that was answered
                log.exception("observer %r failed on request %s", observer, ex.request_id)

    async def settle(self, timeout_s: float = 5.0) -> None:
        """Wait, at most `timeout_s`, for the background work started so far (cache stores)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout_s)

    def _saturation(self, router: Router) -> Callable[[str], bool]:
        """The policy's spill-over limits applied to the self-hosted replicas' live load."""
        spill = router.spec.spillover
        limits = LoadLimits(
            max_waiting=spill.max_waiting,
            max_kv_cache_usage=spill.max_kv_cache_usage,
            max_ttft_p95_s=spill.max_ttft_p95_ms / 1000 if spill.max_ttft_p95_ms else None,
        )
        return lambda name: self.upstreams.saturated(name, limits)

    def _for_target(self, ex: Exchange, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        """The body as this deployment should get it (per target: a fallback to another provider
        gets its own): the API surface's adaptation, then the provider's prompt-caching transforms."""
        if ex.endpoint != "chat":
            return body
        deployment = target.deployment
        if ex.adapt_body is not None:
            body = ex.adapt_body(body, deployment.provider, deployment.model)
        settings = ex.cache_settings.prompt  # the caller's policy's, resolved once in `resolve`
        return caching.apply(
            deployment.provider, deployment.model, body, tenant=ex.key.team, settings=settings
        )

    @staticmethod
    def _conversation(
        endpoint: str, body: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        if endpoint == "chat":
            return body["messages"], body.get("tools")
        text = body.get("prompt") if endpoint == "completions" else body.get("input")
        return [{"role": "user", "content": text if isinstance(text, str) else str(text)}], None

    async def complete(self, ex: Exchange, chain: list[Target], body: dict[str, Any]) -> Response:
        upstream_started = time.perf_counter()
        try:
            response, attempts = await self.upstreams.call(
                chain, lambda t: t.upstream.complete(ex.endpoint, self._for_target(ex, t, body))
            )
        except UpstreamError as exc:
            raise self._upstream_failed(ex, chain, exc, upstream_started) from exc
        ex.upstream_s = time.perf_counter() - upstream_started
        ex.target, ex.attempts = attempts.target, attempts.count
        if attempts.fell_back:
            ex.route_reason = f"{ex.route_reason}; fallback from {chain[0].deployment.name}"
        ex.usage = response.usage or self._estimate_usage(ex, body, response)
        self.finish(ex, status=200)
        self._answered(ex, body, response.data)
        headers = ex.headers()
        headers["x-tiergate-cost-usd"] = micros_to_usd(ex.cost_micros)
        headers["x-tiergate-overhead-ms"] = f"{self._overhead_s(ex) * 1000:.3f}"
        return Response(response.body, media_type="application/json", headers=headers)

    async def stream(self, ex: Exchange, chain: list[Target], body: dict[str, Any]) -> Response:
        client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        upstream_started = time.perf_counter()
        try:
            upstream, attempts = await self.upstreams.call(
                chain,
                lambda t: t.upstream.stream(ex.endpoint, self._for_target(ex, t, body), client_wants_usage),
            )
        except UpstreamError as exc:
            raise self._upstream_failed(ex, chain, exc, upstream_started) from exc
        ex.target, ex.attempts = attempts.target, attempts.count
        if attempts.fell_back:
            ex.route_reason = f"{ex.route_reason}; fallback from {chain[0].deployment.name}"
        headers = ex.headers()
        headers["x-tiergate-overhead-ms"] = f"{(upstream_started - ex.started) * 1000:.3f}"
        headers["cache-control"] = "no-cache"
        ended = False

        async def end(completed: bool) -> None:
            """Close the upstream, then the ledger row with what was relayed; runs once, from whichever
            comes first: the relay's end or the response's close (client gone before the first byte)."""
            nonlocal ended
            if ended:
                return
            ended = True
            await upstream.aclose()
            ex.upstream_s = time.perf_counter() - upstream_started
            if upstream.first_token_at is not None:
                ex.ttft_s = upstream.first_token_at - ex.started
            accumulated = upstream.accumulator
            ex.usage = from_openai(accumulated.usage) or self._estimate_usage(
                ex, body, None, accumulated.text
            )
            error_class = upstream.error_class or (None if completed else "client_disconnected")
            self.finish(ex, status=200, error_class=error_class)
            if error_class is None:
                self._answered(ex, body, accumulated.completion())

        return RelayResponse(
            self._relay(upstream, end),
            media_type="text/event-stream",
            headers=headers,
            on_close=lambda: end(False),
        )

    @staticmethod
    async def _relay(upstream: UpstreamStream, end: Callable[[bool], Any]) -> AsyncIterator[bytes]:
        completed = False
        try:
            async for chunk in upstream.frames:
                yield chunk
            completed = upstream.error_class is None
        finally:
            await end(completed)

    # --- bookkeeping ----------------------------------------------------------------------

    def _upstream_failed(
        self, ex: Exchange, chain: list[Target], exc: UpstreamError, upstream_started: float
    ) -> GatewayError:
        ex.upstream_s = time.perf_counter() - upstream_started
        ex.target, ex.attempts = chain[0], exc.attempts
        error = exc.to_client_error(chain[0].deployment.name)
        error.code = error.code or exc.error_class
        return error

    def _estimate_usage(
        self, ex: Exchange, body: dict[str, Any], response: UpstreamResponse | None, text: str | None = None
    ) -> Usage:
        """Count tokens ourselves when the upstream reported none (flagged as estimated)."""
        model = ex.target.deployment.model if ex.target else None
        if ex.endpoint == "chat":
            prompt = count_messages(body.get("messages") or [], model)
        else:
            source = body.get("prompt") if ex.endpoint == "completions" else body.get("input")
            prompt = count_text(source if isinstance(source, str) else str(source or ""), model)
        if text is None and response is not None:
            text = "".join(
                (c.get("message") or {}).get("content") or c.get("text") or ""
                for c in response.data.get("choices") or []
            )
        return Usage(input_uncached=prompt, output=count_text(text or "", model), estimated=True)

    def _overhead_s(self, ex: Exchange) -> float:
        return max(time.perf_counter() - ex.started - ex.upstream_s, 0.0)

    def finish(self, ex: Exchange, *, status: int, error_class: str | None = None) -> None:
        """Price the request, record its ledger row and metrics. Called exactly once per request."""
        usage = ex.usage or Usage()
        target = ex.target
        price = target.current_price() if target else None
        ex.cost_micros = price.cost_micros(usage) if price else 0
        baseline = ex.baseline or self.baseline or target
        ex.baseline_micros = baseline.price.list_cost_micros(usage) if baseline else 0
        overhead_s = self._overhead_s(ex)
        key = ex.key
        if key is not None:
            self.limits.settle(key, ex.admission, ex.cost_micros)
        deployment = target.deployment if target else None
        columns = token_columns(usage)
        self.ledger.record(
            ledger_row(
                id=ex.request_id,
                created_at=datetime.now(UTC),
                key_id=key.id if key else None,
                team=key.team if key else None,
                project=key.project if key else None,
                endpoint=ex.endpoint,
                requested_model=ex.requested_model,
                deployment=deployment.name if deployment else None,
                tier=deployment.tier.value if deployment else None,
                provider=deployment.provider if deployment else None,
                policy=ex.policy.spec.name if ex.policy else None,
                policy_version=ex.policy.version if ex.policy else None,
                route_reason=ex.route_reason,
                complexity_score=ex.score,
                status_code=status,
                error_class=error_class,
                stream=ex.stream,
                attempts=ex.attempts,
                **columns,
                cost_micros=ex.cost_micros,
                baseline_cost_micros=ex.baseline_micros,
                baseline_deployment=baseline.deployment.name if baseline else None,
                latency_ms=(time.perf_counter() - ex.started) * 1000,
                ttft_ms=ex.ttft_s * 1000 if ex.ttft_s is not None else None,
                overhead_ms=overhead_s * 1000,
                cache_outcome=ex.cache_outcome,
            )
        )
        name = deployment.name if deployment else ""
        tier = deployment.tier.value if deployment else ""
        metrics.REQUESTS.labels(ex.endpoint, name, tier, str(status), ex.cache_outcome).inc()
        metrics.OVERHEAD.observe(overhead_s)
        if deployment and usage.input_total + usage.output:
            metrics.TOKENS.labels(name, "input_uncached").inc(usage.input_uncached)
            metrics.TOKENS.labels(name, "input_cache_read").inc(usage.input_cache_read)
            metrics.TOKENS.labels(name, "input_cache_write").inc(usage.input_cache_write)
            metrics.TOKENS.labels(name, "output").inc(usage.output)
            metrics.UPSTREAM_LATENCY.labels(name).observe(ex.upstream_s)
        team = key.team if key else ""
        metrics.COST.labels(team, tier).inc(ex.cost_micros / 1e6)
        metrics.BASELINE_COST.labels(team).inc(ex.baseline_micros / 1e6)
        for source, micros in attribute_savings(
            ex.cost_micros, ex.baseline_micros, ex.cache_outcome, tier or None, price, columns
        ).items():
            if micros:
                metrics.SAVINGS.labels(team, source, "saved" if micros > 0 else "lost").inc(abs(micros) / 1e6)
        if tracing.enabled():
            tracing.record(
                tracing.RequestTrace(
                    request_id=ex.request_id,
                    endpoint=ex.endpoint,
                    requested_model=ex.requested_model,
                    status=status,
                    duration_s=time.perf_counter() - ex.started,
                    upstream_s=ex.upstream_s,
                    deployment=name or None,
                    provider=deployment.provider if deployment else None,
                    upstream_model=deployment.model if deployment else None,
                    tier=tier or None,
                    stream=ex.stream,
                    ttft_s=ex.ttft_s,
                    input_tokens=usage.input_total,
                    cache_read_tokens=usage.input_cache_read,
                    cache_write_tokens=usage.input_cache_write,
                    output_tokens=usage.output,
                    reasoning_tokens=usage.reasoning,
                    error_class=error_class,
                    cache_outcome=ex.cache_outcome,
                    cost_micros=ex.cost_micros,
                    baseline_cost_micros=ex.baseline_micros,
                    route_reason=ex.route_reason,
                    complexity_score=ex.score,
                    policy=ex.policy.spec.name if ex.policy else None,
                    team=team or None,
                    project=key.project if key else None,
                    traceparent=ex.traceparent,
                )
            )
