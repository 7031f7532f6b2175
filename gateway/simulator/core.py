"""Simulator state shared by the provider handlers and the control API."""

from __future__ import annotations

from typing import Any

from .clock import Clock
from .config import Latency, SimulatorConfig
from .faults import FaultInjector
from .prompt_cache import BreakpointCache, PrefixCache
from .stats import Stats

MODEL_OPTION_SEPARATOR = "@"
_MODEL_OPTION_TYPES = {"ttft": "ttft_ms", "itl": "itl_ms", "tokens": "tokens"}


class Simulator:
    """Configuration plus mutable state: latency overrides, faults, prompt caches, counters."""

    def __init__(self, config: SimulatorConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.clock = clock or Clock()
        self.stats = Stats()
        self.faults = FaultInjector(self.config.faults, seed=self.config.fault_seed)
        self.default_latency = self.config.latency
        self.model_latency: dict[str, Latency] = {}
        self.openai_cache = PrefixCache(self.clock)
        self.gemini_cache = PrefixCache(self.clock)
        self.anthropic_cache = BreakpointCache(self.clock)
        self._models = frozenset(self.config.models) if self.config.models else None
        self.model_quality: dict[str, float] = {}  # see quality.py
        self.judges: set[str] = set()

    def knows_model(self, model: str) -> bool:
        return self._models is None or model in self._models

    def key_accepted(self, key: str | None) -> bool:
        if not key:
            return False
        return self.config.api_keys is None or key in self.config.api_keys

    def resolve(self, requested: str, headers: dict[str, str]) -> tuple[str, Latency]:
        """Model name without options, and the latency for this request.

        Precedence: `x-sim-*` request headers, then options in the model name
        (`gpt-4o@ttft=200,itl=20,tokens=64`), then per-model settings, then the server default.
        """
        model, _, options = requested.partition(MODEL_OPTION_SEPARATOR)
        latency = self.model_latency.get(model, self.default_latency)
        if options:
            latency = latency.updated(_parse_model_options(options))
        header_options = {
            name: float(headers[f"x-sim-{name.replace('_', '-')}"])
            for name in ("ttft_ms", "itl_ms", "tokens")
            if f"x-sim-{name.replace('_', '-')}" in headers
        }
        if header_options:
            latency = latency.updated(header_options)
        return model, latency

    def set_latency(self, options: dict[str, Any], model: str | None = None) -> Latency:
        base = self.model_latency.get(model, self.default_latency) if model else self.default_latency
        latency = base.updated(options)
        if model:
            self.model_latency[model] = latency
        else:
            self.default_latency = latency
        return latency

    def clear_caches(self) -> None:
        self.openai_cache.clear()
        self.gemini_cache.clear()
        self.anthropic_cache.clear()


def _parse_model_options(options: str) -> dict[str, float]:
    parsed: dict[str, float] = {}
    for item in options.split(","):
        name, _, value = item.partition("=")
        if name not in _MODEL_OPTION_TYPES:
            raise ValueError(f"unknown model option {name!r} (use ttft, itl, tokens)")
        parsed[_MODEL_OPTION_TYPES[name]] = float(value)
    return parsed
