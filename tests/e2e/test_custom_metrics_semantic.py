"""`spec.metrics` mappings and `spec.cache.semantic` savings against a real Prometheus.

The history is backfilled with promtool (exact counters, 15 s steps, ending ~4 h ago) and the
tick's queries are evaluated at its last sample, so every rate is known exactly:

- a TensorRT-LLM pod whose token counters exist only under the names its policy maps;
- a vLLM pod that also exposes `vllm:request_prompt_tokens_sum` (900/s) beside
  `vllm:prompt_tokens_total` (1,000/s); its policy maps input tokens to the former, which must
  replace the engine's counter, never add to it;
- a gateway's semantic-cache counters for two models, one of them the vLLM policy's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.cluster import add_objects
from harness.prometheus import PrometheusBinaries, backfill_end

from costengine.pricing import seed_price_sheet
from costoperator.figures import PolicyView
from costoperator.kube_emulator import gpu_node, workload_objects
from costoperator.promclient import PromClient, QueryResult
from costoperator.promserver import PrometheusServer, backfill_openmetrics, openmetrics_series
from costoperator.queries import MetricOverrides, SemanticCounters
from costoperator.state import ClusterState
from costoperator.tick import TickReport, run_tick

NS = "inference"
STEP_S, STEPS = 15, 80  # 20 minutes
A100_USD = 2.21  # the seed's on-demand A100-80GB price

RATES = {  # counter → (labels, increase per second)
    "trt": {
        "trtllm_input_tokens": 800.0,
        "trtllm_output_tokens": 200.0,
    },
    "chat": {
        "vllm:prompt_tokens": 1000.0,
        "vllm:request_prompt_tokens_sum": 900.0,
        "vllm:generation_tokens": 250.0,
        "vllm:request_prompt_tokens_count": 2.0,
    },
}
GATEWAY = {  # model → (hits/s, tokens served/s)
    "chat": (0.5, 50.0),
    "other": (9.0, 999.0),
}


@dataclass
class AtClient(PromClient):
    """Evaluates every query at the backfilled history's last sample, whatever time the tick asks
    for."""

    at: float = 0.0

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        return super().query(promql, self.at)


def _history(end: int, pods: dict[str, str]) -> str:
    times = [end - STEP_S * i for i in range(STEPS)]
    text = ""
    for workload, counters in RATES.items():
        labels = {"namespace": NS, "pod": pods[workload]}
        for name, rate in counters.items():
            samples = [(t, rate * (t - times[-1] + 3600)) for t in times]
            if name.endswith(("_sum", "_count")):  # a histogram's: written as it is named
                text += openmetrics_series(name, samples, labels=labels, metric_type="unknown")
            else:
                text += openmetrics_series(name, samples, labels=labels, metric_type="counter")
    for model, (hits, served) in GATEWAY.items():
        labels = {"namespace": "gateway", "pod": "gw-1", "model": model}
        for name, rate in (("gw_semantic_hits", hits), ("gw_semantic_tokens", served)):
            samples = [(t, rate * (t - times[-1])) for t in times]
            text += openmetrics_series(name, samples, labels=labels, metric_type="counter")
    return text


@pytest.fixture(scope="module")
def tick(
    prometheus_bin: PrometheusBinaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TickReport]:
    cluster = ClusterState()
    cluster.upsert_node(gpu_node("n1", gpus=8))
    pods = {}
    for workload in RATES:
        objects = workload_objects(workload, NS, replicas=1, nodes=["n1"], gpus_per_pod=1)
        (pods[workload],) = add_objects(cluster, objects)
    end = backfill_end()
    data_dir: Path = tmp_path_factory.mktemp("tsdb")
    backfill_openmetrics(_history(end, pods), data_dir, promtool=prometheus_bin.promtool)
    policies = [
        PolicyView(
            NS,
            "trt",
            "5m",
            300.0,
            target=("Deployment", "trt"),
            engine="trtllm",
            metrics=MetricOverrides(
                input_tokens="trtllm_input_tokens_total",
                output_tokens="trtllm_output_tokens_total",
            ),
        ),
        PolicyView(
            NS,
            "chat",
            "5m",
            300.0,
            target=("Deployment", "chat"),
            engine="vllm",
            metrics=MetricOverrides(input_tokens="vllm:request_prompt_tokens_sum"),
            semantic=SemanticCounters(
                "gw_semantic_tokens_total", "gw_semantic_hits_total", (("model", "chat"),)
            ),
        ),
    ]
    with PrometheusServer(binary=prometheus_bin.prometheus, data_dir=data_dir) as prometheus:
        client = AtClient(prometheus.url, at=float(end))
        yield run_tick(client, policies, cluster, seed_price_sheet(), {}, now=float(end))


def test_trtllm_counters_come_from_the_mapping(tick: TickReport) -> None:
    assert not tick.errors
    f = tick.figures[(NS, "trt", "trt")]
    assert not f.stale
    assert f.engine == "trtllm"
    assert f.input_tokens_per_second == pytest.approx(800.0, rel=1e-6)
    assert f.output_tokens_per_second == pytest.approx(200.0, rel=1e-6)
    expected = A100_USD / 3600 / 1000.0 * 1e6
    assert f.usd_per_million_tokens == pytest.approx(expected, rel=1e-6)


def test_a_mapped_counter_replaces_the_engines_never_adds_to_it(tick: TickReport) -> None:
    f = tick.figures[(NS, "chat", "chat")]
    assert f.engine == "vllm"
    assert f.input_tokens_per_second == pytest.approx(900.0, rel=1e-6)  # not 1,000, not 1,900
    assert f.output_tokens_per_second == pytest.approx(250.0, rel=1e-6)


def test_semantic_cache_savings_price_avoided_requests(tick: TickReport) -> None:
    f = tick.figures[(NS, "chat", "chat")]
    assert f.usd_per_million_tokens is not None
    # No model, no phase histograms: no input/output split, so every avoided token is priced
    # at the all-token $/1M. A hit avoids a whole request: its prompt (900 ÷ 2 = 450 tokens)
    # and the 50 tokens/s of answers the gateway served; the other model's rows do not count.
    avoided_tokens_per_second = 0.5 * 450 + 50.0
    expected = avoided_tokens_per_second * f.usd_per_million_tokens / 1e6 * 3600
    assert f.semantic_cache_savings_usd_per_hour == pytest.approx(expected, rel=1e-6)
    assert f.semantic_cache_hit_ratio == pytest.approx(0.5 / (0.5 + 2.0), rel=1e-6)
    trt = tick.figures[(NS, "trt", "trt")]
    assert trt.semantic_cache_savings_usd_per_hour is None


def test_mappings_add_a_bounded_number_of_queries(tick: TickReport) -> None:
    # 7 per window for the engines (no drift baseline here), 1 for the mapped input counters,
    # 1 for the semantic counters; the mapped output counters are a branch of the output query.
    assert tick.queries == 9
