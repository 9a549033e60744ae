"""The cost equations: GPU-hours to dollars per million tokens.

Everything reduces to the seed's one equation (section "The Cost Model"):

    $ / 1M tokens = GPU $/s ÷ (throughput tokens/s × utilization) × 1e6

`cost_per_million_tokens` is the seed's function, kept by name and signature so its worked
example can be checked against it; the rest are the same equation in project units.
"""

from __future__ import annotations

from dataclasses import dataclass

from costengine.errors import (
    InvalidInputError,
    require_non_negative,
    require_positive,
    require_ratio,
)

SECONDS_PER_HOUR = 3600.0
#: The seed's month ("× 730" in its hybrid spot model and API comparison): 365 × 24 / 12.
HOURS_PER_MONTH = 730.0
TOKENS_PER_MILLION = 1_000_000.0


def cost_per_million_tokens(
    gpu_cost_per_hour: float,
    tokens_per_second: float,
    utilization: float = 0.70,
    num_gpus: int = 1,
) -> float:
    """The seed's `cost_per_million_tokens`, same arguments, same result.

    gpu_cost_per_hour is per GPU (USD), tokens_per_second the fleet's throughput at full load,
    utilization the busy fraction in (0, 1]. Returns USD per million tokens.
    """
    require_non_negative("gpu_cost_per_hour", gpu_cost_per_hour)
    require_positive("tokens_per_second", tokens_per_second)
    require_ratio("utilization", utilization)
    if num_gpus < 1:
        raise InvalidInputError(f"num_gpus must be at least 1, got {num_gpus}")
    gpu_cost_per_sec = (gpu_cost_per_hour * num_gpus) / SECONDS_PER_HOUR
    effective_tps = tokens_per_second * utilization
    cost_per_token = gpu_cost_per_sec / effective_tps
    return cost_per_token * TOKENS_PER_MILLION


def usd_per_million_tokens(usd_per_hour: float, tokens_per_second: float) -> float:
    """$/1M tokens for a fleet costing `usd_per_hour` that serves `tokens_per_second` (measured)."""
    require_non_negative("usd_per_hour", usd_per_hour)
    require_positive("tokens_per_second", tokens_per_second)
    return usd_per_hour / SECONDS_PER_HOUR / tokens_per_second * TOKENS_PER_MILLION


def tokens_per_dollar(usd_per_hour: float, tokens_per_second: float) -> float:
    """Tokens bought by one dollar: the seed's headline metric ("tokens per dollar")."""
    require_positive("usd_per_hour", usd_per_hour)
    require_non_negative("tokens_per_second", tokens_per_second)
    return tokens_per_second * SECONDS_PER_HOUR / usd_per_hour


def monthly_cost_usd(usd_per_hour: float, duty_ratio: float = 1.0) -> float:
    """Dollars per month (730 h) for something billed `usd_per_hour` that runs `duty_ratio`."""
    require_non_negative("usd_per_hour", usd_per_hour)
    require_ratio("duty_ratio", duty_ratio, allow_zero=True)
    return usd_per_hour * HOURS_PER_MONTH * duty_ratio


def hourly_cost_usd(usd_per_gpu_hour: float, num_gpus: float) -> float:
    """Fleet dollars per hour: GPUs allocated × price per GPU-hour."""
    require_non_negative("usd_per_gpu_hour", usd_per_gpu_hour)
    require_non_negative("num_gpus", num_gpus)
    return usd_per_gpu_hour * num_gpus


@dataclass(frozen=True, slots=True)
class InputOutputCost:
    """Cost per million tokens by token type, from one fleet's hourly cost."""

    input_usd_per_million: float | None
    output_usd_per_million: float | None
    all_usd_per_million: float | None
    input_gpu_time_ratio: float


def split_input_output(
    usd_per_hour: float,
    input_tokens_per_second: float,
    output_tokens_per_second: float,
    input_gpu_time_ratio: float,
) -> InputOutputCost:
    """Attribute an hourly cost to input (prefill) and output (decode) tokens by GPU time.

    `input_gpu_time_ratio` is the share of busy GPU time spent on prefill: measured (vLLM's
    prefill/decode time histograms) or modeled (`throughput.prefill_time_ratio`). A token type
    with no tokens gets `None`, never a division by zero. `all` is cost over all tokens, so
    `all` is not the mean of `input` and `output`.
    """
    require_non_negative("usd_per_hour", usd_per_hour)
    require_non_negative("input_tokens_per_second", input_tokens_per_second)
    require_non_negative("output_tokens_per_second", output_tokens_per_second)
    require_ratio("input_gpu_time_ratio", input_gpu_time_ratio, allow_zero=True)
    usd_per_second = usd_per_hour / SECONDS_PER_HOUR

    def per_million(share: float, tps: float) -> float | None:
        return usd_per_second * share / tps * TOKENS_PER_MILLION if tps > 0 else None

    total_tps = input_tokens_per_second + output_tokens_per_second
    return InputOutputCost(
        input_usd_per_million=per_million(input_gpu_time_ratio, input_tokens_per_second),
        output_usd_per_million=per_million(1 - input_gpu_time_ratio, output_tokens_per_second),
        all_usd_per_million=per_million(1.0, total_tps),
        input_gpu_time_ratio=input_gpu_time_ratio,
    )
