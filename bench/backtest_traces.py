"""The spot backtest on the three shared request traces; prints JSON.

    python bench/backtest_traces.py [--speedup 1 --speedup 24] [--out DIR]
        [--oracle-utilization U]
        [--planner-base p50|market|fraction|operator|operator-p50|operator-fraction]
        [--planner-recent-peak] [--planner-no-level] [--preemption-offset-s S]
        [--preemption-notice-s S]

For each trace of the shared data folder and each spot-market speedup (default: 1, the market
replayed in real time, which is `llmcost backtest`'s default; and 24, a day of the market in
the trace's hour, a stress test), runs `llmcost backtest`'s defaults otherwise: Llama-2 70B on
4× A100-80GB at the seed's prices, the load scaled so the on-demand peak fleet is 8 replicas,
the shared 4-node AWS us-east-1f preemption trace, a 120 s cold start, AWS's 120 s preemption
notice, billing per started minute, a 20 s limit on the oracle's solver. Per policy: cost, $/1M
tokens, shortfall, scale actions, preemptions, savings against on_demand_peak; and the issue's
goals for the planner.
With --out, each run's summary.json and plots go to DIR/<speedup>x/<trace>/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from costengine.backtest import PLANNER_BASES
from costoperator.backtest import BacktestOptions, report, run
from costoperator.cli.render import jsonable
from costoperator.traces import find_shared_data

TRACES = ("azure_llm_2023_conv.csv", "azure_llm_2023_code.csv", "mooncake_conversation.jsonl")
KEYS = (
    "cost_usd",
    "usd_per_million_tokens",
    "shortfall_token_ratio",
    "scale_actions",
    "preemptions",
    "savings_vs_on_demand_peak_ratio",
    "on_demand_replica_hours",
    "spot_replica_hours",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speedup", type=float, action="append", help="repeat; default 1 and 24")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--oracle-utilization",
        type=float,
        default=None,
        help="the oracle's utilization bound (default: the target utilization; 1: 100%% busy)",
    )
    parser.add_argument(
        "--planner-base",
        choices=PLANNER_BASES,
        default=None,
        help="the planner's on-demand base rule (default: fraction when the preemption notice "
        "covers the cold start, else p50)",
    )
    parser.add_argument(
        "--planner-recent-peak",
        action="store_true",
        help="size the planner for the recent peak plus 10%% headroom (the earlier rule)",
    )
    parser.add_argument(
        "--planner-no-level",
        action="store_true",
        help="size the planner's steady term at each tick's rate, not the sustained level",
    )
    parser.add_argument(
        "--planner-no-queue",
        action="store_true",
        help="size the planner's burst term on the rate, not the queue-aware burst signal",
    )
    parser.add_argument(
        "--preemption-offset-s", type=float, default=0.0, help="start this far into the market"
    )
    parser.add_argument(
        "--preemption-notice-s",
        type=float,
        default=None,
        help="how long ahead the market announces a preemption (default: llmcost's, 120 s)",
    )
    args = parser.parse_args()
    speedups = args.speedup or [1.0, 24.0]
    overrides: dict[str, Any] = {"planner_base": args.planner_base}
    if args.planner_no_level:
        overrides["planner_level"] = False
    if args.planner_no_queue:
        overrides["planner_queue"] = False
    if args.planner_recent_peak:
        overrides.update(planner_burst_quantile=None, planner_headroom=0.1)
    if args.preemption_notice_s is not None:
        overrides["preemption_notice_s"] = args.preemption_notice_s
    results: dict[str, Any] = {}
    for speedup in speedups:
        scenario: dict[str, Any] = {}
        for name in TRACES:
            path = find_shared_data("traces", name)
            if path is None:
                print(f"trace {name} not found in the shared data folder", file=sys.stderr)
                return 1
            out = args.out / f"{speedup:g}x" / path.stem if args.out else None
            start = time.perf_counter()
            options = BacktestOptions(
                trace=path,
                spot_speedup=speedup,
                spot_offset_s=args.preemption_offset_s,
                **overrides,
                oracle_utilization=args.oracle_utilization,
                out=out,
                progress=False,
            )
            bt = run(options)
            doc = report(bt)
            scenario[name] = {
                "wall_s": round(time.perf_counter() - start, 1),
                "load_scale": doc["load_scale"],
                "fleets": doc["fleets"],
                "spot_market": doc["spot_market"],
                "oracle": doc["oracle"],
                "policies": {
                    policy: {k: figures[k] for k in KEYS}
                    for policy, figures in doc["policies"].items()
                },
                "goals": doc["goals"],
                "warnings": doc["warnings"],
            }
            print(f"{speedup:g}x {name}: {scenario[name]['wall_s']} s", file=sys.stderr)
        results[f"preemption_speedup_{speedup:g}"] = scenario
    options = report(bt)["options"]
    options.pop("preemption_speedup")
    doc = {"options": options, "scenarios": results}
    print(json.dumps(jsonable(doc), indent=2, allow_nan=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
