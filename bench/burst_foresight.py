"""How foreseeable a trace's bursts are: the oracle's fleet per tick against what a planner
could know when the replicas had to be ordered (the rate one cold start earlier).

    .venv/bin/python bench/burst_foresight.py [--trace azure_llm_2023_code.csv] > out.json

Runs `llmcost backtest`'s oracle on the shared trace (defaults of the backtest), then per scored
control tick: the oracle's ready replicas, the 60 s rate ending one cold start before the
tick (in replicas' worth of demand at full throughput) and the busiest step of the tick. Prints
JSON: how the rate a cold start earlier is distributed before the ticks where the oracle runs
a large fleet and before those where it runs a small one, and how many quiet rates came before
large fleets and large bursts. If the two distributions overlap, no rule on past demand can
order the oracle's replicas in time: an online planner must hold them through the quiet.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from costoperator.backtest import BacktestOptions, run
from costoperator.traces import find_shared_data


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", default="azure_llm_2023_code.csv")
    parser.add_argument("--large", type=int, default=4, help="a large fleet: this many or more")
    parser.add_argument("--small", type=int, default=2, help="a small fleet: this many or fewer")
    parser.add_argument("--quiet", type=float, default=0.5, help="a quiet rate, in replicas")
    args = parser.parse_args()
    path = find_shared_data("traces", args.trace)
    if path is None:
        print(f"trace {args.trace} not found in the shared data folder", file=sys.stderr)
        return 1
    bt = run(BacktestOptions(trace=Path(path), policies=("oracle",), progress=False))
    fleet = bt.fleet
    series = bt.result.policies["oracle"].series
    demand = series.demand_tokens_per_second
    per = fleet.steps_per_period
    lead = math.ceil(fleet.cold_start_s / fleet.step_s)
    window = math.ceil(fleet.rate_window_s / fleet.step_s)
    capacity = fleet.replica_tokens_per_second
    ticks = []
    for t in range(fleet.warmup_steps, len(demand) - per, per):
        seen = t - lead
        if seen < window:
            continue
        ticks.append(
            {
                "replicas": series.on_demand_ready[t] + series.spot_ready[t],
                "rate_a_cold_start_earlier": sum(demand[seen - window : seen]) / window / capacity,
                "busiest_step": max(demand[t : t + per]) / capacity,
            }
        )
    large = [x for x in ticks if x["replicas"] >= args.large]
    small = [x for x in ticks if x["replicas"] <= args.small]
    quiet = [x for x in ticks if x["rate_a_cold_start_earlier"] < args.quiet]
    bursts = [x for x in ticks if x["busiest_step"] >= args.large]

    def spread(group: list[dict[str, float]]) -> dict[str, float | None]:
        rates = [x["rate_a_cold_start_earlier"] for x in group]
        return {f"p{int(q * 100)}": _quantile(rates, q) for q in (0.25, 0.5, 0.75)}

    json.dump(
        {
            "trace": args.trace,
            "ticks": len(ticks),
            "oracle_large_fleet_ticks": len(large),
            "oracle_small_fleet_ticks": len(small),
            "rate_a_cold_start_before_large_fleets": spread(large),
            "rate_a_cold_start_before_small_fleets": spread(small),
            "quiet_rate_ticks": len(quiet),
            "quiet_then_large_fleet": sum(1 for x in quiet if x["replicas"] >= args.large),
            "quiet_then_small_fleet": sum(1 for x in quiet if x["replicas"] <= args.small),
            "burst_ticks": len(bursts),
            "bursts_after_a_quiet_rate": sum(
                1 for x in bursts if x["rate_a_cold_start_earlier"] < args.quiet
            ),
            "options": {"large": args.large, "small": args.small, "quiet": args.quiet},
        },
        sys.stdout,
        indent=2,
    )
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
