"""`llmcost demo`: the cost engine on real data, end to end, in one screen.

1. The seed's headline number, reproduced by the seed's own function.
2. A real request trace (Azure LLM inference 2023, conversation) turned into demand.
3. Right-sizing Llama-2 70B for that demand's peak at the seed's and at AWS prices.
4. The seed's hybrid pattern for the same demand: an on-demand base at the median, spot for the
   rest, priced with AWS us-east-1 on-demand and spot prices, against all on-demand at peak.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from rich.console import Console

from costengine.cost import HOURS_PER_MONTH, cost_per_million_tokens
from costengine.pricing import CapacityType, aws_us_east_1_price_sheet, seed_price_sheet
from costengine.rightsize import Demand, rightsize
from costengine.spot import hybrid_spot_cost
from costoperator.cli.render import emit, grid_table, key_value_table, money, num, pct
from costoperator.traces import TraceError, demand_series, find_shared_data, read_trace

DEMO_MODEL = "llama-2-70b"
DEFAULT_TRACE = ("traces", "azure_llm_2023_conv.csv")


def run_demo(trace: Path | None, output: str) -> None:
    path = trace or find_shared_data(*DEFAULT_TRACE)
    if path is None:
        raise TraceError(
            "the shared data folder (../shared/data beside the project) was not found; "
            "pass --trace FILE with an Azure CSV or Mooncake JSONL trace"
        )
    console = Console(stderr=True)
    if output == "table":
        console.print(f"[dim]reading {path.name} …[/dim]")
    requests = read_trace(path)
    _, outputs = demand_series(requests, 60.0)
    duration_s = requests[-1].arrival_s - requests[0].arrival_s
    mean_in = statistics.fmean(r.input_tokens for r in requests)
    mean_out = statistics.fmean(max(1, r.output_tokens) for r in requests)
    peak_out = max(outputs)
    p50_out = statistics.median(outputs)

    headline = cost_per_million_tokens(2.21, 2400, 0.70, 4)
    demand = Demand(peak_out, max(1, round(mean_in)), max(1, round(mean_out)))
    seed_ranked = rightsize(DEMO_MODEL, demand, seed_price_sheet())
    aws_ranked = rightsize(
        DEMO_MODEL,
        demand,
        aws_us_east_1_price_sheet(),
        capacity_types=(CapacityType.ON_DEMAND,),
    )
    if not aws_ranked:
        raise TraceError(f"no configuration serves the trace's peak of {peak_out:.0f} tokens/s")
    best = aws_ranked[0]
    sheet = aws_us_east_1_price_sheet()
    on_demand = sheet.usd_per_gpu_hour(best.gpu, CapacityType.ON_DEMAND)
    spot_price = (
        sheet.usd_per_gpu_hour(best.gpu, CapacityType.SPOT)
        if sheet.has(best.gpu, CapacityType.SPOT)
        else on_demand
    )
    per_replica = best.replica_output_tokens_per_second * 0.7
    base = max(1, math.ceil(p50_out / per_replica))
    spot_by_minute = [max(0, math.ceil(d / per_replica) - base) for d in outputs]
    peak_spot = max(spot_by_minute)
    duty = statistics.fmean(s / peak_spot for s in spot_by_minute) if peak_spot else 0.0
    hybrid = hybrid_spot_cost(
        base * best.tp,
        peak_spot * best.tp,
        on_demand,
        spot_price,
        duty,
        (base + peak_spot) * best.tp,
    )

    result = {
        "seed_headline_usd_per_million_tokens": headline,
        "trace": {
            "file": path.name,
            "requests": len(requests),
            "duration_s": duration_s,
            "mean_input_tokens": mean_in,
            "mean_output_tokens": mean_out,
            "output_tokens_per_second_p50": p50_out,
            "output_tokens_per_second_peak": peak_out,
        },
        "rightsize_seed_prices": seed_ranked[:5],
        "rightsize_aws_prices": aws_ranked[:5],
        "hybrid_plan": {
            "gpu": best.gpu,
            "tp": best.tp,
            "quant": best.quant,
            "base_replicas_on_demand": base,
            "peak_spot_replicas": peak_spot,
            "spot_duty_ratio": duty,
            "cost": hybrid,
        },
    }

    def tables() -> list[object]:
        def ranked(title: str, rows: list) -> object:  # type: ignore[type-arg]
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
                    for c in rows[:5]
                ],
            )

        return [
            key_value_table(
                "1. The seed's example: Llama-2 70B on 4×A100 80GB",
                [("$2.21/GPU-h, 2,400 tok/s, 70% utilization", money(headline))],
            ),
            key_value_table(
                f"2. Real demand: {path.name}",
                [
                    ("requests", num(len(requests))),
                    ("span", f"{duration_s / 60:.0f} min"),
                    ("mean prompt / completion", f"{mean_in:.0f} / {mean_out:.0f} tokens"),
                    ("output tokens/s, median minute", num(p50_out)),
                    ("output tokens/s, peak minute", num(peak_out)),
                ],
            ),
            ranked(
                f"3a. Cheapest ways to serve the peak with {DEMO_MODEL} (seed prices)", seed_ranked
            ),
            ranked("3b. Same at AWS us-east-1 on-demand prices", aws_ranked),
            key_value_table(
                f"4. Hybrid plan on {best.tp}× {best.gpu} ({best.quant}) at AWS prices, per month",
                [
                    ("on-demand base (median demand)", f"{base} replicas"),
                    ("spot burst at peak", f"{peak_spot} replicas, {pct(duty)} of the time"),
                    ("hybrid", money(hybrid.monthly_hybrid_usd, 0)),
                    ("all on-demand at peak", money(hybrid.monthly_all_on_demand_usd, 0)),
                    (
                        "saved",
                        f"{money(hybrid.monthly_savings_usd, 0)} ({pct(hybrid.savings_ratio)})",
                    ),
                    ("month", f"{HOURS_PER_MONTH:.0f} h of this hour's pattern"),
                ],
            ),
        ]

    emit(output, result, tables)  # type: ignore[arg-type]
