"""The app factory: builds every component from Settings and wires them at start-up."""

from __future__ import annotations

import asyncio
import gc
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from gateway.api.admin.policies import router as policy_admin_router
from gateway.api.admin.reports import router as reports_admin_router
from gateway.api.admin.routes import router as admin_router
from gateway.api.admin.ui import router as console_router
from gateway.api.anthropic.routes import messages as anthropic_messages
from gateway.api.anthropic.routes import router as anthropic_router
from gateway.api.fastpath import FastPath
from gateway.api.openai.routes import HOT_ROUTES
from gateway.api.openai.routes import router as openai_router
from gateway.auth.keys import KeyStore
from gateway.auth.limits import create_limits
from gateway.cache import ResponseCache
from gateway.cache.admin_api import cache_admin_router
from gateway.db.engine import create_engine, migrate
from gateway.distill.capture import DistillCapture
from gateway.distill.redact import load_hook
from gateway.errors import GatewayError
from gateway.learning.feedback import router as feedback_router
from gateway.learning.shadow import ShadowSampler
from gateway.ledger.spool import Spool
from gateway.ledger.writer import LedgerWriter
from gateway.observability import logging as log_hygiene
from gateway.observability import metrics, tracing
from gateway.pipeline import Pipeline
from gateway.routing.scorer import default_scorer
from gateway.routing.store import PolicyReloader, PolicyStore
from gateway.settings import Settings
from gateway.upstreams.registry import UpstreamRegistry

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    tracing.configure()  # off unless OTEL_TRACES_EXPORTER says otlp or console
    log_hygiene.install(settings.log_prompts)  # no prompts from libraries' debug logs unless allowed

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.auto_migrate:
            await asyncio.to_thread(migrate, settings.database_url)
        engine = create_engine(settings.database_url)
        keys = KeyStore(engine, settings.key_refresh_interval_s)
        limits = create_limits(settings.redis_url)  # shared by the replicas through Redis when set
        spool = Spool(settings.spool_dir)
        ledger = LedgerWriter(
            engine,
            spool,
            flush_interval_s=settings.ledger_flush_interval_s,
            batch_size=settings.ledger_batch_size,
        )
        upstreams = UpstreamRegistry(settings)
        policies = PolicyReloader(PolicyStore(engine, upstreams.facts), settings.policy_refresh_interval_s)
        await keys.start()
        await policies.start()
        await upstreams.start()
        await limits.start(engine)
        metrics.LEDGER_SPOOL_PENDING.set_function(spool.pending_rows)
        ledger.start()
        app.state.engine = engine
        app.state.keys = keys
        app.state.ledger = ledger
        app.state.policies = policies
        cache = ResponseCache.from_url(settings.redis_url)
        app.state.response_cache = cache
        # captures only what policies opt in to
        distill = DistillCapture(engine, policies, redaction_hook=load_hook(settings.distill_redaction_hook))
        distill.start()
        app.state.distill = distill
        shadow = ShadowSampler(engine, upstreams, ledger)  # idle unless a policy enables sampling
        await shadow.start()
        app.state.shadow_sampler = shadow
        app.state.pipeline = Pipeline(
            settings,
            keys,
            limits,
            upstreams,
            ledger,
            policies,
            default_scorer(),
            cache,
            observers=[distill, shadow],
        )
        # Everything loaded so far (litellm, pydantic schemas, models) lives for the whole process:
        # moving it out of the collector's sight keeps full collections from pausing requests.
        gc.freeze()
        log.info(
            "tiergate ready: %d deployments, database %s",
            len(upstreams.targets),
            engine.url.get_backend_name(),
        )
        try:
            yield
        finally:
            await app.state.pipeline.settle()  # cache stores of the last answers, before the cache closes
            await shadow.close()  # measurements still queued are dropped (their calls were never made)
            await ledger.close()  # drains pending rows to the database or the spool
            await limits.close()  # after the ledger: its last rows settle their reservations
            await distill.close()  # writes the samples still queued
            await keys.close()
            await policies.close()
            await upstreams.aclose()
            await cache.close()
            await engine.dispose()

    app = FastAPI(title="Tiergate", version="0.1.0", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.settings = settings
    app.include_router(openai_router)
    app.include_router(anthropic_router)
    app.include_router(feedback_router)
    app.add_middleware(FastPath, routes={**HOT_ROUTES, "/v1/messages": anthropic_messages})
    app.include_router(admin_router)
    app.include_router(policy_admin_router)
    app.include_router(reports_admin_router)
    app.include_router(console_router)
    app.include_router(cache_admin_router)

    @app.get("/health", summary="Liveness and ledger status")
    async def health(request: Request) -> dict:
        ledger: LedgerWriter = request.app.state.ledger
        return {"status": "ok", "ledger_spool_pending_rows": ledger.spool.pending_rows()}

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, exc: GatewayError) -> Response:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def request_validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        return GatewayError(
            400, f"{first.get('msg')} at '{param}'.", param=param, code="invalid_value"
        ).response()

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(
            {"error": {"message": str(exc.detail), "type": kind, "param": None, "code": None}},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log_hygiene.log_unexpected(log, "unhandled error on %s %s", request.method, request.url.path, exc=exc)
        return GatewayError(
            500, "Internal gateway error.", type="api_error", code="internal_error"
        ).response()

    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-worker serving: settings from $TIERGATE_CONFIG."""
    from gateway.settings import load_settings

    return create_app(load_settings())
