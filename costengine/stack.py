"""The optimization stack: cost levers composed from a baseline $/1M tokens.

From the seed's closing "Optimization stack summary" (baseline $3.00/1M for naive
single-request FP16 on-demand serving; "total potential reduction: 93%", "80-85% realistic").
Levers compose multiplicatively: each removes its ratio of what the previous ones left.
The seed's own lever table is not in its text; `SEED_LEVERS` are the seed's figures that can be
traced to a calculation elsewhere in the seed, each cited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from costengine.errors import require_non_negative, require_ratio


@dataclass(frozen=True, slots=True)
class Lever:
    name: str
    reduction_ratio: float
    source: str = ""

    def __post_init__(self) -> None:
        require_ratio(f"reduction of lever {self.name!r}", self.reduction_ratio, allow_zero=True)


@dataclass(frozen=True, slots=True)
class StackStep:
    lever: str
    reduction_ratio: float
    usd_per_million_after: float
    cumulative_reduction_ratio: float


@dataclass(frozen=True, slots=True)
class OptimizationStack:
    baseline_usd_per_million: float
    steps: tuple[StackStep, ...]

    @property
    def final_usd_per_million(self) -> float:
        return self.steps[-1].usd_per_million_after if self.steps else self.baseline_usd_per_million

    @property
    def total_reduction_ratio(self) -> float:
        return self.steps[-1].cumulative_reduction_ratio if self.steps else 0.0


#: The baseline of the seed's stack summary.
SEED_BASELINE_USD_PER_MILLION = 3.00

SEED_LEVERS: tuple[Lever, ...] = (
    Lever(
        "continuous batching (20% → 80% utilization)",
        1 - 0.33 / 3.13,
        "seed, Batching Economics: $3.13 → $0.33 per 1M",
    ),
    Lever(
        "INT4 quantization (70B, 4×A100 FP16 → 2×A100 AWQ)",
        1 - 0.68 / 1.46,
        "seed, multi-GPU table: $1.46 → $0.68 per 1M",
    ),
    Lever("prefix + semantic caching", 0.40, "seed, Caching ROI: 40-60% (low end)"),
    Lever("spot burst capacity", 0.201, "seed, hybrid spot model: 20.1%"),
)


def optimization_stack(
    levers: Sequence[Lever], baseline_usd_per_million: float = SEED_BASELINE_USD_PER_MILLION
) -> OptimizationStack:
    require_non_negative("baseline_usd_per_million", baseline_usd_per_million)
    steps = []
    remaining = 1.0
    for lever in levers:
        remaining *= 1 - lever.reduction_ratio
        steps.append(
            StackStep(
                lever=lever.name,
                reduction_ratio=lever.reduction_ratio,
                usd_per_million_after=baseline_usd_per_million * remaining,
                cumulative_reduction_ratio=1 - remaining,
            )
        )
    return OptimizationStack(baseline_usd_per_million, tuple(steps))
