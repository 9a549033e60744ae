"""`llmcost tour`: the cost engine on real data, end to end, in one screen.

1. The seed's headline number, reproduced by the seed's own function.
2. Real request traces (Azure LLM inference 2023 conversation and code, Mooncake conversation)
   turned into per-minute demand.
3. Right-sizing Llama-2 70B for the first trace's peak at the seed's and at AWS prices.
4. The seed's hybrid pattern for each trace: an on-demand base for the median minute, spot for
   each minute's excess, priced with AWS us-east-1 on-demand and spot prices, against an
   all-on-demand fleet sized for the peak.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from costengine.cost import HOURS_PER_MONTH, cost_per_million_tokens
from costengine.pricing import (
    CapacityType,
    PriceSheet,
    aws_us_east_1_price_sheet,
    seed_price_sheet,
)
from costengine.rightsize import Candidate, Demand, rightsize
from costengine.spot import HybridSpotCost, hybrid_spot_cost
from costoperator.cli.render import (
    emit,
    grid_table,
    key_value_table,
    make_console,
    money,
    num,
    pct,
)
from costoperator.traces import TraceError, demand_series, find_shared_data, read_trace

DEMO_MODEL = "llama-2-70b"
#: The shared real traces, the first of which gets the right-sizing detail.
DEFAULT_TRACES = (
    "azure_llm_2023_conv.csv",
    "azure_llm_2023_code.csv",
    "mooncake_conversation.jsonl",
)
#: Highest share of a replica's throughput the plan uses (the seed's 70% utilization).
PLAN_UTILIZATION = 0.7
#: How many of the cheapest on-demand configurations the hybrid plan considers.
HYBRID_CANDIDATES = 5


@dataclass(frozen=True, slots=True)
class HybridPlan:
    candidate: Candidate
    base_replicas: int
    peak_spot_replicas: int
    spot_duty_ratio: float
    cost: HybridSpotCost


def _hybrid_plan(
    candidate: Candidate, demand_by_minute: list[float], median: float, sheet: PriceSheet
) -> HybridPlan:
    """The seed's pattern on one configuration: on-demand replicas for the median minute, spot
    replicas for each minute's excess, priced at the sheet's on-demand and spot prices."""
    per_replica = candidate.replica_output_tokens_per_second * PLAN_UTILIZATION
    base = max(1, math.ceil(median / per_replica))
    spot_by_minute = [max(0, math.ceil(d / per_replica) - base) for d in demand_by_minute]
    peak_spot = max(spot_by_minute)
    duty = statistics.fmean(s / peak_spot for s in spot_by_minute) if peak_spot else 0.0
    on_demand = sheet.usd_per_gpu_hour(candidate.gpu, CapacityType.ON_DEMAND)
    spot = (
        sheet.usd_per_gpu_hour(candidate.gpu, CapacityType.SPOT)
        if sheet.has(candidate.gpu, CapacityType.SPOT)
        else on_demand
    )
    cost = hybrid_spot_cost(
        base * candidate.tp,
        peak_spot * candidate.tp,
        on_demand,
        spot,
        duty,
        (base + peak_spot) * candidate.tp,
    )
    return HybridPlan(candidate, base, peak_spot, duty, cost)


@dataclass(frozen=True, slots=True)
class TraceDemand:
    file: str
    label: str
    requests: int
    duration_s: float
    mean_input_tokens: float
    mean_output_tokens: float
    output_tokens_per_second_p50: float
    output_tokens_per_second_peak: float
    output_tokens_per_second_by_minute: list[float]

    @property
    def demand_at_peak(self) -> Demand:
        return Demand(
            self.output_tokens_per_second_peak,
            max(1, round(self.mean_input_tokens)),
            max(1, round(self.mean_output_tokens)),
        )


def measure(path: Path) -> TraceDemand:
    requests = read_trace(path)
    _, outputs = demand_series(requests, 60.0)
    return TraceDemand(
        file=path.name,
        label=path.stem.replace("azure_llm_2023_", "azure-").replace("_conversation", ""),
        requests=len(requests),
        duration_s=requests[-1].arrival_s - requests[0].arrival_s,
        mean_input_tokens=statistics.fmean(r.input_tokens for r in requests),
        mean_output_tokens=statistics.fmean(max(1, r.output_tokens) for r in requests),
        output_tokens_per_second_p50=statistics.median(outputs),
        output_tokens_per_second_peak=max(outputs),
        output_tokens_per_second_by_minute=outputs,
    )


def one_per_shape(candidates: list[Candidate], n: int = 5) -> list[Candidate]:
    """The best candidate of each GPU × TP (FP8 and INT8 rank alike on Hopper)."""
    seen: set[tuple[str, int]] = set()
    out = []
    for c in candidates:
        if (c.gpu, c.tp) not in seen:
            seen.add((c.gpu, c.tp))
            out.append(c)
    return out[:n]


def plan_for(trace: TraceDemand, sheet: PriceSheet) -> HybridPlan:
    ranked = rightsize(DEMO_MODEL, trace.demand_at_peak, sheet)
    if not ranked:
        raise TraceError(
            f"no configuration serves {trace.file}'s peak of "
            f"{trace.output_tokens_per_second_peak:.0f} tokens/s"
        )
    plans = [
        _hybrid_plan(
            c, trace.output_tokens_per_second_by_minute, trace.output_tokens_per_second_p50, sheet
        )
        for c in one_per_shape(ranked, HYBRID_CANDIDATES)
    ]
    return min(plans, key=lambda p: p.cost.monthly_hybrid_usd)


def run_tour(trace: Path | None, output: str) -> None:
    if trace is not None:
        paths = [trace]
    else:
        found = [find_shared_data("traces", name) for name in DEFAULT_TRACES]
        paths = [p for p in found if p is not None]
        if not paths:
            raise TraceError(
                "the shared data folder (../shared/data beside the project) was not found; "
                "pass --trace FILE: an Azure or BurstGPT CSV or a Mooncake JSONL trace "
                "(either may be gzipped)"
            )
    console = make_console(stderr=True)
    traces = []
    for path in paths:
        if output == "table":
            console.print(f"[dim]reading {path.name} …[/dim]")
        traces.append(measure(path))

    headline = cost_per_million_tokens(2.21, 2400, 0.70, 4)
    first = traces[0]
    seed_ranked = one_per_shape(rightsize(DEMO_MODEL, first.demand_at_peak, seed_price_sheet()))
    aws = aws_us_east_1_price_sheet()
    aws_ranked = one_per_shape(rightsize(DEMO_MODEL, first.demand_at_peak, aws))
    plans = [plan_for(t, aws) for t in traces]

    result = {
        "seed_headline_usd_per_million_tokens": headline,
        "model": DEMO_MODEL,
        "traces": [
            {
                "file": t.file,
                "label": t.label,
                "requests": t.requests,
                "duration_s": t.duration_s,
                "mean_input_tokens": t.mean_input_tokens,
                "mean_output_tokens": t.mean_output_tokens,
                "output_tokens_per_second_p50": t.output_tokens_per_second_p50,
                "output_tokens_per_second_peak": t.output_tokens_per_second_peak,
                "hybrid_plan": {
                    "gpu": p.candidate.gpu,
                    "tp": p.candidate.tp,
                    "quant": p.candidate.quant,
                    "base_replicas_on_demand": p.base_replicas,
                    "peak_spot_replicas": p.peak_spot_replicas,
                    "spot_duty_ratio": p.spot_duty_ratio,
                    "cost": p.cost,
                },
            }
            for t, p in zip(traces, plans, strict=True)
        ],
        "rightsize_trace": first.file,
        "rightsize_seed_prices": seed_ranked,
        "rightsize_aws_prices": aws_ranked,
    }

    def ranked_table(title: str, rows: list[Candidate]) -> Table:
        return grid_table(
            title,
            ["GPU", "TP", "quant", "replicas", "batch", "$/h", "$/1M", "$/1M at capacity"],
            [
                [
                    c.gpu,
                    str(c.tp),
                    c.quant,
                    str(c.replicas),
                    str(c.batch),
                    money(c.usd_per_hour),
                    money(c.usd_per_million_tokens, 3),
                    money(c.usd_per_million_tokens_at_capacity, 3),
                ]
                for c in rows
            ],
        )

    def tables() -> list[Table]:
        return [
            key_value_table(
                "1. The seed's example: Llama-2 70B on 4×A100 80GB",
                [("$2.21/GPU-h, 2,400 tok/s, 70% utilization", money(headline))],
            ),
            grid_table(
                "2. Real demand, per minute",
                [
                    "trace",
                    "requests",
                    "span",
                    "tokens in/out",
                    "out tok/s p50",
                    "peak",
                    "peak/p50",
                ],
                [
                    [
                        t.label,
                        num(t.requests),
                        f"{t.duration_s / 60:.0f} min",
                        f"{t.mean_input_tokens:.0f} / {t.mean_output_tokens:.0f}",
                        num(t.output_tokens_per_second_p50),
                        num(t.output_tokens_per_second_peak),
                        f"{t.output_tokens_per_second_peak / t.output_tokens_per_second_p50:.2f}×"
                        if t.output_tokens_per_second_p50 > 0
                        else "—",
                    ]
                    for t in traces
                ],
            ),
            ranked_table(
                f"3a. Serving {first.label}'s peak with {DEMO_MODEL}: cheapest at seed prices",
                seed_ranked,
            ),
            ranked_table("3b. The same at AWS us-east-1 on-demand prices", aws_ranked),
            grid_table(
                f"4. Hybrid: on-demand base for the median minute, spot for the rest; "
                f"AWS us-east-1, $ per month of {HOURS_PER_MONTH:.0f} h of the trace's hour "
                "(on-demand = a fleet sized for the peak; '—' = the base covers the peak)",
                [
                    "trace",
                    "replica",
                    "base",
                    "spot",
                    "spot time",
                    "hybrid",
                    "on-demand",
                    "saved",
                ],
                [
                    [
                        t.label,
                        f"{p.candidate.tp}×{p.candidate.gpu} {p.candidate.quant}",
                        str(p.base_replicas),
                        str(p.peak_spot_replicas),
                        pct(p.spot_duty_ratio),
                        money(p.cost.monthly_hybrid_usd, 0),
                        money(p.cost.monthly_all_on_demand_usd, 0),
                        pct(p.cost.savings_ratio) if p.peak_spot_replicas else "—",
                    ]
                    for t, p in zip(traces, plans, strict=True)
                ],
            ),
        ]

    emit(output, result, tables)
