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
    """Share of the fleet's full-load capacity the volume uses."""
    usd_per_million_tokens: float | None


@dataclass(frozen=True, slots=True)
class SelfHostedFleet:
    """Whole replicas, each good for `replica_tokens_per_second` at full load and planned to run
    at most at `max_utilization`, plus the engineers who run them (the seed: $150-250K per ML
    engineer-year). The seed's: 4×A100 at $2.21, 2,400 tok/s → $6,453/month per replica."""

    usd_per_gpu_hour: float
    gpus_per_replica: int
    replica_tokens_per_second: float
    max_utilization: float = 0.7
    engineers: float = 0.0
    usd_per_engineer_year: float = 200_000.0

    def __post_init__(self) -> None:
        require_non_negative("usd_per_gpu_hour", self.usd_per_gpu_hour)
        require_positive("gpus_per_replica", self.gpus_per_replica)
        require_positive("replica_tokens_per_second", self.replica_tokens_per_second)
        require_ratio("max_utilization", self.max_utilization)
        require_non_negative("engineers", self.engineers)
        require_non_negative("usd_per_engineer_year", self.usd_per_engineer_year)

    @property
    def replica_usd_per_month(self) -> float:
        return self.gpus_per_replica * self.usd_per_gpu_hour * HOURS_PER_MONTH

    @property
    def engineering_usd_per_month(self) -> float:
        return self.engineers * self.usd_per_engineer_year / 12

    @property
    def replica_tokens_per_month(self) -> float:
        """Tokens one replica serves in a month at its planned utilization."""
        return (
            self.replica_tokens_per_second
            * self.max_utilization
            * SECONDS_PER_HOUR
            * HOURS_PER_MONTH
        )

    def monthly_cost(self, tokens_per_month: float, min_replicas: int = 1) -> SelfHostedMonthly:
        """Cost of serving `tokens_per_month`: flat until the volume outgrows a replica."""
        require_non_negative("tokens_per_month", tokens_per_month)
        replicas = max(min_replicas, math.ceil(tokens_per_month / self.replica_tokens_per_month))
        gpu_usd = replicas * self.replica_usd_per_month
        total = gpu_usd + self.engineering_usd_per_month
        full_load = replicas * self.replica_tokens_per_month / self.max_utilization
        return SelfHostedMonthly(
            tokens_per_month=tokens_per_month,
            replicas=replicas,
            gpus=replicas * self.gpus_per_replica,
            gpu_usd=gpu_usd,
            engineering_usd=self.engineering_usd_per_month,
            total_usd=total,
            utilization_ratio=tokens_per_month / full_load,
            usd_per_million_tokens=total / tokens_per_month * TOKENS_PER_MILLION
            if tokens_per_month > 0
            else None,
        )

    def breakeven_tokens_per_month(
        self, api: ApiPrice, input_token_ratio: float = 0.5
    ) -> float | None:
        """Smallest monthly volume at which self-hosting costs no more than the API, or None.

        Self-hosted cost is a step function (whole replicas), so each step is checked: the
        first step whose fixed cost the API bill reaches within that step's capacity.
        """
        price = api.blended_usd_per_million(input_token_ratio) / TOKENS_PER_MILLION
        if price <= 0:
            return None
        capacity = self.replica_tokens_per_month
        # If a full replica's tokens cost less at the API than the replica itself, adding
        # replicas never catches up: no break-even past the first step.
        for replicas in range(1, 10_000):
            volume = (
                replicas * self.replica_usd_per_month + self.engineering_usd_per_month
            ) / price
            if volume <= replicas * capacity:
                return volume
            if capacity * price <= self.replica_usd_per_month:
                return None
        return None
