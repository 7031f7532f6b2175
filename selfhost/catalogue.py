"""The catalogue of self-hosted deployments: what vLLM serves, how, and what it costs.

One YAML file (``selfhost/catalogue.yaml`` by default) validated by the pydantic models below. Each
deployment becomes ``replicas`` identical ``vllm serve`` processes (see ``selfhost.launcher``). The JSON
schema (``selfhost/catalogue.schema.json``) is generated from these models: ``python -m selfhost.catalogue``.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PATH = Path(__file__).with_name("catalogue.yaml")
SCHEMA_PATH = Path(__file__).with_name("catalogue.schema.json")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quantization(_Strict):
    """How the weights are quantized.

    ``checkpoint: true`` (the usual case) means the weights on disk are already quantized — AWQ, GPTQ or
    compressed-tensors checkpoints written by llm-compressor — and vLLM reads the method from the
    checkpoint's ``config.json``; the launcher checks that it matches ``scheme``. ``checkpoint: false``
    asks vLLM to quantize at load time (``--quantization``), which vLLM supports for ``fp8`` on GPUs and
    for ``int8-weight-only`` on CPUs.
    """

    scheme: Literal["awq", "gptq", "fp8", "int8-w8a8", "w4a16", "int8-weight-only"]
    checkpoint: bool = True

    @model_validator(mode="after")
    def _online_supported(self) -> Quantization:
        if not self.checkpoint and self.scheme not in ONLINE_QUANTIZATION:
            raise ValueError(
                f"scheme {self.scheme!r} needs a pre-quantized checkpoint (checkpoint: true); "
                f"vLLM quantizes online only {sorted(ONLINE_QUANTIZATION)}"
            )
        return self


ONLINE_QUANTIZATION = {"fp8": "fp8", "int8-weight-only": "int8_per_channel_weight_only"}


class NgramSpeculation(_Strict):
    """Prompt-lookup speculation: no second model, proposes tokens copied from the prompt."""

    method: Literal["ngram"]
    num_speculative_tokens: int = Field(ge=1, le=16)
    prompt_lookup_max: int = Field(default=4, ge=1)
    prompt_lookup_min: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _window(self) -> NgramSpeculation:
        if self.prompt_lookup_min > self.prompt_lookup_max:
            raise ValueError("prompt_lookup_min must not exceed prompt_lookup_max")
        return self


class DraftModelSpeculation(_Strict):
    """A smaller model with the same tokenizer proposes tokens; the target verifies them."""

    method: Literal["draft_model"]
    model: str
    num_speculative_tokens: int = Field(ge=1, le=16)


class EagleSpeculation(_Strict):
    """EAGLE-style heads trained on the target's hidden states."""

    method: Literal["eagle", "eagle3"]
    model: str
    num_speculative_tokens: int = Field(ge=1, le=16)


Speculation = Annotated[
    NgramSpeculation | DraftModelSpeculation | EagleSpeculation, Field(discriminator="method")
]


class Batching(_Strict):
    """Continuous-batching limits; unset fields keep vLLM's defaults."""

    max_num_seqs: int | None = Field(default=None, ge=1)
    max_num_batched_tokens: int | None = Field(default=None, ge=1)
    chunked_prefill: bool | None = None


class Memory(_Strict):
    max_model_len: int | None = Field(default=None, ge=16)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] | None = None
    cpu_kv_cache_gib: int | None = Field(
        default=None, ge=1, description="KV-cache space on CPU hosts (VLLM_CPU_KVCACHE_SPACE)."
    )


class Cost(_Strict):
    """Inputs of the on-prem cost model (see selfhost/README.md)."""

    hourly_usd: Decimal = Field(ge=0, description="All-in price of one replica's hardware per hour.")
    output_token_weight: Decimal = Field(
        default=Decimal(1),
        gt=0,
        description="How many input tokens one output token counts as when the hourly cost is shared out.",
    )
    capacity_tokens_per_second: Decimal | None = Field(
        default=None,
        gt=0,
        description="Saturation throughput (prompt + generation tokens/s) measured with selfhost/bench; "
        "gives utilisation and the at-capacity price.",
    )


class Deployment(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Deployment id used by routing policies.")
    model: str = Field(description="Local checkpoint directory or hub id; '{cache_dir}' is expanded.")
    served_model_name: str
    tokenizer: str | None = None
    device: Literal["cuda", "cpu"] = "cuda"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    gpus_per_replica: int = Field(default=1, ge=1, description="Tensor-parallel size on GPU hosts.")
    replicas: int = Field(default=1, ge=1)
    host: str = "127.0.0.1"
    base_port: int = Field(default=8100, ge=1024, le=65535)
    quantization: Quantization | None = None
    speculative: Speculation | None = None
    batching: Batching = Batching()
    prefix_caching: bool = True
    enforce_eager: bool = False
    memory: Memory = Memory()
    cost: Cost
    extra_args: list[str] = Field(default_factory=list, description="Passed verbatim to `vllm serve`.")
    env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _device_settings(self) -> Deployment:
        if self.device == "cpu" and self.memory.gpu_memory_utilization is not None:
            raise ValueError("memory.gpu_memory_utilization applies to device 'cuda' only")
        if self.device == "cuda" and self.memory.cpu_kv_cache_gib is not None:
            raise ValueError("memory.cpu_kv_cache_gib applies to device 'cpu' only")
        if self.device == "cpu" and self.gpus_per_replica != 1:
            raise ValueError("gpus_per_replica applies to device 'cuda' only")
        return self

    def resolved_model(self) -> str:
        return expand(self.model)


class Catalogue(_Strict):
    version: Literal[1] = 1
    deployments: list[Deployment]

    @model_validator(mode="after")
    def _unique_and_disjoint(self) -> Catalogue:
        names = [d.name for d in self.deployments]
        if len(names) != len(set(names)):
            raise ValueError(f"deployment names must be unique: {names}")
        taken: dict[tuple[str, int], str] = {}
        for d in self.deployments:
            for port in range(d.base_port, d.base_port + d.replicas):
                if (d.host, port) in taken:
                    raise ValueError(f"{d.name} and {taken[(d.host, port)]} both use {d.host}:{port}")
                taken[(d.host, port)] = d.name
        return self

    def get(self, name: str) -> Deployment:
        for d in self.deployments:
            if d.name == name:
                return d
        raise KeyError(f"no deployment {name!r} in catalogue (have: {[d.name for d in self.deployments]})")


class CatalogueError(ValueError):
    """The catalogue file is missing, not YAML, or does not match the schema."""


def cache_dir() -> Path:
    return Path(os.environ.get("TIERGATE_CACHE_DIR") or Path.home() / ".cache" / "tiergate")


def expand(value: str) -> str:
    return value.replace("{cache_dir}", str(cache_dir()))


def load(path: Path | str = DEFAULT_PATH) -> Catalogue:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogueError(f"{path}: {exc}") from exc
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        raise CatalogueError(f"{path}: {_explain(exc)}") from exc


def _explain(exc: ValidationError) -> str:
    lines = [f"{exc.error_count()} problem(s)"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def json_schema() -> dict:
    return Catalogue.model_json_schema()


if __name__ == "__main__":
    SCHEMA_PATH.write_text(json.dumps(json_schema(), indent=2) + "\n")
    print(SCHEMA_PATH)
