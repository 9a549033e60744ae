"""The harness as its users see it: the `kubernetes` client through KUBECONFIG, another process,
realistic object chains, seeding, and the API server's answers to mistakes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import kubernetes
import pytest

from costoperator.kube_emulator import (
    ApiStatusError,
    ClusterEmulator,
    UnknownResourceError,
    gpu_node,
    gpu_pricing,
    inference_cost_policy,
    namespace_object,
    workload_objects,
)


def client(cluster: ClusterEmulator) -> kubernetes.client.ApiClient:
    """A client configured from the emulator's kubeconfig, as kubectl would read it."""
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(
        config_file=str(cluster.kubeconfig), client_configuration=configuration
    )
    return kubernetes.client.ApiClient(configuration)


def test_kubernetes_client_reads_and_scales(kube_env: ClusterEmulator) -> None:
    kube_env.seed(
        [
            namespace_object("inference"),
            gpu_node("gpu-1", capacity_type="on-demand"),
            gpu_node("gpu-2", gpu_product="NVIDIA-H100-80GB-HBM3", capacity_type="spot"),
            *workload_objects("llama70b", "inference", replicas=3, nodes=["gpu-1", "gpu-2"]),
            *workload_objects("other", "inference", replicas=1, nodes=["gpu-1"]),
        ]
    )
    with client(kube_env) as api_client:
        core = kubernetes.client.CoreV1Api(api_client)
        apps = kubernetes.client.AppsV1Api(api_client)

        assert "inference" in {ns.metadata.name for ns in core.list_namespace().items}
        assert core.read_namespace("default").status.phase == "Active"
        named = core.list_namespace(label_selector="kubernetes.io/metadata.name=inference")
        assert [ns.metadata.name for ns in named.items] == ["inference"]
        spot = core.list_node(label_selector="karpenter.sh/capacity-type=spot").items
        assert [node.metadata.labels["nvidia.com/gpu.product"] for node in spot] == [
            "NVIDIA-H100-80GB-HBM3"
        ]
        pods = core.list_namespaced_pod("inference", label_selector="app=llama70b").items
        assert sorted(pod.spec.node_name for pod in pods) == ["gpu-1", "gpu-1", "gpu-2"]
        assert {pod.spec.containers[0].resources.limits["nvidia.com/gpu"] for pod in pods} == {"1"}
        on_gpu_2 = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=gpu-2").items
        assert [pod.metadata.labels["app"] for pod in on_gpu_2] == ["llama70b"]

        scale = apps.read_namespaced_deployment_scale("llama70b", "inference")
        assert (scale.spec.replicas, scale.status.selector) == (3, "app=llama70b")
        apps.patch_namespaced_deployment_scale("llama70b", "inference", {"spec": {"replicas": 5}})
        deployment = apps.read_namespaced_deployment("llama70b", "inference")
        assert (deployment.spec.replicas, deployment.metadata.generation) == (5, 2)

        deployment.spec.replicas = 1
        deployment.metadata.resource_version = "1"  # stale
        with pytest.raises(kubernetes.client.ApiException) as conflict:
            apps.replace_namespaced_deployment("llama70b", "inference", deployment)
        assert conflict.value.status == 409


def test_owner_chain_and_garbage_collection(cluster: ClusterEmulator) -> None:
    objects = workload_objects("llama70b", "inference", replicas=2, nodes=["gpu-1"], gpus_per_pod=4)
    cluster.seed(objects)
    deployment, replicaset, *pods = objects
    assert replicaset["metadata"]["ownerReferences"][0]["uid"] == deployment["metadata"]["uid"]
    for pod in pods:
        owner = pod["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"]) == ("ReplicaSet", replicaset["metadata"]["uid"])
        assert pod["metadata"]["labels"]["pod-template-hash"]
        assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"

    held = pods[0]["metadata"]["name"]
    cluster.patch(
        "pods", held, {"metadata": {"finalizers": ["example.com/hold"]}}, namespace="inference"
    )
    cluster.delete("deployments", "llama70b", namespace="inference")

    assert cluster.list("replicasets", namespace="inference") == []
    remaining = cluster.list("pods", namespace="inference")
    assert [pod["metadata"]["name"] for pod in remaining] == [held]
    assert remaining[0]["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiStatusError) as refused:
        cluster.patch(
            "pods",
            held,
            {"metadata": {"finalizers": ["example.com/hold", "x/y"]}},
            namespace="inference",
        )
    assert refused.value.status == 422
    cluster.patch("pods", held, {"metadata": {"finalizers": None}}, namespace="inference")
    assert cluster.list("pods", namespace="inference") == []


def test_statefulset_pods(cluster: ClusterEmulator) -> None:
    objects = workload_objects(
        "sglang", "inference", replicas=2, nodes=["gpu-1", "gpu-2"], kind="StatefulSet"
    )
    cluster.seed(objects)
    pods = cluster.list("pods", namespace="inference")
    assert [pod["metadata"]["name"] for pod in pods] == ["sglang-0", "sglang-1"]
    assert {pod["metadata"]["ownerReferences"][0]["kind"] for pod in pods} == {"StatefulSet"}
    scaled = cluster.patch(
        "sts", "sglang", {"spec": {"replicas": 4}}, namespace="inference", subresource="scale"
    )
    assert scaled["spec"]["replicas"] == 4


def test_seed_from_yaml_and_name_resources_as_kubectl_does(cluster: ClusterEmulator) -> None:
    cluster.seed(
        textwrap.dedent(
            """
            apiVersion: v1
            kind: List
            items:
            - apiVersion: llmcost.io/v1alpha1
              kind: GPUPricing
              metadata: {name: default}
              spec:
                entries: [{gpu: A100-80GB, capacityType: spot, usdPerGpuHour: 0.73}]
            ---
            apiVersion: llmcost.io/v1alpha1
            kind: InferenceCostPolicy
            metadata: {name: llama70b, namespace: inference}
            spec: {engine: vllm}
            """
        )
    )
    for ref in ("icp", "InferenceCostPolicy", "inferencecostpolicies.llmcost.io"):
        assert cluster.get(ref, "llama70b", namespace="inference") is not None
    assert cluster.get("gpupricings", "default") is not None
    assert cluster.get("llmcost.io/v1alpha1/gpupricings", "default", namespace="ignored")

    with pytest.raises(UnknownResourceError):
        cluster.get("configmaps", "x")
    with pytest.raises(ApiStatusError) as exists:
        cluster.create(inference_cost_policy("llama70b", "inference", {}))
    assert exists.value.status == 409
    with pytest.raises(ApiStatusError) as missing:
        cluster.delete("icp", "nope", namespace="inference")
    assert missing.value.status == 404
    assert cluster.delete("icp", "nope", namespace="inference", missing_ok=True) is None
    assert cluster.create(gpu_pricing("aws", [{"gpu": "H100-SXM"}]))["metadata"]["uid"]


async def test_async_helpers(cluster: ClusterEmulator) -> None:
    await cluster.aio.create(inference_cost_policy("p", "inference", {"engine": "tgi"}))
    await cluster.aio.patch("icp", "p", {"status": {"ready": True}}, namespace="inference")
    policy = await cluster.aio.get("icp", "p", namespace="inference")
    assert policy is not None
    assert policy["status"] == {"ready": True}
    assert [p["metadata"]["name"] for p in await cluster.aio.list("icp")] == ["p"]
    assert await cluster.aio.watch_count() == 0


def test_another_process_finds_it_through_kubeconfig(cluster: ClusterEmulator) -> None:
    cluster.seed([gpu_node("gpu-1")])
    script = (
        "import kubernetes; kubernetes.config.load_kube_config(); "
        "print(kubernetes.client.CoreV1Api().list_node().items[0].metadata.name)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**cluster.env(), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "gpu-1"
