"""Right-sizing: which GPU, how many, which quantization and capacity type serve a demand
at the lowest $/1M tokens.

From the seed's section "Right-Sizing GPUs". Every GPU of a price sheet × tensor parallelism
(1, 2, 4, 8) × quantization × capacity type is a candidate. A candidate is dropped when the
weights and one full sequence do not fit in memory, or when no batch meets the latency bound.
Each survivor runs at the largest batch the KV cache and the latency bound allow; replicas are
added until the demand fits under the target utilization; candidates rank by $/1M tokens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from costengine.cost import SECONDS_PER_HOUR, TOKENS_PER_MILLION
from costengine.errors import InvalidInputError, lookup, require_positive, require_ratio
from costengine.gpus import GPUS
from costengine.models import MODELS
from costengine.pricing import CapacityType, PriceSheet
from costengine.quant import quantization
from costengine.throughput import BatchRun, Deployment, engine_profile

TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
DEFAULT_QUANTS = ("fp16", "fp8", "int8", "int4")


@dataclass(frozen=True, slots=True)
class Demand:
    """Traffic to serve: generated tokens per second and the shape of a request."""

    output_tokens_per_second: float
    input_tokens: int = 512
    output_tokens: int = 256

    def __post_init__(self) -> None:
        require_positive("output_tokens_per_second", self.output_tokens_per_second)
        require_positive("input_tokens", self.input_tokens)
        require_positive("output_tokens", self.output_tokens)

    @property
    def total_tokens_per_second(self) -> float:
        return (
            self.output_tokens_per_second
            * (self.input_tokens + self.output_tokens)
            / (self.output_tokens)
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    gpu: str
    tp: int
    quant: str
    capacity_type: CapacityType
    usd_per_gpu_hour: float
    feasible: bool
    reason: str = ""
    batch: int = 0
    replica_output_tokens_per_second: float = 0.0
    inter_token_latency_s: float = 0.0
    replicas: int = 0
    usd_per_hour: float = 0.0
    usd_per_million_tokens: float = math.inf
    """All tokens (input + output) of the demand, at the demand."""
    usd_per_million_output_tokens: float = math.inf
    usd_per_million_tokens_at_capacity: float = math.inf
    """All tokens, one replica at full load: the configuration's intrinsic efficiency."""
    utilization_ratio: float = 0.0

    @property
    def gpus(self) -> int:
        return self.tp * self.replicas


def _best_batch(dep: Deployment, demand: Demand, max_itl_s: float) -> BatchRun | None:
    """The serving rate at the largest batch whose inter-token latency meets the bound."""
    cap = dep.max_batch(demand.input_tokens + demand.output_tokens)
    if cap < 1:
        return None

    def rate(b: int) -> BatchRun:
        return dep.serving(demand.input_tokens, demand.output_tokens, batch=b)

    if rate(1).inter_token_latency_s > max_itl_s:
        return None
    lo, hi = 1, cap
    while lo < hi:  # inter-token latency grows with the batch
        mid = (lo + hi + 1) // 2
        if rate(mid).inter_token_latency_s <= max_itl_s:
            lo = mid
        else:
            hi = mid - 1
    return rate(lo)


def evaluate(
    model: str,
    gpu: str,
    tp: int,
    quant: str,
    capacity_type: CapacityType,
    usd_per_gpu_hour: float,
    demand: Demand,
    engine: str = "vllm",
    max_inter_token_latency_s: float = 0.1,
    target_utilization: float = 0.7,
) -> Candidate:
    base = Candidate(gpu, tp, quant, capacity_type, usd_per_gpu_hour, feasible=False)
    try:
        dep = Deployment.of(model, gpu, tp, quant, engine)
    except InvalidInputError as exc:  # e.g. TP that does not divide the attention heads
        return _with(base, reason=str(exc))
    if not dep.fits():
        need = dep.weight_bytes / tp / 1e9
        return _with(base, reason=f"weights need {need:.0f} GB per GPU of {dep.gpu.memory_gb:.0f}")
    rate = _best_batch(dep, demand, max_inter_token_latency_s)
    if rate is None:
        if dep.max_batch(demand.input_tokens + demand.output_tokens) < 1:
            return _with(base, reason="no room for one sequence's KV cache")
        return _with(
            base, reason=f"inter-token latency above {max_inter_token_latency_s * 1e3:.0f} ms"
        )
    replica_tps = rate.output_tokens_per_second
    replicas = max(
        1, math.ceil(demand.output_tokens_per_second / (replica_tps * target_utilization))
    )
    usd_per_hour = replicas * tp * usd_per_gpu_hour
    usd_per_second = usd_per_hour / SECONDS_PER_HOUR
    tokens_ratio = (demand.input_tokens + demand.output_tokens) / demand.output_tokens
    return _with(
        base,
        feasible=True,
        batch=rate.batch,
        replica_output_tokens_per_second=replica_tps,
        inter_token_latency_s=rate.inter_token_latency_s,
        replicas=replicas,
        usd_per_hour=usd_per_hour,
        usd_per_million_tokens=usd_per_second / demand.total_tokens_per_second * TOKENS_PER_MILLION,
        usd_per_million_output_tokens=usd_per_second
        / demand.output_tokens_per_second
        * TOKENS_PER_MILLION,
        usd_per_million_tokens_at_capacity=tp
        * usd_per_gpu_hour
        / SECONDS_PER_HOUR
        / (replica_tps * tokens_ratio)
        * TOKENS_PER_MILLION,
        utilization_ratio=demand.output_tokens_per_second / (replicas * replica_tps),
    )


def _with(c: Candidate, **changes: object) -> Candidate:
    return replace(c, **changes)  # type: ignore[arg-type]


def rightsize(
    model: str,
    demand: Demand,
    prices: PriceSheet,
    *,
    gpus: Iterable[str] | None = None,
    quants: Iterable[str] = DEFAULT_QUANTS,
    tensor_parallel_sizes: Iterable[int] = TENSOR_PARALLEL_SIZES,
    capacity_types: Iterable[CapacityType] = (CapacityType.ON_DEMAND,),
    engine: str = "vllm",
    max_inter_token_latency_s: float = 0.1,
    target_utilization: float = 0.7,
    include_infeasible: bool = False,
) -> list[Candidate]:
    """Candidates ranked by $/1M tokens at the demand (then by at-capacity $/1M)."""
    lookup("model", MODELS, model.lower())
    engine_profile(engine)
    require_ratio("target_utilization", target_utilization)
    require_positive("max_inter_token_latency_s", max_inter_token_latency_s)
    quant_names = [quantization(q).name for q in quants]
    gpu_names = [lookup("GPU", GPUS, g).name for g in gpus] if gpus is not None else prices.gpus()
    results = []
    for gpu in gpu_names:
        if gpu not in GPUS:
            continue
        for capacity in capacity_types:
            if not prices.has(gpu, capacity):
                continue
            price = prices.usd_per_gpu_hour(gpu, capacity)
            for quant in quant_names:
                for tp in tensor_parallel_sizes:
                    c = evaluate(
                        model.lower(),
                        gpu,
                        tp,
                        quant,
                        capacity,
                        price,
                        demand,
                        engine,
                        max_inter_token_latency_s,
                        target_utilization,
                    )
                    if c.feasible or include_infeasible:
                        results.append(c)
    results.sort(
        key=lambda c: (
            not c.feasible,
            c.usd_per_million_tokens,
            c.usd_per_million_tokens_at_capacity,
        )
    )
    return results
