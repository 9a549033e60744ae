"""The operator's in-memory picture of the cluster, kept current by watch events.

Workloads (Deployments, StatefulSets) with their labels, ReplicaSet ownership, pods and nodes.
Handlers call `upsert_*`/`delete_*` with raw object bodies; the tick reads a consistent view.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from costoperator.cluster import (
    DEFAULT_NOTICE_TAINTS,
    NodeInfo,
    PodInfo,
    node_info,
    pod_info,
    replicaset_owner,
    selector_matches,
)
from costoperator.figures import PolicyView

WORKLOAD_KINDS = ("Deployment", "StatefulSet")


@dataclass(frozen=True, slots=True)
class WorkloadInfo:
    namespace: str
    kind: str
    name: str
    labels: Mapping[str, str]
    replicas: int | None


class ClusterState:
    def __init__(self, notice_taints: Collection[str] = DEFAULT_NOTICE_TAINTS) -> None:
        self._notice_taints = frozenset(notice_taints)
        """Node taint keys that give notice of a node's end (`cluster.NodeInfo.notice`)."""
        self._lock = threading.Lock()
        self._workloads: dict[tuple[str, str, str], WorkloadInfo] = {}
        self._rs_owners: dict[tuple[str, str], tuple[str, str]] = {}
        self._pods: dict[tuple[str, str], PodInfo] = {}
        """Pods as parsed at their last event, owner = their direct controller: a pod's body is
        not kept (a fleet of 10,000 pods would hold every container spec in memory)."""
        self._by_namespace: dict[str, dict[tuple[str, str], WorkloadInfo]] = {}
        self._scalers: dict[tuple[str, str, str], tuple[str, str, str]] = {}
        """(namespace, scaler kind, scaler name) → (namespace, target kind, target name)."""
        self._nodes: dict[str, NodeInfo] = {}

    # --- updates from watch events ---------------------------------------------------------

    def upsert_workload(self, kind: str, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata", {})
        info = WorkloadInfo(
            namespace=meta.get("namespace", ""),
            kind=kind,
            name=meta.get("name", ""),
            labels=dict(meta.get("labels") or {}),
            replicas=(body.get("spec") or {}).get("replicas"),
        )
        with self._lock:
            self._workloads[(info.namespace, kind, info.name)] = info
            self._by_namespace.setdefault(info.namespace, {})[(kind, info.name)] = info

    def delete_workload(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._workloads.pop((namespace, kind, name), None)
            in_namespace = self._by_namespace.get(namespace, {})
            in_namespace.pop((kind, name), None)
            if not in_namespace:
                self._by_namespace.pop(namespace, None)

    def upsert_scaler(self, kind: str, body: Mapping[str, Any]) -> None:
        """An HPA or a KEDA ScaledObject: what it scales (`spec.scaleTargetRef`)."""
        meta = body.get("metadata", {})
        ref = (body.get("spec") or {}).get("scaleTargetRef") or {}
        namespace = meta.get("namespace", "")
        # A ScaledObject's scaleTargetRef.kind defaults to Deployment.
        target = (namespace, str(ref.get("kind") or "Deployment"), str(ref.get("name", "")))
        with self._lock:
            self._scalers[(namespace, kind, meta.get("name", ""))] = target

    def delete_scaler(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._scalers.pop((namespace, kind, name), None)

    def scaler_of(self, namespace: str, kind: str, name: str) -> str | None:
        """ "Kind/name" of an autoscaler that already targets this workload, if any."""
        with self._lock:
            for (_, scaler_kind, scaler_name), target in sorted(self._scalers.items()):
                if target == (namespace, kind, name):
                    return f"{scaler_kind}/{scaler_name}"
        return None

    def workload(self, namespace: str, kind: str, name: str) -> WorkloadInfo | None:
        with self._lock:
            return self._workloads.get((namespace, kind, name))

    def upsert_replicaset(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata", {})
        with self._lock:
            self._rs_owners[(meta.get("namespace", ""), meta.get("name", ""))] = replicaset_owner(
                body
            )

    def delete_replicaset(self, namespace: str, name: str) -> None:
        with self._lock:
            self._rs_owners.pop((namespace, name), None)

    def upsert_pod(self, body: Mapping[str, Any]) -> None:
        info = pod_info(body, {})
        with self._lock:
            self._pods[(info.namespace, info.name)] = info

    def delete_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            self._pods.pop((namespace, name), None)

    def upsert_node(self, body: Mapping[str, Any]) -> None:
        info = node_info(body, self._notice_taints)
        with self._lock:
            self._nodes[info.name] = info

    def delete_node(self, name: str) -> None:
        with self._lock:
            self._nodes.pop(name, None)

    # --- reads -----------------------------------------------------------------------------

    def nodes(self) -> dict[str, NodeInfo]:
        with self._lock:
            return dict(self._nodes)

    def workloads_of(self, policy: PolicyView) -> list[WorkloadInfo]:
        """The Deployments/StatefulSets a policy selects in its namespace."""
        with self._lock:
            candidates = list(self._by_namespace.get(policy.namespace, {}).values())
        if policy.target is not None:
            kind, name = policy.target
            return [w for w in candidates if w.kind == kind and w.name == name]
        if policy.selector is not None:
            return sorted(
                (w for w in candidates if selector_matches(policy.selector, w.labels)),
                key=lambda w: (w.kind, w.name),
            )
        return []

    def pods_by_workload(self) -> dict[tuple[str, str, str], list[PodInfo]]:
        """Pods grouped by (namespace, kind, name) of the workload owning them."""
        with self._lock:
            pods = list(self._pods.values())
            owners = dict(self._rs_owners)
        grouped: dict[tuple[str, str, str], list[PodInfo]] = {}
        for pod in pods:
            kind, name = pod.owner_kind, pod.owner_name
            if kind == "ReplicaSet":
                kind, name = owners.get((pod.namespace, name), ("", ""))
            if kind in WORKLOAD_KINDS:
                grouped.setdefault((pod.namespace, kind, name), []).append(pod)
        return grouped
