"""The spot backtest away from its defaults: the issue's goals under conditions the planner was
not tuned on; prints JSON.

    python bench/backtest_conditions.py [--condition NAME ...] [--trace NAME ...]
        [--policy planner ...] [--oracle-time-limit-s S]

The planner's rules were developed on the three shared traces at `llmcost backtest`'s defaults
(8 replicas at the on-demand peak, a 120 s cold start, a 30 s latency bound, 30 s ticks, the
4-node AWS market, the seed's prices), and it will be judged on traffic that is not in the
shared folder. This replays the same traces with one default changed at a time (`CONDITIONS`:
the fleet's size, the cold start, the latency bound, the tick, another spot market, another
price sheet) and reports, per condition and trace, seed_hybrid's, the planner's and the
oracle's cost, shortfall and scale actions, and the issue's goals for the planner. The
180 s and 300 s cold starts score from two cold starts on, past the default 300 s warm-up
(every policy starts from one replica). Each run takes ~1 s without the oracle and up to its
solver's limit (default 20 s) with it; all of them, ~10 minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from costoperator.backtest import BacktestOptions, report, run
from costoperator.cli.render import jsonable
from costoperator.traces import find_shared_data

TRACES = ("azure_llm_2023_conv.csv", "azure_llm_2023_code.csv", "mooncake_conversation.jsonl")
POLICIES = ("seed_hybrid", "planner", "oracle")
KEYS = ("cost_usd", "shortfall_token_ratio", "scale_actions", "preemptions")


@dataclass(frozen=True)
class Condition:
    why: str
    options: dict[str, Any] = field(default_factory=dict)
    spot_trace: str | None = None
    """A file of the shared spot folder instead of the default market."""


CONDITIONS = {
    "defaults": Condition("the defaults, for reference"),
    "peak-4": Condition("a smaller fleet: 4 replicas at the on-demand peak", {"peak_replicas": 4}),
    "peak-16": Condition("a larger fleet: 16 replicas at the peak", {"peak_replicas": 16}),
    "peak-32": Condition("a larger fleet: 32 replicas at the peak", {"peak_replicas": 32}),
    "cold-60": Condition("a 60 s cold start (a cached image and weights)", {"cold_start_s": 60.0}),
    "cold-90": Condition("a 90 s cold start", {"cold_start_s": 90.0}),
    "cold-180": Condition("a 180 s cold start", {"cold_start_s": 180.0, "warmup_s": 360.0}),
    "cold-300": Condition(
        "a 300 s cold start, the seed's limit (longer than the 120 s notice: the P50 base)",
        {"cold_start_s": 300.0, "warmup_s": 600.0},
    ),
    "notice-90": Condition(
        "a 90 s preemption notice: with the 30 s bound it spans the cold start (fraction base)",
        {"preemption_notice_s": 90.0},
    ),
    "notice-30-cold-60": Condition(
        "GCP's and Azure's 30 s notice with a 60 s cold start (fraction base)",
        {"preemption_notice_s": 30.0, "cold_start_s": 60.0},
    ),
    "latency-10": Condition("a 10 s latency bound: one step of queue", {"latency_bound_s": 10.0}),
    "latency-60": Condition("a 60 s latency bound", {"latency_bound_s": 60.0}),
    "tick-20": Condition("the operator ticking every 20 s", {"control_period_s": 20.0}),
    "tick-60": Condition("the operator ticking every 60 s", {"control_period_s": 60.0}),
    "market-us-west-2b-24x": Condition(
        "another AWS market (1-node us-west-2b), a day of it in the hour",
        {"spot_speedup": 24.0},
        spot_trace="preemption_1-node_aws-04-22-2023_us-west-2b_v100_1.json",
    ),
    "prices-aws": Condition(
        "AWS us-east-1 list prices (another spot discount)", {"prices": "aws-us-east-1"}
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--condition", action="append", choices=sorted(CONDITIONS))
    parser.add_argument("--trace", action="append", choices=TRACES)
    parser.add_argument("--policy", action="append", choices=POLICIES)
    parser.add_argument("--oracle-time-limit-s", type=float, default=20.0)
    args = parser.parse_args()
    names = args.condition or list(CONDITIONS)
    policies = tuple(args.policy or POLICIES)
    results: dict[str, Any] = {}
    for name in names:
        condition = CONDITIONS[name]
        options = dict(condition.options)
        if condition.spot_trace is not None:
            options["spot_trace"] = find_shared_data("spot", condition.spot_trace)
            if options["spot_trace"] is None:
                print(f"spot trace {condition.spot_trace} not found", file=sys.stderr)
                return 1
        rows: dict[str, Any] = {}
        for trace in args.trace or TRACES:
            path = find_shared_data("traces", trace)
            if path is None:
                print(f"trace {trace} not found in the shared data folder", file=sys.stderr)
                return 1
            start = time.perf_counter()
            bt = run(
                BacktestOptions(
                    trace=path,
                    policies=policies,
                    progress=False,
                    oracle_time_limit_s=args.oracle_time_limit_s,
                    **options,
                )
            )
            doc = report(bt)
            figures = doc["policies"]
            row: dict[str, Any] = {
                "wall_s": round(time.perf_counter() - start, 1),
                "policies": {p: {k: figures[p][k] for k in KEYS} for p in policies},
                "goals": doc["goals"],
            }
            if "planner" in figures and "oracle" in figures:
                row["planner_vs_oracle"] = round(
                    figures["planner"]["cost_usd"] / figures["oracle"]["cost_usd"], 3
                )
            rows[trace] = row
            print(f"{name} {trace}: {row['wall_s']} s", file=sys.stderr)
        results[name] = {"why": condition.why, "options": condition.options, "traces": rows}
    print(json.dumps(jsonable({"conditions": results}), indent=2, allow_nan=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
