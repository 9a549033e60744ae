"""CPU cost of the fleet simulator: one hour of each real trace; prints JSON.

    python bench/sim_speed.py [--pods 4] [--model llama-3.1-8b] [--gpu A100-80GB] [--tp 1]

For each trace of the shared data folder, a fleet of `--pods` vLLM replicas replays the whole
trace (3,600 trace seconds) in one `advance_to`, and again in 1-second slices (what
`SimServer` does at 20× speed with its default 50 ms tick: 3,600 calls). CPU seconds are
process time, so they do not depend on other load on the machine. The simulated figures
(busy ratio, cache hit ratio, requests in flight at the end) show what the fleet went through:
an overloaded fleet queues, which costs the simulator little.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from costoperator.sim import Fleet, Traffic, replica_pods
from costoperator.traces import find_shared_data, read_trace

TRACES = ("azure_llm_2023_code.csv", "azure_llm_2023_conv.csv", "mooncake_conversation.jsonl")
HOUR_S = 3600.0
#: Trace seconds per `SimServer` tick at 20× speed and a 50 ms tick.
SLICE_S = 20 * 0.05


def _run(fleet: Fleet, slice_s: float | None) -> float:
    start = time.process_time()
    if slice_s is None:
        fleet.advance_to(HOUR_S)
    else:
        ticks = int(HOUR_S / slice_s)
        for i in range(1, ticks + 1):
            fleet.advance_to(i * slice_s)
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=4)
    parser.add_argument("--model", default="llama-3.1-8b")
    parser.add_argument("--gpu", default="A100-80GB")
    parser.add_argument("--tp", type=int, default=1)
    args = parser.parse_args()
    results = {}
    for name in TRACES:
        path = find_shared_data("traces", name)
        if path is None:
            print(f"trace {name} not found in the shared data folder", file=sys.stderr)
            return 1
        requests = read_trace(path)

        pods, nodes = replica_pods("bench", args.pods, model=args.model, gpu=args.gpu, tp=args.tp)
        whole = Fleet(pods, [Traffic("bench", requests)], nodes)
        cpu_whole = _run(whole, None)
        cpu_sliced = _run(Fleet(pods, [Traffic("bench", requests)], nodes), SLICE_S)
        truth = whole.truth("bench", 0.0, HOUR_S)
        results[name] = {
            "requests": len(requests),
            "cpu_s_one_advance": round(cpu_whole, 3),
            "cpu_s_sliced": round(cpu_sliced, 3),
            "slices": int(HOUR_S / SLICE_S),
            "busy_ratio": round(truth.busy_ratio, 3),
            "cache_hit_ratio": round(truth.cache_hit_ratio, 3),
            "in_flight_at_end": whole.in_flight,
            "timeline_points": sum(p.truth_points for p in whole.pods),
        }
    json.dump(
        {
            "pods": args.pods,
            "deployment": f"{args.model} on {args.tp}x {args.gpu}, vllm",
            "trace_s": HOUR_S,
            "traces": results,
        },
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
