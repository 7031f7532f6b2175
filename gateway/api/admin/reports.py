"""Admin API: cost reports (JSON or CSV) and the FOCUS export. Admin key only."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator, BeforeValidator
from starlette.responses import Response, StreamingResponse

from gateway.api.admin.routes import require_admin
from gateway.api.openapi import ADMIN_ERRORS
from gateway.errors import GatewayError, invalid_request
from gateway.learning.stats import flat_row
from gateway.ledger.focus import COLUMNS, focus_rows
from gateway.ledger.pricing import micros_to_usd
from gateway.ledger.report import DIMENSIONS, ReportError, cost_at_quality, cost_report, key_spend

router = APIRouter(
    prefix="/admin/reports",
    dependencies=[Depends(require_admin)],
    tags=["admin: reports"],
    responses=ADMIN_ERRORS,
)


def _prices(request: Request) -> dict:
    return {name: t.current_price() for name, t in request.app.state.pipeline.upstreams.targets.items()}


def _providers(request: Request) -> dict[str, str]:
    return {d.name: d.provider for d in request.app.state.settings.deployments}


def _bad(exc: ReportError) -> GatewayError:
    return invalid_request(str(exc), param=exc.param, code="invalid_report")


_CSV = {"text/csv": {"schema": {"type": "string"}}}


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_only(value: object) -> object:
    """pydantic also reads numbers as Unix timestamps ('0' is 1970); the API documents ISO 8601."""
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("expected an ISO 8601 date or date-time (YYYY-MM-DD...)")
    return value


def _in_range(value: datetime) -> datetime:
    """Far-off dates overflow once shifted to UTC or rounded to a period (a 500 from `0001-01-01T00:45+19:51`)."""
    try:
        utc = value.astimezone(UTC) if value.tzinfo is not None else value
    except OverflowError:
        raise ValueError("date out of range") from None
    if not 1900 <= utc.year <= 9000:
        raise ValueError("dates must be between the years 1900 and 9000")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_in_range)]
_DIMENSION = f"(?:{'|'.join(DIMENSIONS)})"


class Window:
    """The query parameters every tabular report takes: a time window and JSON or CSV."""

    def __init__(
        self,
        since: IsoDateTime | None = Query(None, description="Start (inclusive), ISO 8601; naive means UTC."),
        until: IsoDateTime | None = Query(None, description="End (exclusive), ISO 8601; naive means UTC."),
        format: Literal["json", "csv"] = "json",
    ) -> None:
        self.since, self.until, self.format = since, until, format

    def respond(self, payload: dict, csv_rows: Callable[[], list[dict]], filename: str) -> Response:
        """`payload` as JSON, or `csv_rows()` (flat dicts) as a CSV attachment named `filename`."""
        if self.format == "json":
            return Response(orjson.dumps(payload), media_type="application/json")
        out = io.StringIO()
        rows = csv_rows()
        if rows:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )


def _filters(**values: str | None) -> dict[str, str]:
    return {name: value for name, value in values.items() if value is not None}


@router.get(
    "/cost",
    summary="Cost per query: actual vs baseline, savings by source, tokens, latency",
    responses={200: {"description": "The report (JSON, or CSV with `format=csv`).", "content": _CSV}},
)
async def cost(
    request: Request,
    window: Annotated[Window, Depends()],
    group_by: str = Query(
        "deployment",
        description=f"Comma-separated, each at most once: {', '.join(DIMENSIONS)}.",
        pattern=f"^{_DIMENSION}(?:,{_DIMENSION})*$",
    ),
    team: str | None = None,
    project: str | None = None,
    policy: str | None = None,
    tier: str | None = None,
    deployment: str | None = None,
) -> Response:
    filters = _filters(team=team, project=project, policy=policy, tier=tier, deployment=deployment)
    try:
        report = await cost_report(
            request.app.state.engine, group_by, window.since, window.until, _prices(request), filters
        )
    except ReportError as exc:
        raise _bad(exc) from None
    return window.respond(report.to_dict(), report.flat_rows, "tiergate-cost-report.csv")


@router.get("/key-spend", summary="Today's and this month's spend (UTC) of each budgeted key")
async def budgeted_key_spend(request: Request) -> dict:
    keys = [
        k
        for k in await request.app.state.keys.list()
        if k.budget_daily_micros is not None or k.budget_monthly_micros is not None
    ]
    spend = await key_spend(request.app.state.engine, [k.id for k in keys])
    data = []
    for k in keys:
        day, month = spend.get(k.id, (0, 0))
        data.append(
            {
                "id": k.id,
                "team": k.team,
                "project": k.project,
                "spend_today_usd": micros_to_usd(day),
                "spend_month_usd": micros_to_usd(month),
                "budget_daily_usd": None
                if k.budget_daily_micros is None
                else micros_to_usd(k.budget_daily_micros),
                "budget_monthly_usd": None
                if k.budget_monthly_micros is None
                else micros_to_usd(k.budget_monthly_micros),
                "daily_used_pct": _used(day, k.budget_daily_micros),
                "monthly_used_pct": _used(month, k.budget_monthly_micros),
            }
        )
    return {"data": data}


def _used(spent: int, budget: int | None) -> str | None:
    if budget is None:
        return None
    if budget == 0:
        return "100.00" if spent else "0.00"
    return f"{Decimal(100 * spent) / Decimal(budget):.2f}"


@router.get(
    "/focus",
    summary="FOCUS 1.2-compatible cost and usage CSV (streamed)",
    response_class=StreamingResponse,
    responses={200: {"description": "FOCUS rows as CSV.", "content": _CSV}},
)
async def focus(
    request: Request,
    since: IsoDateTime | None = None,
    until: IsoDateTime | None = None,
    granularity: Literal["request", "hour", "day"] = "day",
    billing_account: str = Query("tiergate", max_length=128),
) -> Response:
    rows = focus_rows(
        request.app.state.engine,
        since,
        until,
        _prices(request),
        granularity,
        _providers(request),
        billing_account,
    )
    try:
        first = await anext(rows, None)  # validation errors surface before the response starts
    except ReportError as exc:
        raise _bad(exc) from None

    async def body() -> AsyncIterator[str]:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        if first is not None:
            writer.writerow(first)
            async for record in rows:
                writer.writerow(record)
                if out.tell() > 64 * 1024:
                    yield out.getvalue()
                    out.seek(0)
                    out.truncate()
        yield out.getvalue()

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="tiergate-focus-{granularity}.csv"'},
    )


@router.get(
    "/quality",
    summary="Quality retained (shadow grades) and feedback, with 95% intervals",
    responses={200: {"description": "JSON, or CSV with `format=csv`.", "content": _CSV}},
)
async def quality(
    request: Request,
    window: Annotated[Window, Depends()],
    group_by: str = Query(
        "tier", description="Comma-separated: team, project, policy, tier, deployment, task_cluster, day."
    ),
    team: str | None = None,
    tier: str | None = None,
    policy: str | None = None,
) -> Response:
    from gateway.learning.stats import quality_report

    filters = _filters(team=team, tier=tier, policy=policy)
    try:
        report = await quality_report(request.app.state.engine, group_by, window.since, window.until, filters)
    except ReportError as exc:
        raise _bad(exc) from None
    return window.respond(report, lambda: [flat_row(r) for r in report["data"]], "tiergate-quality.csv")


@router.get(
    "/cost-at-quality",
    summary="Cost per query at quality: savings beside quality retained",
    responses={200: {"description": "JSON, or CSV with `format=csv`.", "content": _CSV}},
)
async def at_quality(
    request: Request,
    window: Annotated[Window, Depends()],
    group_by: str = Query(
        "team,tier", description="Comma-separated: team, project, policy, tier, deployment, day."
    ),
    team: str | None = None,
    policy: str | None = None,
) -> Response:
    try:
        report = await cost_at_quality(
            request.app.state.engine, group_by, window.since, window.until, _prices(request),
            _filters(team=team, policy=policy),
        )  # fmt: skip
    except ReportError as exc:
        raise _bad(exc) from None
    return window.respond(
        report, lambda: [flat_row(r) for r in report["data"]], "tiergate-cost-at-quality.csv"
    )


@router.get(
    "/feedback",
    summary="Feedback export: every verdict with its request's ledger facts",
    responses={200: {"description": "JSON, or CSV with `format=csv`.", "content": _CSV}},
)
async def feedback(
    request: Request, window: Annotated[Window, Depends()], team: str | None = None
) -> Response:
    from gateway.learning.feedback import feedback_export

    rows = await feedback_export(request.app.state.engine, window.since, window.until, team)
    return window.respond({"data": rows}, lambda: [flat_row(r) for r in rows], "tiergate-feedback.csv")
