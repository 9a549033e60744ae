"""Batching economics: what a load level does to batch size, throughput and $/1M tokens.

From the seed's section "Batching Economics". Decode is bound by reading the weights, so a
busier GPU serves more sequences per weight read: the batch that a given load needs, and the
cost per token at that load, follow from the throughput model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from costengine.cost import usd_per_million_tokens
from costengine.errors import InvalidInputError, require_non_negative, require_ratio
from costengine.throughput import Deployment, batch_for_throughput


@dataclass(frozen=True, slots=True)
class LoadPoint:
    utilization_ratio: float
    """Load as a share of the deployment's full-load decode throughput."""
    tokens_per_second: float
    batch: int
    usd_per_million_tokens: float


DEFAULT_UTILIZATIONS = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)


def utilization_economics(
    deployment: Deployment,
    usd_per_hour: float,
    context_tokens: int,
    utilizations: Sequence[float] = DEFAULT_UTILIZATIONS,
) -> list[LoadPoint]:
    """At each load level: the decode batch it needs and the $/1M tokens it costs."""
    require_non_negative("usd_per_hour", usd_per_hour)
    full_batch = deployment.max_batch(context_tokens)
    if full_batch < 1:
        raise InvalidInputError(
            f"{deployment.model.name} does not fit on {deployment.tp}× {deployment.gpu.name} "
            f"with {context_tokens}-token sequences"
        )
    full = deployment.decode_tokens_per_second(full_batch, context_tokens)
    points = []
    for u in utilizations:
        require_ratio("utilization", u)
        demand = u * full
        batch = batch_for_throughput(deployment, demand, context_tokens) or full_batch
        points.append(
            LoadPoint(
                utilization_ratio=u,
                tokens_per_second=demand,
                batch=batch,
                usd_per_million_tokens=usd_per_million_tokens(usd_per_hour, demand),
            )
        )
    return points


def batching_speedup(deployment: Deployment, batch: int, context_tokens: float) -> float:
    """Throughput at `batch` over throughput at batch 1 (the seed: ~53× at batch 64 on H100)."""
    return deployment.decode_tokens_per_second(batch, context_tokens) / (
        deployment.decode_tokens_per_second(1, context_tokens)
    )
