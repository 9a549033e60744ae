"""The operator's cluster picture filled from the emulator's object bodies, for tests that run
the tick without kopf."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from costoperator.state import ClusterState


def add_objects(cluster: ClusterState, bodies: Iterable[Mapping[str, Any]]) -> list[str]:
    """Each body (`kube_emulator.workload_objects`) into `cluster` by its kind, as the
    operator's watches would put it; returns the names of the pods among them."""
    pods = []
    for body in bodies:
        kind = body["kind"]
        if kind == "Pod":
            cluster.upsert_pod(body)
            pods.append(body["metadata"]["name"])
        elif kind == "ReplicaSet":
            cluster.upsert_replicaset(body)
        else:
            cluster.upsert_workload(kind, body)
    return pods
