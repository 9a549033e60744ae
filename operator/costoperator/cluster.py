"""The cluster picture the operator prices: workloads, their pods, and the nodes under them.

Built from Kubernetes objects as plain dicts (kopf bodies or API responses), so it is testable
without a cluster. Owner chains are resolved Pod → ReplicaSet → Deployment and Pod →
StatefulSet; a node's GPU product and capacity type come from the labels that GPU operators and
node provisioners set.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from costengine.gpus import GPUS
from costengine.pricing import CapacityType

# Capacity-type labels, in the order they are trusted.
#   Karpenter: karpenter.sh/capacity-type = spot | on-demand | reserved
#   EKS managed node groups: eks.amazonaws.com/capacityType = SPOT | ON_DEMAND
#   GKE: cloud.google.com/gke-spot = "true" (also gke-preemptible)
#   AKS: kubernetes.azure.com/scalesetpriority = spot | regular
_CAPACITY_LABELS: tuple[tuple[str, Mapping[str, CapacityType]], ...] = (
    (
        "karpenter.sh/capacity-type",
        {
            "spot": CapacityType.SPOT,
            "on-demand": CapacityType.ON_DEMAND,
            "reserved": CapacityType.RESERVED,
        },
    ),
    (
        "eks.amazonaws.com/capacityType",
        {"SPOT": CapacityType.SPOT, "ON_DEMAND": CapacityType.ON_DEMAND},
    ),
    ("cloud.google.com/gke-spot", {"true": CapacityType.SPOT}),
    ("cloud.google.com/gke-preemptible", {"true": CapacityType.SPOT}),
    (
        "kubernetes.azure.com/scalesetpriority",
        {"spot": CapacityType.SPOT, "regular": CapacityType.ON_DEMAND},
    ),
)

# Taints that give notice of a node's end: the market (or the provisioner) takes it back soon
# and its pods go with it. They serve until then; a replacement asked for now starts a cold
# start ahead of the preemption (`spot.with_recommendations`).
#   AWS Node Termination Handler: aws-node-termination-handler/spot-itn (spot interruption)
#   GKE (spot and preemptible VMs): cloud.google.com/impending-node-termination
#   Karpenter v1: karpenter.sh/disrupted (interruption, drift, consolidation: draining next)
#   Karpenter before v1: karpenter.sh/disruption
DEFAULT_NOTICE_TAINTS: tuple[str, ...] = (
    "aws-node-termination-handler/spot-itn",
    "cloud.google.com/impending-node-termination",
    "karpenter.sh/disrupted",
    "karpenter.sh/disruption",
)

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    gpu: str | None
    """Catalog GPU name, or None when the node's product is unknown to the catalog."""
    gpu_product: str | None
    """The raw product label, for messages."""
    capacity_type: CapacityType
    notice: str | None = None
    """The notice taint it carries (`DEFAULT_NOTICE_TAINTS` or the operator's own list), if
    any: the node goes soon, and its pods with it."""


@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    owner_kind: str
    """Deployment or StatefulSet (resolved through the ReplicaSet when it is known, else the
    ReplicaSet), another controller's kind, or "" when unowned."""
    owner_name: str
    node: str | None
    gpus: float
    """Whole GPUs requested; a MIG slice counts as its share of a GPU (1g.10gb → 1/7)."""
    labels: Mapping[str, str]
    phase: str
    ready_after_s: float | None = None
    """Seconds from the pod's creation to its serving (`ready_after_s`), when measured."""
    ready: bool = True
    """Its Ready condition is True (`is_ready`): the replica serves."""
    created_s: float | None = None
    """Its creationTimestamp (Unix seconds), when known."""
    placed_after_s: float | None = None
    """Seconds from the pod's creation to its binding to a node (`placed_after_s`), when
    measured: the scheduler's wait and, where a provisioner starts nodes, the node's start."""


def capacity_type_of(labels: Mapping[str, str]) -> CapacityType:
    """The node's capacity type from provisioner labels; on-demand when none says otherwise."""
    for key, values in _CAPACITY_LABELS:
        value = labels.get(key)
        if value is not None and value in values:
            return values[value]
    return CapacityType.ON_DEMAND


# NVIDIA product strings as the GPU feature discovery and DCGM report them, e.g.
# "NVIDIA-A100-SXM4-80GB", "NVIDIA A100-SXM4-40GB", "Tesla-T4", "NVIDIA-H100-80GB-HBM3",
# "NVIDIA-H100-PCIe", "NVIDIA-L40S", "NVIDIA-A10G", "NVIDIA-H200", "AMD Instinct MI300X".
_PRODUCT_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"A100.*80", "A100-80GB"),
    (r"A100", "A100-40GB"),
    (r"H100.*PCIE", "H100-PCIe"),
    (r"H100", "H100-SXM"),
    (r"H200", "H200"),
    (r"B200", "B200"),
    (r"L40S", "L40S"),
    (r"A10G", "A10G"),
    (r"\bL4\b|-L4$|^L4$|NVIDIA-L4", "L4"),
    (r"T4\b|TESLA-T4", "T4"),
    (r"MI300X", "MI300X"),
)


def gpu_from_product(product: str | None) -> str | None:
    """Map a GPU product string to the catalog name, or None."""
    if not product:
        return None
    if product in GPUS:
        return product
    upper = product.upper().replace(" ", "-")
    for pattern, name in _PRODUCT_PATTERNS:
        if re.search(pattern, upper):
            return name
    return None


def notice_taint(
    spec: Mapping[str, Any], notice_taints: Collection[str] = DEFAULT_NOTICE_TAINTS
) -> str | None:
    """The first of the node's taints (`spec.taints`) whose key is in `notice_taints`, any
    effect or value, or None."""
    for taint in spec.get("taints") or ():
        key = (taint or {}).get("key")
        if isinstance(key, str) and key in notice_taints:
            return key
    return None


def node_info(
    body: Mapping[str, Any], notice_taints: Collection[str] = DEFAULT_NOTICE_TAINTS
) -> NodeInfo:
    meta = body.get("metadata", {})
    labels: Mapping[str, str] = meta.get("labels") or {}
    product = labels.get(GPU_PRODUCT_LABEL)
    return NodeInfo(
        name=meta.get("name", ""),
        gpu=gpu_from_product(product),
        gpu_product=product,
        capacity_type=capacity_type_of(labels),
        notice=notice_taint(body.get("spec") or {}, notice_taints),
    )


def _mig_share(resource: str) -> float:
    """A MIG profile's share of a full GPU: nvidia.com/mig-3g.40gb → 3/7 (A100/H100: 7 slices)."""
    match = re.match(r"nvidia\.com/mig-(\d+)g\.", resource)
    return int(match.group(1)) / 7 if match else 0.0


def gpus_requested(pod_spec: Mapping[str, Any]) -> float:
    """GPUs a pod asks for: `nvidia.com/gpu` limits (or requests) plus MIG slices as shares."""
    total = 0.0
    for container in pod_spec.get("containers") or []:
        resources = container.get("resources") or {}
        amounts = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
        for resource, amount in amounts.items():
            try:
                count = float(amount)
            except (TypeError, ValueError):
                continue
            if resource == GPU_RESOURCE:
                total += count
            elif resource.startswith(MIG_RESOURCE_PREFIX):
                total += count * _mig_share(resource)
    return total


def _controller(meta: Mapping[str, Any]) -> tuple[str, str]:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller", True):
            return str(ref.get("kind", "")), str(ref.get("name", ""))
    return "", ""


def replicaset_owner(body: Mapping[str, Any]) -> tuple[str, str]:
    """The (kind, name) controlling a ReplicaSet: usually its Deployment."""
    return _controller(body.get("metadata", {}))


def pod_info(
    body: Mapping[str, Any], replicaset_owners: Mapping[tuple[str, str], tuple[str, str]]
) -> PodInfo:
    """A pod with its owner resolved to the workload (Deployment via its ReplicaSet, or the
    StatefulSet). `replicaset_owners` maps (namespace, replicaset) → (kind, name); a
    ReplicaSet not in it stays the owner (resolved later, when the ReplicaSet is seen)."""
    meta = body.get("metadata", {})
    namespace = meta.get("namespace", "")
    kind, name = _controller(meta)
    if kind == "ReplicaSet":
        kind, name = replicaset_owners.get((namespace, name), (kind, name))
    spec = body.get("spec") or {}
    return PodInfo(
        namespace=namespace,
        name=meta.get("name", ""),
        owner_kind=kind,
        owner_name=name,
        node=spec.get("nodeName"),
        gpus=gpus_requested(spec),
        labels=meta.get("labels") or {},
        phase=(body.get("status") or {}).get("phase", ""),
        ready_after_s=ready_after_s(body),
        ready=is_ready(body),
        created_s=_timestamp(meta.get("creationTimestamp")),
        placed_after_s=placed_after_s(body),
    )


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _condition(body: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    status = body.get("status") or {}
    return next((c for c in status.get("conditions") or () if (c or {}).get("type") == kind), None)


def is_ready(body: Mapping[str, Any]) -> bool:
    """The pod's Ready condition is True: it passes its readiness probe and serves."""
    ready = _condition(body, "Ready")
    return ready is not None and ready.get("status") == "True"


def ready_after_s(body: Mapping[str, Any]) -> float | None:
    """A replica's cold start as its pod shows it: seconds from the pod's creation to its
    Ready condition turning True. That spans waiting for a node (a provisioner starting one),
    the image pull, the container start and the server's model load up to its readiness
    probe. None unless the pod is Ready with both times known and no container has
    restarted (a restart or readiness flap moves the transition past the start)."""
    status = body.get("status") or {}
    if any((c or {}).get("restartCount", 0) for c in status.get("containerStatuses") or ()):
        return None
    return _seconds_to(body, "Ready")


def placed_after_s(body: Mapping[str, Any]) -> float | None:
    """How long the pod waited for a node: seconds from its creation to its PodScheduled
    condition turning True (the scheduler binding it). Where a provisioner (Karpenter, the
    cluster autoscaler) starts a node for it, that includes the node's start. None unless the
    pod has a node and both times are known."""
    if not (body.get("spec") or {}).get("nodeName"):
        return None
    return _seconds_to(body, "PodScheduled")


def _seconds_to(body: Mapping[str, Any], kind: str) -> float | None:
    """Seconds from the pod's creation to its `kind` condition turning True, when it is True
    and both times are known and in order."""
    condition = _condition(body, kind)
    if condition is None or condition.get("status") != "True":
        return None
    created = _timestamp((body.get("metadata") or {}).get("creationTimestamp"))
    became = _timestamp(condition.get("lastTransitionTime"))
    if created is None or became is None or became < created:
        return None
    return became - created


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes label selector semantics (matchLabels and matchExpressions)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and (not present or labels[key] not in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True
