"""Per-policy cache settings, the request's scope, and the rules for reading and storing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

BYPASS_HEADER = "x-tiergate-cache-bypass"
STORABLE_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "function_call"})


class CacheSettings(BaseModel):
    """What a routing policy says about caching (part of the admin-edited policy)."""

    enabled: bool = True
    ttl_seconds: int = Field(3600, gt=0)
    semantic: bool = True
    # Verifier probability needed to serve a semantic hit; None = the shipped operating point.
    semantic_threshold: float | None = Field(None, ge=0.0, le=1.01)
    # Semantic hits are refused above this explicit `temperature` (unset counts as allowed).
    max_semantic_temperature: float = 1.0
    allow_semantic_n_gt_1: bool = False
    candidates: int = Field(3, ge=1, le=50)


@dataclass(frozen=True, slots=True)
class CacheScope:
    """Who is asking (tenant = team/project) and under which policy or model name."""

    tenant: str
    policy: str
    settings: CacheSettings = field(default_factory=CacheSettings)


@dataclass(frozen=True, slots=True)
class Directives:
    read: bool
    store: bool
    reason: str = ""


def header_directives(headers: Mapping[str, str]) -> Directives:
    """Honour ``Cache-Control: no-cache`` (do not read), ``no-store`` (neither) and the bypass header."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if lowered.get(BYPASS_HEADER, "").strip().lower() in {"1", "true", "yes"}:
        return Directives(read=False, store=False, reason="bypass-header")
    tokens = {t.strip().lower() for t in lowered.get("cache-control", "").split(",")}
    if "no-store" in tokens:
        return Directives(read=False, store=False, reason="no-store")
    if "no-cache" in tokens:
        return Directives(read=False, store=True, reason="no-cache")
    return Directives(read=True, store=True)


def semantic_refusal(normalised: dict[str, Any], settings: CacheSettings) -> str | None:
    """Why this request may not be served a semantic hit, or None when it may."""
    if not settings.semantic:
        return "semantic-disabled"
    temperature = normalised.get("temperature")
    if isinstance(temperature, int | float) and temperature > settings.max_semantic_temperature:
        return "temperature"
    if (normalised.get("n") or 1) > 1 and not settings.allow_semantic_n_gt_1:
        return "n>1"
    messages = normalised.get("messages") or []
    if messages and messages[-1].get("role") in {"tool", "function"}:
        return "tool-results-pending"
    return None


def is_storable(response: Mapping[str, Any], status_code: int = 200) -> bool:
    """Only complete, successful chat completions are cached: never errors or partial answers."""
    if status_code != 200 or "error" in response or response.get("object") != "chat.completion":
        return False
    choices = response.get("choices")
    return bool(choices) and all(c.get("finish_reason") in STORABLE_FINISH_REASONS for c in choices)
