"""Prices per deployment (litellm's cost map, overridable) and exact cost in integer micro-dollars."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from gateway.settings import Deployment, PriceOverride, Tier
from gateway.upstreams.usage import Usage

log = logging.getLogger(__name__)

MICROS_PER_USD = Decimal(1_000_000)
PER_MTOK_TO_MICROS_PER_TOKEN = Decimal(1)  # $/Mtok and µ$/token are the same number


class UnknownPriceError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Price:
    """Micro-dollars per token for each token class."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    reasoning: Decimal

    def cost_micros(self, usage: Usage) -> int:
        write_5m = usage.input_cache_write - usage.input_cache_write_1h
        total = (
            usage.input_uncached * self.input
            + usage.input_cache_read * self.cache_read
            + write_5m * self.cache_write
            + usage.input_cache_write_1h * self.cache_write_1h
            + (usage.output - usage.reasoning) * self.output
            + usage.reasoning * self.reasoning
        )
        return int(total.to_integral_value(rounding=ROUND_HALF_EVEN))

    def list_cost_micros(self, usage: Usage) -> int:
        """What the same tokens cost with no prompt caching: every input token at the full input rate."""
        total = usage.input_total * self.input + usage.output * self.output
        return int(total.to_integral_value(rounding=ROUND_HALF_EVEN))


ZERO = Price(*(Decimal(0),) * 6)


def _per_token_micros(usd_per_token: float | None) -> Decimal | None:
    # repr() keeps the cost map's decimal literal (1.5e-07) instead of the binary float expansion.
    return None if usd_per_token is None else Decimal(repr(usd_per_token)) * MICROS_PER_USD


def _cost_map_entry(deployment: Deployment) -> dict:
    import litellm  # heavy import: only when prices are resolved at start-up

    provider = "openai" if deployment.provider in {"vllm", "openai_compatible"} else deployment.provider
    try:
        return dict(litellm.get_model_info(deployment.model, custom_llm_provider=provider))
    except Exception:
        return {}


def resolve_price(deployment: Deployment) -> Price:
    """Price from the deployment's override, else litellm's cost map; unknown is an error, not a zero.

    A self-hosted deployment without a price is free at the margin until the on-prem cost model
    assigns one; that is logged so nobody mistakes it for a measured price.
    """
    info = _cost_map_entry(deployment)
    override = deployment.price or PriceOverride()

    def pick(override_per_mtok: Decimal | None, map_key: str) -> Decimal | None:
        if override_per_mtok is not None:
            return override_per_mtok * PER_MTOK_TO_MICROS_PER_TOKEN
        return _per_token_micros(info.get(map_key))

    input_ = pick(override.input_per_mtok, "input_cost_per_token")
    output = pick(override.output_per_mtok, "output_cost_per_token")
    if input_ is None or output is None:
        if deployment.tier == Tier.selfhost:
            log.warning("deployment %s has no price: ledgered at zero cost", deployment.name)
            return ZERO
        raise UnknownPriceError(
            f"deployment {deployment.name!r}: litellm's cost map has no price for model "
            f"{deployment.model!r} (provider {deployment.provider!r}); set `price: {{input_per_mtok: ..., "
            f"output_per_mtok: ...}}` in the deployment"
        )
    cache_write = _first(pick(override.cache_write_per_mtok, "cache_creation_input_token_cost"), input_)
    return Price(
        input=input_,
        output=output,
        cache_read=_first(pick(override.cache_read_per_mtok, "cache_read_input_token_cost"), input_),
        cache_write=cache_write,
        cache_write_1h=_first(
            pick(override.cache_write_1h_per_mtok, "cache_creation_input_token_cost_above_1hr"), cache_write
        ),
        reasoning=_first(pick(override.reasoning_per_mtok, "output_cost_per_reasoning_token"), output),
    )


def _first(value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else value


def context_window(deployment: Deployment) -> int | None:
    """The deployment's input limit in tokens: configured, else litellm's model map, else unknown."""
    if deployment.max_input_tokens is not None:
        return deployment.max_input_tokens
    limit = _cost_map_entry(deployment).get("max_input_tokens")
    return int(limit) if limit else None


def micros_to_usd(micros: int) -> str:
    return str((Decimal(micros) / MICROS_PER_USD).quantize(Decimal("0.000001")))
