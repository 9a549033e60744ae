"""The operator's tick at 10, 100 and 1,000 InferenceCostPolicies, against a real Prometheus.

    .venv/bin/python bench/tick_scale.py [--scales 10,100,1000] [--pods-per-policy 10]
        [--ticks 10] [--naive-ticks 5] [--naive-sample 100] [--storage block,head] [--spot]
        > bench/out/tick_scale.json

Per scale, a fresh Prometheus 2.42 holds only that scale's fleet: every pod's vLLM series
(six counters, the request counter once per finish reason as vLLM v1 creates it, the
prompt-length histogram's `_count` that the operator reads requests from, and the
running-batch gauge, labelled `namespace`/`pod` as Kubernetes discovery adds them) and per
GPU the DCGM `DCGM_FI_PROF_GR_ENGINE_ACTIVE` and `DCGM_FI_DEV_GPU_UTIL` series that
dcgm-exporter's profiling configuration reports (labelled
`exported_namespace`/`exported_pod`, scraped from a dcgm-exporter pod), 20 minutes at 15 s
steps; and a day of the operator's own series at 30 s, which the drift-baseline query reads
(`--no-baseline-history` leaves it out). All of it is backfilled with promtool before the
server starts. The history ends 3-5 hours ago, clear of the head block (tests/README.md,
Prometheus quirks 5-7); `run_tick` queries without a time, so the bench's client evaluates
every query at the history's last sample. With `--storage head` the pods' series are pushed
instead by remote write (`bench/remote_write.py`) into a Prometheus started with
`--web.enable-remote-write-receiver`, history ending at the run: the in-memory head block,
which is what the operator's queries at "now" read in a cluster.

Each policy selects two Deployments of one model/GPU shape: 6 on-demand pods and 4 more
(spot where the price sheet prices spot for the GPU). The tick runs in a child process that
imports the operator's modules (kopf handlers included), builds the `ClusterState` and
`PolicyView`s, runs one warm-up tick and `--ticks` timed ones, then reads its RSS. The same
child then times the per-policy design (one set of queries per policy, filtered to its pods;
not the product's design, implemented only here), on a sample of policies when there are more
than `--naive-sample`, extrapolated linearly. Progress goes to stderr, JSON to stdout.

At 1,000 policies the OpenMetrics text is 2 GB and the bench process peaks at several GB while
promtool reads it; the whole run takes about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import hashlib
import json
import math
import os
import pstats
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from costengine.pricing import CapacityType, PriceSheet, seed_price_sheet
from costoperator import tick as tick_module
from costoperator.cluster import PodInfo
from costoperator.crds import duration_seconds
from costoperator.exporter import SnapshotKey
from costoperator.figures import PolicyView, SpotView, WorkloadFigures, carry_forward
from costoperator.figures import workload_figures as compute_workload_figures
from costoperator.promclient import PromClient, QueryResult
from costoperator.promserver import PrometheusServer, backfill_openmetrics, openmetrics_series
from costoperator.queries import (
    DECODE_SECONDS,
    GPU_BUSY_FALLBACK,
    GPU_BUSY_PREFERRED,
    PREFILL_SECONDS,
    Family,
    NamedQuery,
    gpu_busy_query,
    tick_queries,
)
from costoperator.spot import DemandHistory
from costoperator.state import ClusterState
from costoperator.tick import (
    BaselineCache,
    GpuSource,
    PhaseCache,
    baselines,
    rates_by_window,
    run_queries,
    run_tick,
)

STEP_S = 15
HISTORY_S = 20 * 60
WINDOW = "5m"
WINDOW_S = 300.0
BASELINE_WINDOW = "24h"
OWN_STEP_S = 30
"""The chart's ServiceMonitor scrapes the operator every 30 s."""
GPUS_PER_NODE = 8
ON_DEMAND_PODS_SHARE = 0.6
GOAL_QUERIES = 10
GOAL_TICK_S = 1.0
GOAL_POLICIES = 1000
GOAL_RSS_MB = 250.0


@dataclass(frozen=True, slots=True)
class Shape:
    """One model on one GPU type, as a policy's workloads run it."""

    model: str
    served_model_name: str
    gpu: str
    product: str
    """The node label `nvidia.com/gpu.product`, as GPU feature discovery sets it."""
    tp: int
    requests_per_second: float
    """Mean per pod; each pod draws its own rate around it."""


SHAPES = (
    Shape(
        "llama-3.1-8b",
        "meta-llama/Llama-3.1-8B-Instruct",
        "A100-80GB",
        "NVIDIA-A100-SXM4-80GB",
        1,
        2.0,
    ),
    Shape(
        "llama-3.1-70b",
        "meta-llama/Llama-3.1-70B-Instruct",
        "H100-SXM",
        "NVIDIA-H100-80GB-HBM3",
        4,
        1.5,
    ),
    Shape("mistral-7b", "mistralai/Mistral-7B-Instruct-v0.3", "L4", "NVIDIA-L4", 1, 0.5),
    Shape("llama-3.1-8b", "meta-llama/Llama-3.1-8B-Instruct", "A10G", "NVIDIA-A10G", 1, 0.4),
)


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    workload: str
    replicaset: str
    node: str
    node_ip: str
    gpu_indices: tuple[int, ...]
    ip: str
    shape: Shape


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    product: str
    capacity: CapacityType


@dataclass(frozen=True, slots=True)
class Fleet:
    policies: list[PolicyView]
    workloads: list[tuple[str, str, str]]
    """(namespace, name, app label)."""
    pods: list[Pod]
    nodes: list[Node]


def _hash(text: str, length: int) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # the Deployment controller's pod-name alphabet
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def _ip(index: int, base: int) -> str:
    return f"10.{base}.{index // 256 % 256}.{index % 256}"


def build_fleet(
    policies: int, pods_per_policy: int, prices: PriceSheet, spot: bool = False
) -> Fleet:
    """A deterministic fleet: 10 policies per namespace, two Deployments per policy; `spot`:
    each policy plans spot (Recommend) for its second Deployment."""
    views: list[PolicyView] = []
    workloads: list[tuple[str, str, str]] = []
    pods: list[Pod] = []
    nodes: list[Node] = []
    on_demand = max(1, round(pods_per_policy * ON_DEMAND_PODS_SHARE))
    for i in range(policies):
        shape = SHAPES[i % len(SHAPES)]
        namespace = f"inference-{i // 10:03d}"
        app = f"llm-{i:04d}"
        views.append(
            PolicyView(
                namespace=namespace,
                name=app,
                window=WINDOW,
                window_s=WINDOW_S,
                selector={"matchLabels": {"app": app}},
                baseline_window=BASELINE_WINDOW,
                model=shape.model,
                spot=SpotView(mode="Recommend", target=("Deployment", f"{app}-burst"))
                if spot
                else None,
            )
        )
        spot_priced = any(
            e.gpu == shape.gpu and e.capacity_type is CapacityType.SPOT for e in prices.entries
        )
        burst_capacity = CapacityType.SPOT if spot_priced else CapacityType.ON_DEMAND
        for workload, count, capacity in (
            (app, on_demand, CapacityType.ON_DEMAND),
            (f"{app}-burst", pods_per_policy - on_demand, burst_capacity),
        ):
            if count <= 0:
                continue
            workloads.append((namespace, workload, app))
            replicaset = f"{workload}-{_hash(f'{namespace}/{workload}', 10)}"
            per_node = GPUS_PER_NODE // shape.tp
            for r in range(count):
                if r % per_node == 0:
                    nodes.append(Node(f"{workload}-node-{r // per_node}", shape.product, capacity))
                slot = r % per_node
                pods.append(
                    Pod(
                        namespace=namespace,
                        name=f"{replicaset}-{_hash(f'{namespace}/{workload}/{r}', 5)}",
                        workload=workload,
                        replicaset=replicaset,
                        node=nodes[-1].name,
                        node_ip=_ip(len(nodes) - 1, 1),
                        gpu_indices=tuple(range(slot * shape.tp, (slot + 1) * shape.tp)),
                        ip=_ip(len(pods), 2),
                        shape=shape,
                    )
                )
    return Fleet(views, workloads, pods, nodes)


# --- history -----------------------------------------------------------------------------


def _counter(
    rng: random.Random, start: float, rate: float, steps: int, jitter: float = 0.15
) -> list[float]:
    """A counter growing at `rate`/s on average, each 15 s step drawn within ±jitter."""
    values, value = [], start
    for _ in range(steps):
        values.append(value)
        value += rate * STEP_S * rng.uniform(1 - jitter, 1 + jitter)
    return values


SeriesSpec = tuple[str, str, dict[str, str], list[tuple[float, float]]]
"""(sample name, metric type, labels, [(unix seconds, value), ...])."""


def pod_history(pod: Pod, times: list[float]) -> Iterator[str]:
    """OpenMetrics text of one pod's vLLM series and its GPUs' DCGM series."""
    for name, kind, labels, samples in pod_series(pod, times):
        yield openmetrics_series(name, samples, labels=labels, metric_type=kind)  # type: ignore[arg-type]


def pod_series(pod: Pod, times: list[float]) -> Iterator[SeriesSpec]:
    """One pod's vLLM series and its GPUs' DCGM series."""
    rng = random.Random(f"{pod.namespace}/{pod.name}")
    steps = len(times)
    shape = pod.shape
    per_second = shape.requests_per_second * rng.uniform(0.6, 1.4)
    prompt_len = rng.uniform(400, 1600)
    output_len = rng.uniform(100, 400)
    hit_ratio = rng.uniform(0.2, 0.7)
    prefill_s = prompt_len / rng.uniform(4000, 12000) * shape.tp**-0.5
    decode_s = output_len * rng.uniform(0.02, 0.05)
    uptime = rng.uniform(3600, 7 * 86400)

    req = _counter(rng, per_second * uptime, per_second, steps)
    prompt = [round(v * prompt_len) for v in req]
    hits = [round(v * hit_ratio) for v in prompt]
    # vLLM v1 creates the request counter for every finish reason up front.
    finished = [
        (reason, [float(math.floor(v * share)) for v in req])
        for reason, share in (("stop", 0.9), ("length", 0.09), ("abort", 0.01))
    ]
    series: list[tuple[str, str, list[float]]] = [
        ("vllm:prompt_tokens_total", "counter", [float(v) for v in prompt]),
        ("vllm:prefix_cache_queries_total", "counter", [float(v) for v in prompt]),
        ("vllm:prefix_cache_hits_total", "counter", [float(v) for v in hits]),
        (
            "vllm:generation_tokens_total",
            "counter",
            [
                float(round(v * output_len))
                for v in _counter(rng, per_second * uptime, per_second, steps)
            ],
        ),
        # One observation per finished request: the operator's vLLM request rate.
        ("vllm:request_prompt_tokens_count", "unknown", [float(v) for v in req]),
        ("vllm:request_prefill_time_seconds_sum", "unknown", [v * prefill_s for v in req]),
        ("vllm:request_decode_time_seconds_sum", "unknown", [v * decode_s for v in req]),
    ]
    running = per_second * (prefill_s + decode_s)  # Little's law
    series.append(
        (
            "vllm:num_requests_running",
            "gauge",
            [float(max(0, round(running * rng.uniform(0.7, 1.3)))) for _ in range(steps)],
        )
    )
    labels = {
        "namespace": pod.namespace,
        "pod": pod.name,
        "instance": f"{pod.ip}:8000",
        "job": "vllm",
        "model_name": shape.served_model_name,
    }
    for reason, values in finished:
        yield (
            "vllm:request_success_total",
            "counter",
            {**labels, "finished_reason": reason},
            list(zip(times, values, strict=True)),
        )
    for name, kind, values in series:
        yield name, kind, labels, list(zip(times, values, strict=True))
    busy = min(0.98, 0.35 + 0.6 * per_second / (shape.requests_per_second * 1.4))
    exporter = f"nvidia-dcgm-exporter-{_hash(pod.node, 5)}"
    for gpu in pod.gpu_indices:
        labels = {
            "gpu": str(gpu),
            "UUID": f"GPU-{hashlib.md5(f'{pod.node}/{gpu}'.encode()).hexdigest()}",
            "device": f"nvidia{gpu}",
            "modelName": shape.product.replace("-", " "),
            "Hostname": pod.node,
            "DCGM_FI_DRIVER_VERSION": "550.54.15",
            "exported_container": "vllm",
            "exported_namespace": pod.namespace,
            "exported_pod": pod.name,
            "namespace": "gpu-operator",
            "pod": exporter,
            "container": "nvidia-dcgm-exporter",
            "instance": f"{pod.node_ip}:9400",
            "job": "nvidia-dcgm-exporter",
        }
        active = [min(1.0, max(0.0, rng.gauss(busy, 0.03))) for _ in times]
        yield (
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
            "gauge",
            labels,
            list(zip(times, active, strict=True)),
        )
        # dcgm-exporter's profiling configuration (dcp-metrics-included.csv, the GPU
        # operator's) reports GPU_UTIL beside it, in integer percent.
        util = [float(round(a * 100)) for a in active]
        yield "DCGM_FI_DEV_GPU_UTIL", "gauge", labels, list(zip(times, util, strict=True))


def history_end(now: float) -> int:
    """The last sample's time: 3-5 h ago, one hour into a 2 h block (no block boundary in the
    20 minutes, no overlap with the head)."""
    return int((now - 4 * 3600) // 7200 * 7200 + 3600)


def own_history(fleet: Fleet, end: int) -> Iterator[str]:
    """OpenMetrics text of the operator's own per-workload series over the baseline window at
    the chart's ServiceMonitor interval (30 s): what the drift-baseline query reads. Four
    series per workload (hourly cost on demand and spot, input and output tokens/s), ending
    at `end`. Values wander by up to 2% per scrape, as live figures do, so the chunks compress
    like real ones (a constant series would compress to almost nothing)."""
    steps = int(duration_seconds(BASELINE_WINDOW) // OWN_STEP_S)
    times = [float(end - OWN_STEP_S * k) for k in range(steps)][::-1]
    for namespace, workload, app in fleet.workloads:
        rng = random.Random(f"own/{namespace}/{workload}")
        own = {"namespace": namespace, "policy": app, "workload": workload}
        for name, extra, level in (
            ("llmcost_hourly_cost_usd", {"capacity_type": "on_demand"}, rng.uniform(5, 60)),
            ("llmcost_hourly_cost_usd", {"capacity_type": "spot"}, rng.uniform(0, 20)),
            ("llmcost_tokens_per_second", {"token_type": "input"}, rng.uniform(500, 20000)),
            ("llmcost_tokens_per_second", {"token_type": "output"}, rng.uniform(100, 4000)),
        ):
            values, value = [], level
            for _ in times:
                value = max(0.0, value * rng.uniform(0.98, 1.02))
                values.append(round(value, 4))
            yield openmetrics_series(
                name, list(zip(times, values, strict=True)), labels={**own, **extra}
            )


def backfill(fleet: Fleet, end: int, data_dir: Path, own: bool = True) -> dict[str, Any]:
    """The pods' history, and with `own` the operator's own series over the baseline window,
    streamed to promtool in one run (a day in two or three 18 h blocks: nothing to compact)."""
    times = history_times(end)
    counts = {"pod_series": 0, "own_series": 0, "bytes": 0}

    def chunks() -> Iterator[str]:
        for pod in fleet.pods:
            for chunk in pod_history(pod, times):
                counts["pod_series"] += 1
                counts["bytes"] += len(chunk)
                yield chunk
        if own:
            for chunk in own_history(fleet, end):
                counts["own_series"] += 1
                counts["bytes"] += len(chunk)
                yield chunk

    started = time.perf_counter()
    blocks = backfill_openmetrics(
        chunks(), data_dir, timeout=3600, max_block_duration="24h" if own else None
    )
    done = time.perf_counter()
    own_samples = int(duration_seconds(BASELINE_WINDOW) // OWN_STEP_S) if own else 0
    return {
        "series": counts["pod_series"],
        "samples": counts["pod_series"] * len(times),
        "samples_per_series": len(times),
        "own_series": counts["own_series"],
        "own_samples": counts["own_series"] * own_samples,
        "openmetrics_mb": round(counts["bytes"] / 1e6, 1),
        "generate_and_backfill_s": round(done - started, 2),
        "blocks": len(blocks),
    }


def history_times(end: int) -> list[float]:
    return [float(end - HISTORY_S + STEP_S * k) for k in range(HISTORY_S // STEP_S + 1)]


def load_head(fleet: Fleet, end: int, url: str, batch_series: int = 500) -> dict[str, Any]:
    """The same history pushed into a running Prometheus' head by remote write."""
    import remote_write  # here: the measuring child's RSS is the operator's, not the bench's

    times = history_times(end)
    started = time.perf_counter()
    session = requests.Session()
    batch: list[tuple[dict[str, str], list[tuple[float, float]]]] = []
    series = sent = 0
    for pod in fleet.pods:
        for name, _kind, labels, samples in pod_series(pod, times):
            batch.append(({"__name__": name, **labels}, samples))
            if len(batch) >= batch_series:
                sent += remote_write.push(url, batch, session)
                series += len(batch)
                batch = []
    if batch:
        sent += remote_write.push(url, batch, session)
        series += len(batch)
    return {
        "series": series,
        "samples": series * len(times),
        "samples_per_series": len(times),
        "remote_write_mb": round(sent / 1e6, 1),
        "push_s": round(time.perf_counter() - started, 2),
    }


# --- cluster picture ---------------------------------------------------------------------


def cluster_state(fleet: Fleet) -> ClusterState:
    state = ClusterState()
    replicas: dict[tuple[str, str], int] = {}
    for pod in fleet.pods:
        replicas[(pod.namespace, pod.workload)] = replicas.get((pod.namespace, pod.workload), 0) + 1
    for namespace, name, app in fleet.workloads:
        state.upsert_workload(
            "Deployment",
            {
                "metadata": {"namespace": namespace, "name": name, "labels": {"app": app}},
                "spec": {"replicas": replicas[(namespace, name)]},
            },
        )
    seen: set[tuple[str, str]] = set()
    for pod in fleet.pods:
        if (pod.namespace, pod.replicaset) not in seen:
            seen.add((pod.namespace, pod.replicaset))
            state.upsert_replicaset(
                {
                    "metadata": {
                        "namespace": pod.namespace,
                        "name": pod.replicaset,
                        "ownerReferences": [
                            {"kind": "Deployment", "name": pod.workload, "controller": True}
                        ],
                    }
                }
            )
        state.upsert_pod(
            {
                "metadata": {
                    "namespace": pod.namespace,
                    "name": pod.name,
                    "labels": {"app": pod.workload.removesuffix("-burst")},
                    "ownerReferences": [
                        {"kind": "ReplicaSet", "name": pod.replicaset, "controller": True}
                    ],
                },
                "spec": {
                    "nodeName": pod.node,
                    "containers": [
                        {
                            "name": "vllm",
                            "resources": {
                                "limits": {"nvidia.com/gpu": str(pod.shape.tp)},
                                "requests": {"nvidia.com/gpu": str(pod.shape.tp)},
                            },
                        }
                    ],
                },
                "status": {"phase": "Running", "podIP": pod.ip},
            }
        )
    for node in fleet.nodes:
        state.upsert_node(
            {
                "metadata": {
                    "name": node.name,
                    "labels": {
                        "nvidia.com/gpu.product": node.product,
                        "nvidia.com/gpu.count": str(GPUS_PER_NODE),
                        "karpenter.sh/capacity-type": node.capacity.value.replace("_", "-"),
                    },
                },
                "status": {"capacity": {"nvidia.com/gpu": str(GPUS_PER_NODE)}},
            }
        )
    return state


# --- the client: every query at the history's end ----------------------------------------


@dataclass
class FixedTimeClient(PromClient):
    """Evaluates every query at `at` (the history's end, whatever time it is asked for) and
    accounts for it: time in `query` (all of it), time in the HTTP request (Prometheus'
    evaluation, JSON encoding and transfer), response bytes and samples kept."""

    at: float = 0.0
    query_seconds: float = 0.0
    http_seconds: float = 0.0
    response_bytes: int = 0
    samples: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        post = self._session.post

        def timed_post(*args: Any, **kwargs: Any) -> requests.Response:
            started = time.perf_counter()
            try:
                response = post(*args, **kwargs)  # reads the whole body (no streaming)
            finally:
                self.http_seconds += time.perf_counter() - started
            self.response_bytes += len(response.content)
            return response

        self._session.post = timed_post  # type: ignore[method-assign]

    def reset(self) -> None:
        self.query_seconds = self.http_seconds = 0.0
        self.response_bytes = self.samples = 0

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        started = time.perf_counter()
        try:
            result = super().query(promql, self.at)
        finally:
            self.query_seconds += time.perf_counter() - started
        self.samples += len(result.samples)
        return result


class GcTimer:
    """Wall time spent in the cyclic garbage collector (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1

    def reset(self) -> None:
        self.seconds, self.collections = 0.0, 0


# --- the per-policy design (for comparison only) -----------------------------------------


def _regex(names: Iterable[str]) -> str:
    return "|".join(sorted(set(names)))


def per_policy_queries(policy: PolicyView, pods: list[PodInfo]) -> list[NamedQuery]:
    """The product's queries, once per policy, every selector filtered to the policy's pods."""
    pod_re = _regex(p.name for p in pods)
    on_pods = f'namespace="{policy.namespace}", pod=~"{pod_re}"'
    on_gpus = f'exported_namespace="{policy.namespace}", exported_pod=~"{pod_re}"'
    mine = f'namespace="{policy.namespace}", policy="{policy.name}"'
    queries = []
    for q in tick_queries(
        windows={policy.window},
        baseline_windows={policy.baseline_window} if policy.baseline_window else (),
    ):
        promql, n = re.subn(
            r'\{__name__=~"([^"]+)"\}',
            lambda m: f'{{__name__=~"{m.group(1)}", {on_pods}}}',
            q.promql,
        )
        for names, matchers in (
            ((PREFILL_SECONDS, DECODE_SECONDS), on_pods),
            ((GPU_BUSY_PREFERRED, GPU_BUSY_FALLBACK), on_gpus),
            (("llmcost_hourly_cost_usd", "llmcost_tokens_per_second"), mine),
        ):
            for name in names:
                n += promql.count(f"{name}[")
                promql = promql.replace(f"{name}[", f"{name}{{{matchers}}}[")
        if not n:
            raise RuntimeError(f"no selector filtered in {q.promql}")
        queries.append(NamedQuery(q.family, q.window, promql))
    return queries


def per_policy_tick(
    client: PromClient,
    policies: list[PolicyView],
    cluster: ClusterState,
    prices: PriceSheet,
    previous: Mapping[SnapshotKey, WorkloadFigures],
    now: float,
) -> tuple[dict[SnapshotKey, WorkloadFigures], int]:
    """One tick of the per-policy design: the same figures, 10 queries per policy."""
    pods = cluster.pods_by_workload()
    nodes = cluster.nodes()
    figures: dict[SnapshotKey, WorkloadFigures] = {}
    count = 0
    for policy in policies:
        workloads = cluster.workloads_of(policy)
        members = [p for w in workloads for p in pods.get((w.namespace, w.kind, w.name), [])]
        queries = per_policy_queries(policy, members)
        count += len(queries)
        results, _, errors = run_queries(client, queries)
        if errors:
            raise RuntimeError(f"per-policy tick errors: {errors[:3]}")
        rates = rates_by_window(results).get(policy.window, {})
        base = baselines(results)
        for w in workloads:
            key = (policy.namespace, policy.name, w.name)
            baseline = base.get(
                (policy.baseline_window or "", policy.namespace, policy.name, w.name)
            )
            current = compute_workload_figures(
                policy,
                w.name,
                pods.get((w.namespace, w.kind, w.name), []),
                nodes,
                rates,
                prices,
                baseline,
                now,
            )
            figures[key] = carry_forward(previous.get(key), current)
    return figures, count


# --- measuring ---------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def p95(values: list[float]) -> float:
    """Nearest rank: with fewer than 20 values, the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def rss_kib() -> tuple[int, int, int]:
    """(ru_maxrss, VmHWM, VmRSS) of this process in KiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    status = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value
    return peak, int(status["VmHWM"].split()[0]), int(status["VmRSS"].split()[0])


def mb(kib: int) -> float:
    return round(kib * 1024 / 1e6, 1)


def top_costs(profile: cProfile.Profile, limit: int = 12) -> list[dict[str, Any]]:
    stats = pstats.Stats(profile)
    rows = []
    for (filename, line, func), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = "/".join(Path(filename).parts[-2:]) if filename != "~" else "builtin"
        rows.append(
            {
                "function": f"{where}:{line}({func})",
                "calls": calls,
                "own_s": round(tottime, 4),
                "cumulative_s": round(cumtime, 4),
            }
        )
    rows.sort(key=lambda r: r["own_s"], reverse=True)
    return rows[:limit]


def _summary(figures: Mapping[SnapshotKey, WorkloadFigures]) -> dict[str, int]:
    return {
        "workloads": len(figures),
        "with_usd_per_million": sum(f.usd_per_million_tokens is not None for f in figures.values()),
        "with_input_output_split": sum(
            f.input_usd_per_million_tokens is not None for f in figures.values()
        ),
        "with_gpu_utilization": sum(f.gpu_utilization_ratio is not None for f in figures.values()),
        "with_capacity_utilization": sum(
            f.capacity_utilization_ratio is not None for f in figures.values()
        ),
        "stale": sum(f.stale for f in figures.values()),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """In a fresh process: the product's tick, then the per-policy design, at one scale."""
    import costoperator.handlers  # noqa: F401  (the operator's imports: kopf, clients, ...)

    *_, rss_imports = rss_kib()
    prices = seed_price_sheet()
    fleet = build_fleet(args.policies, args.pods_per_policy, prices, args.spot)
    cluster = cluster_state(fleet)
    policies = fleet.policies
    client = FixedTimeClient(args.url, at=float(args.at), read_timeout_s=60.0)
    *_, rss_state = rss_kib()
    now = float(args.at)

    previous: dict[SnapshotKey, WorkloadFigures] = {}
    gc_timer = GcTimer()
    queries_wall: list[float] = []
    run_queries = tick_module.run_queries

    def timed_queries(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return run_queries(*args, **kwargs)
        finally:
            queries_wall.append(time.perf_counter() - started)

    tick_module.run_queries = timed_queries  # type: ignore[assignment]
    ticks: list[dict[str, float]] = []
    queries = []
    report = None
    # As the operator keeps them: the warm-up tick asks for the drift baseline and vLLM's phase
    # times, the timed ones reuse them (refreshes are due every 5 minutes and every minute, in
    # the background; `now` stands still here, so none is: their cost is measured on its own
    # below, `baseline_refresh` and `phase_refresh`). The GPU-busy fallback: asked in the
    # warm-up, then not needed (every GPU reports the preferred family). `--no-tick-memory`:
    # none kept, so every tick asks for all three, as the tick did before BaselineCache,
    # PhaseCache and GpuSource.
    memory = not args.no_tick_memory
    baseline_cache = BaselineCache() if memory else None
    gpu_source = GpuSource() if memory else None
    phase_cache = PhaseCache() if memory else None
    demand = DemandHistory() if args.spot else None  # spot planning, and the burst query

    def tick() -> tick_module.TickReport:
        return run_tick(
            client,
            policies,
            cluster,
            prices,
            previous,
            now,
            demand=demand,
            baselines=baseline_cache,
            gpu_source=gpu_source,
            phases=phase_cache,
        )

    first_tick_s = 0.0
    for i in range(args.ticks + 1):
        client.reset()
        gc_timer.reset()
        cpu_before = _cpu_seconds()
        prometheus_cpu_before = _cpu_seconds(args.prometheus_pid)
        report = tick()
        cpu = _cpu_seconds() - cpu_before
        prometheus_cpu = _cpu_seconds(args.prometheus_pid) - prometheus_cpu_before
        if report.errors:
            raise RuntimeError(f"tick errors: {report.errors[:3]}")
        previous = dict(report.figures)
        queries.append(report.queries)
        if not i:  # the first tick is the warm-up
            first_tick_s = report.seconds
        else:
            ticks.append(
                {
                    "tick": report.seconds,
                    "queries": queries_wall[-1],
                    "figures": report.seconds - queries_wall[-1],
                    "http_summed": client.http_seconds,
                    "decode_summed": client.query_seconds - client.http_seconds,
                    "gc": gc_timer.seconds,
                    "operator_cpu": cpu,
                    "prometheus_cpu": prometheus_cpu,
                    "gc_collections": gc_timer.collections,
                    "samples": client.samples,
                    "response_mb": client.response_bytes / 1e6,
                }
            )
        log(f"  {args.policies} policies: tick {i} {report.seconds:.3f} s")
    assert report is not None
    rss_peak, rss_hwm, rss_now = rss_kib()
    seconds = [t["tick"] for t in ticks]
    median = statistics.median(seconds)

    def med(field: str, digits: int = 4) -> float:
        return round(statistics.median(t[field] for t in ticks), digits)

    product: dict[str, Any] = {
        "tick_memory": "BaselineCache, PhaseCache and GpuSource kept between ticks"
        if memory
        else "none (--no-tick-memory): baseline, phase times and GPU fallback asked for in "
        "every tick",
        "queries_per_tick": max(queries),
        "queries_per_timed_tick": max(queries[1:]),
        "first_tick_s_with_baseline_query": round(first_tick_s, 4),
        "tick_s_median": round(median, 4),
        "tick_s_p95": round(p95(seconds), 4),
        "tick_s_all": [round(s, 4) for s in seconds],
        "breakdown_s_median": {
            "queries_wall": med("queries"),
            "join_and_figures": med("figures"),
            "prometheus_http_summed_over_threads": med("http_summed"),
            "json_decode_and_validation_summed_over_threads": med("decode_summed"),
            "of_which_gc": med("gc"),
        },
        "cpu_s_per_tick_median": {
            "operator": med("operator_cpu"),
            "prometheus": med("prometheus_cpu") if args.prometheus_pid else None,
        },
        "gc_collections_per_tick": med("gc_collections", 0),
        "samples_per_tick": med("samples", 0),
        "response_mb_per_tick": med("response_mb", 2),
        "rss_after_imports_mb": mb(rss_imports),
        "rss_after_cluster_state_mb": mb(rss_state),
        "rss_after_ticks_mb": mb(rss_now),
        "rss_peak_mb": mb(rss_peak),
        "ru_maxrss_kib": rss_peak,
        "vmhwm_kib": rss_hwm,
        "vmrss_kib": rss_now,
        "figures": _summary(report.figures),
    }
    if args.profile or median > GOAL_TICK_S:
        profile = cProfile.Profile()
        profile.enable()
        tick()
        profile.disable()
        product["profile_one_tick_top_own_time"] = top_costs(profile)

    # Each query alone, one after another: where Prometheus' share of the tick goes.
    serial: list[dict[str, Any]] = []
    windows = {p.window for p in policies}
    with_fallback = [
        NamedQuery(Family.GPU_BUSY, w, gpu_busy_query(w, fallback=True)) for w in sorted(windows)
    ]
    for q in [
        *tick_queries(
            windows=windows,
            baseline_windows={p.baseline_window for p in policies if p.baseline_window},
            gpu_fallback=False,
        ),
        *with_fallback,
    ]:
        client.reset()
        started = time.perf_counter()
        prometheus_cpu_before = _cpu_seconds(args.prometheus_pid)
        client.query(q.promql)
        serial.append(
            {
                "family": q.family.value + ("_with_fallback" if q in with_fallback else ""),
                "seconds": round(time.perf_counter() - started, 4),
                "prometheus_cpu_s": round(
                    _cpu_seconds(args.prometheus_pid) - prometheus_cpu_before, 3
                )
                if args.prometheus_pid
                else None,
                "http_seconds": round(client.http_seconds, 4),
                "samples": client.samples,
                "response_mb": round(client.response_bytes / 1e6, 2),
            }
        )
    product["queries_one_at_a_time"] = serial
    # The queries kept between ticks: what one background refresh costs, and per tick.
    for name, family, cache in (
        ("baseline_refresh", Family.BASELINE, baseline_cache or BaselineCache()),
        ("phase_refresh", Family.PHASE_SECONDS, phase_cache or PhaseCache()),
    ):
        one = next((q for q in serial if q["family"] == family.value), None)
        if one is None:
            continue
        every_s = cache.period_s(BASELINE_WINDOW if family is Family.BASELINE else WINDOW)
        product[name] = {
            "query_s": one["seconds"],
            "prometheus_cpu_s": one["prometheus_cpu_s"],
            "every_s": every_s,
            "in_the_background": memory,
            "prometheus_cpu_s_per_30s_tick_amortized": round(
                (one["prometheus_cpu_s"] or 0.0) * 30 / every_s, 3
            ),
        }
    if not args.naive_ticks:
        return {"product": product}

    # The per-policy design, on every policy or on an evenly spaced sample.
    sample = policies
    if len(policies) > args.naive_sample:
        stride = len(policies) / args.naive_sample
        sample = [policies[int(k * stride)] for k in range(args.naive_sample)]
    scale = len(policies) / len(sample)
    naive_seconds: list[float] = []
    naive_previous: dict[SnapshotKey, WorkloadFigures] = {}
    naive_queries = 0
    for i in range(args.naive_ticks + 1):
        started = time.perf_counter()
        naive_previous, naive_queries = per_policy_tick(
            client, sample, cluster, prices, naive_previous, now
        )
        took = time.perf_counter() - started
        if i:
            naive_seconds.append(took * scale)
        log(
            f"  {args.policies} policies, per-policy design: tick {i} {took:.3f} s "
            f"for {len(sample)} policies"
        )
    mismatched = [
        key
        for key, f in naive_previous.items()
        if not _same(f.usd_per_million_tokens, report.figures[key].usd_per_million_tokens)
        or not _same(f.gpu_utilization_ratio, report.figures[key].gpu_utilization_ratio)
    ]
    naive = {
        "queries_per_tick": round(naive_queries * scale),
        "tick_s_median": round(statistics.median(naive_seconds), 3),
        "tick_s_p95": round(p95(naive_seconds), 3),
        "timed_policies": len(sample),
        "extrapolated": scale != 1,
        "extrapolation": (
            f"timed {len(sample)} evenly spaced policies per tick, times × {scale:g}"
            if scale != 1
            else "none: every policy timed"
        ),
        "figures_equal_to_product": not mismatched,
    }
    return {"product": product, "per_policy_design": naive}


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9)


def run_scale(args: argparse.Namespace, policies: int, storage: str) -> dict[str, Any]:
    """One scale against one kind of storage: `block` (promtool's backfill, history ending 3-5
    h ago: persisted blocks) or `head` (the same history pushed by remote write, ending now:
    the in-memory head that the operator's queries at "now" read in production)."""
    prices = seed_price_sheet()
    fleet = build_fleet(policies, args.pods_per_policy, prices, args.spot)
    gpus = sum(len(p.gpu_indices) for p in fleet.pods)
    log(
        f"{policies} policies ({storage}): {len(fleet.pods)} pods, {gpus} GPUs, "
        f"{len(fleet.nodes)} nodes; generating and loading"
    )
    data_dir = Path(tempfile.mkdtemp(prefix="llmcost-tick-scale-"))
    try:
        if storage == "block":
            end = history_end(time.time())
            history = backfill(fleet, end, data_dir, own=args.baseline_history)
            log(
                f"  backfilled {history['samples']:,} samples of {history['series']:,} pod "
                f"series and {history['own_samples']:,} of {history['own_series']:,} operator "
                f"series in {history['generate_and_backfill_s']} s"
            )
            extra: list[str] = []
        else:
            end = int(time.time()) // STEP_S * STEP_S
            history = {}
            extra = ["--web.enable-remote-write-receiver"]
        started = time.perf_counter()
        with PrometheusServer(
            data_dir=data_dir, startup_timeout=120.0, extra_args=extra, scrape_interval="1h"
        ) as prom:
            ready = time.perf_counter() - started
            if storage == "head":
                history = load_head(fleet, end, prom.url)
                log(
                    f"  pushed {history['samples']:,} samples of {history['series']:,} series "
                    f"into the head in {history['push_s']} s"
                )
            pods_seen = prom.query_value(
                'count(count by (namespace, pod) ({__name__="vllm:prompt_tokens_total"}))', end
            )
            if pods_seen != len(fleet.pods):
                raise RuntimeError(f"Prometheus holds {pods_seen} pods, expected {len(fleet.pods)}")
            log(f"  Prometheus ready in {ready:.1f} s; measuring in a child process")
            options = {
                "--url": prom.url,
                "--at": end,
                "--policies": policies,
                "--pods-per-policy": args.pods_per_policy,
                "--ticks": args.ticks,
                "--naive-ticks": args.naive_ticks,
                "--naive-sample": args.naive_sample,
                "--prometheus-pid": prom.pid or 0,
            }
            profile = args.profile or policies == max(args.scales)
            flags = ["--profile"] if profile else []
            flags += ["--no-tick-memory"] if args.no_tick_memory else []
            flags += ["--spot"] if args.spot else []
            # Through a shell that forks: ru_maxrss survives execve, so a child exec'd straight
            # from this process would report this process's peak (the OpenMetrics text) as its own.
            child = subprocess.run(
                [
                    "/bin/sh",
                    "-c",
                    '"$@"; exit $?',
                    "sh",
                    sys.executable,
                    __file__,
                    "--measure",
                    *(str(part) for pair in options.items() for part in pair),
                    *flags,
                ],
                stdout=subprocess.PIPE,
                text=True,
                check=True,
            )
            prometheus_rss_mb = _rss_of(prom.pid)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    measured = json.loads(child.stdout)
    return {
        "policies": policies,
        "storage": storage,
        "history_end": end,
        "pods": len(fleet.pods),
        "gpus": gpus,
        "nodes": len(fleet.nodes),
        "history": {**history, "prometheus_startup_s": round(ready, 2)},
        **measured,
        "prometheus_rss_mb": prometheus_rss_mb,
    }


def _cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of this process (None) or of `pid` (0 when unreadable)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _rss_of(pid: int | None) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return mb(int(line.split()[1]))
    return None


def _goals(scales: list[dict[str, Any]]) -> dict[str, Any]:
    at_goal = next((s for s in scales if s["policies"] == GOAL_POLICIES), None)
    return {
        "queries_per_tick_constant": {
            "goal": f"the same at every scale and <= {GOAL_QUERIES}",
            "measured": [s["product"]["queries_per_tick"] for s in scales],
            "pass": len({s["product"]["queries_per_tick"] for s in scales}) == 1
            and all(s["product"]["queries_per_tick"] <= GOAL_QUERIES for s in scales),
        },
        "tick_s": {
            "goal": f"median and p95 <= {GOAL_TICK_S} s at {GOAL_POLICIES} policies",
            "measured": (
                [at_goal["product"]["tick_s_median"], at_goal["product"]["tick_s_p95"]]
                if at_goal
                else None
            ),
            "pass": at_goal["product"]["tick_s_p95"] <= GOAL_TICK_S if at_goal else None,
        },
        "rss_mb": {
            "goal": f"<= {GOAL_RSS_MB} MB (10^6 bytes) peak RSS of the operator process",
            "measured": [s["product"]["rss_peak_mb"] for s in scales],
            "pass": all(s["product"]["rss_peak_mb"] <= GOAL_RSS_MB for s in scales),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="10,100,1000", help="policies per scale")
    parser.add_argument("--pods-per-policy", type=int, default=10)
    parser.add_argument("--ticks", type=int, default=10, help="timed ticks after one warm-up")
    parser.add_argument("--naive-ticks", type=int, default=5, help="per-policy design ticks")
    parser.add_argument(
        "--naive-sample", type=int, default=100, help="most policies timed per per-policy tick"
    )
    parser.add_argument("--profile", action="store_true", help="profile a tick at every scale")
    parser.add_argument(
        "--storage",
        default="block",
        help="block: promtool backfill (persisted blocks); head: the same history by remote "
        "write into the in-memory head, ending now",
    )
    parser.add_argument(
        "--baseline-history",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="backfill a day of the operator's own series, which the drift-baseline query "
        "reads (block storage only; at 1,000 policies 23 million samples, about a minute more)",
    )
    parser.add_argument(
        "--no-tick-memory",
        action="store_true",
        help="keep no BaselineCache, PhaseCache or GpuSource between ticks: every tick asks for "
        "the drift baseline, vLLM's phase times and the GPU-busy fallback (the tick before "
        "they were kept)",
    )
    parser.add_argument(
        "--spot",
        action="store_true",
        help="every policy plans spot (Recommend) for its second Deployment: the tick runs the "
        "planner and asks for the burst signal (one query more)",
    )
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--at", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--policies", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prometheus-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        json.dump(measure(args), sys.stdout)
        return 0
    args.scales = [int(s) for s in args.scales.split(",")]
    storages = [s for s in args.storage.split(",") if s]
    if not storages or set(storages) - {"block", "head"}:
        parser.error("--storage: block, head or both")

    started = time.perf_counter()
    scales = [run_scale(args, policies, st) for st in storages for policies in args.scales]
    goals = {st: _goals([s for s in scales if s["storage"] == st]) for st in storages}
    result = {
        "setup": {
            "prometheus": "2.42 (Debian), one server per scale and storage",
            "storage": {
                "block": "promtool create-blocks-from openmetrics; history ends 3-5 h before "
                "the run (persisted blocks)",
                "head": "the same series pushed by remote write (--web.enable-remote-write-"
                "receiver); history ends at the run (the in-memory head)",
            },
            "history": f"{HISTORY_S // 60} min at {STEP_S} s steps; every query evaluated at "
            "the last sample",
            "baseline_history": (
                f"{BASELINE_WINDOW} of the operator's own series (4 per workload) at "
                f"{OWN_STEP_S} s, block storage only"
                if args.baseline_history
                else "none: the baseline query finds no series"
            ),
            "window": WINDOW,
            "baseline_window": BASELINE_WINDOW,
            "pods_per_policy": args.pods_per_policy,
            "shapes": [f"{s.model} on {s.tp}x {s.gpu}" for s in SHAPES],
            "timed_ticks": args.ticks,
            "per_policy_timed_ticks": args.naive_ticks,
            "p95": "nearest rank (the slowest tick when fewer than 20)",
            "rss": "child process importing costoperator.handlers (kopf, kubernetes, ...); "
            "MB = 10^6 bytes; ru_maxrss, and VmHWM and VmRSS from /proc/self/status",
        },
        "scales": scales,
        "goals": goals,
        "bench_process_peak_rss_mb": mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
