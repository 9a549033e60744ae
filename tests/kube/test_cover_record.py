"""The on-demand scaling record through the real client and the emulator's status subresource:
a hold's cover rewrite (`{"coverReplicas": n}`, handlers._carry_out) is merged into the scale's
record, keeps the rest of it, and reads back as the cover a restart resumes from."""

from __future__ import annotations

import datetime as dt

from costoperator.actuator import KubernetesScaleClient, RecordedCover
from costoperator.crds import ScalingRecord, to_wire
from costoperator.kube_emulator import ClusterEmulator, inference_cost_policy, namespace_object
from costoperator.runtime import Runtime

NS, NAME = "inference", "llama70b"


def test_a_cover_rewrite_merges_into_the_record_and_reads_back(kube_env: ClusterEmulator) -> None:
    spec = {
        "selector": {"matchLabels": {"app": "llama70b"}},
        "engine": "vllm",
        "model": "llama-2-70b",
    }
    kube_env.seed([namespace_object(NS), inference_cost_policy(NAME, NS, spec)])
    stamp = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    record = ScalingRecord(
        last_scale_time=stamp,
        last_scale_up_time=stamp,
        workload="Deployment/llama70b",
        from_replicas=3,
        to_replicas=5,
        holder="operator-0",
        cover_replicas=2,
    )
    scaler = KubernetesScaleClient()
    scaler.record(NS, NAME, to_wire(record), True)
    scaler.record(NS, NAME, {"coverReplicas": 0}, True)

    body = kube_env.get("inferencecostpolicies", NAME, namespace=NS)
    assert body is not None
    written = body["status"]["onDemandScaling"]
    assert written == {**to_wire(record), "coverReplicas": 0}
    assert "scaling" not in body["status"]  # the spot record is another field
    runtime = Runtime()
    runtime.remember_object(NS, NAME, body)
    assert runtime.on_demand_covers[(NS, NAME)] == RecordedCover("Deployment/llama70b", 5, 0)
    assert runtime.last_on_demand_scale_up[(NS, NAME)] == stamp.timestamp()
