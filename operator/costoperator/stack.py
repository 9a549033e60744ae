"""A whole llm-cost-operator environment on one machine: the embedded default.

`Stack` starts, in order: the fleet simulator (real vLLM/SGLang/DCGM metric names, driven by the
shared request traces), a real Prometheus scraping it and the operator, kmock's Kubernetes
emulator holding the matching nodes, workloads, pods, the seed GPUPricing sheet and the example
policies of `deploy/examples/`, and the operator itself (kopf, in its own thread). `llmcost
demo` shows it live; the end-to-end tests assert on it. It is a synchronous context manager so
both can drive it from plain code.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from prometheus_client.parser import text_string_to_metric_families

from costengine.gpus import GPUS
from costoperator.config import OperatorConfig
from costoperator.kube_emulator import ClusterEmulator, gpu_node, namespace_object
from costoperator.promserver import PrometheusServer, ScrapeJob, TargetGroup, free_port
from costoperator.sim import Fleet, PodSpec, SimServer, Traffic, gpu_product_label, replica_pods
from costoperator.traces import Request, TraceError, read_trace

log = logging.getLogger(__name__)

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
#: The chart's recording and alerting rules as a plain rule file (deploy/generate.py renders it):
#: the stack's Prometheus evaluates them, so the dashboard's recorded series exist.
RULE_FILES = (Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "llmcost-rules.yaml",)
Capacity = Literal["on-demand", "spot"]


@dataclass(frozen=True, slots=True)
class WorkloadPlan:
    """One simulated Deployment: its model and GPUs, its replicas' capacity type, and which
    requests of which real trace it serves (`share` = (residues, modulus): request i goes here
    when i % modulus is in residues — a load balancer's split)."""

    name: str
    app: str
    model: str
    gpu: str
    tp: int
    engine: Literal["vllm", "sglang"]
    replicas: int
    capacity: Capacity
    trace: str
    share: tuple[frozenset[int], int] = (frozenset({0}), 1)
    load_scale: float = 1.0
    namespace: str = "inference"


#: The default fleet, sized against the throughput model so each runs at 60-90% of capacity:
#: Llama-2 70B on 4×A100 (2 on-demand + 1 spot replica share the Azure conversation trace),
#: SGLang Llama-3.1 8B on L4 (Azure code trace), vLLM Llama-3.1 8B chat on A100 (Mooncake,
#: whose repeated prefix blocks exercise the prefix cache; a fifth of its rate).
DEFAULT_PLANS: tuple[WorkloadPlan, ...] = (
    WorkloadPlan(
        "llama70b",
        "llama70b",
        "llama-2-70b",
        "A100-80GB",
        4,
        "vllm",
        2,
        "on-demand",
        "azure_llm_2023_conv.csv",
        (frozenset({0, 1}), 3),
    ),
    WorkloadPlan(
        "llama70b-spot",
        "llama70b",
        "llama-2-70b",
        "A100-80GB",
        4,
        "vllm",
        1,
        "spot",
        "azure_llm_2023_conv.csv",
        (frozenset({2}), 3),
    ),
    WorkloadPlan(
        "sglang-llama8b",
        "sglang-llama8b",
        "llama-3.1-8b",
        "L4",
        1,
        "sglang",
        3,
        "on-demand",
        "azure_llm_2023_code.csv",
    ),
    WorkloadPlan(
        "chat8b",
        "chat8b",
        "llama-3.1-8b",
        "A100-80GB",
        1,
        "vllm",
        2,
        "on-demand",
        "mooncake_conversation.jsonl",
        load_scale=0.2,
    ),
)
DEFAULT_EXAMPLES = (
    "gpupricing-seed.yaml",
    "llama70b.yaml",
    "sglang-llama8b.yaml",
    "vllm-chat8b-prefix.yaml",
)


def load_examples(
    names: Sequence[str], window: str | None = None, interval: str | None = None
) -> list[dict[str, Any]]:
    """Example documents from deploy/examples, optionally with a shorter window/interval so a
    demo shows figures within a minute instead of five."""
    docs: list[dict[str, Any]] = []
    for name in names:
        for doc in yaml.safe_load_all((EXAMPLES / name).read_text(encoding="utf-8")):
            if doc.get("kind") == "InferenceCostPolicy":
                doc = copy.deepcopy(doc)
                if window:
                    doc["spec"]["window"] = window
                if interval:
                    doc["spec"]["interval"] = interval
            docs.append(doc)
    return docs


def _objects_for(plan: WorkloadPlan, pods: Sequence[PodSpec]) -> list[dict[str, Any]]:
    """Deployment → ReplicaSet → Pods with the simulator's pod names, wired by owner uids."""
    labels = {"app": plan.app, "llmcost.io/demo": plan.name}
    rs_name = pods[0].name.rsplit("-", 1)[0]
    dep_uid, rs_uid = f"uid-{plan.name}", f"uid-{rs_name}"
    container = {
        "name": pods[0].container_name,
        "image": "vllm/vllm-openai:v0.6.3" if plan.engine == "vllm" else "lmsysorg/sglang:v0.3.0",
        "resources": {
            "limits": {"nvidia.com/gpu": str(plan.tp)},
            "requests": {"nvidia.com/gpu": str(plan.tp)},
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": plan.name,
            "namespace": plan.namespace,
            "uid": dep_uid,
            "labels": labels,
        },
        "spec": {
            "replicas": plan.replicas,
            "selector": {"matchLabels": {"llmcost.io/demo": plan.name}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
        "status": {"replicas": plan.replicas, "readyReplicas": plan.replicas},
    }
    replicaset = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": rs_name,
            "namespace": plan.namespace,
            "uid": rs_uid,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": plan.name,
                    "uid": dep_uid,
                    "controller": True,
                }
            ],
        },
        "spec": {"replicas": plan.replicas},
    }
    pod_objects = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": p.name,
                "namespace": plan.namespace,
                "uid": f"uid-{p.name}",
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": rs_name,
                        "uid": rs_uid,
                        "controller": True,
                    }
                ],
            },
            "spec": {"nodeName": p.node, "containers": [copy.deepcopy(container)]},
            "status": {"phase": "Running"},
        }
        for p in pods
    ]
    return [deployment, replicaset, *pod_objects]


def _split(requests: Sequence[Request], share: tuple[frozenset[int], int]) -> list[Request]:
    residues, modulus = share
    return [r for i, r in enumerate(requests) if i % modulus in residues]


@dataclass
class Stack:
    traces_dir: Path
    plans: Sequence[WorkloadPlan] = DEFAULT_PLANS
    documents: Sequence[Mapping[str, Any]] = field(default_factory=list)
    speedup: float = 1.0
    scrape_interval_s: float = 1.0
    status_min_interval_s: float = 5.0
    metrics_port: int = 0
    quiet_operator: bool = True
    rule_files: Sequence[Path] = ()

    sim: SimServer = field(init=False)
    prometheus: PrometheusServer = field(init=False)
    cluster: ClusterEmulator = field(init=False)
    started_at: float = field(init=False, default=0.0)
    _stop: threading.Event = field(init=False, default_factory=threading.Event)
    _thread: threading.Thread | None = field(init=False, default=None)
    _saved_env: dict[str, str | None] = field(init=False, default_factory=dict)
    _exit: contextlib.ExitStack = field(init=False, default_factory=contextlib.ExitStack)

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, progress: Any = None) -> Stack:
        say = progress or (lambda _msg: None)
        say("simulated fleet")
        pods: list[PodSpec] = []
        traffic: list[Traffic] = []
        nodes = []
        objects: list[dict[str, Any]] = [
            namespace_object(p.namespace) for p in {p.namespace: p for p in self.plans}.values()
        ]
        trace_cache: dict[str, list[Request]] = {}
        for plan in self.plans:
            plan_pods, plan_nodes = replica_pods(
                plan.name,
                plan.replicas,
                model=plan.model,
                gpu=plan.gpu,
                tp=plan.tp,
                engine=plan.engine,
                namespace=plan.namespace,
            )
            pods += plan_pods
            nodes += plan_nodes
            path = self.traces_dir / plan.trace
            if plan.trace not in trace_cache:
                trace_cache[plan.trace] = read_trace(path)
            traffic.append(
                Traffic(
                    plan.name,
                    _split(trace_cache[plan.trace], plan.share),
                    load_scale=plan.load_scale,
                )
            )
            objects += [
                gpu_node(
                    n.name,
                    gpu_product=gpu_product_label(n.gpu),
                    gpus=n.gpu_count,
                    capacity_type=plan.capacity,
                )
                for n in plan_nodes
            ]
            objects += _objects_for(plan, plan_pods)
        self.sim = SimServer(Fleet(pods, traffic, nodes), speedup=self.speedup)
        self.sim.start()
        self._exit.callback(self.sim.close)

        say("Prometheus")
        if not self.metrics_port:
            self.metrics_port = free_port()
        self.prometheus = PrometheusServer(
            scrape_interval=self.scrape_interval_s,
            jobs=[ScrapeJob("llmcost-operator", [f"127.0.0.1:{self.metrics_port}"])],
            rule_files=self.rule_files,
        )
        self.prometheus.start()
        self._exit.callback(self.prometheus.stop)
        self.prometheus.set_targets(
            [TargetGroup(t["targets"], t["labels"]) for t in self.sim.scrape_targets()],
            wait_for="up",
        )

        say("Kubernetes API emulator")
        self.cluster = ClusterEmulator()
        self.cluster.start()
        self._exit.callback(self.cluster.stop)
        self.cluster.seed([*objects, *self.documents])

        say("operator")
        self._run_operator()
        self.started_at = time.time()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._exit.close()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _run_operator(self) -> None:
        import kopf

        import costoperator.handlers  # noqa: F401 - registers the handlers

        for key, value in (
            ("KUBECONFIG", str(self.cluster.kubeconfig)),
            ("KUBERNETES_SERVICE_HOST", None),
        ):
            self._saved_env[key] = os.environ.get(key)
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self.quiet_operator:
            logging.getLogger("kopf").setLevel(logging.WARNING)
            # "OS signals are ignored: running not in the main thread": expected here, the
            # stack stops kopf through its stop flag.
            logging.getLogger("kopf._core.reactor.running").setLevel(logging.ERROR)
        config = OperatorConfig(
            prometheus_url=self.prometheus.url,
            metrics_port=self.metrics_port,
            metrics_address="127.0.0.1",
            default_interval_s=5.0,
            status_min_interval_s=self.status_min_interval_s,
        )
        self._stop.clear()

        def main() -> None:
            asyncio.run(
                kopf.operator(
                    standalone=True,
                    clusterwide=True,
                    stop_flag=self._stop,
                    memo=kopf.Memo(config=config),
                )
            )

        self._thread = threading.Thread(target=main, name="llmcost-operator", daemon=True)
        self._thread.start()

    # --- reading ----------------------------------------------------------------------------

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def operator_samples(self) -> list[tuple[str, dict[str, str], float]]:
        """The operator's /metrics as (name, labels, value) triples; empty until it serves."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return []
        return [
            (s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def operator_value(self, name: str, **labels: str) -> float | None:
        return sample_value(self.operator_samples(), name, **labels)

    def operator_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def sample_value(
    samples: Iterable[tuple[str, Mapping[str, str], float]], name: str, **labels: str
) -> float | None:
    """The first sample of `name` whose labels include `labels` (one scrape's samples)."""
    for sample_name, sample_labels, value in samples:
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()):
            return value
    return None


def default_stack(traces_dir: Path, window: str = "1m", interval: str = "10s", **kw: Any) -> Stack:
    """The demo's stack: the default fleet and the deploy/examples policies with a short window."""
    for plan in DEFAULT_PLANS:
        if plan.gpu not in GPUS or not (traces_dir / plan.trace).is_file():
            raise TraceError(f"trace not found: {traces_dir / plan.trace}")
    kw.setdefault("rule_files", [p for p in RULE_FILES if p.is_file()])
    return Stack(traces_dir, DEFAULT_PLANS, load_examples(DEFAULT_EXAMPLES, window, interval), **kw)


def wait_for(predicate: Any, timeout_s: float, interval_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False


__all__ = ["DEFAULT_PLANS", "Stack", "WorkloadPlan", "default_stack", "load_examples", "wait_for"]
