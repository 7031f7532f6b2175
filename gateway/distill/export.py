"""`gateway distill export`: stored samples to an OpenAI fine-tuning JSONL file or a Hugging Face
`datasets` folder, filtered and deduplicated.

Filters: team, since, tier, and quality: a sample's feedback is the mean `feedback.score` of its
request, its shadow grade the mean `shadow_grades.grade` (both in [0, 1]). With `min_feedback` or
`min_shadow_grade` set, samples without feedback (or without a grade) are left out.

Deduplication: one sample per normalised prompt hash, the best one (highest shadow grade, then
feedback, then the newest).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from gateway.db.models import DistillSample, Feedback, ShadowGrade

Format = Literal["openai", "hf"]


@dataclass
class Filters:
    team: str | None = None
    since: datetime | None = None
    tiers: list[str] = field(default_factory=list)
    min_feedback: float | None = None
    min_shadow_grade: float | None = None


@dataclass
class ExportResult:
    written: int
    duplicates: int
    path: Path


def _query(filters: Filters):
    feedback = (
        select(Feedback.request_id, func.avg(Feedback.score).label("score"))
        .group_by(Feedback.request_id)
        .subquery()
    )
    grades = (
        select(ShadowGrade.request_id, func.avg(ShadowGrade.grade).label("grade"))
        .group_by(ShadowGrade.request_id)
        .subquery()
    )
    query = (
        select(DistillSample, feedback.c.score, grades.c.grade)
        .outerjoin(feedback, feedback.c.request_id == DistillSample.id)
        .outerjoin(grades, grades.c.request_id == DistillSample.id)
        .order_by(DistillSample.created_at.desc(), DistillSample.id)
    )
    if filters.team:
        query = query.where(DistillSample.team == filters.team)
    if filters.since:
        query = query.where(DistillSample.created_at >= filters.since)
    if filters.tiers:
        query = query.where(DistillSample.tier.in_(filters.tiers))
    if filters.min_feedback is not None:
        query = query.where(feedback.c.score >= filters.min_feedback)
    if filters.min_shadow_grade is not None:
        query = query.where(grades.c.grade >= filters.min_shadow_grade)
    return query


def select_samples(engine: Engine, filters: Filters) -> tuple[list[dict[str, Any]], int]:
    """The deduplicated samples matching `filters`, newest first, and how many duplicates were dropped."""
    best: dict[str, tuple[tuple, dict[str, Any]]] = {}
    seen = 0
    with Session(engine) as session:
        for sample, score, grade in session.execute(_query(filters)).yield_per(500):
            seen += 1
            row = {
                "id": sample.id,
                "created_at": sample.created_at.replace(tzinfo=sample.created_at.tzinfo or UTC),
                "team": sample.team,
                "project": sample.project,
                "deployment": sample.deployment,
                "tier": sample.tier,
                "model": sample.model,
                "messages": sample.messages,
                "completion": sample.completion,
                "tools": sample.tools,
                "feedback": score,
                "shadow_grade": grade,
            }
            rank = (grade if grade is not None else -1.0, score if score is not None else -1.0)
            kept = best.get(sample.prompt_hash)
            if kept is None or rank > kept[0]:  # ties keep the first seen: the newest
                best[sample.prompt_hash] = (rank, row)
    rows = sorted((row for _, row in best.values()), key=lambda r: (r["created_at"], r["id"]), reverse=True)
    return rows, seen - len(rows)


def openai_record(row: dict[str, Any]) -> dict[str, Any]:
    """One line of OpenAI's chat fine-tuning format: the conversation ending in the answer to learn."""
    record: dict[str, Any] = {"messages": [*row["messages"], row["completion"]]}
    if row["tools"]:
        record["tools"] = row["tools"]
    return record


def _text(content: Any) -> str | None:
    if isinstance(content, list):
        return "\n".join(part["text"] for part in content if isinstance(part, dict) and "text" in part)
    return content


def hf_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row of the Hugging Face dataset: `messages` (content as text) plus provenance and grades."""
    messages = [
        {
            "role": m["role"],
            "content": _text(m.get("content")),
            "tool_calls": m.get("tool_calls"),
            "tool_call_id": m.get("tool_call_id"),
            "name": m.get("name"),
        }
        for m in openai_record(row)["messages"]
    ]
    return {
        "id": row["id"],
        "messages": messages,
        "tools": orjson.dumps(row["tools"]).decode() if row["tools"] else None,
        "team": row["team"],
        "project": row["project"],
        "deployment": row["deployment"],
        "tier": row["tier"],
        "model": row["model"],
        "created_at": row["created_at"].isoformat(),
        "feedback": row["feedback"],
        "shadow_grade": row["shadow_grade"],
    }


def hf_features():
    from datasets import Features, List, Value

    call = {
        "id": Value("string"),
        "type": Value("string"),
        "function": {"name": Value("string"), "arguments": Value("string")},
    }
    message = {
        "role": Value("string"),
        "content": Value("string"),
        "tool_calls": List(call),
        "tool_call_id": Value("string"),
        "name": Value("string"),
    }
    text = ("id", "tools", "team", "project", "deployment", "tier", "model", "created_at")
    return Features(
        {
            **{name: Value("string") for name in text},
            "messages": List(message),
            "feedback": Value("float64"),
            "shadow_grade": Value("float64"),
        }
    )


def _write_openai(rows: list[dict[str, Any]], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("wb") as out:
        for row in rows:
            out.write(orjson.dumps(openai_record(row)) + b"\n")


def _write_hf(rows: list[dict[str, Any]], output: Path) -> None:
    from datasets import Dataset

    dataset = Dataset.from_list([hf_record(row) for row in rows], features=hf_features())
    dataset.save_to_disk(str(output))


def export(engine: Engine, fmt: Format, output: Path, filters: Filters) -> ExportResult:
    rows, duplicates = select_samples(engine, filters)
    if not rows:  # nothing to train on; `datasets` cannot read back an empty saved dataset either
        return ExportResult(written=0, duplicates=duplicates, path=output)
    (_write_openai if fmt == "openai" else _write_hf)(rows, output)
    return ExportResult(written=len(rows), duplicates=duplicates, path=output)
