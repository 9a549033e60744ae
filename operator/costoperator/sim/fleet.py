"""A fleet of simulated pods on GPU nodes, serving real traces; pure and deterministic.

Each workload (a Deployment's pods) replays one request trace. A request goes, at its arrival,
to the pod of its workload with the fewest requests in flight (ties: the first pod listed), the
way a least-outstanding-requests gateway routes; `SimPod` documents the engine loop.

`load_scale` multiplies a trace's request rate by compressing its time axis (arrival ÷ scale):
the same requests, closer together. Wall-clock speed is not the fleet's business: `SimServer`
maps wall time to trace time with its `speedup`.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from costengine.throughput import Deployment
from costoperator.sim.dcgm import dcgm_model_name, gpu_uuid
from costoperator.sim.errors import SimError
from costoperator.sim.pod import Engine, PodSpec, SimPod
from costoperator.sim.truth import Truth, sum_truths
from costoperator.traces import Request


@dataclass(frozen=True, slots=True)
class Traffic:
    """The requests a workload receives: a real trace, its rate multiplied by `load_scale`."""

    workload: str
    requests: Sequence[Request]
    load_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.load_scale > 0:
            raise SimError(f"workload {self.workload}: load_scale must be > 0")
        if any(b.arrival_s < a.arrival_s for a, b in itertools.pairwise(self.requests)):
            raise SimError(f"workload {self.workload}: requests not in arrival order")

    def arrivals_s(self) -> list[float]:
        """Arrival trace times after scaling, in the trace's (sorted) order."""
        return [r.arrival_s / self.load_scale for r in self.requests]


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A GPU node: `gpu_count` GPUs of catalog type `gpu` (NVIDIA; DCGM reports on them)."""

    name: str
    gpu: str
    gpu_count: int = 8

    def __post_init__(self) -> None:
        if self.gpu_count < 1:
            raise SimError(f"node {self.name}: gpu_count must be at least 1")
        dcgm_model_name(self.gpu)  # NVIDIA only: DCGM has nothing to say about others


@dataclass(frozen=True, slots=True)
class GpuSlot:
    """One GPU of a node as DCGM sees it, and the pod (if any) it is allocated to."""

    node: str
    index: int
    uuid: str
    model_name: str
    pod: SimPod | None


@dataclass(slots=True)
class _Replay:
    traffic: Traffic
    arrivals_s: list[float]
    pods: list[SimPod]
    next_index: int = 0


@dataclass(slots=True)
class _Node:
    spec: NodeSpec
    slots: list[GpuSlot] = field(default_factory=list)


class Fleet:
    """Pods on nodes, each workload replaying its traffic; advanced in trace seconds.

    Pod names must be unique across the fleet (they key `pod()` and `pod_truth()`), as must
    workload names (they key `truth()`).
    """

    def __init__(
        self,
        pods: Sequence[PodSpec],
        traffic: Iterable[Traffic] = (),
        nodes: Sequence[NodeSpec] | None = None,
    ) -> None:
        if not pods:
            raise SimError("a fleet needs at least one pod")
        node_specs = {n.name: n for n in (nodes if nodes is not None else _implied_nodes(pods))}
        self._nodes: dict[str, _Node] = {name: _Node(spec) for name, spec in node_specs.items()}
        self._pods: dict[str, SimPod] = {}
        self._by_workload: dict[str, list[SimPod]] = {}
        next_index: dict[str, int] = dict.fromkeys(node_specs, 0)
        for spec in pods:
            if spec.name in self._pods:
                raise SimError(f"duplicate pod name {spec.name!r}")
            node = self._nodes.get(spec.node)
            if node is None:
                raise SimError(f"pod {spec.name}: unknown node {spec.node!r}")
            if spec.deployment.gpu.name != node.spec.gpu:
                raise SimError(
                    f"pod {spec.name}: needs {spec.deployment.gpu.name}, "
                    f"node {spec.node} has {node.spec.gpu}"
                )
            first = next_index[spec.node]
            if first + spec.gpus > node.spec.gpu_count:
                raise SimError(
                    f"node {spec.node}: {node.spec.gpu_count} GPUs, pods ask for more "
                    f"(pod {spec.name} needs GPUs {first}..{first + spec.gpus - 1})"
                )
            next_index[spec.node] = first + spec.gpus
            pod = SimPod(spec, tuple(range(first, first + spec.gpus)))
            self._pods[spec.name] = pod
            self._by_workload.setdefault(spec.workload, []).append(pod)
        owner: dict[tuple[str, int], SimPod] = {}
        for pod in self._pods.values():
            owner.update({(pod.node, i): pod for i in pod.gpu_indices})
        for name, node in self._nodes.items():
            model_name = dcgm_model_name(node.spec.gpu)
            node.slots = [
                GpuSlot(name, i, gpu_uuid(name, i), model_name, owner.get((name, i)))
                for i in range(node.spec.gpu_count)
            ]
        self._replays: dict[str, _Replay] = {}
        for t in traffic:
            if t.workload in self._replays:
                raise SimError(f"workload {t.workload}: traffic given twice")
            if t.workload not in self._by_workload:
                raise SimError(f"traffic for workload {t.workload!r}, which has no pods")
            self._replays[t.workload] = _Replay(t, t.arrivals_s(), self._by_workload[t.workload])
        self._now = 0.0

    # --- structure --------------------------------------------------------------------------

    @property
    def pods(self) -> list[SimPod]:
        return list(self._pods.values())

    def pod(self, name: str) -> SimPod:
        try:
            return self._pods[name]
        except KeyError:
            raise SimError(f"no pod named {name!r}") from None

    @property
    def workloads(self) -> list[str]:
        return list(self._by_workload)

    def workload_pods(self, workload: str) -> list[SimPod]:
        try:
            return list(self._by_workload[workload])
        except KeyError:
            raise SimError(f"no workload named {workload!r}") from None

    @property
    def nodes(self) -> list[NodeSpec]:
        return [n.spec for n in self._nodes.values()]

    def node_gpus(self, node: str) -> list[GpuSlot]:
        """The GPUs of `node`, in index order, with the pod each is allocated to."""
        try:
            return list(self._nodes[node].slots)
        except KeyError:
            raise SimError(f"no node named {node!r}") from None

    # --- time -------------------------------------------------------------------------------

    @property
    def now_s(self) -> float:
        """The trace time the fleet has been simulated to."""
        return self._now

    @property
    def trace_end_s(self) -> float:
        """The last arrival over all workloads (after load scaling), in trace seconds."""
        return max((r.arrivals_s[-1] for r in self._replays.values() if r.arrivals_s), default=0.0)

    @property
    def in_flight(self) -> int:
        """Requests received by some pod and not finished."""
        return sum(p.load for p in self._pods.values())

    def advance_to(self, t: float) -> None:
        """Simulate up to trace time `t`: dispatch every arrival ≤ `t`, run every pod to `t`."""
        if t < self._now:
            raise SimError(f"cannot go back from {self._now} s to {t} s")
        for replay in self._replays.values():
            arrivals, requests, pods = replay.arrivals_s, replay.traffic.requests, replay.pods
            i = replay.next_index
            while i < len(arrivals) and arrivals[i] <= t:
                arrival = arrivals[i]
                for pod in pods:
                    pod.advance_to(arrival)
                target = min(pods, key=_load)
                target.enqueue(requests[i], arrival)
                i += 1
            replay.next_index = i
        for pod in self._pods.values():
            pod.advance_to(t)
            pod.checkpoint()
        self._now = t

    def restart(self, pod: str) -> None:
        """Restart pod `pod`'s engine now (see `SimPod.restart`)."""
        self.pod(pod).restart()

    # --- ground truth -----------------------------------------------------------------------

    def truth(self, workload: str, start_s: float, end_s: float) -> Truth:
        """What `workload`'s pods did in trace-time window [start_s, end_s)."""
        self._check_window(end_s)
        parts = [p.truth(start_s, end_s) for p in self.workload_pods(workload)]
        return sum_truths(parts, start_s, end_s)

    def pod_truth(self, pod: str, start_s: float, end_s: float) -> Truth:
        """What pod `pod` did in trace-time window [start_s, end_s)."""
        self._check_window(end_s)
        return self.pod(pod).truth(start_s, end_s)

    def _check_window(self, end_s: float) -> None:
        if end_s > self._now + 1e-9:
            raise SimError(f"window ends at {end_s} s, the fleet is at {self._now} s")


def _load(pod: SimPod) -> int:
    return pod.load


def _implied_nodes(pods: Sequence[PodSpec]) -> list[NodeSpec]:
    """Nodes named by the pods, each just big enough for its pods."""
    gpus: dict[str, int] = {}
    kind: dict[str, str] = {}
    for p in pods:
        gpus[p.node] = gpus.get(p.node, 0) + p.gpus
        kind.setdefault(p.node, p.deployment.gpu.name)
    return [NodeSpec(name, kind[name], gpus[name]) for name in gpus]


#: Characters Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _suffix(seed: str, length: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_SUFFIX_ALPHABET[b % len(_SUFFIX_ALPHABET)] for b in digest[:length])


def replica_pods(
    workload: str,
    replicas: int,
    *,
    model: str,
    gpu: str,
    tp: int = 1,
    quant: str = "fp16",
    engine: Engine = "vllm",
    namespace: str = "default",
    served_model_name: str | None = None,
    gpus_per_node: int = 8,
    node_prefix: str | None = None,
) -> tuple[list[PodSpec], list[NodeSpec]]:
    """The pods of a Deployment with `replicas` identical replicas, packed onto nodes of
    `gpus_per_node` GPUs (named `{node_prefix}-0`, `-1`, ...; default prefix
    `{workload}-node`).

    Pod names follow the Deployment controller's `{workload}-{replicaset hash}-{suffix}`,
    generated deterministically. `served_model_name` defaults to the model's Hugging Face
    repository, as vLLM and SGLang default it to the model path they load.
    """
    if replicas < 1:
        raise SimError(f"workload {workload}: replicas must be at least 1")
    deployment = Deployment.of(model, gpu, tp=tp, quant=quant, engine=engine)
    if tp > gpus_per_node:
        raise SimError(f"workload {workload}: tp {tp} exceeds {gpus_per_node} GPUs per node")
    per_node = gpus_per_node // tp
    prefix = node_prefix or f"{workload}-node"
    node_count = -(-replicas // per_node)
    nodes = [
        NodeSpec(f"{prefix}-{i}", deployment.gpu.name, gpus_per_node) for i in range(node_count)
    ]
    rs_hash = _suffix(f"{namespace}/{workload}", 10)
    pods = [
        PodSpec(
            namespace=namespace,
            name=f"{workload}-{rs_hash}-{_suffix(f'{namespace}/{workload}/{i}', 5)}",
            workload=workload,
            node=nodes[i // per_node].name,
            engine=engine,
            deployment=deployment,
            served_model_name=served_model_name or deployment.model.hf_repo,
        )
        for i in range(replicas)
    ]
    return pods, nodes
