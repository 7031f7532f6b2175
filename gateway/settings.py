"""Gateway configuration: one YAML file plus `TIERGATE_*` environment overrides.

Secrets never live in the YAML: deployments name the environment variable that holds their API key,
and the admin key comes from `TIERGATE_ADMIN_KEY`.
"""

from __future__ import annotations

import os
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


class Tier(StrEnum):
    frontier = "frontier"
    economy = "economy"
    selfhost = "selfhost"


class PriceOverride(BaseModel):
    """Prices in USD per million tokens; any field left out falls back to litellm's cost map."""

    model_config = {"extra": "forbid"}

    input_per_mtok: Decimal | None = None
    output_per_mtok: Decimal | None = None
    cache_read_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    cache_write_1h_per_mtok: Decimal | None = None
    reasoning_per_mtok: Decimal | None = None


class Deployment(BaseModel):
    """One callable upstream model: what clients name in `model`, and how to reach it."""

    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, description="Name clients use in `model`.")
    provider: str = Field(
        description="litellm provider: openai, anthropic, gemini, azure, bedrock, vllm, ..."
    )
    model: str = Field(description="Model name at the upstream.")
    api_base: str | None = None
    api_key_env: str | None = Field(default=None, description="Environment variable holding the API key.")
    tier: Tier = Tier.frontier
    price: PriceOverride | None = None
    fallbacks: list[str] = Field(default_factory=list)
    max_input_tokens: int | None = Field(
        default=None, gt=0, description="Context window (default: litellm's map)."
    )
    timeout_s: float = Field(default=600.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    extra_params: dict[str, Any] = Field(
        default_factory=dict,
        description="Provider-specific parameters passed through litellm (e.g. api_version).",
    )

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    @field_validator("name")
    @classmethod
    def _no_reserved_names(cls, name: str) -> str:
        if name == "auto" or name.startswith("policy/"):
            raise ValueError(f"deployment name {name!r} is reserved for routing policies")
        return name


class Settings(BaseSettings):
    """Everything the gateway process needs at start-up."""

    model_config = SettingsConfigDict(env_prefix="TIERGATE_", env_nested_delimiter="__", extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = "sqlite+aiosqlite:///.tiergate/ledger.db"
    auto_migrate: bool = Field(default=True, description="Run Alembic migrations at start-up.")
    redis_url: str | None = Field(
        default=None,
        description="Redis: >= 8 for the response cache (Vector Sets), >= 7 is enough for budgets and rate "
        "limits shared by replicas; unset: both in-process.",
    )
    distill_redaction_hook: str | None = Field(
        default=None,
        description="package.module:function (str -> str) that redacts distillation samples; "
        "unset: the built-in PII patterns (gateway/distill/redact.py).",
    )
    response_cache: bool = Field(default=True, description="Exact-match cache for requests no policy covers.")
    admin_key: SecretStr | None = None
    spool_dir: Path = Path(".tiergate/spool")
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    max_json_containers: int = Field(
        default=250_000,
        gt=0,
        description="At most this many JSON objects and arrays (counted as `{` and `[` bytes, also inside "
        "strings) in a request body: bounds the memory a body at the size limit can cost.",
    )
    ledger_flush_interval_s: float = Field(default=0.2, gt=0)
    ledger_batch_size: int = Field(default=500, gt=0)
    key_refresh_interval_s: float = Field(default=2.0, gt=0)
    policy_refresh_interval_s: float = Field(
        default=1.0, gt=0, description="How fast replicas see policy changes."
    )
    upstream_keepalive_s: float = Field(
        default=4.0,
        gt=0,
        description="How long an idle upstream connection is kept for reuse. Keep it below the upstreams' "
        "own keep-alive (uvicorn and many proxies close idle connections after 5 s) so a pooled connection "
        "is never reused just as the server closes it.",
    )
    client_keepalive_s: float = Field(
        default=75.0,
        gt=0,
        description="How long the gateway keeps an idle client connection open. It must outlast its clients "
        "and proxies: httpx (so the OpenAI SDKs) reuses a connection up to 5 s after its last read, nginx and "
        "load balancers keep upstream connections idle for 60 s. uvicorn's default, 5 s, raced with httpx: "
        "counting from its write, it closed connections a CPU-starved client was just reusing (ECONNRESET).",
    )
    retry_backoff_s: float = Field(default=0.25, ge=0, description="Base of exponential retry backoff.")
    retry_backoff_max_s: float = Field(default=8.0, ge=0)
    log_prompts: bool = False
    baseline_deployment: str | None = Field(
        default=None, description="What requests would have cost without the gateway (savings baseline)."
    )
    deployments: list[Deployment] = Field(default_factory=list)
    selfhost_catalogue: Path | None = Field(
        default=None,
        description="selfhost/catalogue.yaml-style file: its entries become self-hosted deployments.",
    )

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        if self.selfhost_catalogue is not None:
            self.deployments = [*self.deployments, *self._catalogue_deployments()]
        names = [d.name for d in self.deployments]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate deployment names: {', '.join(duplicates)}")
        known = set(names)
        for d in self.deployments:
            unknown = [f for f in d.fallbacks if f not in known]
            if unknown:
                raise ValueError(f"deployment {d.name!r}: unknown fallback(s) {', '.join(unknown)}")
            if d.name in d.fallbacks:
                raise ValueError(f"deployment {d.name!r} lists itself as a fallback")
        if self.baseline_deployment and self.baseline_deployment not in known:
            raise ValueError(f"baseline_deployment {self.baseline_deployment!r} is not a declared deployment")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, then TIERGATE_* environment, then the YAML file.
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls)

    def _catalogue_deployments(self) -> list[Deployment]:
        from gateway.upstreams.selfhosted import gateway_deployment
        from selfhost import catalogue

        declared = {d.name for d in self.deployments}
        entries = catalogue.load(self.selfhost_catalogue).deployments
        return [gateway_deployment(entry) for entry in entries if entry.name not in declared]

    def deployment(self, name: str) -> Deployment | None:
        return next((d for d in self.deployments if d.name == name), None)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from explicit overrides, the environment, and `config_file` (default `$TIERGATE_CONFIG`)."""
    path = config_file or os.environ.get("TIERGATE_CONFIG")
    if not path:
        return Settings(**overrides)
    if not Path(path).is_file():
        raise FileNotFoundError(f"config file not found: {path}")

    class SettingsFromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=str(path))

    return SettingsFromFile(**overrides)
