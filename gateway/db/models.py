"""SQLAlchemy 2 tables. Every schema change is an Alembic migration in `migrations/`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class LedgerEntry(Base):
    """One row per request. Money is integer micro-dollars; token classes are disjoint for input."""

    __tablename__ = "ledger_entries"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the request id
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    key_id: Mapped[str | None] = mapped_column(String(32))
    team: Mapped[str | None] = mapped_column(String(128))
    project: Mapped[str | None] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(32))
    requested_model: Mapped[str | None] = mapped_column(String(256))
    deployment: Mapped[str | None] = mapped_column(String(256))
    tier: Mapped[str | None] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(64))
    policy: Mapped[str | None] = mapped_column(String(128))
    policy_version: Mapped[int | None] = mapped_column(Integer)
    route_reason: Mapped[str | None] = mapped_column(String(512))
    complexity_score: Mapped[float | None] = mapped_column(Float)
    status_code: Mapped[int] = mapped_column(Integer)
    error_class: Mapped[str | None] = mapped_column(String(64))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    input_uncached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    input_cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0)
    input_cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0)
    input_cache_write_1h_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    usage_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    baseline_cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    baseline_deployment: Mapped[str | None] = mapped_column(String(256))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    overhead_ms: Mapped[float | None] = mapped_column(Float)
    cache_outcome: Mapped[str] = mapped_column(String(16), default="off")
    # 'request' (a client's request), 'shadow' (the reference answer the quality sampler bought) or
    # 'judge' (the grading call). Only 'request' rows enter the rollup and the savings figures.
    cost_class: Mapped[str] = mapped_column(String(16), server_default="request")
    parent_request_id: Mapped[str | None] = mapped_column(String(64))  # the request a shadow row measured

    __table_args__ = (
        Index("ix_ledger_created_at", "created_at"),
        Index("ix_ledger_team_created_at", "team", "created_at"),
        Index("ix_ledger_key_created_at", "key_id", "created_at"),
        Index("ix_ledger_cost_class_created_at", "cost_class", "created_at"),
    )


class VirtualKey(Base):
    """A tenant's API key. Only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "virtual_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(128))
    team: Mapped[str] = mapped_column(String(128))
    project: Mapped[str | None] = mapped_column(String(128))
    budget_daily_micros: Mapped[int | None] = mapped_column(BigInteger)
    budget_monthly_micros: Mapped[int | None] = mapped_column(BigInteger)
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PolicyVersion(Base):
    """An immutable version of a routing policy document."""

    __tablename__ = "policy_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str | None] = mapped_column(String(512))

    __table_args__ = (UniqueConstraint("name", "version", name="uq_policy_versions_name_version"),)


class Policy(Base):
    """Which version of each policy is live."""

    __tablename__ = "policies"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    active_version: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PolicyAssignment(Base):
    """Which policy a team (and optionally one of its projects) uses; team '*' is the default."""

    __tablename__ = "policy_assignments"

    team: Mapped[str] = mapped_column(String(128), primary_key=True)
    project: Mapped[str] = mapped_column(String(128), primary_key=True)  # '*' = every project
    policy: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PolicyAudit(Base):
    """Every policy change: who, when, what. Its highest id is the change counter replicas poll."""

    __tablename__ = "policy_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    policy: Mapped[str | None] = mapped_column(String(128))
    version: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[dict | None] = mapped_column(JSON)


class Feedback(Base):
    """A caller's (or an admin's) verdict on one answered request. `score` is normalised to [0, 1];
    thumbs up/down are stored as 1/0 with `thumbs` kept as given."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    team: Mapped[str | None] = mapped_column(String(128))  # the request's team, for reports
    submitted_by: Mapped[str] = mapped_column(String(64))  # a virtual key id, or 'admin'
    score: Mapped[float] = mapped_column(Float)
    thumbs: Mapped[str | None] = mapped_column(String(8))
    comment: Mapped[str | None] = mapped_column(String(2000))

    __table_args__ = (
        Index("ix_feedback_request_id", "request_id"),
        Index("ix_feedback_team_created_at", "team", "created_at"),
    )


class ShadowGrade(Base):
    """One shadow measurement: a request served by a cheaper tier, the reference deployment's answer
    to the same prompt, and the grade of the served answer against it (1 = as good as the reference)."""

    __tablename__ = "shadow_grades"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64))  # the measured request
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    team: Mapped[str | None] = mapped_column(String(128))
    project: Mapped[str | None] = mapped_column(String(128))
    policy: Mapped[str | None] = mapped_column(String(128))
    policy_version: Mapped[int | None] = mapped_column(Integer)
    tier: Mapped[str | None] = mapped_column(String(16))
    deployment: Mapped[str | None] = mapped_column(String(256))
    reference_deployment: Mapped[str] = mapped_column(String(256))
    complexity_score: Mapped[float | None] = mapped_column(Float)
    task_cluster: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16))  # 'judge' or 'similarity'
    grade: Mapped[float] = mapped_column(Float)
    passed: Mapped[bool] = mapped_column(Boolean)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)  # shadow + judge calls
    served_cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    reference_cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    detail: Mapped[dict | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_shadow_grades_request_id", "request_id"),
        Index("ix_shadow_grades_team_created_at", "team", "created_at"),
    )


class DistillSample(Base):
    """A captured prompt/response pair for fine-tuning the self-hosted tier (gateway/distill).
    Stored after redaction; `prompt_hash` is the normalised prompt's SHA-256, for deduplication."""

    __tablename__ = "distill_samples"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the request id (ledger row)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    team: Mapped[str] = mapped_column(String(128))
    project: Mapped[str | None] = mapped_column(String(128))
    policy: Mapped[str | None] = mapped_column(String(128))
    deployment: Mapped[str] = mapped_column(String(256))
    tier: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(256))
    prompt_hash: Mapped[str] = mapped_column(String(64))
    messages: Mapped[list] = mapped_column(JSON)  # the prompt: chat messages, tool calls kept
    completion: Mapped[dict] = mapped_column(JSON)  # the assistant message to learn
    tools: Mapped[list | None] = mapped_column(JSON)
    redacted: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        Index("ix_distill_samples_team_created_at", "team", "created_at"),
        Index("ix_distill_samples_prompt_hash", "prompt_hash"),
    )
