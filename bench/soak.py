"""Soak: the product operator with many policies and short ticks; is its memory flat?

    .venv/bin/python bench/soak.py [--policies 200] [--minutes 10] [--sample-s 15] > out.json

kopf runs the product's handlers (costoperator.handlers) in this process against the in-memory
Kubernetes API, with `--policies` InferenceCostPolicies (each selecting two Deployments with one
GPU pod each), a 5 s policy interval, the status timer every 5 s and a status write allowed every
second — the pattern of kopf issue #1172 (a leak with timers that patch). Prometheus is a closed
loopback port, so every tick fails fast and every policy's status flips to and stays stale: the
status path, the events path and the tick loop all run at full rate. The emulator runs in a
child process, so the RSS is the operator's own. RSS (VmRSS) is sampled
every `--sample-s` seconds; the JSON gives the samples, the growth over the second half of the
run and a least-squares slope in MB per hour over that half (the first half includes warm-up:
kopf's caches, the first list of every resource).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from operator_thread import start_operator

from costoperator.config import OperatorConfig
from costoperator.kube_emulator import (
    ClusterEmulator,
    gpu_node,
    inference_cost_policy,
    namespace_object,
    workload_objects,
)
from costoperator.promserver import free_port


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def seed(cluster: ClusterEmulator, policies: int) -> None:
    nodes = [gpu_node(f"n{i}", gpus=8) for i in range(max(1, policies // 4))]
    objects: list[dict[str, Any]] = [namespace_object("soak"), *nodes]
    for i in range(policies):
        node = nodes[i % len(nodes)]["metadata"]["name"]
        for suffix in ("", "-spot"):
            objects += workload_objects(
                f"w{i}{suffix}", "soak", replicas=1, nodes=[node], labels={"app": f"w{i}"}
            )
        objects.append(
            inference_cost_policy(
                f"p{i}",
                "soak",
                {"selector": {"matchLabels": {"app": f"w{i}"}}, "engine": "vllm", "interval": "5s"},
            )
        )
    cluster.seed(objects)


def serve_emulator(policies: int) -> int:
    """In a child process, so the operator's RSS is its own: the emulator keeps every object
    and some history, and would grow with the events the operator posts."""
    with ClusterEmulator(request_log_limit=1000, history_limit=20) as cluster:
        seed(cluster, policies)
        print(cluster.kubeconfig, flush=True)
        sys.stdin.read()  # until the parent closes our stdin
        statuses = sum(
            1
            for body in cluster.list("icp", namespace="soak")
            if (body.get("status") or {}).get("workloads") == 2
        )
        print(statuses, flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sample-s", type=float, default=15.0)
    parser.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_emulator:
        return serve_emulator(args.policies)

    logging.getLogger("costoperator").setLevel(logging.CRITICAL)  # every tick fails: on purpose
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-emulator", "--policies", str(args.policies)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    os.environ["KUBECONFIG"] = child.stdout.readline().strip()
    os.environ.pop("KUBERNETES_SERVICE_HOST", None)
    config = OperatorConfig(
        prometheus_url=f"http://127.0.0.1:{free_port()}",
        metrics_port=0,
        default_interval_s=5.0,
        status_min_interval_s=1.0,
        query_timeout_s=1.0,
    )
    stop_operator = start_operator(config)
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    end = started + args.minutes * 60
    while time.monotonic() < end:
        time.sleep(args.sample_s)
        samples.append((round(time.monotonic() - started, 1), round(rss_mb(), 1)))
        print(f"[{samples[-1][0]:7.1f} s] RSS {samples[-1][1]:.1f} MB", file=sys.stderr)
    stop_operator()
    child.stdin.close()
    statuses = int(child.stdout.readline() or 0)
    child.wait(timeout=30)

    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    xs, ys = [t / 3600 for t, _ in half], [m for _, m in half]
    slope = statistics.linear_regression(xs, ys).slope if len(half) >= 2 else None
    print(
        json.dumps(
            {
                "policies": args.policies,
                "minutes": args.minutes,
                "policies_with_status": statuses,
                "rss_mb_samples": samples,
                "rss_mb_first": samples[0][1] if samples else None,
                "rss_mb_last": samples[-1][1] if samples else None,
                "second_half_growth_mb": round(ys[-1] - ys[0], 1) if ys else None,
                "second_half_slope_mb_per_hour": round(slope, 2) if slope is not None else None,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
