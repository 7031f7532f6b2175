"""`POST /v1/feedback`: a caller's verdict on one of its answered requests, stored beside the ledger.

Who may rate a request: the admin key (any request), or a virtual key of the request's team (and,
for a key bound to a project, of that project). Any other request id, known or not, is a 404, so a
tenant cannot probe for another tenant's ids. A request whose ledger row is still in the writer's
batch is found too: on a miss the ledger is flushed once and looked up again.

Body: `request_id`, and exactly one of `score` (a number in [0, 1]) or `thumbs` ("up" | "down",
stored as score 1 / 0), plus an optional `comment` (at most 2,000 characters).
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import JSONResponse

from gateway.api.body import read_json, validation_error
from gateway.api.openapi import ErrorResponse
from gateway.db.models import Feedback, LedgerEntry
from gateway.errors import GatewayError, unauthorized
from gateway.pipeline import _bearer_key

log = logging.getLogger(__name__)
router = APIRouter(tags=["feedback"])

ADMIN = "admin"


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=64, description="The x-request-id of the answer.")
    score: float | None = Field(default=None, ge=0, le=1, description="Quality in [0, 1].")
    thumbs: Literal["up", "down"] | None = None
    comment: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _one_verdict(self) -> FeedbackRequest:
        if (self.score is None) == (self.thumbs is None):
            raise ValueError("give exactly one of score or thumbs")
        return self

    @property
    def normalised_score(self) -> float:
        if self.thumbs is not None:
            return 1.0 if self.thumbs == "up" else 0.0
        assert self.score is not None
        return self.score


def _caller(request: Request) -> tuple[str, str | None, str | None]:
    """(submitted_by, team, project): 'admin' with no tenant limits, or the key's id and tenant."""
    presented = _bearer_key(request) or ""
    admin_key = request.app.state.settings.admin_key
    if admin_key is not None and hmac.compare_digest(
        presented.encode(), admin_key.get_secret_value().encode()
    ):
        return ADMIN, None, None
    key = request.app.state.keys.authenticate(presented or None)
    if key is None:
        raise unauthorized()
    return key.id, key.team, key.project


def _unknown(request_id: str) -> GatewayError:
    return GatewayError(
        404,
        f"No request {request_id!r} that this key may rate.",
        param="request_id",
        code="request_not_found",
    )


def _unavailable() -> GatewayError:
    return GatewayError(
        503, "Feedback cannot be stored right now; retry later.", type="api_error", code="store_unavailable"
    )


async def _ledger_row(request: Request, request_id: str):
    query = select(LedgerEntry.team, LedgerEntry.project, LedgerEntry.cost_class).where(
        LedgerEntry.id == request_id
    )
    engine = request.app.state.engine
    for attempt in range(2):
        async with engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is not None or attempt:
            return row
        await request.app.state.ledger.flush()  # the row may still be in the writer's batch
    return None


class FeedbackRecord(BaseModel):
    id: int
    object: Literal["feedback"]
    request_id: str
    score: float
    thumbs: Literal["up", "down"] | None
    comment: str | None
    created_at: str


def _variant(verdict: str, schema: dict) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["request_id", verdict],
        "properties": {
            "request_id": {"type": "string", "minLength": 1, "maxLength": 64},
            verdict: schema,
            "comment": {"anyOf": [{"type": "string", "maxLength": 2000}, {"type": "null"}]},
        },
    }


#: What `FeedbackRequest` accepts, as a schema can say it: exactly one of score or thumbs.
_REQUEST_SCHEMA = {
    "oneOf": [
        _variant("score", {"type": "number", "minimum": 0, "maximum": 1}),
        _variant("thumbs", {"enum": ["up", "down"]}),
    ]
}

_ERRORS = {
    400: "Invalid body: malformed JSON, not exactly one of score / thumbs, score outside [0, 1].",
    401: "Missing, invalid or revoked API key.",
    404: "No such request that this key may rate (unknown ids and other tenants' ids alike).",
    413: "The request body exceeds `max_body_bytes`.",
    503: "The feedback store is unavailable; retry later.",
}


@router.post(
    "/v1/feedback",
    summary="Rate an answered request (score in [0, 1] or thumbs up/down)",
    status_code=201,
    responses={
        201: {"model": FeedbackRecord, "description": "Stored."},
        **{status: {"model": ErrorResponse, "description": why} for status, why in _ERRORS.items()},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _REQUEST_SCHEMA,
                    "examples": {
                        "thumbs": {"value": {"request_id": "3f2a9c1e8b7d4a60", "thumbs": "down"}},
                        "score": {"value": {"request_id": "3f2a9c1e8b7d4a60", "score": 0.8, "comment": "ok"}},
                    },
                }
            },
        }
    },
)
async def submit_feedback(request: Request) -> JSONResponse:
    submitted_by, team, project = _caller(request)
    body = await read_json(request, request.app.state.settings.max_body_bytes)
    try:
        verdict = FeedbackRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    try:
        row = await _ledger_row(request, verdict.request_id)
    except SQLAlchemyError:
        log.exception("feedback: could not look up %s", verdict.request_id)
        raise _unavailable() from None
    if (
        row is None
        or row.cost_class != "request"
        or (submitted_by != ADMIN and (row.team != team or (project is not None and row.project != project)))
    ):
        raise _unknown(verdict.request_id)
    record = {
        "request_id": verdict.request_id,
        "created_at": datetime.now(UTC),
        "team": row.team,
        "submitted_by": submitted_by,
        "score": verdict.normalised_score,
        "thumbs": verdict.thumbs,
        "comment": verdict.comment,
    }
    try:
        async with request.app.state.engine.begin() as conn:
            new_id = (await conn.execute(insert(Feedback).returning(Feedback.id), [record])).scalar_one()
    except SQLAlchemyError:
        log.exception("feedback: could not store a verdict on %s", verdict.request_id)
        raise _unavailable() from None
    return JSONResponse(
        {
            "id": new_id,
            "object": "feedback",
            "request_id": verdict.request_id,
            "score": record["score"],
            "thumbs": verdict.thumbs,
            "comment": verdict.comment,
            "created_at": record["created_at"].isoformat(),
        },
        status_code=201,
    )


async def feedback_export(
    engine, since: datetime | None = None, until: datetime | None = None, team: str | None = None
) -> list[dict]:
    """Every feedback row with its request's ledger facts (for exports), oldest first."""
    e = LedgerEntry
    query = (
        select(
            Feedback.id,
            Feedback.created_at,
            Feedback.request_id,
            Feedback.submitted_by,
            Feedback.score,
            Feedback.thumbs,
            Feedback.comment,
            e.team,
            e.project,
            e.policy,
            e.policy_version,
            e.tier,
            e.deployment,
            e.complexity_score,
            e.cost_micros,
            e.created_at.label("request_created_at"),
        )
        .join(e, e.id == Feedback.request_id)
        .order_by(Feedback.created_at, Feedback.id)
    )
    if since is not None:
        query = query.where(Feedback.created_at >= since)
    if until is not None:
        query = query.where(Feedback.created_at < until)
    if team is not None:
        query = query.where(e.team == team)
    async with engine.connect() as conn:
        rows = [dict(row) for row in (await conn.execute(query)).mappings()]
    for row in rows:
        for name in ("created_at", "request_created_at"):
            row[name] = row[name].isoformat()
    return rows
