"""The drift baseline against a real Prometheus: it comes from the history of the operator's
own series, so an operator that starts afresh (a restart, a new leader) finds it at once; and
it is queried once, then refreshed in the background, not read again at every tick.

The history is backfilled with promtool and every query is evaluated at its last sample:
- a vLLM pod on one on-demand A100 ($2.21/h) serving 1,000 prompt + 250 output tokens/s over
  the last 20 minutes (1,250 tokens/s: $0.4911 per 1M);
- 24 hours of the operator's own series for its workload at a 30 s scrape: $2.21/h
  throughout, 2,500 tokens/s for the first 12 hours and 1,250 for the last 12. The baseline is
  cost ÷ tokens over the day, $2.21/h ÷ 1,875 tokens/s = $0.3274 per 1M (an average of the
  two halves' $/1M would be $0.3683), so the drift ratio is exactly 1.5.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness.cluster import add_objects
from harness.prometheus import PrometheusBinaries, backfill_end

from costengine.pricing import seed_price_sheet
from costoperator.figures import PolicyView
from costoperator.kube_emulator import gpu_node, workload_objects
from costoperator.promclient import PromClient, QueryResult
from costoperator.promserver import PrometheusServer, backfill_openmetrics, openmetrics_series
from costoperator.state import ClusterState
from costoperator.tick import BaselineCache, run_tick

NS, NAME = "inference", "chat"
A100_USD = 2.21
POD_STEP_S, POD_STEPS = 15, 80  # 20 minutes
OWN_STEP_S, OWN_STEPS = 30, 2880  # 24 hours
KEY = (NS, NAME, NAME)


@dataclass
class CountingClient(PromClient):
    """Evaluates every query at the history's last sample, whatever time the tick asks for (it
    ticks at later times to test refreshes); counts the baseline queries."""

    at: float = 0.0
    baseline_queries: list[float] = field(default_factory=list)

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        if "llmcost_hourly_cost_usd" in promql:
            self.baseline_queries.append(time.monotonic())
        return super().query(promql, self.at)


def _history(end: int, pod: str) -> str:
    times = [end - POD_STEP_S * i for i in range(POD_STEPS)][::-1]
    labels = {"namespace": NS, "pod": pod}
    text = ""
    for name, rate in (("vllm:prompt_tokens", 1000.0), ("vllm:generation_tokens", 250.0)):
        samples = [(t, rate * (t - times[0] + 3600)) for t in times]
        text += openmetrics_series(name, samples, labels=labels, metric_type="counter")
    own = {"namespace": NS, "policy": NAME, "workload": NAME}
    own_times = [end - OWN_STEP_S * i for i in range(OWN_STEPS)][::-1]  # inside (end-24h, end]
    halfway = own_times[OWN_STEPS // 2]  # the first sample of the last 12 hours

    def tokens(scale: float) -> list[tuple[float, float]]:
        return [(t, scale * (1.0 if t >= halfway else 2.0)) for t in own_times]

    for capacity, usd in (("on_demand", A100_USD), ("spot", 0.0)):
        text += openmetrics_series(
            "llmcost_hourly_cost_usd",
            [(t, usd) for t in own_times],
            labels={**own, "capacity_type": capacity},
            metric_type="gauge",
        )
    for token_type, per_second in (("input", 1000.0), ("output", 250.0)):
        text += openmetrics_series(
            "llmcost_tokens_per_second",
            tokens(per_second),
            labels={**own, "token_type": token_type},
            metric_type="gauge",
        )
    return text


@dataclass
class Setup:
    client: CountingClient
    cluster: ClusterState
    policy: PolicyView
    end: float


@pytest.fixture(scope="module")
def setup(
    prometheus_bin: PrometheusBinaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    cluster = ClusterState()
    cluster.upsert_node(gpu_node("n1", gpus=8))
    objects = workload_objects(NAME, NS, replicas=1, nodes=["n1"], gpus_per_pod=1)
    (pod,) = add_objects(cluster, objects)
    end = backfill_end()
    data_dir: Path = tmp_path_factory.mktemp("tsdb")
    backfill_openmetrics(_history(end, pod), data_dir, promtool=prometheus_bin.promtool)
    policy = PolicyView(
        NS, NAME, "5m", 300.0, target=("Deployment", NAME), engine="vllm", baseline_window="24h"
    )
    with PrometheusServer(binary=prometheus_bin.prometheus, data_dir=data_dir) as prometheus:
        yield Setup(CountingClient(prometheus.url, at=float(end)), cluster, policy, float(end))


def test_a_fresh_operator_finds_its_baseline_in_prometheus(setup: Setup) -> None:
    report = run_tick(
        setup.client, [setup.policy], setup.cluster, seed_price_sheet(), {}, now=setup.end
    )
    assert not report.errors
    f = report.figures[KEY]
    assert f.usd_per_million_tokens == pytest.approx(A100_USD / 3600 / 1250 * 1e6, rel=1e-6)
    assert f.drift_ratio == pytest.approx(1.5, rel=1e-6)


def test_the_baseline_is_reused_and_refreshed_in_the_background(setup: Setup) -> None:
    cache = BaselineCache(refresh_s=300)
    setup.client.baseline_queries.clear()

    def tick(now: float) -> float | None:
        report = run_tick(
            setup.client,
            [setup.policy],
            setup.cluster,
            seed_price_sheet(),
            {},
            now=now,
            baselines=cache,
        )
        assert not report.errors
        return report.figures[KEY].drift_ratio

    # An operator ticking every 30 s for 10 minutes: asked at start, refreshed once at 300 s.
    ratios = [tick(setup.end + 30 * i) for i in range(21)]
    cache.wait(30)
    assert len(setup.client.baseline_queries) == 3  # at 0 s, 300 s and 600 s
    assert ratios == pytest.approx([1.5] * 21, rel=1e-6)
