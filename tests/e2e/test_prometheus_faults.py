"""Prometheus faults, injected on the wire between the operator's tick and a real Prometheus.

A backfilled Prometheus (exact vLLM and DCGM history of a 70B fleet: two on-demand pods and one
spot pod) sits behind `harness.faultproxy.FaultProxy`, which the operator's client talks to
with a bearer token. One good tick first; then each fault, one tick each, the way the operator
runs them (previous figures carried from tick to tick); then recovery. For every fault
(RELIABILITY 1-5): the last good figures are kept and marked stale, nothing on /metrics is NaN
or Inf, the Auto-mode actuator holds (never scales down on bad data), and the next good tick
recovers by itself. Prometheus is also stopped and a new one started on the same data.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness.cluster import add_objects
from harness.faultproxy import FaultProxy
from harness.prometheus import PrometheusBinaries, backfill_end
from prometheus_client import generate_latest

from costengine.pricing import seed_price_sheet
from costoperator.actuator import Actuator, StepKind
from costoperator.exporter import Snapshot, build_registry
from costoperator.figures import PolicyView, SpotView, WorkloadFigures
from costoperator.kube_emulator import gpu_node, workload_objects
from costoperator.promclient import PromAuth, PromClient, QueryResult
from costoperator.promserver import PrometheusServer, backfill_openmetrics, openmetrics_series
from costoperator.spot import DemandHistory
from costoperator.state import ClusterState
from costoperator.tick import TickReport, run_tick

NS = "inference"
CANARY = "canary-bearer-4d1c7e"
STEP_S, STEPS = 15, 80
PER_POD = {  # counter → increase per second, per pod
    "vllm:prompt_tokens": 1200.0,
    "vllm:generation_tokens": 300.0,
    "vllm:request_prompt_tokens_count": 2.0,
    "vllm:prefix_cache_hits": 400.0,
    "vllm:prefix_cache_queries": 1200.0,
}
POLICY = PolicyView(
    NS,
    "llama70b",
    "5m",
    300.0,
    selector={"matchLabels": {"app": "llama70b"}},
    engine="vllm",
    model="llama-2-70b",
    spot=SpotView(mode="Auto", target=("Deployment", "llama70b-spot"), max_replicas=8),
)
WORKLOADS = ("llama70b", "llama70b-spot")


@dataclass
class AtClient(PromClient):
    at: float = 0.0

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        return super().query(promql, self.at)


@dataclass
class World:
    cluster: ClusterState
    proxy: FaultProxy
    client: AtClient
    data_dir: Path
    binaries: PrometheusBinaries
    end: int
    prometheus: PrometheusServer


def _fleet() -> tuple[ClusterState, dict[str, list[str]]]:
    cluster = ClusterState()
    cluster.upsert_node(gpu_node("od-1", gpus=8))
    cluster.upsert_node(gpu_node("spot-1", gpus=8, capacity_type="spot"))
    pods: dict[str, list[str]] = {}
    for name, replicas, node in (("llama70b", 2, "od-1"), ("llama70b-spot", 1, "spot-1")):
        objects = workload_objects(
            name, NS, replicas=replicas, nodes=[node], gpus_per_pod=4, labels={"app": "llama70b"}
        )
        pods[name] = add_objects(cluster, objects)
    return cluster, pods


def _history(end: int, pods: dict[str, list[str]]) -> str:
    times = [end - STEP_S * i for i in range(STEPS)]
    text = ""
    for names in pods.values():
        for pod in names:
            labels = {"namespace": NS, "pod": pod}
            for name, rate in PER_POD.items():
                samples = [(t, rate * (t - times[-1] + 60)) for t in times]
                # A histogram's _count is written as it is named.
                kind = "unknown" if name.endswith("_count") else "counter"
                text += openmetrics_series(name, samples, labels=labels, metric_type=kind)
            gpu = {"exported_namespace": NS, "exported_pod": pod, "pod": "dcgm-exporter-x"}
            for index in range(4):
                text += openmetrics_series(
                    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
                    [(t, 0.6) for t in times],
                    labels={**gpu, "gpu": str(index)},
                )
    return text


@pytest.fixture(scope="module")
def world(
    prometheus_bin: PrometheusBinaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    cluster, pods = _fleet()
    end = backfill_end()
    data_dir = tmp_path_factory.mktemp("tsdb")
    backfill_openmetrics(_history(end, pods), data_dir, promtool=prometheus_bin.promtool)
    token = tmp_path_factory.mktemp("secret") / "token"
    token.write_text(CANARY)
    prometheus = PrometheusServer(binary=prometheus_bin.prometheus, data_dir=data_dir).start()
    try:
        with FaultProxy(prometheus.url) as proxy:
            client = AtClient(
                proxy.url,
                PromAuth(bearer_token_file=token),
                read_timeout_s=1.0,
                retries=1,
                backoff_s=0.05,
                at=float(end),
            )
            yield World(cluster, proxy, client, data_dir, prometheus_bin, end, prometheus)
    finally:
        prometheus.stop()


class Operator:
    """The operator's per-tick loop, minus kopf: tick, exporter, actuator."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.previous: dict[tuple[str, str, str], WorkloadFigures] = {}
        self.demand = DemandHistory()
        self.actuator = Actuator()
        self.snapshot = Snapshot()
        self.registry, _ = build_registry(self.snapshot)
        self.clock = 0.0

    def tick(self) -> TickReport:
        self.clock += 30
        w = self.world
        report = run_tick(
            w.client, [POLICY], w.cluster, seed_price_sheet(), self.previous, w.end, self.demand
        )
        self.previous = dict(report.figures)
        self.snapshot.replace(report.figures)
        return report

    def step(self, report: TickReport) -> StepKind:
        step = self.actuator.decide(
            POLICY,
            report.figures,
            self.world.cluster,
            annotations={},
            data_ok=report.prometheus_ok and not report.partial,
            now=self.clock,
        )
        return step.kind

    def metrics_text(self) -> str:
        return generate_latest(self.registry).decode()


def _figures(report: TickReport) -> dict[str, WorkloadFigures]:
    return {w: report.figures[(NS, "llama70b", w)] for w in WORKLOADS}


def _assert_no_nan(text: str) -> None:
    for line in text.splitlines():
        if line and not line.startswith("#"):
            value = float(line.rsplit(" ", 1)[1])
            assert math.isfinite(value), line


FAULTS: dict[str, dict[str, Any]] = {
    "503 Service Unavailable": {"status": 503},
    "slower than the client's timeout": {"delay_s": 1.5},
    "answers with warnings (partial)": {"warnings": ("partial response: store unavailable",)},
    "connection dropped": {"down": True},
    "every value NaN": {"value": "NaN"},
    "every value +Inf": {"value": "+Inf"},
    "non-numeric values": {"value": "abc"},
    "empty results (series vanished)": {"empty": True},
}


def test_faults_keep_last_good_figures_stale_and_hold_scaling(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    operator = Operator(world)
    world.proxy.set()
    good_report = operator.tick()
    good = _figures(good_report)
    for f in good.values():
        assert not f.stale
        assert f.usd_per_million_tokens is not None
    assert good["llama70b"].input_tokens_per_second == pytest.approx(2 * 1200.0, rel=1e-6)
    assert good["llama70b"].gpu_utilization_ratio == pytest.approx(0.6, rel=1e-6)
    assert good["llama70b-spot"].spot_recommended_replicas is not None
    operator.step(good_report)

    seen: dict[str, TickReport] = {}
    for name, faults in FAULTS.items():
        world.proxy.set(**faults)
        report = operator.tick()
        seen[name] = report
        now = _figures(report)
        for w in WORKLOADS:
            assert now[w].stale, f"{name}: {w} not stale"
            # The last good figures are kept (RELIABILITY 3) ...
            assert now[w].usd_per_million_tokens == good[w].usd_per_million_tokens, name
            assert now[w].updated_at == good[w].updated_at
        # ... no recommendation rides on them, and Auto mode holds.
        assert now["llama70b-spot"].spot_recommended_replicas is None, name
        assert operator.step(report) is StepKind.HOLD, name
        text = operator.metrics_text()
        _assert_no_nan(text)
        assert 'llmcost_data_stale{engine="vllm"' in text
        assert "llmcost_spot_recommended_replicas{" not in text

    assert seen["503 Service Unavailable"].errors
    assert seen["slower than the client's timeout"].errors
    assert seen["answers with warnings (partial)"].partial
    assert seen["connection dropped"].errors
    for name in ("every value NaN", "every value +Inf", "non-numeric values"):
        assert seen[name].outcomes["invalid"] > 0, name  # rejected, counted, never exported
    assert not seen["empty results (series vanished)"].errors

    world.proxy.set()
    healed = _figures(operator.tick())
    for w in WORKLOADS:
        assert not healed[w].stale
        assert healed[w].usd_per_million_tokens == pytest.approx(good[w].usd_per_million_tokens)

    # The bearer token reached Prometheus, and nothing else: not the logs, errors or /metrics.
    assert world.proxy.seen_authorization
    assert all(a == f"Bearer {CANARY}" for a in world.proxy.seen_authorization)
    everything = caplog.text + repr([r.errors for r in seen.values()]) + operator.metrics_text()
    assert CANARY not in everything


def test_one_bad_pod_does_not_blank_the_others(world: World) -> None:
    operator = Operator(world)
    world.proxy.set()
    operator.tick()
    world.proxy.set(value="NaN", value_rows=1)  # one row of each query: one pod's value
    report = operator.tick()
    assert report.outcomes["invalid"] > 0
    fresh = [f for f in report.figures.values() if not f.stale]
    assert fresh  # the workloads whose pods answered are still priced
    _assert_no_nan(operator.metrics_text())
    world.proxy.set()


def test_prometheus_killed_and_a_new_one_started_recovers_by_itself(world: World) -> None:
    operator = Operator(world)
    world.proxy.set()
    good = _figures(operator.tick())
    world.prometheus.stop()
    dead = operator.tick()
    assert dead.errors
    assert all(f.stale for f in dead.figures.values())
    assert all(
        f.usd_per_million_tokens == good[f.workload].usd_per_million_tokens
        for f in dead.figures.values()
    )
    assert operator.step(dead) is StepKind.HOLD
    # A new Prometheus on the same data behind the same address (a Service in front of a
    # restarted pod): the next tick is fresh again, with nothing to reconfigure.
    world.prometheus = PrometheusServer(
        binary=world.binaries.prometheus, data_dir=world.data_dir
    ).start()
    world.proxy.upstream = world.prometheus.url
    back = _figures(operator.tick())
    assert not any(f.stale for f in back.values())
    assert back["llama70b"].usd_per_million_tokens == pytest.approx(
        good["llama70b"].usd_per_million_tokens
    )
