"""Multi-tenancy: LoRA model multiplexing and statistical multiplexing of tenants.

From the seed's section "Multi-Tenancy Savings".

Statistical multiplexing: each dedicated fleet is provisioned for its own tenant's peak (a high
quantile of its demand); a shared fleet for the same quantile of the *summed* demand. Peaks do
not align, so the quantile of the sum is below the sum of the quantiles. Two forms: one from
measured demand series (exact for the data), one from a normal approximation (mean, spread).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from costengine.errors import InvalidInputError, require_non_negative, require_ratio


@dataclass(frozen=True, slots=True)
class LoraMultiplexing:
    adapters: int
    shared_usd_per_hour: float
    dedicated_usd_per_hour: float
    cost_ratio: float
    """Dedicated ÷ shared: how many times more the dedicated setup costs."""


def lora_multiplexing(
    adapters: int,
    base_usd_per_hour: float,
    adapter_overhead_ratio: float = 0.02,
    shared_replicas: int = 1,
) -> LoraMultiplexing:
    """N fine-tunes as LoRA adapters on one shared base vs one dedicated deployment each.

    The seed puts adapter switching at 1-3% throughput overhead (default 2%), which the shared
    fleet pays as extra capacity: (1 + overhead) × replicas × base cost.
    """
    if adapters < 1:
        raise InvalidInputError(f"adapters must be at least 1, got {adapters}")
    require_non_negative("base_usd_per_hour", base_usd_per_hour)
    require_ratio("adapter_overhead_ratio", adapter_overhead_ratio, allow_zero=True)
    shared = base_usd_per_hour * shared_replicas * (1 + adapter_overhead_ratio)
    dedicated = base_usd_per_hour * adapters
    return LoraMultiplexing(
        adapters=adapters,
        shared_usd_per_hour=shared,
        dedicated_usd_per_hour=dedicated,
        cost_ratio=dedicated / shared if shared > 0 else math.inf,
    )


@dataclass(frozen=True, slots=True)
class StatisticalMultiplexing:
    tenants: int
    quantile: float | None
    dedicated_capacity: float
    """Sum over tenants of each tenant's demand quantile."""
    shared_capacity: float
    """Quantile of the summed demand."""
    mean_demand: float
    dedicated_utilization_ratio: float
    shared_utilization_ratio: float
    cost_reduction_ratio: float
    """1 - shared ÷ dedicated capacity."""


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), for a non-empty sequence."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _result(
    tenants: int, q: float | None, dedicated: float, shared: float, mean: float
) -> StatisticalMultiplexing:
    return StatisticalMultiplexing(
        tenants=tenants,
        quantile=q,
        dedicated_capacity=dedicated,
        shared_capacity=shared,
        mean_demand=mean,
        dedicated_utilization_ratio=mean / dedicated if dedicated > 0 else 0.0,
        shared_utilization_ratio=mean / shared if shared > 0 else 0.0,
        cost_reduction_ratio=1 - shared / dedicated if dedicated > 0 else 0.0,
    )


def statistical_multiplexing_from_series(
    demand_series: Sequence[Sequence[float]], quantile: float = 0.99
) -> StatisticalMultiplexing:
    """Provisioning for measured tenants: `demand_series[i][t]` is tenant i's demand at time t.

    All series share one time grid. Capacity units are the demand's (tokens/s, GPUs, ...).
    """
    require_ratio("quantile", quantile)
    if not demand_series or any(len(s) != len(demand_series[0]) or not s for s in demand_series):
        raise InvalidInputError("demand series must be non-empty and of equal length")
    dedicated = sum(_quantile(s, quantile) for s in demand_series)
    summed = [sum(values) for values in zip(*demand_series, strict=True)]
    shared = _quantile(summed, quantile)
    mean = sum(summed) / len(summed)
    return _result(len(demand_series), quantile, dedicated, shared, mean)


def statistical_multiplexing_normal(
    tenants: int, dedicated_utilization_ratio: float
) -> StatisticalMultiplexing:
    """Independent, identically distributed tenants, normal approximation.

    Each dedicated fleet has capacity μ + zσ with μ ÷ (μ + zσ) = `dedicated_utilization_ratio`;
    the shared fleet, provisioned at the same quantile of the sum, needs Nμ + zσ√N (the spread of
    a sum of N independent tenants grows as √N). The quantile itself cancels out. The seed: 10
    tenants at 40% → "~85-90%" combined; this gives 68% (see docs/seed-errata.md).
    """
    if tenants < 1:
        raise InvalidInputError(f"tenants must be at least 1, got {tenants}")
    require_ratio("dedicated_utilization_ratio", dedicated_utilization_ratio)
    mu = 1.0
    z_sigma = mu / dedicated_utilization_ratio - mu
    dedicated = tenants * (mu + z_sigma)
    shared = tenants * mu + z_sigma * math.sqrt(tenants)
    return _result(tenants, None, dedicated, shared, tenants * mu)
