"""API writes per minute of the product operator at 1,000 policies over 10,000 pods.

    .venv/bin/python bench/api_writes.py [--policies 1000] [--pods-per-workload 5]
        [--minutes 6] [--warmup-minutes 1] > bench/out/api_writes.json

kopf runs the product's handlers (costoperator.handlers) in this process, with the product's
defaults (30 s policy interval, status timer every 5 s, at most one status write per policy per
`--status-min-interval` s and about `--status-writes-per-second` in all, the leader Lease
renewed every 2 s), against the in-memory Kubernetes
API in a child process holding `--policies` InferenceCostPolicies, each selecting two
Deployments (on-demand and spot) of `--pods-per-workload` GPU pods.

The Prometheus tick is replaced by one that gives every policy *new* figures at every tick (the
worst case for status writes: a real fleet's $/1M moves a little every tick too); the writes
are what this measures, not the queries (bench/tick_scale.py measures the tick against a real
Prometheus). The emulator counts every write request by method, resource and subresource; the
JSON gives writes per minute over the minutes after `--warmup-minutes` (the start writes kopf's
finalizer on every policy and the first status of each).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import time
from typing import Any

from operator_thread import start_operator

import costoperator.handlers as handlers
from costoperator.config import OperatorConfig
from costoperator.figures import PolicyView, WorkloadFigures
from costoperator.kube_emulator import (
    ClusterEmulator,
    gpu_node,
    inference_cost_policy,
    namespace_object,
    workload_objects,
)
from costoperator.promserver import free_port
from costoperator.tick import TickReport

NS = "fleet"


def seed(cluster: ClusterEmulator, policies: int, pods: int) -> None:
    nodes = [gpu_node(f"n{i}", gpus=8) for i in range(max(1, policies * 2 * pods // 8))]
    objects: list[dict[str, Any]] = [namespace_object(NS), *nodes]
    n = 0
    for i in range(policies):
        for suffix in ("", "-spot"):
            names = [nodes[(n + k) % len(nodes)]["metadata"]["name"] for k in range(pods)]
            n += pods
            objects += workload_objects(
                f"w{i}{suffix}", NS, replicas=pods, nodes=names, labels={"app": f"w{i}"}
            )
        objects.append(
            inference_cost_policy(
                f"p{i}",
                NS,
                {
                    "selector": {"matchLabels": {"app": f"w{i}"}},
                    "engine": "vllm",
                    "model": "llama-2-70b",
                    "interval": "30s",
                },
            )
        )
    cluster.seed(objects)


def serve_emulator(policies: int, pods: int) -> int:
    """In a child process: the emulator's own CPU does not slow the operator's event loop."""
    # A short request log: kmock matches each request against every logged one (tests/README.md).
    with ClusterEmulator(request_log_limit=20, history_limit=20, event_history=50_000) as c:
        seed(c, policies, pods)
        print(c.kubeconfig, flush=True)
        for line in sys.stdin:
            if line.strip() == "counts":
                counts = {"/".join(k): v for k, v in c.write_counts().items()}
                print(json.dumps(counts), flush=True)
    return 0


def moving_tick(_client: Any, views: list[PolicyView], *_args: Any) -> TickReport:
    """New figures for every workload of every policy at every tick."""
    started = time.perf_counter()
    figures = {}
    for view in views:
        for suffix in ("", "-spot"):
            workload = f"w{view.name[1:]}{suffix}"
            rate = random.uniform(500, 5000)
            figures[(view.namespace, view.name, workload)] = WorkloadFigures(
                namespace=view.namespace,
                policy=view.name,
                workload=workload,
                model="llama-2-70b",
                gpu="A100-80GB",
                engine="vllm",
                hourly_cost_usd={"on_demand": 17.68},
                gpus={"on_demand": 20.0},
                replicas={"on_demand": 5},
                input_tokens_per_second=rate * 0.8,
                output_tokens_per_second=rate * 0.2,
                usd_per_million_tokens=17.68 / (rate * 3600) * 1e6,
                gpu_utilization_ratio=random.uniform(0.3, 0.9),
                updated_at=time.time(),
            )
    return TickReport(figures=figures, queries=0, seconds=time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--pods-per-workload", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=6.0, help="measured, after warm-up")
    parser.add_argument("--warmup-minutes", type=float, default=1.0)
    parser.add_argument("--status-min-interval", type=float, default=30.0)
    parser.add_argument(
        "--status-writes-per-second", type=float, default=10.0, help="the operator's budget"
    )
    parser.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_emulator:
        return serve_emulator(args.policies, args.pods_per_workload)

    logging.getLogger("kopf").setLevel(logging.WARNING)
    print(f"seeding {args.policies} policies …", file=sys.stderr)
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve-emulator",
            "--policies",
            str(args.policies),
            "--pods-per-workload",
            str(args.pods_per_workload),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    os.environ["KUBECONFIG"] = child.stdout.readline().strip()
    os.environ.pop("KUBERNETES_SERVICE_HOST", None)

    def counts() -> dict[str, int]:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write("counts\n")
        child.stdin.flush()
        return dict(json.loads(child.stdout.readline()))

    handlers.run_tick = moving_tick  # type: ignore[assignment]
    config = OperatorConfig(
        prometheus_url=f"http://127.0.0.1:{free_port()}",  # never asked: the tick is replaced
        metrics_port=0,
        status_min_interval_s=args.status_min_interval,
        status_writes_per_s=args.status_writes_per_second,
    )
    stop_operator = start_operator(config)
    time.sleep(args.warmup_minutes * 60)
    start_counts, started = counts(), time.monotonic()
    minutes: list[dict[str, int]] = []
    previous = start_counts
    for m in range(int(args.minutes)):
        time.sleep(60)
        now = counts()
        minute = {k: v - previous.get(k, 0) for k, v in now.items() if v - previous.get(k, 0)}
        minutes.append(minute)
        previous = now
        print(f"[minute {m + 1}] {sum(minute.values())} writes: {minute}", file=sys.stderr)
    elapsed_min = (time.monotonic() - started) / 60
    stop_operator()
    child.stdin.close()
    child.wait(timeout=60)
    total = {k: v - start_counts.get(k, 0) for k, v in previous.items()}
    per_minute = {k: round(v / elapsed_min, 1) for k, v in sorted(total.items()) if v}
    print(
        json.dumps(
            {
                "policies": args.policies,
                "pods": args.policies * 2 * args.pods_per_workload,
                "status_min_interval_s": args.status_min_interval,
                "status_writes_per_second": args.status_writes_per_second,
                "measured_minutes": round(elapsed_min, 2),
                "writes_per_minute": round(sum(total.values()) / elapsed_min, 1),
                "writes_per_minute_by_request": per_minute,
                "minutes": [sum(m.values()) for m in minutes],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
