"""The operator's core without kopf: cluster picture, queries, figures, exporter, tick."""

from __future__ import annotations

import datetime as dt
import math
import threading
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from costengine.pricing import CapacityType, seed_price_sheet
from costoperator import tick as tick_module
from costoperator.cluster import (
    PodInfo,
    capacity_type_of,
    gpu_from_product,
    gpus_requested,
    is_ready,
    node_info,
    placed_after_s,
    ready_after_s,
    selector_matches,
)
from costoperator.exporter import Snapshot, build_registry
from costoperator.figures import (
    ApiPrice,
    PodRates,
    PolicyView,
    SpotView,
    carry_forward,
    workload_figures,
)
from costoperator.promclient import PromUnavailableError, QueryResult, Sample, parse_vector
from costoperator.queries import (
    Family,
    MetricOverrides,
    NamedQuery,
    SemanticCounters,
    tick_queries,
)
from costoperator.state import ClusterState
from costoperator.tick import (
    RateFold,
    burst_rows,
    rates_by_window,
    run_queries,
    run_tick,
    workload_burst_peaks,
)

PRICES = seed_price_sheet()


# --- cluster picture ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"karpenter.sh/capacity-type": "spot"}, CapacityType.SPOT),
        ({"karpenter.sh/capacity-type": "on-demand"}, CapacityType.ON_DEMAND),
        ({"eks.amazonaws.com/capacityType": "SPOT"}, CapacityType.SPOT),
        ({"cloud.google.com/gke-spot": "true"}, CapacityType.SPOT),
        ({"kubernetes.azure.com/scalesetpriority": "spot"}, CapacityType.SPOT),
        ({"kubernetes.azure.com/scalesetpriority": "regular"}, CapacityType.ON_DEMAND),
        ({}, CapacityType.ON_DEMAND),
    ],
)
def test_capacity_type_from_provisioner_labels(
    labels: dict[str, str], expected: CapacityType
) -> None:
    assert capacity_type_of(labels) is expected


@pytest.mark.parametrize(
    ("product", "gpu"),
    [
        ("NVIDIA-A100-SXM4-80GB", "A100-80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA-H100-80GB-HBM3", "H100-SXM"),
        ("NVIDIA-H100-PCIe", "H100-PCIe"),
        ("NVIDIA-L4", "L4"),
        ("NVIDIA-L40S", "L40S"),
        ("NVIDIA-A10G", "A10G"),
        ("Tesla-T4", "T4"),
        ("NVIDIA-H200", "H200"),
        ("AMD Instinct MI300X", "MI300X"),
        ("NVIDIA-GeForce-RTX-4090", None),
        (None, None),
    ],
)
def test_gpu_product_labels_map_to_the_catalog(product: str | None, gpu: str | None) -> None:
    assert gpu_from_product(product) == gpu


def test_gpus_requested_counts_mig_slices_as_shares() -> None:
    spec = {
        "containers": [
            {"resources": {"limits": {"nvidia.com/gpu": "4"}}},
            {"resources": {"limits": {"nvidia.com/mig-3g.40gb": "1", "cpu": "2"}}},
        ]
    }
    assert gpus_requested(spec) == pytest.approx(4 + 3 / 7)


def test_selector_semantics() -> None:
    labels = {"app": "llama", "tier": "spot"}
    assert selector_matches({"matchLabels": {"app": "llama"}}, labels)
    assert not selector_matches({"matchLabels": {"app": "other"}}, labels)
    assert selector_matches(
        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["spot"]}]}, labels
    )
    assert not selector_matches(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["spot"]}]}, labels
    )
    assert selector_matches(
        {"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, labels
    )


def deployment(ns: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name, "labels": labels, "uid": f"d-{name}"},
        "spec": {"replicas": 1},
    }


def replicaset(ns: str, name: str, owner: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": ns,
            "name": name,
            "ownerReferences": [{"kind": "Deployment", "name": owner, "controller": True}],
        }
    }


def pod(ns: str, name: str, rs: str, node: str, gpus: int) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": ns,
            "name": name,
            "labels": {},
            "ownerReferences": [{"kind": "ReplicaSet", "name": rs, "controller": True}],
        },
        "spec": {
            "nodeName": node,
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
        "status": {"phase": "Running"},
    }


def node(name: str, product: str, capacity: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"nvidia.com/gpu.product": product, "karpenter.sh/capacity-type": capacity},
        }
    }


@pytest.fixture
def cluster() -> ClusterState:
    c = ClusterState()
    c.upsert_workload("Deployment", deployment("inference", "llama70b", {"app": "llama70b"}))
    c.upsert_workload("Deployment", deployment("inference", "llama70b-spot", {"app": "llama70b"}))
    c.upsert_workload("Deployment", deployment("inference", "other", {"app": "other"}))
    c.upsert_replicaset(replicaset("inference", "llama70b-abc", "llama70b"))
    c.upsert_replicaset(replicaset("inference", "llama70b-spot-def", "llama70b-spot"))
    c.upsert_node(node("od-1", "NVIDIA-A100-SXM4-80GB", "on-demand"))
    c.upsert_node(node("spot-1", "NVIDIA-A100-SXM4-80GB", "spot"))
    c.upsert_pod(pod("inference", "llama70b-abc-1", "llama70b-abc", "od-1", 4))
    c.upsert_pod(pod("inference", "llama70b-spot-def-1", "llama70b-spot-def", "spot-1", 4))
    return c


def policy(**kw: Any) -> PolicyView:
    base: dict[str, Any] = {
        "namespace": "inference",
        "name": "llama70b",
        "window": "5m",
        "window_s": 300,
        "selector": {"matchLabels": {"app": "llama70b"}},
        "engine": "vllm",
        "model": "llama-2-70b",
    }
    base.update(kw)
    return PolicyView(**base)


def test_selector_picks_on_demand_and_spot_workloads(cluster: ClusterState) -> None:
    names = [w.name for w in cluster.workloads_of(policy())]
    assert names == ["llama70b", "llama70b-spot"]
    target = policy(selector=None, target=("Deployment", "other"))
    assert [w.name for w in cluster.workloads_of(target)] == ["other"]
    pods = cluster.pods_by_workload()
    assert [p.name for p in pods[("inference", "Deployment", "llama70b")]] == ["llama70b-abc-1"]


def created_at_noon(body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """`body` created at 12:00:00 with `status`."""
    created = dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC).isoformat()
    return {
        **body,
        "metadata": {**body["metadata"], "creationTimestamp": created},
        "status": status,
    }


def noon_plus(seconds: float) -> str:
    return (dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


def started(body: dict[str, Any], ready_after: float, restarts: int = 0) -> dict[str, Any]:
    """`body` created at 12:00:00 and Ready `ready_after` seconds later."""
    ready = {"type": "Ready", "status": "True", "lastTransitionTime": noon_plus(ready_after)}
    return created_at_noon(
        body,
        {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}, ready],
            "containerStatuses": [{"name": "server", "restartCount": restarts}],
        },
    )


def test_a_pods_cold_start_is_creation_to_ready_when_it_is_unambiguous() -> None:
    body = pod("inference", "p", "rs", "spot-1", 4)
    assert ready_after_s(started(body, 412.0)) == 412.0
    zulu = started(body, 90.0)
    zulu["metadata"]["creationTimestamp"] = "2026-12-06T12:00:00Z"  # the API server's form
    zulu["status"]["conditions"][1]["lastTransitionTime"] = "2026-12-06T12:01:30Z"
    assert ready_after_s(zulu) == 90.0
    assert ready_after_s(body) is None  # no times
    assert ready_after_s(started(body, 412.0, restarts=1)) is None  # Ready again after a restart
    not_ready = started(body, 412.0)
    not_ready["status"]["conditions"][1]["status"] = "False"
    assert ready_after_s(not_ready) is None
    garbled = started(body, 412.0)
    garbled["status"]["conditions"][1]["lastTransitionTime"] = "yesterday"
    assert ready_after_s(garbled) is None


def test_a_workloads_cold_start_is_the_median_of_its_pods(cluster: ClusterState) -> None:
    for name, ready_after in (("a", 200.0), ("b", 260.0), ("c", 900.0)):
        cluster.upsert_pod(
            started(pod("inference", name, "llama70b-spot-def", "spot-1", 4), ready_after)
        )
    pods = cluster.pods_by_workload()[("inference", "Deployment", "llama70b-spot")]
    assert len(pods) == 4  # and one without the times
    f = workload_figures(policy(), "llama70b-spot", pods, cluster.nodes(), {}, PRICES, None, 0.0)
    assert f.measured_cold_start_s == 260.0
    od = cluster.pods_by_workload()[("inference", "Deployment", "llama70b")]
    f = workload_figures(policy(), "llama70b", od, cluster.nodes(), {}, PRICES, None, 0.0)
    assert f.measured_cold_start_s is None


def test_pods_that_do_not_serve_yet_count_as_starting(cluster: ClusterState) -> None:
    """Not Ready (the fixture's pods have no conditions) or not scheduled: starting."""
    ready = started(pod("inference", "a", "llama70b-spot-def", "spot-1", 4), 90.0)
    assert is_ready(ready)
    starting = pod("inference", "b", "llama70b-spot-def", "spot-1", 4)
    assert not is_ready(starting)
    starting["metadata"]["creationTimestamp"] = "2026-12-06T12:00:00+00:00"
    cluster.upsert_pod(starting)
    cluster.upsert_pod(ready)
    unscheduled = pod("inference", "c", "llama70b-spot-def", "spot-1", 4)
    del unscheduled["spec"]["nodeName"]
    unscheduled["status"] = {"phase": "Pending"}
    cluster.upsert_pod(unscheduled)
    done = started(pod("inference", "d", "llama70b-spot-def", "spot-1", 4), 90.0)
    done["status"]["phase"] = "Succeeded"
    cluster.upsert_pod(done)
    pods = cluster.pods_by_workload()[("inference", "Deployment", "llama70b-spot")]
    f = workload_figures(policy(), "llama70b-spot", pods, cluster.nodes(), {}, PRICES, None, 0.0)
    assert f.starting_replicas == 3  # the fixture's pod and `b` (no Ready condition), and `c`
    assert f.unplaced_replicas == 1  # `c`, the one with no node
    # `b`, on its node: its creation time (for the overdue rule; the fixture's pod has none).
    assert f.placed_starting_since == (dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC).timestamp(),)
    assert f.replicas == {CapacityType.SPOT: 3}  # scheduled and unfinished: the fixture's, a, b


def placed(body: dict[str, Any], after: float) -> dict[str, Any]:
    """`body` created at 12:00:00 and bound to its node `after` seconds later (not Ready)."""
    bound = {"type": "PodScheduled", "status": "True", "lastTransitionTime": noon_plus(after)}
    return created_at_noon(body, {"phase": "Pending", "conditions": [bound]})


def test_a_pods_wait_for_a_node_is_creation_to_its_binding() -> None:
    body = pod("inference", "p", "rs", "spot-1", 4)
    assert placed_after_s(placed(body, 75.0)) == 75.0
    assert placed_after_s(body) is None  # no times
    unbound = placed(body, 75.0)
    del unbound["spec"]["nodeName"]
    unbound["status"]["conditions"][0]["status"] = "False"  # Unschedulable
    assert placed_after_s(unbound) is None
    assert placed_after_s(placed(body, -5.0)) is None  # a clock that ran backwards
    garbled = placed(body, 75.0)
    garbled["status"]["conditions"][0]["lastTransitionTime"] = "soon"
    assert placed_after_s(garbled) is None


def test_a_workloads_wait_for_a_node_and_its_unplaced_pods(cluster: ClusterState) -> None:
    """The longest wait for a node of the live pods (where a provisioner starts nodes, how
    long a new one takes), and the creation times of the pods still waiting."""
    for name, after in (("a", 0.0), ("b", 64.0), ("c", 30.0)):
        cluster.upsert_pod(placed(pod("inference", name, "llama70b-spot-def", "spot-1", 4), after))
    waiting = placed(pod("inference", "d", "llama70b-spot-def", "spot-1", 4), 0.0)
    del waiting["spec"]["nodeName"]
    waiting["status"] = {"phase": "Pending"}
    cluster.upsert_pod(waiting)
    untimed = pod("inference", "e", "llama70b-spot-def", "spot-1", 4)
    del untimed["spec"]["nodeName"]
    cluster.upsert_pod(untimed)
    pods = cluster.pods_by_workload()[("inference", "Deployment", "llama70b-spot")]
    f = workload_figures(policy(), "llama70b-spot", pods, cluster.nodes(), {}, PRICES, None, 0.0)
    assert f.time_to_node_s == 64.0
    assert f.unplaced_replicas == 2
    assert f.unplaced_since == (dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC).timestamp(),)
    od = cluster.pods_by_workload()[("inference", "Deployment", "llama70b")]
    f = workload_figures(policy(), "llama70b", od, cluster.nodes(), {}, PRICES, None, 0.0)
    assert f.time_to_node_s is None  # the fixture's pod has no times


@pytest.mark.parametrize(
    ("taints", "expected"),
    [
        ([{"key": "aws-node-termination-handler/spot-itn", "effect": "NoSchedule"}],
         "aws-node-termination-handler/spot-itn"),
        ([{"key": "cloud.google.com/impending-node-termination", "effect": "NoSchedule"}],
         "cloud.google.com/impending-node-termination"),
        ([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
          {"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}], "karpenter.sh/disrupted"),
        ([{"key": "karpenter.sh/disruption", "value": "disrupting", "effect": "NoSchedule"}],
         "karpenter.sh/disruption"),
        # a cordon alone is not a notice: an admin's cordon may last for days
        ([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}], None),
        ([{"effect": "NoSchedule"}, None, {"key": 7}], None),
        (None, None),
    ],
)  # fmt: skip
def test_a_node_under_a_notice_taint_is_noticed(
    taints: list[Any] | None, expected: str | None
) -> None:
    body = node("spot-1", "NVIDIA-A100-SXM4-80GB", "spot")
    body["spec"] = {"taints": taints}
    assert node_info(body).notice == expected
    # the operator's own list replaces the defaults (`llmcost run --notice-taint`)
    assert node_info(body, ("example.com/going",)).notice is None
    body["spec"] = {"taints": [{"key": "example.com/going", "effect": "NoExecute"}]}
    assert node_info(body, ("example.com/going",)).notice == "example.com/going"
    assert node_info(body).notice is None


def test_pods_on_a_noticed_node_count_as_noticed(cluster: ClusterState) -> None:
    """Live pods on a node that carries a notice taint; the count follows the node's taints
    as its watch events come (a notice withdrawn, Karpenter un-tainting a node, clears it)."""
    cluster.upsert_pod(started(pod("inference", "b", "llama70b-spot-def", "spot-2", 4), 90.0))
    cluster.upsert_node(node("spot-2", "NVIDIA-A100-SXM4-80GB", "spot"))

    def noticed() -> tuple[int, int]:
        pods = cluster.pods_by_workload()[("inference", "Deployment", "llama70b-spot")]
        f = workload_figures(
            policy(), "llama70b-spot", pods, cluster.nodes(), {}, PRICES, None, 0.0
        )
        return f.noticed_replicas, f.replicas[CapacityType.SPOT]

    assert noticed() == (0, 2)
    tainted = node("spot-2", "NVIDIA-A100-SXM4-80GB", "spot")
    tainted["spec"] = {"taints": [{"key": "aws-node-termination-handler/spot-itn",
                                   "value": "1234567890", "effect": "NoSchedule"}]}  # fmt: skip
    cluster.upsert_node(tainted)
    assert noticed() == (1, 2)  # it still runs and is priced as spot until it goes
    # A pod on the noticed node that does not serve yet is noticed, not also starting on its
    # node (`placed_starting_since`, the overdue rule): one cover for it, not two.
    late = placed(pod("inference", "c", "llama70b-spot-def", "spot-2", 4), 10.0)
    cluster.upsert_pod(late)
    pods = cluster.pods_by_workload()[("inference", "Deployment", "llama70b-spot")]
    f = workload_figures(policy(), "llama70b-spot", pods, cluster.nodes(), {}, PRICES, None, 0.0)
    assert (f.noticed_replicas, f.starting_replicas, f.placed_starting_since) == (2, 2, ())
    cluster.delete_pod("inference", "c")
    own = ClusterState(notice_taints=("example.com/going",))
    own.upsert_node(tainted)
    assert own.nodes()["spot-2"].notice is None
    cluster.upsert_node(node("spot-2", "NVIDIA-A100-SXM4-80GB", "spot"))
    assert noticed() == (0, 2)


def test_burst_rows_and_a_workloads_peaks() -> None:
    def row(pod_name: str, window: str, value: float) -> Sample:
        return pod_sample(value, pod_name, llmcost_burst_window=window)

    answer = QueryResult(
        (
            row("a", "30", 900.0),
            row("a", "60", 500.0),
            row("b", "30", 100.0),
            row("b", "60", 100.0),
            row("b", "120", 100.0),
            row("c", "30", float("nan")),  # dropped, as a negative or unlabelled one
            row("c", "x", 1.0),
            pod_sample(5.0, "c"),
        )
    )
    bursts = burst_rows(answer)
    assert bursts == {
        ("inference", "a"): {30.0: 900.0, 60.0: 500.0},
        ("inference", "b"): {30.0: 100.0, 60.0: 100.0, 120.0: 100.0},
    }
    infos = {n: PodInfo("inference", n, "Deployment", "w", "od-1", 4, {}, "Running") for n in "abc"}
    census = {("inference", n): PodRates() for n in "ab"}
    # The census's pods, over the windows both have; `c` is not in the census.
    assert workload_burst_peaks(infos.values(), census, bursts) == {30.0: 1000.0, 60.0: 600.0}
    # A census pod without rows: incomplete; no rows at all (the query failed): unknown.
    census[("inference", "c")] = PodRates()
    assert workload_burst_peaks(infos.values(), census, bursts) is None
    assert workload_burst_peaks([infos["a"]], census, None) is None
    assert workload_burst_peaks([], census, None) == {}  # no pods: nothing to add


def test_a_spot_policys_tick_reads_the_burst_signal_and_survives_its_failure(
    cluster: ClusterState,
) -> None:
    spot = SpotView(mode="Recommend", target=("Deployment", "llama70b-spot"))
    answers = {
        "llmcost_burst_window": [
            pod_sample(4000, llmcost_burst_window="30"),
            pod_sample(2500, llmcost_burst_window="60"),
        ],
        '"engine", "vllm"': [pod_sample(500, engine="vllm")],
        "prompt_tokens_total|": [pod_sample(1000)],
    }
    prom = FakeProm(answers)
    report = run_tick(prom, [policy(spot=spot)], cluster, PRICES, {}, now=10, interval_s=60)  # type: ignore[arg-type]
    (burst,) = [c for c in prom.calls if "llmcost_burst_window" in c]
    assert "[60s:15s]" in burst  # over the tick's interval
    f = report.figures[("inference", "llama70b", "llama70b")]
    assert f.burst_peaks == {30.0: 4000.0, 60.0: 2500.0}
    assert not f.stale
    # Without spot planning the query is not asked.
    prom = FakeProm(answers)
    run_tick(prom, [policy()], cluster, PRICES, {}, now=10)  # type: ignore[arg-type]
    assert not [c for c in prom.calls if "llmcost_burst_window" in c]

    class BurstFails(FakeProm):
        def query(self, promql: str, at: float | None = None) -> QueryResult:
            if "llmcost_burst_window" in promql:
                raise PromUnavailableError("subqueries unsupported")
            return super().query(promql, at)

    prom = BurstFails(answers)
    report = run_tick(prom, [policy(spot=spot)], cluster, PRICES, {}, now=10)  # type: ignore[arg-type]
    f = report.figures[("inference", "llama70b", "llama70b")]
    assert not f.stale  # the figures stand; the planner reads the rate
    assert f.burst_peaks is None
    assert report.outcomes["error"] == 1
    assert not report.errors


# --- Prometheus results --------------------------------------------------------------------


def test_invalid_samples_are_dropped_one_by_one() -> None:
    samples, rejected = parse_vector(
        [
            {"metric": {"pod": "a"}, "value": [0, "1.5"]},
            {"metric": {"pod": "b"}, "value": [0, "NaN"]},
            {"metric": {"pod": "c"}, "value": [0, "+Inf"]},
            {"metric": {"pod": "d"}, "value": [0, "abc"]},
            {"metric": {"pod": "e"}, "value": [0, "1"]},
            {"metric": {"pod": "e"}, "value": [0, "2"]},
        ]
    )
    assert [s.labels["pod"] for s in samples] == ["a"]
    assert samples == (Sample({"pod": "a"}, 1.5),)
    assert len(rejected) == 4
    assert "2 series for {'pod': 'e'}" in rejected  # both rows of the duplicated label set


def test_valid_vectors_parse_whole_and_label_value_repeats_are_not_duplicates() -> None:
    rows = [{"metric": {"namespace": "ns", "pod": f"p{i}"}, "value": [0, str(i)]} for i in range(5)]
    samples, rejected = parse_vector(rows)
    assert rejected == ()
    assert [s.value for s in samples] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert samples[3].labels == {"namespace": "ns", "pod": "p3"}
    # Same label values under different names: two series, both kept.
    samples, rejected = parse_vector(
        [
            {"metric": {"phase": "x"}, "value": [0, "1"]},
            {"metric": {"engine": "x"}, "value": [0, "2"]},
        ]
    )
    assert rejected == ()
    assert [dict(s.labels) for s in samples] == [{"phase": "x"}, {"engine": "x"}]


def test_malformed_rows_are_rejected_and_the_rest_kept() -> None:
    samples, rejected = parse_vector(
        [
            {"metric": {"pod": "a"}, "value": [0, "1"]},
            {"metric": {"pod": "c"}},
            {"metric": {"pod": "d"}, "value": []},
            {"metric": None, "value": [0, "4"]},  # no labels: the empty label set
            {"metric": ["pod", "e"], "value": [0, "5"]},
        ]
    )
    assert [dict(s.labels) for s in samples] == [{"pod": "a"}, {}]
    assert [s.value for s in samples] == [1.0, 4.0]
    assert len(rejected) == 3
    assert any("not an object" in r for r in rejected)


def test_query_count_does_not_grow_with_policies() -> None:
    one = tick_queries(windows={"5m"}, baseline_windows={"24h"})
    many = tick_queries(windows={"5m"} | {"5m" for _ in range(1000)}, baseline_windows={"24h"})
    assert len(one) == len(many) <= 10
    assert {q.family for q in one} == set(Family) - {Family.SEMANTIC, Family.BURST}
    two_windows = tick_queries(windows={"5m", "10m"}, baseline_windows={"24h"})
    assert len(two_windows) == 2 * len(one) - 1  # the baseline is shared
    # Spot planning adds the one burst query, whatever the windows.
    spot = tick_queries(windows={"5m", "10m"}, baseline_windows={"24h"}, burst_range_s=30)
    assert [q.family for q in spot if q not in two_windows] == [Family.BURST]


def test_metric_overrides_and_semantic_caches_add_a_bounded_set_of_queries() -> None:
    """1,000 policies naming their own counters (and a semantic cache each) add one query per
    overridden family and one semantic query, not one per policy."""
    overrides = [
        MetricOverrides(input_tokens=f"trt_in_{i % 3}", output_tokens=f"trt_out_{i % 3}")
        for i in range(1000)
    ]
    semantic = [
        SemanticCounters("gw_tokens_total", "gw_hits_total", (("model", f"m{i}"),))
        for i in range(1000)
    ]
    plain = tick_queries(windows={"5m"})
    both = tick_queries(windows={"5m"}, overrides=overrides, semantic=semantic)
    assert len(both) == len(plain) + 2 <= 10  # custom input query, semantic query
    (custom_input,) = [q for q in both if q.custom]
    assert custom_input.family is Family.INPUT_TOKENS
    assert all(f"trt_in_{i}" in custom_input.promql for i in range(3))
    (out,) = [q for q in both if q.family is Family.OUTPUT_TOKENS]
    assert '"engine", "custom"' in out.promql
    assert "trt_out_2" in out.promql
    (sem,) = [q for q in both if q.family is Family.SEMANTIC]
    assert "sum by (model) (rate(gw_hits_total[5m]))" in sem.promql
    assert "sum by (model) (rate(gw_tokens_total[5m]))" in sem.promql


# --- figures --------------------------------------------------------------------------------


def rates(in_tps: float, out_tps: float, **kw: Any) -> PodRates:
    return PodRates(
        input_tokens_per_second=in_tps, output_tokens_per_second=out_tps, engine="vllm", **kw
    )


def test_cost_per_million_is_total_cost_over_total_tokens(cluster: ClusterState) -> None:
    pods = cluster.pods_by_workload()[("inference", "Deployment", "llama70b")]
    f = workload_figures(
        policy(),
        "llama70b",
        pods,
        cluster.nodes(),
        {("inference", "llama70b-abc-1"): rates(1000, 500, gpu_busy_ratio=0.6)},
        PRICES,
        None,
        now=100.0,
    )
    assert f.hourly_cost_usd == {CapacityType.ON_DEMAND: pytest.approx(4 * 2.21)}
    assert f.usd_per_million_tokens == pytest.approx(4 * 2.21 / 3600 / 1500 * 1e6)
    assert f.gpu_utilization_ratio == pytest.approx(0.6)
    assert f.gpu == "A100-80GB"
    assert not f.stale


def test_spot_pods_are_priced_at_spot(cluster: ClusterState) -> None:
    pods = cluster.pods_by_workload()[("inference", "Deployment", "llama70b-spot")]
    f = workload_figures(policy(), "llama70b-spot", pods, cluster.nodes(), {}, PRICES, None, now=1)
    assert f.hourly_cost_usd == {CapacityType.SPOT: pytest.approx(4 * 0.73)}
    assert f.replicas == {CapacityType.SPOT: 1}


def test_no_token_data_is_stale_not_zero_cost(cluster: ClusterState) -> None:
    pods = cluster.pods_by_workload()[("inference", "Deployment", "llama70b")]
    f = workload_figures(policy(), "llama70b", pods, cluster.nodes(), {}, PRICES, None, now=1)
    assert f.stale
    assert f.usd_per_million_tokens is None
    assert f.input_tokens_per_second is None


def test_too_few_tokens_in_the_window_gives_no_price(cluster: ClusterState) -> None:
    pods = cluster.pods_by_workload()[("inference", "Deployment", "llama70b")]
    f = workload_figures(
        policy(),
        "llama70b",
        pods,
        cluster.nodes(),
        {("inference", "llama70b-abc-1"): rates(1, 1)},
        PRICES,
        None,
        now=1,
    )
    assert f.usd_per_million_tokens is None
    assert not f.stale


def test_measured_phase_split_and_prefix_savings(cluster: ClusterState) -> None:
    pods = cluster.pods_by_workload()[("inference", "Deployment", "llama70b")]
    r = rates(
        1000,
        250,
        prefill_seconds_per_second=1.0,
        decode_gpu_seconds_per_second=1.0,
        prefix_hit_tokens_per_second=400,
        prefix_query_tokens_per_second=1000,
    )
    f = workload_figures(
        policy(api_comparison=(ApiPrice("gpt-4o", 2.5, 10),)),
        "llama70b",
        pods,
        cluster.nodes(),
        {("inference", "llama70b-abc-1"): r},
        PRICES,
        2.0,
        now=1,
    )
    usd_s = 4 * 2.21 / 3600
    assert f.input_usd_per_million_tokens == pytest.approx(usd_s * 0.5 / 1000 * 1e6)
    assert f.output_usd_per_million_tokens == pytest.approx(usd_s * 0.5 / 250 * 1e6)
    # Input and output dollars add back up to the hourly cost.
    assert (
        f.input_usd_per_million_tokens * 1000 + f.output_usd_per_million_tokens * 250
        == pytest.approx(usd_s * 1e6)
    )
    assert f.prefix_cache_hit_ratio == pytest.approx(0.4)
    # 400 cached tok/s priced at prefill $ over the 600 prompt tokens/s actually computed.
    assert f.prefix_cache_savings_usd_per_hour == pytest.approx(400 * usd_s * 0.5 / 600 * 3600)
    assert f.api_equivalent_usd_per_million_tokens["gpt-4o"] == pytest.approx(
        (1000 * 2.5 + 250 * 10) / 1250
    )
    assert f.drift_ratio == pytest.approx(f.usd_per_million_tokens / 2.0)


def test_modeled_split_and_capacity_when_the_model_is_known(cluster: ClusterState) -> None:
    pods = cluster.pods_by_workload()[("inference", "Deployment", "llama70b")]
    r = rates(1000, 250, requests_per_second=2.0)
    f = workload_figures(
        policy(),
        "llama70b",
        pods,
        cluster.nodes(),
        {("inference", "llama70b-abc-1"): r},
        PRICES,
        None,
        now=1,
    )
    assert f.input_usd_per_million_tokens is not None
    assert f.capacity_utilization_ratio is not None
    assert 0 < f.capacity_utilization_ratio < 1
    assert f.usd_per_million_tokens_at_capacity is not None
    assert f.usd_per_million_tokens_at_capacity < f.usd_per_million_tokens


def test_last_good_values_are_carried_forward_as_stale(cluster: ClusterState) -> None:
    pods = cluster.pods_by_workload()[("inference", "Deployment", "llama70b")]
    good = workload_figures(
        policy(),
        "llama70b",
        pods,
        cluster.nodes(),
        {("inference", "llama70b-abc-1"): rates(1000, 500)},
        PRICES,
        None,
        now=1,
    )
    missing = workload_figures(policy(), "llama70b", pods, cluster.nodes(), {}, PRICES, None, now=2)
    kept = carry_forward(good, missing)
    assert kept.stale
    assert kept.usd_per_million_tokens == good.usd_per_million_tokens
    assert kept.updated_at == 1


# --- exporter -------------------------------------------------------------------------------


def test_collector_exports_the_contract_and_drops_deleted_policies(cluster: ClusterState) -> None:
    pods = cluster.pods_by_workload()[("inference", "Deployment", "llama70b")]
    f = workload_figures(
        policy(),
        "llama70b",
        pods,
        cluster.nodes(),
        {("inference", "llama70b-abc-1"): rates(1000, 500, gpu_busy_ratio=0.5)},
        PRICES,
        None,
        now=1,
    )
    snapshot = Snapshot()
    registry, _ = build_registry(snapshot, opencost_compat=True)
    snapshot.replace({("inference", "llama70b", "llama70b"): f})
    labels = {
        "namespace": "inference",
        "policy": "llama70b",
        "workload": "llama70b",
        "model": "llama-2-70b",
        "gpu": "A100-80GB",
        "engine": "vllm",
    }
    get = registry.get_sample_value
    assert get(
        "llmcost_cost_per_million_tokens_usd", {**labels, "token_type": "all"}
    ) == pytest.approx(f.usd_per_million_tokens)
    assert get(
        "llmcost_hourly_cost_usd", {**labels, "capacity_type": "on_demand"}
    ) == pytest.approx(8.84)
    assert get("llmcost_hourly_cost_usd", {**labels, "capacity_type": "spot"}) == 0
    assert get("llmcost_gpu_utilization_ratio", labels) == 0.5
    assert get("llmcost_data_stale", labels) == 0
    assert get("llmcost_cost_per_million_tokens_usd", {**labels, "token_type": "input"}) is None
    assert get("llm_cost_per_million_tokens", labels) == pytest.approx(f.usd_per_million_tokens)
    assert get("llmcost_build_info", {"version": "0.1.0"}) == 1
    snapshot.replace({})
    assert get("llmcost_hourly_cost_usd", {**labels, "capacity_type": "on_demand"}) is None


def test_no_nan_or_inf_on_metrics(cluster: ClusterState) -> None:
    pods = cluster.pods_by_workload()[("inference", "Deployment", "llama70b")]
    f = workload_figures(
        policy(),
        "llama70b",
        pods,
        cluster.nodes(),
        {("inference", "llama70b-abc-1"): rates(0, 0)},
        PRICES,
        None,
        now=1,
    )
    snapshot = Snapshot()
    registry, _ = build_registry(snapshot)
    snapshot.replace({("inference", "llama70b", "llama70b"): f})
    text = generate_latest(registry).decode()
    values = [s.value for fam in text_string_to_metric_families(text) for s in fam.samples]
    assert values
    assert all(math.isfinite(v) for v in values)


# --- the tick -------------------------------------------------------------------------------


class FakeProm:
    """Answers by family keyword found in the PromQL; counts the queries."""

    def __init__(self, by_keyword: dict[str, list[Sample]], warnings: tuple[str, ...] = ()) -> None:
        self.by_keyword = by_keyword
        self.warnings = warnings
        self.calls: list[str] = []
        self.times: list[float | None] = []

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        self.calls.append(promql)
        self.times.append(at)
        for keyword, samples in self.by_keyword.items():
            if keyword in promql:
                return QueryResult(tuple(samples), self.warnings)
        return QueryResult((), self.warnings)


def pod_sample(value: float, pod_name: str = "llama70b-abc-1", **extra: str) -> Sample:
    return Sample({"namespace": "inference", "pod": pod_name, **extra}, value)


def test_every_query_of_a_tick_is_evaluated_at_the_tick_time(cluster: ClusterState) -> None:
    """Prometheus evaluates a query without a time when it arrives, a little after the tick's
    `now` and at a different instant for each query: a scrape landing in between would be in
    some of a tick's figures and not others, and not at the time the figures are exported with.
    """
    prom = FakeProm({})
    report = run_tick(prom, [policy(baseline_window="24h")], cluster, PRICES, {}, now=1234.5)  # type: ignore[arg-type]
    assert report.queries == len(prom.calls) > 1
    assert prom.times == [1234.5] * len(prom.calls)


def test_tick_joins_pod_rates_to_workloads(cluster: ClusterState) -> None:
    prom = FakeProm(
        {  # the output query first: it also names the prompt counters' engines
            '"engine", "vllm"': [pod_sample(500, engine="vllm")],
            "prompt_tokens_total|": [pod_sample(1000)],
        }
    )
    report = run_tick(prom, [policy(engine="auto")], cluster, PRICES, {}, now=10)  # type: ignore[arg-type]
    assert report.queries == len(prom.calls) <= 10
    f = report.figures[("inference", "llama70b", "llama70b")]
    assert f.engine == "vllm"  # detected from the output query's branch
    assert f.usd_per_million_tokens == pytest.approx(8.84 / 3600 / 1500 * 1e6)
    spot = report.figures[("inference", "llama70b", "llama70b-spot")]
    assert spot.stale  # no token series for the spot pod
    assert math.isclose(spot.hourly_cost_usd[CapacityType.SPOT], 4 * 0.73)


def test_partial_responses_mark_figures_stale(cluster: ClusterState) -> None:
    prom = FakeProm(
        {
            '"engine", "vllm"': [pod_sample(500, engine="vllm")],
            "prompt_tokens_total|": [pod_sample(1000)],
        },
        warnings=("partial",),
    )
    report = run_tick(prom, [policy()], cluster, PRICES, {}, now=10)  # type: ignore[arg-type]
    assert report.partial
    assert report.figures[("inference", "llama70b", "llama70b")].stale
    assert report.outcomes["partial"] == report.queries


def test_engine_names_are_matched_in_both_spellings() -> None:
    (out,) = [q for q in tick_queries({"5m"}) if q.family is Family.OUTPUT_TOKENS]
    vllm_branch = next(b for b in out.promql.split(" or ") if '"engine", "vllm"' in b)
    assert "vllm_generation_tokens_total" in vllm_branch
    assert "vllm:generation_tokens_total" in vllm_branch
    assert "sglang" not in vllm_branch
    assert '"engine", "sglang"' in out.promql


def test_pods_missing_from_the_census_have_no_data(cluster: ClusterState) -> None:
    """A vanished target still has rate() answers for a window length; the output query keeps
    live series only (`rate(x[w]) and x`), so the pod it omits has no data at all."""
    prom = FakeProm(
        {  # the spot pod's output counter went stale: only its prompt rate still answers
            '"engine", "vllm"': [pod_sample(500, engine="vllm")],
            "prompt_tokens_total|": [pod_sample(1000), pod_sample(300, "llama70b-spot-def-1")],
        }
    )
    report = run_tick(prom, [policy()], cluster, PRICES, {}, now=10)  # type: ignore[arg-type]
    assert not report.figures[("inference", "llama70b", "llama70b")].stale
    assert report.figures[("inference", "llama70b", "llama70b-spot")].stale


def _tick_results() -> dict[NamedQuery, QueryResult]:
    """One answer per family of a tick, for two pods (the second one not in the census)."""
    answers: dict[Family, list[Sample]] = {
        Family.OUTPUT_TOKENS: [pod_sample(500, engine="vllm")],
        Family.INPUT_TOKENS: [pod_sample(1000), pod_sample(7, "gone-1")],
        Family.PREFIX_HIT_TOKENS: [pod_sample(400)],
        Family.PREFIX_QUERY_TOKENS: [pod_sample(1000)],
        Family.REQUESTS: [pod_sample(2)],
        Family.GPU_BUSY: [pod_sample(0.6)],
        Family.PHASE_SECONDS: [pod_sample(0.2, phase="prefill"), pod_sample(0.5, phase="decode")],
    }
    return {
        q: QueryResult(tuple(answers.get(q.family, ())))
        for q in tick_queries({"5m"}, baseline_windows={"24h"})
    }


def test_folding_answers_in_any_arrival_order_gives_the_same_rates() -> None:
    results = _tick_results()
    expected = rates_by_window(results)
    assert set(expected["5m"]) == {("inference", "llama70b-abc-1")}  # the census decides
    rates = expected["5m"][("inference", "llama70b-abc-1")]
    assert (rates.engine, rates.output_tokens_per_second, rates.input_tokens_per_second) == (
        "vllm",
        500,
        1000,
    )
    assert (rates.prefill_seconds_per_second, rates.decode_gpu_seconds_per_second) == (0.2, 0.5)
    for order in (list(results), list(reversed(results)), sorted(results, key=str)):
        fold = RateFold()
        for q in order:
            fold.add(q, results[q])
        assert fold.rates() == expected


class ScriptedProm:
    """Answers from a table; the phase query waits until `folded_one` is set (by the fold),
    and the requests query fails."""

    def __init__(self, results: dict[NamedQuery, QueryResult]) -> None:
        self.by_promql = {q.promql: (q, r) for q, r in results.items()}
        self.folded_one = threading.Event()
        self.order: list[Family] = []
        self.lock = threading.Lock()

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        q, result = self.by_promql[promql]
        with self.lock:
            self.order.append(q.family)
        if q.family is Family.PHASE_SECONDS:
            assert self.folded_one.wait(10), (
                "answers were not folded in while this one was in flight"
            )
        if q.family is Family.REQUESTS:
            raise PromUnavailableError("down")
        return result


def test_answers_are_folded_in_while_others_are_in_flight() -> None:
    results = _tick_results()
    prom = ScriptedProm(results)
    folded: list[Family] = []
    caller = threading.get_ident()

    def on_result(q: NamedQuery, result: QueryResult) -> None:
        assert threading.get_ident() == caller  # in the calling thread
        folded.append(q.family)
        if len(folded) == len(results) - 2:  # every answer but the phase and the failed one
            prom.folded_one.set()

    got, outcomes, errors = run_queries(prom, list(results), on_result)  # type: ignore[arg-type]
    # The phase query was held until every other answer had been folded in: it came in last.
    assert folded[-1] is Family.PHASE_SECONDS
    assert Family.REQUESTS not in folded
    assert Family.REQUESTS not in {q.family for q in got}
    assert errors == ["requests: down"]
    assert outcomes == {"success": len(results) - 1, "error": 1}
    assert list(got) == [q for q in results if q.family is not Family.REQUESTS]  # query order


def test_work_meanwhile_runs_in_the_calling_thread_while_queries_are_in_flight() -> None:
    """The tick builds its workloads' capacity (cluster and prices only) while Prometheus is
    evaluating: `meanwhile` runs once, in the calling thread, with queries still in flight."""
    results = _tick_results()
    prom = ScriptedProm({q: r for q, r in results.items() if q.family is not Family.REQUESTS})
    caller = threading.get_ident()
    ran: list[int] = []

    def meanwhile() -> None:
        assert threading.get_ident() == caller
        assert not prom.folded_one.is_set()  # the phase query is still held by Prometheus
        ran.append(len(prom.order))
        prom.folded_one.set()

    got, _, errors = run_queries(
        prom,  # type: ignore[arg-type]
        [prom.by_promql[p][0] for p in prom.by_promql],
        meanwhile=meanwhile,
    )
    assert len(ran) == 1
    assert errors == []
    assert len(got) == len(prom.by_promql)


def test_the_costliest_queries_are_asked_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Phase, GPU and census queries cost Prometheus 2-4x a one-counter family: asked first,
    the short ones fill in behind them instead of a long one finishing last."""
    monkeypatch.setattr(tick_module, "QUERY_WORKERS", 1)
    results = _tick_results()
    prom = ScriptedProm({q: r for q, r in results.items() if q.family is not Family.REQUESTS})
    prom.folded_one.set()
    run_queries(prom, [prom.by_promql[p][0] for p in prom.by_promql])  # type: ignore[arg-type]
    assert prom.order[:3] == [Family.PHASE_SECONDS, Family.GPU_BUSY, Family.OUTPUT_TOKENS]
    assert sorted(prom.order) == sorted(
        q.family for q in results if q.family is not Family.REQUESTS
    )


# --- drift baselines between ticks -------------------------------------------------------------


class BaselineProm(FakeProm):
    """FakeProm with one priced pod whose drift-baseline query answers `baseline` (None:
    fails) and can be held until `release` is set."""

    def __init__(self) -> None:
        super().__init__(
            {
                '"engine", "vllm"': [pod_sample(500, engine="vllm")],
                "prompt_tokens_total|": [pod_sample(1000)],
            }
        )
        self.baseline: float | None = 2.0
        self.release = threading.Event()
        self.release.set()

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        if "llmcost_hourly_cost_usd" not in promql:
            return super().query(promql, at)
        self.calls.append(promql)
        self.times.append(at)
        self.release.wait(10)
        if self.baseline is None:
            raise PromUnavailableError("down")
        labels = {"namespace": "inference", "policy": "llama70b", "workload": "llama70b"}
        return QueryResult((Sample(labels, self.baseline),))


def _baseline_calls(prom: FakeProm) -> int:
    return sum("llmcost_hourly_cost_usd" in q for q in prom.calls)


BASELINE_KEY = ("inference", "llama70b", "llama70b")


def _tick_with(
    prom: FakeProm,
    cluster: ClusterState,
    cache: tick_module.BaselineCache,
    now: float,
    baseline_window: str = "24h",
) -> tick_module.TickReport:
    p = policy(baseline_window=baseline_window)
    return run_tick(prom, [p], cluster, PRICES, {}, now, baselines=cache)  # type: ignore[arg-type]


def test_drift_baseline_is_queried_once_then_refreshed_in_the_background(
    cluster: ClusterState,
) -> None:
    prom = BaselineProm()
    cache = tick_module.BaselineCache(refresh_s=300)

    def tick(now: float) -> tick_module.TickReport:
        return _tick_with(prom, cluster, cache, now)

    first = tick(1000)  # nothing cached (a fresh start): asked inside the tick
    assert _baseline_calls(prom) == 1
    assert first.baseline_refreshes == 0
    drift = first.figures[BASELINE_KEY].drift_ratio
    assert drift == pytest.approx(first.figures[BASELINE_KEY].usd_per_million_tokens / 2.0)

    second = tick(1000 + 299)  # younger than the refresh period: reused, not asked
    assert _baseline_calls(prom) == 1
    assert second.queries == first.queries - 1
    assert second.figures[BASELINE_KEY].drift_ratio == drift

    # Due: the refresh runs in the background; the tick does not wait for it.
    prom.release.clear()
    prom.baseline = 4.0
    third = tick(1000 + 300)
    assert third.baseline_refreshes == 1
    assert third.queries == second.queries
    assert (
        third.figures[BASELINE_KEY].drift_ratio == drift
    )  # the old baseline until the answer lands
    assert tick(1000 + 330).baseline_refreshes == 0  # one refresh in flight per window
    prom.release.set()
    cache.wait(10)
    fourth = tick(1000 + 360)
    assert fourth.figures[BASELINE_KEY].drift_ratio == pytest.approx(drift / 2)
    assert fourth.outcomes["success"] == fourth.queries + 1  # the refresh is counted
    assert _baseline_calls(prom) == 2
    # Each query is evaluated at its tick's time; the background refresh at the time of the
    # tick that started it.
    asked_at = {t for q, t in zip(prom.calls, prom.times, strict=True) if "llmcost_" in q}
    assert asked_at == {1000, 1000 + 300}
    assert set(prom.times) == {1000, 1000 + 299, 1000 + 300, 1000 + 330, 1000 + 360}


def test_a_failed_baseline_refresh_keeps_the_old_baseline(
    cluster: ClusterState, caplog: pytest.LogCaptureFixture
) -> None:
    prom = BaselineProm()
    cache = tick_module.BaselineCache(refresh_s=300)
    drift = _tick_with(prom, cluster, cache, 0).figures[BASELINE_KEY].drift_ratio
    assert drift is not None

    prom.baseline = None  # Prometheus fails the refresh
    assert _tick_with(prom, cluster, cache, 400).baseline_refreshes == 1
    cache.wait(10)
    assert "drift baseline 24h not refreshed" in caplog.text
    report = _tick_with(prom, cluster, cache, 410)
    assert report.figures[BASELINE_KEY].drift_ratio == drift  # kept
    assert report.outcomes["error"] == 1
    assert not report.errors
    assert not report.figures[BASELINE_KEY].stale
    assert report.baseline_refreshes == 1  # and the refresh is tried again at once


def test_a_workload_with_tokens_and_no_baseline_is_looked_up_again_soon(
    cluster: ClusterState,
) -> None:
    """A new workload: Prometheus has not scraped its own series yet, so the first answer has
    no baseline for it. It is asked for again 15 s later, not five minutes later (a workload
    without tokens has no baseline to find and does not count)."""
    prom = BaselineProm()
    cache = tick_module.BaselineCache(refresh_s=300)
    original = prom.query

    def empty_first(promql: str, at: float | None = None) -> QueryResult:
        result = original(promql, at)
        if "llmcost_hourly_cost_usd" in promql and _baseline_calls(prom) == 1:
            return QueryResult(())  # the workload's own series are not in Prometheus yet
        return result

    prom.query = empty_first  # type: ignore[method-assign]
    first = _tick_with(prom, cluster, cache, 0)
    assert first.figures[BASELINE_KEY].drift_ratio is None
    assert _tick_with(prom, cluster, cache, 14).baseline_refreshes == 0
    assert _tick_with(prom, cluster, cache, 15).baseline_refreshes == 1
    cache.wait(10)
    found = _tick_with(prom, cluster, cache, 45)
    assert found.figures[BASELINE_KEY].drift_ratio is not None
    # Found: back to the usual period.
    assert _tick_with(prom, cluster, cache, 150).baseline_refreshes == 0
    assert _tick_with(prom, cluster, cache, 315).baseline_refreshes == 1


def test_a_short_baseline_window_is_refreshed_sooner() -> None:
    cache = tick_module.BaselineCache(refresh_s=300)
    assert cache.period_s("24h") == 300
    assert cache.period_s("1h") == 36  # 1% of the window


def test_baselines_of_windows_no_policy_uses_are_forgotten(cluster: ClusterState) -> None:
    prom = BaselineProm()
    cache = tick_module.BaselineCache()
    _tick_with(prom, cluster, cache, 0, "24h")
    assert cache.values()
    _tick_with(prom, cluster, cache, 1, "168h")
    assert {k[0] for k in cache.values()} == {"168h"}
    assert cache.missing(["24h"], 2) == {"24h"}


# --- vLLM's phase times between ticks ----------------------------------------------------------


class PhaseProm(FakeProm):
    """FakeProm with one priced vLLM pod whose phase query answers `prefill` and `decode` GPU
    seconds per second (None: fails) and can be held until `release` is set."""

    def __init__(self) -> None:
        super().__init__(
            {
                '"engine", "vllm"': [pod_sample(500, engine="vllm")],
                "prompt_tokens_total|": [pod_sample(1000)],
                "request_prompt_tokens_count": [pod_sample(2)],
            }
        )
        self.phases: tuple[float, float] | None = (0.2, 0.6)
        self.release = threading.Event()
        self.release.set()

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        if '"phase", "prefill"' not in promql:
            return super().query(promql, at)
        self.calls.append(promql)
        self.times.append(at)
        self.release.wait(10)
        if self.phases is None:
            raise PromUnavailableError("down")
        prefill, decode = self.phases
        return QueryResult(
            (pod_sample(prefill, phase="prefill"), pod_sample(decode, phase="decode"))
        )


def _phase_calls(prom: FakeProm) -> int:
    return sum('"phase", "prefill"' in q for q in prom.calls)


def _input_share(report: tick_module.TickReport) -> float:
    """The share of the workload's cost put on input tokens (1000 in, 500 out per second)."""
    f = report.figures[BASELINE_KEY]
    assert f.input_usd_per_million_tokens is not None
    assert f.output_usd_per_million_tokens is not None
    cost_in = f.input_usd_per_million_tokens * 1000
    return cost_in / (cost_in + f.output_usd_per_million_tokens * 500)


def test_phase_times_are_queried_once_then_refreshed_in_the_background(
    cluster: ClusterState,
) -> None:
    """The costliest query of a tick (three series per vLLM pod) splits cost into input and
    output, a share that moves slowly: asked inside the first tick, then refreshed in the
    background once a minute (a fifth of a 5m window), the kept answer splitting the ticks
    between."""
    prom = PhaseProm()
    cache = tick_module.PhaseCache()
    assert cache.period_s("5m") == 60

    def tick(now: float) -> tick_module.TickReport:
        return run_tick(prom, [policy()], cluster, PRICES, {}, now, phases=cache)  # type: ignore[arg-type]

    first = tick(1000)  # nothing kept: asked inside the tick, measured split
    assert _phase_calls(prom) == 1
    assert first.phase_refreshes == 0
    assert _input_share(first) == pytest.approx(0.2 / (0.2 + 0.6))

    second = tick(1000 + 59)  # younger than the period: the kept answer splits, not asked
    assert _phase_calls(prom) == 1
    assert second.queries == first.queries - 1
    assert _input_share(second) == pytest.approx(0.2 / (0.2 + 0.6))

    # Due: refreshed in the background; the tick does not wait for it.
    prom.release.clear()
    prom.phases = (0.4, 0.4)
    third = tick(1000 + 60)
    assert third.phase_refreshes == 1
    assert third.queries == second.queries
    assert _input_share(third) == pytest.approx(0.25)  # the kept answer until the new lands
    assert tick(1000 + 75).phase_refreshes == 0  # one refresh in flight per window
    prom.release.set()
    cache.wait(10)
    fourth = tick(1000 + 90)
    assert _input_share(fourth) == pytest.approx(0.5)
    assert fourth.outcomes["success"] == fourth.queries + 1  # the refresh is counted
    assert _phase_calls(prom) == 2
    # The refresh is evaluated at the time of the tick that started it.
    asked_at = [t for q, t in zip(prom.calls, prom.times, strict=True) if '"phase"' in q]
    assert asked_at == [1000, 1000 + 60]


def test_phase_times_are_used_for_one_window_at_most(
    cluster: ClusterState, caplog: pytest.LogCaptureFixture
) -> None:
    """Refreshes that fail keep the last answer, for at most the window's length (the split
    then no longer overlaps the tick's window): after that the query is back in the tick, and
    its failure is the tick's."""
    prom = PhaseProm()
    cache = tick_module.PhaseCache()

    def tick(now: float) -> tick_module.TickReport:
        return run_tick(prom, [policy()], cluster, PRICES, {}, now, phases=cache)  # type: ignore[arg-type]

    first = tick(0)
    prom.phases = None  # Prometheus fails every phase query from now on
    for now in (60, 120, 180, 240, 300):
        report = tick(now)
        cache.wait(10)
        assert not report.errors
        assert _input_share(report) == pytest.approx(0.25)  # the first answer, kept
        assert report.queries == first.queries - 1
    assert "phase times 5m not refreshed (kept; tried again)" in caplog.text

    late = tick(301)  # the kept answer is older than the window: asked in the tick
    assert late.queries == first.queries
    assert late.errors == ["phase_seconds: down"]
    assert late.outcomes["error"] == 2  # its own, and the background refresh started at 300
    assert all(f.stale for f in late.figures.values())


def test_phase_refresh_period_is_a_fifth_of_the_window_at_most() -> None:
    cache = tick_module.PhaseCache(refresh_s=60)
    assert cache.period_s("1h") == 60
    assert cache.period_s("2m") == 24
    assert cache.max_age_s("2m") == 120


def test_a_new_pod_without_kept_phase_times_is_split_by_its_workload_s_other_pods(
    cluster: ClusterState,
) -> None:
    """A pod that started after the last phase answer has none until the next refresh: its
    workload's split comes from the pods that have them (here, the throughput model's when
    none has)."""
    prom = PhaseProm()
    cache = tick_module.PhaseCache()
    kept = run_tick(prom, [policy()], cluster, PRICES, {}, 0, phases=cache)  # type: ignore[arg-type]
    assert _input_share(kept) == pytest.approx(0.25)
    # The kept answer is of a pod that is gone; the live pod has none in it.
    cache.store("5m", QueryResult((pod_sample(0.2, "gone-1", phase="prefill"),)), 10)
    modelled = run_tick(prom, [policy()], cluster, PRICES, {}, 20, phases=cache)  # type: ignore[arg-type]
    assert _phase_calls(prom) == 1
    assert _input_share(modelled) != pytest.approx(0.25)
    prom.phases = None
    fresh = run_tick(prom, [policy()], cluster, PRICES, {}, 20)  # type: ignore[arg-type]
    assert fresh.errors  # without a cache the phase query is the tick's own, and it failed
    prom.phases = (0.0, 0.0)  # no phase time measured: the throughput model splits
    model = run_tick(prom, [policy()], cluster, PRICES, {}, 20)  # type: ignore[arg-type]
    assert _input_share(modelled) == pytest.approx(_input_share(model))


# --- the GPU-busy query's fallback family ------------------------------------------------------


class DcgmProm(FakeProm):
    """FakeProm whose GPU-busy query answers `gpu` (pod name → source label; None: fails)."""

    def __init__(self) -> None:
        super().__init__(
            {'"engine", "vllm"': [pod_sample(500, engine="vllm")], "prompt_tokens_total|": []}
        )
        self.gpu: dict[str, str] | None = {"llama70b-abc-1": "preferred"}
        self.fallback_asked: list[bool] = []

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        if "DCGM_FI_PROF_GR_ENGINE_ACTIVE" not in promql:
            return super().query(promql, at)
        self.calls.append(promql)
        self.fallback_asked.append("DCGM_FI_DEV_GPU_UTIL" in promql)
        if self.gpu is None:
            raise PromUnavailableError("down")
        return QueryResult(tuple(pod_sample(0.5, pod, dcgm=src) for pod, src in self.gpu.items()))


def test_gpu_fallback_is_asked_for_only_while_some_pod_needs_it(cluster: ClusterState) -> None:
    prom = DcgmProm()
    source = tick_module.GpuSource(recheck_s=600)
    key = ("inference", "llama70b", "llama70b")

    def tick(now: float) -> tick_module.TickReport:
        return run_tick(prom, [policy()], cluster, PRICES, {}, now, gpu_source=source)  # type: ignore[arg-type]

    assert tick(0).figures[key].gpu_utilization_ratio == 0.5
    tick(30)  # the first answer needed no fallback: left out
    # The pod loses its profiling series: no row; the next tick asks with the fallback again.
    prom.gpu = {}
    assert tick(60).figures[key].gpu_utilization_ratio is None
    prom.gpu = {"llama70b-abc-1": "fallback"}
    assert tick(90).figures[key].gpu_utilization_ratio == 0.5
    tick(120)  # the fallback answered for it: kept
    assert prom.fallback_asked == [True, False, False, True, True]

    prom.gpu = {"llama70b-abc-1": "preferred"}
    tick(150)
    tick(180)
    prom.gpu = None  # a failed answer changes nothing
    tick(210)
    prom.gpu = {}
    tick(240)  # no row for the pod, and the fallback never saw it missing: looks again
    tick(270)  # with the fallback, still no row: the pod has no DCGM series at all...
    tick(300)  # ...so it no longer brings the fallback back
    tick(270 + 600)  # but it is asked for again a recheck period after it last was
    assert prom.fallback_asked[5:] == [True, False, False, False, True, False, True]
