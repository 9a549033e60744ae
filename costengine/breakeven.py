"""Self-hosted vs API: monthly cost at a token volume, and the volume where they break even.

From the seed's section "Full Cost Comparison: Self-Hosted vs API". An API bills per token; a
self-hosted fleet bills per GPU-hour whether busy or not, and grows in whole replicas once the
volume outruns its capacity. Engineering time is a fixed monthly cost of self-hosting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from costengine.cost import HOURS_PER_MONTH, SECONDS_PER_HOUR, TOKENS_PER_MILLION
from costengine.errors import require_non_negative, require_positive, require_ratio


@dataclass(frozen=True, slots=True)
class ApiPrice:
    name: str
    input_usd_per_million: float
    output_usd_per_million: float

    def blended_usd_per_million(self, input_token_ratio: float) -> float:
        """Price of a token mix with `input_token_ratio` of input tokens."""
        require_ratio("input_token_ratio", input_token_ratio, allow_zero=True)
        return self.input_usd_per_million * input_token_ratio + self.output_usd_per_million * (
            1 - input_token_ratio
        )


#: The seed's API column (GPT-4o list prices at the time of writing).
GPT_4O = ApiPrice("gpt-4o", 2.50, 10.00)


def api_monthly_cost_usd(
    api: ApiPrice, tokens_per_month: float, input_token_ratio: float = 0.5
) -> float:
    """Seed: 1B tokens/month at GPT-4o, half input, half output → $6,250."""
    require_non_negative("tokens_per_month", tokens_per_month)
    return tokens_per_month / TOKENS_PER_MILLION * api.blended_usd_per_million(input_token_ratio)


@dataclass(frozen=True, slots=True)
class SelfHostedMonthly:
    tokens_per_month: float
    replicas: int
    gpus: int
    gpu_usd: float
    engineering_usd: float
    total_usd: float
    utilization_ratio: float
    """Share of the fleet's capacity the volume uses."""
    usd_per_million_tokens: float | None


def replica_capacity_tokens_per_month(tokens_per_second: float, utilization: float) -> float:
    """Tokens a replica serves in a month at `utilization` of its full-load throughput."""
    require_positive("tokens_per_second", tokens_per_second)
    require_ratio("utilization", utilization)
    return tokens_per_second * utilization * SECONDS_PER_HOUR * HOURS_PER_MONTH


def self_hosted_monthly_cost(
    tokens_per_month: float,
    usd_per_gpu_hour: float,
    gpus_per_replica: int,
    replica_tokens_per_second: float,
    max_utilization: float = 0.7,
    engineers: float = 0.0,
    usd_per_engineer_year: float = 200_000.0,
    min_replicas: int = 1,
) -> SelfHostedMonthly:
    """A fleet of whole replicas, each good for `replica_tokens_per_second` at full load and run
    at most at `max_utilization`, plus engineering (the seed: $150-250K per ML engineer-year).

    Seed: 4×A100 at $2.21 → $6,453/month, flat until the volume outgrows one replica.
    """
    require_non_negative("tokens_per_month", tokens_per_month)
    require_non_negative("usd_per_gpu_hour", usd_per_gpu_hour)
    require_non_negative("engineers", engineers)
    require_non_negative("usd_per_engineer_year", usd_per_engineer_year)
    capacity = replica_capacity_tokens_per_month(replica_tokens_per_second, max_utilization)
    replicas = max(min_replicas, math.ceil(tokens_per_month / capacity))
    gpus = replicas * gpus_per_replica
    gpu_usd = gpus * usd_per_gpu_hour * HOURS_PER_MONTH
    engineering = engineers * usd_per_engineer_year / 12
    total = gpu_usd + engineering
    full = replica_capacity_tokens_per_month(replica_tokens_per_second, 1.0) * replicas
    return SelfHostedMonthly(
        tokens_per_month=tokens_per_month,
        replicas=replicas,
        gpus=gpus,
        gpu_usd=gpu_usd,
        engineering_usd=engineering,
        total_usd=total,
        utilization_ratio=tokens_per_month / full if full > 0 else 0.0,
        usd_per_million_tokens=total / tokens_per_month * TOKENS_PER_MILLION
        if tokens_per_month > 0
        else None,
    )


def breakeven_tokens_per_month(
    api: ApiPrice,
    usd_per_gpu_hour: float,
    gpus_per_replica: int,
    replica_tokens_per_second: float,
    max_utilization: float = 0.7,
    engineers: float = 0.0,
    usd_per_engineer_year: float = 200_000.0,
    input_token_ratio: float = 0.5,
) -> float | None:
    """Smallest monthly volume at which self-hosting costs no more than the API, or None.

    Self-hosted cost is a step function (whole replicas), so each step is checked: the first
    step whose fixed cost the API bill reaches within that step's capacity is the answer.
    """
    price = api.blended_usd_per_million(input_token_ratio) / TOKENS_PER_MILLION
    if price <= 0:
        return None
    capacity = replica_capacity_tokens_per_month(replica_tokens_per_second, max_utilization)
    per_replica = gpus_per_replica * usd_per_gpu_hour * HOURS_PER_MONTH
    engineering = engineers * usd_per_engineer_year / 12
    # If a full replica's tokens cost less at the API than the replica itself, adding replicas
    # never catches up: no break-even past the first step.
    for replicas in range(1, 10_000):
        fixed = replicas * per_replica + engineering
        volume = fixed / price
        if volume <= replicas * capacity:
            return volume
        if capacity * price <= per_replica:
            return None
    return None
