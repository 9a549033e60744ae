"""kopf 1.45 runs against the in-memory Kubernetes API: index, status, deletion, watch faults.

A minimal operator (a pod index, create/update/delete handlers and a timer on
InferenceCostPolicy) runs in the test's event loop against `ClusterEmulator` over HTTP, found
through `KUBECONFIG` as `llmcost run` finds a cluster. RELIABILITY 14 (dropped watches, 410 Gone
and an API outage cause no crash and the operator recovers by itself), 15 (no finalizers or
annotations on workloads the operator does not own; deleting a policy completes promptly) and
16 (status writes round-trip without kopf's "inconsistencies" warning).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kmock
import kopf
import pytest

from costoperator.kube_emulator import (
    ClusterEmulator,
    gpu_node,
    inference_cost_policy,
    namespace_object,
    workload_objects,
)

POLICY = ("llmcost.io", "v1alpha1", "inferencecostpolicies")
NAMESPACE = "inference"
POLICY_NAME = "llama70b"
GPUS_PER_POD = 4
#: The operator's own names (RELIABILITY 15: nothing under these on objects it does not own).
OWN_PREFIXES = ("llmcost.io", "kopf.zalando.org", "kopf.dev")
#: Resources the operator only reads.
READ_ONLY = ("pods", "deployments", "replicasets", "nodes")

Eventually = Callable[..., Awaitable[Any]]  # the `eventually` fixture
RunKopf = Callable[..., contextlib.AbstractAsyncContextManager[asyncio.Task[None]]]


@dataclasses.dataclass
class Memo:
    """What the handlers saw, for assertions (passed to kopf as `memo`)."""

    deleted: list[str] = dataclasses.field(default_factory=list)


def make_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The kubeconfig only: the in-cluster service account would reach a real cluster.
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = "llmcost.io/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="llmcost.io")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="llmcost.io", key="last-handled-configuration"
        )
        settings.posting.reporting_component = "llmcost-operator"
        settings.watching.server_timeout = 10
        settings.watching.client_timeout = 15
        settings.watching.connect_timeout = 1
        settings.watching.reconnect_backoff = 0.1
        settings.networking.request_timeout = 5
        settings.networking.connect_timeout = 1
        # kopf gives up on a request after these retries, and a failed watch request stops
        # the operator: their sum is the longest API outage it survives (about 6 s here).
        settings.networking.error_backoffs = [0.1, 0.2, 0.5, 1, 1, 1, 1, 2]
        settings.queueing.idle_timeout = 1
        settings.queueing.exit_timeout = 1
        settings.background.instant_exit_timeout = 1

    @kopf.index("pods", id="gpu_pods", registry=registry)
    def gpu_pods(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[str, Any]:
        gpus = sum(
            int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
            for container in spec.get("containers", [])
        )
        return {namespace: {"pod": name, "node": spec.get("nodeName"), "gpus": gpus}}

    @kopf.on.create(*POLICY, registry=registry)
    @kopf.on.update(*POLICY, registry=registry)
    def reconcile(body: kopf.Body, spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
        patch.status["observedEngine"] = spec.get("engine")
        kopf.info(body, reason="Observed", message=f"engine {spec.get('engine')}")

    @kopf.on.delete(*POLICY, registry=registry)
    def forget(name: str, memo: Memo, **_: Any) -> None:
        memo.deleted.append(name)

    @kopf.timer(*POLICY, interval=0.2, registry=registry)
    def tick(namespace: str, patch: kopf.Patch, gpu_pods: kopf.Index[str, Any], **_: Any) -> None:
        pods = list(gpu_pods.get(namespace, []))
        patch.status["pods"] = sorted(pod["pod"] for pod in pods)
        patch.status["gpus"] = sum(pod["gpus"] for pod in pods)

    return registry


def seed(cluster: ClusterEmulator, *, replicas: int = 3) -> list[str]:
    """Two GPU nodes, a Deployment with its pods, and a policy; returns the pod names."""
    workload = workload_objects(
        "llama70b",
        NAMESPACE,
        replicas=replicas,
        nodes=["gpu-a100-1", "gpu-a100-spot-1"],
        gpus_per_pod=GPUS_PER_POD,
    )
    cluster.seed(
        [
            namespace_object(NAMESPACE),
            gpu_node("gpu-a100-1", capacity_type="on-demand"),
            gpu_node("gpu-a100-spot-1", capacity_type="spot"),
            *workload,
            inference_cost_policy(
                POLICY_NAME,
                NAMESPACE,
                {"selector": {"matchLabels": {"app": "llama70b"}}, "engine": "vllm"},
            ),
        ]
    )
    return sorted(obj["metadata"]["name"] for obj in workload if obj["kind"] == "Pod")


def policy_status(cluster: ClusterEmulator) -> dict[str, Any]:
    policy = cluster.get("icp", POLICY_NAME, namespace=NAMESPACE)
    return dict(policy.get("status", {})) if policy else {}


def extra_pod(cluster: ClusterEmulator, name: str) -> str:
    """One more pod of the workload, as a scale-out would add it."""
    replicaset = cluster.list("replicasets", namespace=NAMESPACE)[0]
    pod = next(
        obj
        for obj in workload_objects(
            "llama70b", NAMESPACE, replicas=1, nodes=["gpu-a100-1"], gpus_per_pod=GPUS_PER_POD
        )
        if obj["kind"] == "Pod"
    )
    pod["metadata"]["name"] = name
    pod["metadata"]["ownerReferences"][0]["uid"] = replicaset["metadata"]["uid"]
    pod["metadata"]["ownerReferences"][0]["name"] = replicaset["metadata"]["name"]
    cluster.create(pod)
    return name


async def test_index_sees_pods_and_status_lands(
    kube_env: ClusterEmulator,
    run_kopf: RunKopf,
    eventually: Eventually,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kopf")
    pods = seed(kube_env)
    async with run_kopf(make_registry(), memo=Memo()):
        # The timer and the creation handler write their parts of the status independently.
        status = await eventually(
            lambda: (
                (s := policy_status(kube_env)).get("pods") == pods and "observedEngine" in s and s
            ),
            what="the timer's status from the pod index and the creation handler's",
        )
        assert status["gpus"] == len(pods) * GPUS_PER_POD
        assert status["observedEngine"] == "vllm"

        kube_env.patch("icp", POLICY_NAME, {"spec": {"engine": "sglang"}}, namespace=NAMESPACE)
        await eventually(
            lambda: policy_status(kube_env).get("observedEngine") == "sglang",
            what="the update handler's status",
        )

        # The handler's events (one per run) are posted with generateName: one name prefix.
        def kopf_events() -> list[dict[str, Any]] | None:
            events = kube_env.list("events", namespace=NAMESPACE)
            return events if len(events) >= 2 else None

        events = await eventually(kopf_events, what="kopf's events")
        assert len({event["metadata"]["name"] for event in events}) == len(events)

    inconsistent = [r.getMessage() for r in caplog.records if "inconsistencies" in r.getMessage()]
    assert inconsistent == []
    # A stopped operator leaves no watch behind (the demo runs for hours).
    await eventually(lambda: kube_env.watch_count() == 0, what="the watches' release")


async def test_namespace_globs_follow_new_namespaces(
    kube_env: ClusterEmulator, run_kopf: RunKopf, eventually: Eventually
) -> None:
    pods = seed(kube_env)
    policy_spec = {"selector": {"matchLabels": {"app": "llama70b"}}, "engine": "vllm"}
    async with run_kopf(make_registry(), memo=Memo(), namespaces=["infer*"]):
        await eventually(lambda: policy_status(kube_env).get("pods") == pods, what="the status")
        kube_env.seed(
            [
                namespace_object("inference-b"),
                namespace_object("other"),
                inference_cost_policy("late", "inference-b", policy_spec),
                inference_cost_policy("ignored", "other", policy_spec),
            ]
        )
        await eventually(
            lambda: (
                "observedEngine"
                in (kube_env.get("icp", "late", namespace="inference-b") or {}).get("status", {})
            ),
            what="the policy in a namespace created after the start",
        )
        assert "status" not in (kube_env.get("icp", "ignored", namespace="other") or {})
        assert kube_env.watch_count("namespaces") >= 1


async def test_policy_deletion_completes_promptly(
    kube_env: ClusterEmulator, run_kopf: RunKopf, eventually: Eventually
) -> None:
    seed(kube_env)
    memo = Memo()
    async with run_kopf(make_registry(), memo=memo):
        await eventually(
            lambda: (
                "llmcost.io/finalizer"
                in (kube_env.get("icp", POLICY_NAME, namespace=NAMESPACE) or {})
                .get("metadata", {})
                .get("finalizers", [])
            ),
            what="the operator's finalizer on its policy",
        )
        kube_env.delete("icp", POLICY_NAME, namespace=NAMESPACE)
        await eventually(
            lambda: kube_env.get("icp", POLICY_NAME, namespace=NAMESPACE) is None,
            timeout=5,
            what="the policy's deletion",
        )
        assert memo.deleted == [POLICY_NAME]


async def test_workloads_the_operator_does_not_own_stay_untouched(
    kube_env: ClusterEmulator, run_kopf: RunKopf, eventually: Eventually
) -> None:
    pods = seed(kube_env)
    async with run_kopf(make_registry(), memo=Memo()):
        await eventually(lambda: policy_status(kube_env).get("pods") == pods, what="the status")
        kube_env.delete("icp", POLICY_NAME, namespace=NAMESPACE)
        await eventually(lambda: kube_env.get("icp", POLICY_NAME, namespace=NAMESPACE) is None)

    handler = kube_env.handler
    for plural in READ_ONLY:
        resource = kube_env.resolve(plural).key
        requests = list(handler[resource])
        writes = [request for request in requests if request.method != kmock.method.GET]
        assert writes == [], f"the operator wrote to {plural}"
        if plural == "pods":
            assert requests, "the operator never read the pods: the check above proves nothing"
        for key, obj in handler.objects.items():
            if key[0] != resource:
                continue
            for version in obj.history:
                meta = version["metadata"] if version is not None else {}
                marks = [*meta.get("finalizers", []), *meta.get("annotations", {})]
                assert not [m for m in marks if m.startswith(OWN_PREFIXES)], (key, marks)


@pytest.mark.parametrize("mode", ["close", "reset", "expire"])
async def test_operator_survives_dropped_watches(
    kube_env: ClusterEmulator, run_kopf: RunKopf, eventually: Eventually, mode: str
) -> None:
    pods = seed(kube_env)
    async with run_kopf(make_registry(), memo=Memo()) as operator:
        await eventually(lambda: policy_status(kube_env).get("pods") == pods, what="the status")
        assert kube_env.watch_count("pods") >= 1
        assert kube_env.watch_count("icp") >= 1

        dropped = kube_env.drop_watches(mode)  # type: ignore[arg-type]
        # Created while the operator has no watch: it must come back through the replay
        # from its last resourceVersion (close, reset) or through a fresh list (expire).
        new_pod = extra_pod(kube_env, "llama70b-during-drop")

        assert dropped >= 2
        await eventually(
            lambda: kube_env.watch_count("pods") >= 1 and kube_env.watch_count("icp") >= 1,
            what="the re-established watches",
        )
        await eventually(
            lambda: new_pod in policy_status(kube_env).get("pods", []),
            what="the pod created during the drop in the index",
        )
        kube_env.patch("icp", POLICY_NAME, {"spec": {"engine": "tgi"}}, namespace=NAMESPACE)
        await eventually(lambda: policy_status(kube_env).get("observedEngine") == "tgi")
        assert not operator.done()


async def test_operator_rides_out_an_api_outage(
    kube_env: ClusterEmulator, run_kopf: RunKopf, eventually: Eventually
) -> None:
    pods = seed(kube_env)
    async with run_kopf(make_registry(), memo=Memo()) as operator:
        await eventually(lambda: policy_status(kube_env).get("pods") == pods, what="the status")

        with kube_env.outage():
            await asyncio.sleep(2)  # 503s for every request, watches reset
            assert not operator.done()

        new_pod = extra_pod(kube_env, "llama70b-after-outage")
        await eventually(
            lambda: new_pod in policy_status(kube_env).get("pods", []),
            timeout=15,
            what="a pod created after the outage in the index",
        )
        assert not operator.done()
