"""The `/metrics` exporter: a custom collector over an in-memory snapshot.

`collect()` does no I/O and no computation beyond formatting: the tick swaps in a whole new
snapshot (an immutable mapping), so a scrape sees one consistent tick and the series of a
deleted policy vanish with its snapshot entry. Names and labels are the contract of DESIGN.md
("Exported metrics"). NaN and ±Inf never reach a sample: missing data is absence plus
`llmcost_data_stale`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from types import MappingProxyType

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from costengine.pricing import CapacityType
from costoperator import __version__
from costoperator.figures import WorkloadFigures

WORKLOAD_LABELS = ("namespace", "policy", "workload", "model", "gpu", "engine")
SnapshotKey = tuple[str, str, str]  # (namespace, policy, workload)
REPORTED_CAPACITY = (CapacityType.ON_DEMAND, CapacityType.SPOT)


def by_policy(
    figures: Mapping[SnapshotKey, WorkloadFigures],
) -> dict[tuple[str, str], dict[SnapshotKey, WorkloadFigures]]:
    """The figures grouped by (namespace, policy), in one pass."""
    grouped: dict[tuple[str, str], dict[SnapshotKey, WorkloadFigures]] = {}
    for key, f in figures.items():
        grouped.setdefault(key[:2], {})[key] = f
    return grouped


class Snapshot:
    """The latest figures per workload, replaced whole by each tick."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._figures: Mapping[SnapshotKey, WorkloadFigures] = MappingProxyType({})
        self._by_policy: dict[tuple[str, str], dict[SnapshotKey, WorkloadFigures]] = {}

    def replace(self, figures: Mapping[SnapshotKey, WorkloadFigures]) -> None:
        frozen = MappingProxyType(dict(figures))
        grouped = by_policy(frozen)
        with self._lock:
            self._figures, self._by_policy = frozen, grouped

    def current(self) -> Mapping[SnapshotKey, WorkloadFigures]:
        with self._lock:
            return self._figures

    def of_policy(self, namespace: str, policy: str) -> list[WorkloadFigures]:
        """One policy's figures (each policy's status timer asks; no scan of the rest)."""
        with self._lock:
            return list(self._by_policy.get((namespace, policy), {}).values())


def _ok(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


class CostCollector(Collector):
    def __init__(self, snapshot: Snapshot, opencost_compat: bool = False) -> None:
        self.snapshot = snapshot
        self.opencost_compat = opencost_compat

    def describe(self) -> Iterator[Metric]:
        # Declared without computing: the names are fixed, the series come from the snapshot.
        return iter(self._families())

    def _families(self) -> list[GaugeMetricFamily]:
        w = list(WORKLOAD_LABELS)
        families = [
            GaugeMetricFamily(
                "llmcost_cost_per_million_tokens_usd",
                "Live cost per million tokens (USD).",
                labels=[*w, "token_type"],
            ),
            GaugeMetricFamily(
                "llmcost_tokens_per_second", "Measured token rate.", labels=[*w, "token_type"]
            ),
            GaugeMetricFamily(
                "llmcost_hourly_cost_usd",
                "Fleet cost per hour by capacity type.",
                labels=[*w, "capacity_type"],
            ),
            GaugeMetricFamily(
                "llmcost_gpus", "GPUs allocated to the workload.", labels=[*w, "capacity_type"]
            ),
            GaugeMetricFamily(
                "llmcost_replicas",
                "Current replicas (pods on nodes).",
                labels=[*w, "capacity_type"],
            ),
            GaugeMetricFamily(
                "llmcost_gpu_utilization_ratio", "DCGM-derived GPU busy fraction, 0..1.", labels=w
            ),
            GaugeMetricFamily(
                "llmcost_capacity_utilization_ratio",
                "Measured output tokens/s over modeled maximum.",
                labels=w,
            ),
            GaugeMetricFamily(
                "llmcost_cost_per_million_tokens_at_capacity_usd",
                "Cost per million tokens at full modeled capacity.",
                labels=w,
            ),
            GaugeMetricFamily(
                "llmcost_cache_savings_usd_per_hour",
                "Dollars per hour saved by caches.",
                labels=[*w, "cache"],
            ),
            GaugeMetricFamily("llmcost_cache_hit_ratio", "Cache hit ratio.", labels=[*w, "cache"]),
            GaugeMetricFamily(
                "llmcost_cost_baseline_per_million_tokens_usd",
                "Drift baseline cost per million tokens.",
                labels=w,
            ),
            GaugeMetricFamily("llmcost_cost_drift_ratio", "Current cost over baseline.", labels=w),
            GaugeMetricFamily(
                "llmcost_api_equivalent_cost_per_million_tokens_usd",
                "The same tokens priced at an API.",
                labels=[*w, "api"],
            ),
            GaugeMetricFamily(
                "llmcost_spot_recommended_replicas",
                "Spot replicas the planner recommends for this (spot) workload.",
                labels=w,
            ),
            GaugeMetricFamily(
                "llmcost_on_demand_recommended_replicas",
                "On-demand replicas the planner recommends for this (onDemandTargetRef) "
                "workload, its cover for spot that does not serve included.",
                labels=w,
            ),
            GaugeMetricFamily(
                "llmcost_spot_projected_savings_usd_per_hour",
                "Projected savings of the recommended spot plan vs all on-demand, USD per hour.",
                labels=w,
            ),
            GaugeMetricFamily("llmcost_data_stale", "1 when inputs are missing or old.", labels=w),
            GaugeMetricFamily(
                "llmcost_last_update_timestamp_seconds",
                "When the figures were last computed from fresh data.",
                labels=w,
            ),
        ]
        if self.opencost_compat:
            families += [
                GaugeMetricFamily(
                    "llm_cost_per_million_tokens",
                    "OpenCost-compatible: cost per million tokens.",
                    labels=w,
                ),
                GaugeMetricFamily(
                    "llm_total_hourly_cost", "OpenCost-compatible: hourly cost.", labels=w
                ),
                GaugeMetricFamily(
                    "llm_cache_savings_fraction",
                    "OpenCost-compatible: prefix cache hit fraction.",
                    labels=w,
                ),
            ]
        return families

    def collect(self) -> Iterator[Metric]:
        families = {f.name: f for f in self._families()}

        def add(name: str, labels: list[str], value: float | None) -> None:
            if _ok(value):
                assert value is not None
                families[name].add_metric(labels, value)

        for f in self.snapshot.current().values():
            w = [f.namespace, f.policy, f.workload, f.model, f.gpu, f.engine]
            for token_type, value in (
                ("all", f.usd_per_million_tokens),
                ("input", f.input_usd_per_million_tokens),
                ("output", f.output_usd_per_million_tokens),
            ):
                add("llmcost_cost_per_million_tokens_usd", [*w, token_type], value)
            add("llmcost_tokens_per_second", [*w, "input"], f.input_tokens_per_second)
            add("llmcost_tokens_per_second", [*w, "output"], f.output_tokens_per_second)
            capacity_types = set(REPORTED_CAPACITY) | set(f.hourly_cost_usd) | set(f.replicas)
            for c in sorted(capacity_types):
                add("llmcost_hourly_cost_usd", [*w, c.value], f.hourly_cost_usd.get(c, 0.0))
                add("llmcost_gpus", [*w, c.value], f.gpus.get(c, 0.0))
                add("llmcost_replicas", [*w, c.value], float(f.replicas.get(c, 0)))
            add("llmcost_gpu_utilization_ratio", w, f.gpu_utilization_ratio)
            add("llmcost_capacity_utilization_ratio", w, f.capacity_utilization_ratio)
            add(
                "llmcost_cost_per_million_tokens_at_capacity_usd",
                w,
                f.usd_per_million_tokens_at_capacity,
            )
            add(
                "llmcost_cache_savings_usd_per_hour",
                [*w, "prefix"],
                f.prefix_cache_savings_usd_per_hour,
            )
            add("llmcost_cache_hit_ratio", [*w, "prefix"], f.prefix_cache_hit_ratio)
            add(
                "llmcost_cache_savings_usd_per_hour",
                [*w, "semantic"],
                f.semantic_cache_savings_usd_per_hour,
            )
            add("llmcost_cache_hit_ratio", [*w, "semantic"], f.semantic_cache_hit_ratio)
            add(
                "llmcost_cost_baseline_per_million_tokens_usd", w, f.baseline_usd_per_million_tokens
            )
            add("llmcost_cost_drift_ratio", w, f.drift_ratio)
            for api, value in f.api_equivalent_usd_per_million_tokens.items():
                add("llmcost_api_equivalent_cost_per_million_tokens_usd", [*w, api], value)
            if f.spot_recommended_replicas is not None:
                add("llmcost_spot_recommended_replicas", w, float(f.spot_recommended_replicas))
            if f.on_demand_recommended_replicas is not None:
                add(
                    "llmcost_on_demand_recommended_replicas",
                    w,
                    float(f.on_demand_recommended_replicas),
                )
            add(
                "llmcost_spot_projected_savings_usd_per_hour",
                w,
                f.spot_projected_savings_usd_per_hour,
            )
            add("llmcost_data_stale", w, 1.0 if f.stale else 0.0)
            add("llmcost_last_update_timestamp_seconds", w, f.updated_at)
            if self.opencost_compat:
                add("llm_cost_per_million_tokens", w, f.usd_per_million_tokens)
                add("llm_total_hourly_cost", w, f.total_hourly_cost_usd)
                add("llm_cache_savings_fraction", w, f.prefix_cache_hit_ratio)
        yield from families.values()


class SelfMetrics:
    """The operator's own health metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.queries = Counter(
            "llmcost_prometheus_queries",
            "PromQL queries by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.tick_seconds = Histogram(
            "llmcost_tick_duration_seconds",
            "Wall time of one tick.",
            registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.scale_actions = Counter(
            "llmcost_scale_actions",
            "Scale actions by direction and mode.",
            ["direction", "mode"],
            registry=registry,
        )
        self.leader = Gauge(
            "llmcost_leader",
            "1 while this instance holds the leader Lease and may write (scale, status, events).",
            registry=registry,
        )
        build = Gauge("llmcost_build_info", "Build information.", ["version"], registry=registry)
        build.labels(__version__).set(1)
        for outcome in ("success", "error", "invalid", "partial"):
            self.queries.labels(outcome)


def build_registry(
    snapshot: Snapshot, opencost_compat: bool = False
) -> tuple[CollectorRegistry, SelfMetrics]:
    registry = CollectorRegistry()
    registry.register(CostCollector(snapshot, opencost_compat))
    return registry, SelfMetrics(registry)
