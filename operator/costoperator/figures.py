"""From one tick's inputs to each workload's cost figures, through costengine.

Pure: inputs are the cluster picture (pods, nodes), per-pod rates from the tick's queries and a
price sheet; the output is a `WorkloadFigures` per workload that a policy selects. Missing data
is absence (None), never zero (RELIABILITY 1): a figure without the data to back it is not
produced, and the workload is marked stale.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from costengine.caching import semantic_cache_savings_usd_per_hour
from costengine.cost import SECONDS_PER_HOUR, TOKENS_PER_MILLION
from costengine.errors import CostEngineError
from costengine.pricing import CapacityType, PriceSheet
from costengine.spotplan import (
    DEFAULT_COLD_START_S,
    SCALE_DOWN_WINDOW_S,
    ReplicaEconomics,
    SpotLimits,
    WorkloadTraits,
)
from costengine.throughput import BatchRun, Deployment
from costoperator.cluster import NodeInfo, PodInfo
from costoperator.queries import Family, MetricOverrides, SemanticCounters

#: Below this many tokens in the rate window, $/1M is not computed (RELIABILITY 6): a handful
#: of tokens over a whole fleet's hourly cost is noise, not a price.
MIN_TOKENS_IN_WINDOW = 1000.0

PodKey = tuple[str, str]  # (namespace, pod)

#: How long a burst's work may wait while the replicas it asks for start, when a policy does
#: not say (`spec.spot.burstQueueSeconds`): the backtest's default latency bound.
DEFAULT_BURST_QUEUE_S = 30.0


@dataclass(frozen=True, slots=True)
class ApiPrice:
    name: str
    input_usd_per_million: float
    output_usd_per_million: float


@dataclass(frozen=True, slots=True)
class SpotView:
    """What the planner needs of `spec.spot` (parsed and validated elsewhere)."""

    mode: str
    """Recommend or Auto."""
    target: tuple[str, str]
    """(kind, name) of the spot workload."""
    min_replicas: int = 0
    max_replicas: int | None = None
    max_spot_fraction: float | None = None
    target_utilization: float | None = None
    burst_quantile: float | None = None
    """`burstQuantile`; unset, `SpotLimits`' default."""
    max_step: int | None = None
    scale_up_stabilization_s: int | None = None
    scale_down_stabilization_s: int | None = None
    cold_start_s: int | None = None
    """`coldStartSeconds`; unset, `ReplicaEconomics`' default."""
    interruptions_per_replica_hour: float | None = None
    """`interruptionsPerReplicaHour`; unset, `ReplicaEconomics`' default."""
    burst_queue_s: int | None = None
    """`burstQueueSeconds`; unset, `DEFAULT_BURST_QUEUE_S`."""
    on_demand_target: tuple[str, str] | None = None
    """(kind, name) of `onDemandTargetRef`: the on-demand workload the planner sizes too."""
    on_demand_min_replicas: int = 1
    on_demand_max_replicas: int | None = None
    on_demand_base: str = "p50"
    """`onDemandBase`: ``p50`` or ``fraction`` (`costengine.spotplan.plan_fleet`)."""
    traits: WorkloadTraits = field(default_factory=WorkloadTraits)
    """`sloBound`, `multiTurnState`, `tightP99`: the seed's spot-hostile patterns."""

    def most_replicas(self, global_cap: int | None) -> int:
        """`maxReplicas`; unset, the operator's global cap, else the planner's default."""
        if self.max_replicas is not None:
            return self.max_replicas
        return max(self.min_replicas, global_cap or SpotLimits().max_replicas)

    @property
    def queue_s(self) -> float:
        """How long a burst's work may wait while the replicas it asks for start
        (`burstQueueSeconds`; unset, `DEFAULT_BURST_QUEUE_S`)."""
        if self.burst_queue_s is not None:
            return float(self.burst_queue_s)
        return DEFAULT_BURST_QUEUE_S

    @property
    def scale_down_window_s(self) -> float:
        """`scaleDownStabilizationSeconds`; unset, the governor's default (the HPA's 300 s)."""
        if self.scale_down_stabilization_s is not None:
            return float(self.scale_down_stabilization_s)
        return SCALE_DOWN_WINDOW_S

    def economics(
        self,
        tokens_per_second: float,
        gpus_per_replica: float,
        on_demand_usd_per_gpu_hour: float,
        spot_usd_per_gpu_hour: float,
        measured_cold_start_s: float | None = None,
    ) -> ReplicaEconomics:
        """One replica's economics, with the policy's cold start and interruption rate where
        it sets them; unset, the cold start is `measured_cold_start_s` when given, else the
        default."""
        if self.cold_start_s is not None:
            cold_start_s = float(self.cold_start_s)
        elif measured_cold_start_s is not None:
            cold_start_s = measured_cold_start_s
        else:
            cold_start_s = DEFAULT_COLD_START_S
        economics = ReplicaEconomics(
            tokens_per_second,
            gpus_per_replica,
            on_demand_usd_per_gpu_hour,
            spot_usd_per_gpu_hour,
            cold_start_s=cold_start_s,
        )
        rate = self.interruptions_per_replica_hour
        if rate is None:
            return economics
        return replace(economics, interruptions_per_replica_hour=rate)

    def limits(self, global_cap: int | None) -> SpotLimits:
        defaults = SpotLimits()
        return SpotLimits(
            min_replicas=self.min_replicas,
            max_replicas=self.most_replicas(global_cap),
            max_spot_fraction=self.max_spot_fraction
            if self.max_spot_fraction is not None
            else defaults.max_spot_fraction,
            target_utilization=self.target_utilization or defaults.target_utilization,
            burst_quantile=self.burst_quantile
            if self.burst_quantile is not None
            else defaults.burst_quantile,
            global_cap=global_cap,
        )


@dataclass(frozen=True, slots=True)
class PolicyView:
    """What the figures need of an InferenceCostPolicy (parsed and validated elsewhere)."""

    namespace: str
    name: str
    window: str
    """PromQL rate window, e.g. "5m"."""
    window_s: float
    selector: Mapping[str, Any] | None = None
    """Label selector over the namespace's Deployments and StatefulSets."""
    target: tuple[str, str] | None = None
    """(kind, name) of one workload, instead of a selector."""
    baseline_window: str | None = None
    engine: str = "auto"
    model: str | None = None
    gpu: str | None = None
    api_comparison: tuple[ApiPrice, ...] = ()
    drift_threshold_ratio: float = 1.2
    drift_min_tokens: float = 100_000.0
    prices: PriceSheet | None = None
    """The policy's own sheet (catalogRef + overrides); None = the operator's default."""
    spot: SpotView | None = None
    """Spot planning (mode Recommend or Auto); None = off."""
    metrics: MetricOverrides | None = None
    """`spec.metrics`: counters read instead of the engine's."""
    semantic: SemanticCounters | None = None
    """`spec.cache.semantic`: a gateway's semantic-cache counters."""


@dataclass(frozen=True, slots=True)
class PodRates:
    """Per-pod rates of one window (None = no series)."""

    input_tokens_per_second: float | None = None
    output_tokens_per_second: float | None = None
    prefix_hit_tokens_per_second: float | None = None
    prefix_query_tokens_per_second: float | None = None
    requests_per_second: float | None = None
    gpu_busy_ratio: float | None = None
    prefill_seconds_per_second: float | None = None
    decode_gpu_seconds_per_second: float | None = None
    """vLLM's decode seconds ÷ the mean running batch: one decode step serves the batch."""
    engine: str | None = None
    custom: Mapping[Family, float] = field(default_factory=dict)
    """Rates of the counters that policies' `spec.metrics` name, by family."""

    def overridden(self, overrides: MetricOverrides) -> PodRates:
        """These rates with the families `overrides` names read from its counters (absent
        when the pod has no such series: never the engine's counter instead)."""
        fields: dict[str, Any] = {
            _FAMILY_FIELDS[family]: self.custom.get(family) for family in overrides.by_family()
        }
        return replace(self, **fields)


_FAMILY_FIELDS = {
    Family.INPUT_TOKENS: "input_tokens_per_second",
    Family.OUTPUT_TOKENS: "output_tokens_per_second",
    Family.PREFIX_HIT_TOKENS: "prefix_hit_tokens_per_second",
    Family.PREFIX_QUERY_TOKENS: "prefix_query_tokens_per_second",
}


@dataclass(frozen=True, slots=True)
class WorkloadFigures:
    namespace: str
    policy: str
    workload: str
    model: str
    gpu: str
    engine: str
    hourly_cost_usd: Mapping[CapacityType, float]
    gpus: Mapping[CapacityType, float]
    replicas: Mapping[CapacityType, int]
    input_tokens_per_second: float | None = None
    output_tokens_per_second: float | None = None
    usd_per_million_tokens: float | None = None
    input_usd_per_million_tokens: float | None = None
    output_usd_per_million_tokens: float | None = None
    gpu_utilization_ratio: float | None = None
    capacity_utilization_ratio: float | None = None
    usd_per_million_tokens_at_capacity: float | None = None
    prefix_cache_savings_usd_per_hour: float | None = None
    prefix_cache_hit_ratio: float | None = None
    semantic_cache_savings_usd_per_hour: float | None = None
    semantic_cache_hit_ratio: float | None = None
    requests_per_second: float | None = None
    baseline_usd_per_million_tokens: float | None = None
    drift_ratio: float | None = None
    api_equivalent_usd_per_million_tokens: Mapping[str, float] = field(default_factory=dict)
    replica_capacity_tokens_per_second: float | None = None
    """Tokens/s one replica serves fully busy (the throughput model at the measured shape)."""
    spot_recommended_replicas: int | None = None
    spot_projected_savings_usd_per_hour: float | None = None
    spot_demand_rising: bool = False
    """The policy's demand rose past the target utilization's slack at this tick
    (`costengine.spotplan.SpotPlan.demand_rising`): the actuator holds a spot scale-down."""
    on_demand_recommended_replicas: int | None = None
    """On the workload of `spec.spot.onDemandTargetRef`: the planner's count for it."""
    on_demand_cover_replicas: int = 0
    """Of that count, the cover for spot that does not serve (`spot.PolicyPlan`)."""
    spot_note: str = ""
    """Why there is no recommendation, or the planner's warnings."""
    spot_refusal: str = ""
    """The planner's refusals of spot among those reasons ("" when it recommends spot)."""
    measured_cold_start_s: float | None = None
    """Median seconds from creation to Ready of the workload's live pods (`WorkloadCapacity`)."""
    starting_replicas: int = 0
    """Its pods that do not serve yet (`WorkloadCapacity.starting`)."""
    unplaced_replicas: int = 0
    """Of those, the pods with no node yet (`WorkloadCapacity.unplaced`)."""
    unplaced_since: tuple[float, ...] = ()
    """Of those, the creation times, where known (`WorkloadCapacity`)."""
    time_to_node_s: float | None = None
    """The longest wait for a node of its live pods (`WorkloadCapacity`), when measured."""
    placed_starting_since: tuple[float, ...] = ()
    """Of the starting pods, the creation times of those on a node (`WorkloadCapacity`)."""
    noticed_replicas: int = 0
    """Its pods on nodes under a notice taint (`WorkloadCapacity.noticed`)."""
    serving_replicas: int = 0
    """Its live pods that are Ready (`WorkloadCapacity.serving`)."""
    burst_peaks: Mapping[float, float] | None = None
    """Per window (s), the peak total tokens/s of its live pods over the tick's interval
    (`tick.workload_burst_peaks`: the windows every such pod answered); {} for a workload
    with no live pods; None when a live pod has no burst row (the signal is incomplete)."""
    stale: bool = False
    problems: tuple[str, ...] = ()
    updated_at: float = 0.0

    @property
    def total_hourly_cost_usd(self) -> float:
        return sum(self.hourly_cost_usd.values())

    @property
    def total_tokens_per_second(self) -> float | None:
        if self.input_tokens_per_second is None or self.output_tokens_per_second is None:
            return None
        return self.input_tokens_per_second + self.output_tokens_per_second


def _sum(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


@dataclass(frozen=True, slots=True)
class WorkloadCapacity:
    """What a workload runs on and what it costs per hour: everything of its figures that
    comes from the cluster picture and the price sheet, none of it from Prometheus. A tick
    builds these while its queries are in flight (`tick.run_queries`' `meanwhile`)."""

    live: tuple[PodInfo, ...]
    hourly: Mapping[CapacityType, float]
    gpus: Mapping[CapacityType, float]
    replicas: Mapping[CapacityType, int]
    gpu_names: frozenset[str]
    problems: tuple[str, ...]
    cold_start_s: float | None = None
    """The median of the live pods' measured creation-to-Ready seconds, when any is known."""
    starting: int = 0
    """Pods of the workload that do not serve yet: unscheduled (waiting for a node) or not
    Ready."""
    unplaced: int = 0
    """Of the starting pods, those with no node yet: waiting for the scheduler or for a node
    (a spot market may not give one). A pod with its node serves within its own start."""
    unplaced_since: tuple[float, ...] = ()
    """Of the unplaced pods, the creation times (Unix s), where known: one waiting longer than
    the workload's pods took to get a node may not get one (`spot.waiting_for_market`)."""
    time_to_node_s: float | None = None
    """The longest of the live pods' measured waits for a node (`cluster.placed_after_s`):
    where a provisioner starts nodes, how long a new one takes; 0 where pods find room."""
    placed_starting_since: tuple[float, ...] = ()
    """Of the starting pods, the creation times (Unix s) of those on a node not under a notice,
    where known: one not serving long after (an image pull backing off, a crash loop, a bad
    node) may not. One on a noticed node is counted in `noticed` only."""
    noticed: int = 0
    """Its live pods on nodes under a notice taint (`cluster.NodeInfo.notice`): they serve
    until the node goes, soon."""
    serving: int = 0
    """Its live pods that are Ready."""


def workload_capacity(
    policy: PolicyView, pods: Iterable[PodInfo], nodes: Mapping[str, NodeInfo], prices: PriceSheet
) -> WorkloadCapacity:
    """Scheduled, unfinished pods; per capacity type their replicas, GPUs and hourly cost
    (allocated GPUs × the GPU's price for that capacity type); what could not be priced."""
    problems: list[str] = []
    hourly: dict[CapacityType, float] = defaultdict(float)
    gpus: dict[CapacityType, float] = defaultdict(float)
    replicas: dict[CapacityType, int] = defaultdict(int)
    gpu_names: set[str] = set()
    pods = tuple(pods)
    live = tuple(p for p in pods if p.node and p.phase not in ("Succeeded", "Failed"))
    for pod in live:
        assert pod.node is not None
        node = nodes.get(pod.node)
        capacity = node.capacity_type if node else CapacityType.ON_DEMAND
        replicas[capacity] += 1
        if pod.gpus <= 0:
            continue
        gpu = policy.gpu or (node.gpu if node else None)
        if gpu is None:
            product = node.gpu_product if node else None
            problems.append(f"pod {pod.name}: unknown GPU product {product!r} on node {pod.node}")
            continue
        gpu_names.add(gpu)
        gpus[capacity] += pod.gpus
        try:
            hourly[capacity] += pod.gpus * prices.usd_per_gpu_hour(gpu, capacity)
        except CostEngineError as exc:
            problems.append(f"pod {pod.name}: no price: {exc}")
    starts = [p.ready_after_s for p in live if p.ready_after_s is not None]
    unfinished = [p for p in pods if p.phase not in ("Succeeded", "Failed")]
    starting = sum(1 for p in unfinished if not p.ready)
    unplaced = [p for p in unfinished if not p.node]
    waits = [p.placed_after_s for p in live if p.placed_after_s is not None]

    def on_notice(pod: PodInfo) -> bool:
        node = nodes.get(pod.node or "")
        return node is not None and bool(node.notice)

    since = tuple(
        sorted(
            p.created_s
            for p in unfinished
            if p.node and not p.ready and p.created_s and not on_notice(p)
        )
    )
    noticed = sum(1 for p in live if on_notice(p))
    return WorkloadCapacity(
        live,
        dict(hourly),
        dict(gpus),
        dict(replicas),
        frozenset(gpu_names),
        tuple(problems),
        statistics.median(starts) if starts else None,
        starting=starting,
        unplaced=len(unplaced),
        unplaced_since=tuple(sorted(p.created_s for p in unplaced if p.created_s)),
        time_to_node_s=max(waits) if waits else None,
        placed_starting_since=since,
        noticed=noticed,
        serving=sum(1 for p in live if p.ready),
    )


def workload_figures(
    policy: PolicyView,
    workload: str,
    pods: Iterable[PodInfo],
    nodes: Mapping[str, NodeInfo],
    rates: Mapping[PodKey, PodRates],
    prices: PriceSheet,
    baseline_usd_per_million: float | None,
    now: float,
) -> WorkloadFigures:
    """A workload's figures from its pods, the nodes they run on, prices and pod rates."""
    capacity = workload_capacity(policy, pods, nodes, prices)
    return priced_figures(policy, workload, capacity, rates, baseline_usd_per_million, now)


def priced_figures(
    policy: PolicyView,
    workload: str,
    capacity: WorkloadCapacity,
    rates: Mapping[PodKey, PodRates],
    baseline_usd_per_million: float | None,
    now: float,
) -> WorkloadFigures:
    """`workload_figures` on a `WorkloadCapacity` built already."""
    live, hourly, gpus = capacity.live, capacity.hourly, capacity.gpus
    gpu_names = capacity.gpu_names
    pod_rates = [rates[(p.namespace, p.name)] for p in live if (p.namespace, p.name) in rates]
    if policy.metrics is not None:
        pod_rates = [r.overridden(policy.metrics) for r in pod_rates]
    engines = {r.engine for r in pod_rates if r.engine}
    engine = (
        policy.engine
        if policy.engine not in ("auto", "")
        else (engines.pop() if len(engines) == 1 else ("mixed" if engines else "unknown"))
    )
    in_tps = _sum(r.input_tokens_per_second for r in pod_rates)
    out_tps = _sum(r.output_tokens_per_second for r in pod_rates)
    # Figures are gathered as fields and the dataclass is built once: a tick at 10,000 pods
    # builds thousands of them.
    fields: dict[str, Any] = {
        "namespace": policy.namespace,
        "policy": policy.name,
        "workload": workload,
        "model": policy.model or "",
        "gpu": ",".join(sorted(gpu_names)),
        "engine": engine,
        "hourly_cost_usd": dict(hourly),
        "gpus": dict(gpus),
        "replicas": dict(capacity.replicas),
        "input_tokens_per_second": in_tps,
        "output_tokens_per_second": out_tps,
        "requests_per_second": _sum(r.requests_per_second for r in pod_rates),
        "stale": in_tps is None or out_tps is None,
        "problems": capacity.problems,
        "updated_at": now,
        "measured_cold_start_s": capacity.cold_start_s,
        "starting_replicas": capacity.starting,
        "unplaced_replicas": capacity.unplaced,
        "unplaced_since": capacity.unplaced_since,
        "time_to_node_s": capacity.time_to_node_s,
        "placed_starting_since": capacity.placed_starting_since,
        "noticed_replicas": capacity.noticed,
        "serving_replicas": capacity.serving,
    }
    total_gpus = sum(gpus.values())
    busy = [
        (r.gpu_busy_ratio, p.gpus)
        for p in live
        for r in [rates.get((p.namespace, p.name))]
        if r is not None and r.gpu_busy_ratio is not None and p.gpus > 0
    ]
    if busy and total_gpus > 0:
        weight = sum(g for _, g in busy)
        fields["gpu_utilization_ratio"] = min(1.0, sum(b * g for b, g in busy) / weight)
    if in_tps is None or out_tps is None:
        return WorkloadFigures(**fields)

    usd_per_hour = sum(hourly.values())
    total_tps = in_tps + out_tps
    enough = total_tps * policy.window_s >= MIN_TOKENS_IN_WINDOW
    if enough and usd_per_hour > 0:
        usd_per_second = usd_per_hour / SECONDS_PER_HOUR
        all_usd = usd_per_second / total_tps * TOKENS_PER_MILLION
        fields["usd_per_million_tokens"] = all_usd
        prefill_share = _prefill_share(policy, pod_rates, live, gpu_names, in_tps, out_tps)
        if prefill_share is not None:
            fields.update(_split(usd_per_second, prefill_share, in_tps, out_tps, pod_rates))
        if policy.api_comparison:
            fields["api_equivalent_usd_per_million_tokens"] = {
                a.name: (in_tps * a.input_usd_per_million + out_tps * a.output_usd_per_million)
                / total_tps
                for a in policy.api_comparison
            }
        if baseline_usd_per_million and baseline_usd_per_million > 0:
            fields["baseline_usd_per_million_tokens"] = baseline_usd_per_million
            fields["drift_ratio"] = all_usd / baseline_usd_per_million
    fields.update(_capacity(usd_per_hour, policy, live, gpu_names, pod_rates, in_tps, out_tps))
    return WorkloadFigures(**fields)


def _serving(
    policy: PolicyView, gpu_names: AbstractSet[str], gpus_per_pod: float, shape: tuple[int, int]
) -> BatchRun | None:
    """The throughput model's serving figures for one pod of this shape, if it can say."""
    if not policy.model or len(gpu_names) != 1 or gpus_per_pod < 1 or gpus_per_pod % 1:
        return None
    engine = policy.engine if policy.engine in ("vllm", "sglang", "trtllm", "tgi") else "vllm"
    return _modeled_serving(policy.model, next(iter(gpu_names)), int(gpus_per_pod), engine, *shape)


@lru_cache(maxsize=4096)
def _modeled_serving(
    model: str, gpu: str, gpus: int, engine: str, input_tokens: int, output_tokens: int
) -> BatchRun | None:
    # Cached: a tick asks for the same few shapes for thousands of workloads (the model is
    # pure, and request shapes are whole tokens).
    try:
        return Deployment.of(model, gpu, gpus, "fp16", engine).serving(input_tokens, output_tokens)
    except CostEngineError:
        return None


def _request_shape(
    pod_rates: list[PodRates], in_tps: float, out_tps: float
) -> tuple[int, int] | None:
    requests = _sum(r.requests_per_second for r in pod_rates)
    if not requests or requests <= 0 or out_tps <= 0:
        return None
    return max(1, round(in_tps / requests)), max(1, round(out_tps / requests))


def _prefill_share(
    policy: PolicyView,
    pod_rates: list[PodRates],
    live: Sequence[PodInfo],
    gpu_names: AbstractSet[str],
    in_tps: float,
    out_tps: float,
) -> float | None:
    """Share of GPU time spent on prefill: measured from vLLM's phase histograms when present,
    else from the throughput model at the measured request shape."""
    measured = [
        (r.prefill_seconds_per_second, r.decode_gpu_seconds_per_second)
        for r in pod_rates
        if r.prefill_seconds_per_second is not None and r.decode_gpu_seconds_per_second is not None
    ]
    if measured:
        prefill = sum(p for p, _ in measured)
        decode_gpu = sum(d for _, d in measured)
        if prefill + decode_gpu > 0:
            return prefill / (prefill + decode_gpu)
    shape = _request_shape(pod_rates, in_tps, out_tps)
    gpus_per_pod = max((p.gpus for p in live), default=0.0)
    run = _serving(policy, gpu_names, gpus_per_pod, shape) if shape else None
    return run.prefill_time_ratio if run else None


def _split(
    usd_per_second: float,
    prefill_share: float,
    in_tps: float,
    out_tps: float,
    pod_rates: list[PodRates],
) -> dict[str, Any]:
    """$/1M by token type and the prefix cache's savings, given prefill's share of GPU time."""
    fields: dict[str, Any] = {
        "input_usd_per_million_tokens": usd_per_second * prefill_share / in_tps * TOKENS_PER_MILLION
        if in_tps > 0
        else None,
        "output_usd_per_million_tokens": usd_per_second
        * (1 - prefill_share)
        / out_tps
        * TOKENS_PER_MILLION
        if out_tps > 0
        else None,
    }
    hits = _sum(r.prefix_hit_tokens_per_second for r in pod_rates)
    if hits is None:
        return fields
    queries = _sum(r.prefix_query_tokens_per_second for r in pod_rates)
    lookups = queries if queries else in_tps
    fields["prefix_cache_hit_ratio"] = min(1.0, hits / lookups) if lookups > 0 else None
    computed = in_tps - hits
    if computed > 0:
        # A cached prompt token saves what computing one costs: prefill dollars over the prompt
        # tokens actually computed (cached ones are nearly free and would dilute the price).
        usd_per_computed_token = usd_per_second * prefill_share / computed
        fields["prefix_cache_savings_usd_per_hour"] = (
            hits * usd_per_computed_token * SECONDS_PER_HOUR
        )
    return fields


def _capacity(
    usd_per_hour: float,
    policy: PolicyView,
    live: Sequence[PodInfo],
    gpu_names: AbstractSet[str],
    pod_rates: list[PodRates],
    in_tps: float,
    out_tps: float,
) -> dict[str, Any]:
    """Measured output tokens/s over what the model says these pods could serve."""
    gpu_pods = [p for p in live if p.gpus > 0]
    shape = _request_shape(pod_rates, in_tps, out_tps)
    if not gpu_pods or shape is None:
        return {}
    if any(p.gpus != gpu_pods[0].gpus for p in gpu_pods):
        return {}
    per_pod = _serving(policy, gpu_names, gpu_pods[0].gpus, shape)
    if per_pod is None:
        return {}
    capacity_out = per_pod.output_tokens_per_second * len(gpu_pods)
    capacity_all = per_pod.total_tokens_per_second * len(gpu_pods)
    return {
        "replica_capacity_tokens_per_second": per_pod.total_tokens_per_second or None,
        "capacity_utilization_ratio": out_tps / capacity_out if capacity_out > 0 else None,
        "usd_per_million_tokens_at_capacity": usd_per_hour
        / SECONDS_PER_HOUR
        / capacity_all
        * TOKENS_PER_MILLION
        if capacity_all > 0 and usd_per_hour > 0
        else None,
    }


def _matches(labels: Mapping[str, str], counters: SemanticCounters, namespace: str) -> bool:
    if counters.match_labels:
        return all(labels.get(k) == v for k, v in counters.match_labels)
    return labels.get("namespace") == namespace


def with_semantic_savings(
    policy: PolicyView,
    figures: Mapping[tuple[str, str, str], WorkloadFigures],
    rows: Iterable[tuple[str, Mapping[str, str], float]],
) -> dict[tuple[str, str, str], WorkloadFigures]:
    """A semantic cache answers a hit with a stored response: the whole request never reaches
    the GPUs. Its savings are the tokens it served priced at the policy's own $/1M output
    tokens, plus each hit's prompt (the policy's mean prompt length) at $/1M input tokens —
    `costengine.caching.semantic_cache_savings_usd_per_hour`. Without a hits counter only the
    served tokens count (a lower bound); without the input/output split, both are priced at
    the all-token $/1M. The policy's savings go to its workloads by their share of tokens.

    `rows` are (counter name, labels, rate) of the tick's semantic query."""
    counters = policy.semantic
    if counters is None:
        return dict(figures)
    served = hits = None
    for name, labels, value in rows:
        if not _matches(labels, counters, policy.namespace):
            continue
        if name == counters.tokens_served:
            served = (served or 0.0) + value
        elif name == counters.hits:
            hits = (hits or 0.0) + value
    figs = list(figures.values())
    usd_per_hour = sum(f.total_hourly_cost_usd for f in figs)
    in_tps = _sum(f.input_tokens_per_second for f in figs)
    out_tps = _sum(f.output_tokens_per_second for f in figs)
    requests = _sum(f.requests_per_second for f in figs)
    priced = any(f.usd_per_million_tokens is not None for f in figs)
    if served is None or not priced or not in_tps or not out_tps or usd_per_hour <= 0:
        return dict(figures)
    all_usd = usd_per_hour / SECONDS_PER_HOUR / (in_tps + out_tps) * TOKENS_PER_MILLION
    input_usd = _weighted_price(figs, "input")
    output_usd = _weighted_price(figs, "output")
    if input_usd is None or output_usd is None:
        input_usd = output_usd = all_usd
    prompt_tokens = in_tps / requests if requests else None
    hit_input_tps = hits * prompt_tokens if hits is not None and prompt_tokens else 0.0
    savings = semantic_cache_savings_usd_per_hour(hit_input_tps, served, input_usd, output_usd)
    hit_ratio = hits / (hits + requests) if hits is not None and requests else None
    total = in_tps + out_tps
    return {
        key: replace(
            f,
            semantic_cache_savings_usd_per_hour=savings
            * (f.total_tokens_per_second or 0.0)
            / total,
            semantic_cache_hit_ratio=hit_ratio,
        )
        for key, f in figures.items()
    }


def _weighted_price(figs: list[WorkloadFigures], token_type: str) -> float | None:
    """The policy's $/1M for one token type: workloads' prices weighted by their token rates."""
    pairs = [
        (
            getattr(f, f"{token_type}_usd_per_million_tokens"),
            getattr(f, f"{token_type}_tokens_per_second"),
        )
        for f in figs
    ]
    known: list[tuple[float, float]] = [(usd, tps) for usd, tps in pairs if usd is not None and tps]
    if not known or len(known) != len([1 for _, tps in pairs if tps]):
        return None
    return sum(usd * tps for usd, tps in known) / sum(tps for _, tps in known)


def carry_forward(previous: WorkloadFigures | None, current: WorkloadFigures) -> WorkloadFigures:
    """When a tick has no token data for a workload, keep the last good figures, marked stale
    (RELIABILITY 3); cost and allocation always come from the current cluster picture."""
    if not current.stale or previous is None or previous.usd_per_million_tokens is None:
        return current
    return replace(
        previous,
        hourly_cost_usd=current.hourly_cost_usd,
        gpus=current.gpus,
        replicas=current.replicas,
        stale=True,
        problems=current.problems,
        updated_at=previous.updated_at,
    )
