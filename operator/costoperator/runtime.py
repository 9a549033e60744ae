"""The operator's state between kopf handlers and the tick: policies, price sheets, status.

No kopf imports: handlers feed this module, the tick loop reads it, tests drive it directly.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from costengine.gpus import GPUS
from costengine.pricing import PriceSheet, seed_price_sheet
from costengine.spotplan import WorkloadTraits
from costoperator.actuator import RecordedCover
from costoperator.crds import (
    MAX_SPOT_NOTE,
    Condition,
    ConditionStatus,
    ConditionType,
    GPUPricingSpec,
    InferenceCostPolicySpec,
    InferenceCostPolicyStatus,
    OnDemandBase,
    PolicySpecError,
    SpotMode,
    SpotSpec,
    duration_seconds,
    parse_gpu_pricing_spec,
    parse_policy_spec,
    parse_scaling_record,
    price_sheet_from_gpu_pricing,
    status_patch,
    to_wire,
)
from costoperator.figures import ApiPrice, PolicyView, SpotView, WorkloadFigures
from costoperator.queries import MetricOverrides, SemanticCounters
from costoperator.spot import DemandHistory
from costoperator.tick import BaselineCache, GpuSource, PhaseCache

PolicyKey = tuple[str, str]  # (namespace, name)

#: Status patches per policy at most this often (unless a condition flips): the figures change
#: every tick, the API server should not hear about each one.
STATUS_MIN_INTERVAL_S = 30.0


@dataclass
class PolicyRecord:
    spec: InferenceCostPolicySpec
    generation: int | None


class WriteBudget:
    """A token bucket shared by every policy's status timer (they run in kopf's threads): at most
    `per_s` writes a second on average and `burst` at once, so policies that all fall due
    together (they start together) are spread out instead of written in one burst."""

    def __init__(self, per_s: float, burst: float | None = None) -> None:
        if per_s <= 0:
            raise ValueError(f"writes per second must be positive, got {per_s}")
        self.per_s = per_s
        self.burst = burst if burst is not None else max(1.0, per_s)
        self._tokens = self.burst
        self._at: float | None = None
        self._lock = threading.Lock()

    def take(self, now_s: float) -> bool:
        with self._lock:
            if self._at is not None:
                self._tokens = min(self.burst, self._tokens + (now_s - self._at) * self.per_s)
            self._at = now_s
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True


@dataclass(frozen=True, slots=True)
class SpotTold:
    """What a policy's spot events said last: the count and when, the refusal."""

    count: int | None = None
    at: float | None = None
    refusal: str = ""


@dataclass
class Runtime:
    default_prices: PriceSheet = field(default_factory=seed_price_sheet)
    policies: dict[PolicyKey, PolicyRecord] = field(default_factory=dict)
    invalid: dict[PolicyKey, str] = field(default_factory=dict)
    sheets: dict[str, PriceSheet] = field(default_factory=dict)
    _last_status: dict[PolicyKey, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    demand: DemandHistory = field(default_factory=DemandHistory)
    """Per policy, the token rates of recent ticks: the spot planner's demand history."""
    baselines: BaselineCache = field(default_factory=BaselineCache)
    """Drift baselines between their (background) refreshes."""
    gpu_source: GpuSource = field(default_factory=GpuSource)
    """Whether the GPU-busy query needs its fallback family."""
    phases: PhaseCache = field(default_factory=PhaseCache)
    """vLLM's phase times (the input/output split) between their (background) refreshes."""
    demand_restored: set[tuple[str, str]] = field(default_factory=set)
    """Policies whose demand history was looked up in Prometheus (`restore_demand_history`)."""
    annotations: dict[PolicyKey, dict[str, str]] = field(default_factory=dict)
    """Per policy, its annotations (the scaling pause is one)."""
    events: dict[PolicyKey, list[tuple[str, str, str]]] = field(default_factory=dict)
    """Per policy, events (type, reason, message) waiting for its status timer to post."""
    conflicts: dict[PolicyKey, str] = field(default_factory=dict)
    """Auto-mode policies whose spot workload another autoscaler drives: why."""
    last_scale_up: dict[PolicyKey, float] = field(default_factory=dict)
    """Per policy, the wall time (epoch s) of the last scale-up in its `status.scaling`: what
    a restarted operator or a new leader resumes the scale-up period from."""
    last_on_demand_scale_up: dict[PolicyKey, float] = field(default_factory=dict)
    """The same for `onDemandTargetRef`, from `status.onDemandScaling`."""
    on_demand_covers: dict[PolicyKey, RecordedCover] = field(default_factory=dict)
    """Per policy, the cover in the last on-demand scale recorded (`status.onDemandScaling`):
    what a restarted operator or a new leader takes as cover (`Actuator.decide_all`)."""
    spot_told: dict[PolicyKey, SpotTold] = field(default_factory=dict)
    """Per Recommend-mode policy, what its last spot events said (`recommend_events`)."""

    # --- policies and prices -----------------------------------------------------------------

    def upsert_policy(
        self, namespace: str, name: str, spec: Mapping[str, Any] | None, generation: int | None
    ) -> InferenceCostPolicySpec:
        """Parse and keep a policy; an invalid spec is remembered (for its condition) and the
        policy stops being priced until fixed. Raises PolicySpecError."""
        key = (namespace, name)
        try:
            parsed = parse_policy_spec(spec)
        except PolicySpecError as exc:
            self.policies.pop(key, None)
            self.invalid[key] = str(exc)
            raise
        self.invalid.pop(key, None)
        self.policies[key] = PolicyRecord(parsed, generation)
        return parsed

    def remember_object(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """What the scaling pause needs of a policy object: its annotations; and what the
        actuator resumes from: the last scale-up recorded in its status."""
        meta = body.get("metadata") or {}
        self.annotations[(namespace, name)] = dict(meta.get("annotations") or {})
        status = body.get("status") or {}
        for field_name, ups in (
            ("scaling", self.last_scale_up),
            ("onDemandScaling", self.last_on_demand_scale_up),
        ):
            scaling = status.get(field_name)
            if not scaling:
                continue
            try:
                parsed = parse_scaling_record(scaling)
            except PolicySpecError:  # not ours to fix; without a record the period restarts
                continue
            up = parsed.last_scale_up_time
            if field_name == "onDemandScaling":
                self.on_demand_covers[(namespace, name)] = RecordedCover(
                    parsed.workload, parsed.to_replicas, parsed.cover_replicas or 0
                )
            if up is not None:
                when = up.timestamp()
                ups[(namespace, name)] = max(when, ups.get((namespace, name), when))

    def post(self, key: PolicyKey, event_type: str, reason: str, message: str) -> None:
        """Queue an event on the policy; at most 20 wait (older ones are dropped)."""
        queue = self.events.setdefault(key, [])
        queue.append((event_type, reason, message))
        del queue[:-20]

    def take_events(self, key: PolicyKey) -> list[tuple[str, str, str]]:
        return self.events.pop(key, [])

    def recommend_events(
        self,
        views: Iterable[PolicyView],
        figures: Mapping[tuple[str, str, str], WorkloadFigures],
        now_s: float,
    ) -> None:
        """Events for Recommend-mode policies (Auto mode's come from its scale steps): a
        `SpotRefused` warning when the planner starts refusing spot (its reasons), and a
        `SpotRecommendation` when the recommended count differs from the one last told, at
        most once per scale-down window (the recommendation follows demand tick by tick; the
        window is how long an Auto-mode fleet would hold it). Nothing without a recommendation:
        no data is no news (RELIABILITY 1)."""
        live = set()
        for view in views:
            spot = view.spot
            if spot is None or spot.mode != "Recommend":
                continue
            key = (view.namespace, view.name)
            live.add(key)
            figure = figures.get((view.namespace, view.name, spot.target[1]))
            if figure is None or figure.spot_recommended_replicas is None:
                continue
            count, refusal = figure.spot_recommended_replicas, figure.spot_refusal
            told = self.spot_told.get(key, SpotTold())
            target = f"{spot.target[0]} {spot.target[1]}"
            if refusal and refusal != told.refusal:
                self.post(key, "Warning", "SpotRefused", f"{target}: {refusal}"[:MAX_SPOT_NOTE])
            due = told.at is None or now_s - told.at >= spot.scale_down_window_s
            if count != told.count and due:
                savings = figure.spot_projected_savings_usd_per_hour
                saves = f", saving ${savings:,.2f}/h against all on demand" if savings else ""
                self.post(
                    key,
                    "Normal",
                    "SpotRecommendation",
                    f"{target}: {count} spot replicas recommended{saves}",
                )
                told = replace(told, count=count, at=now_s)
            self.spot_told[key] = replace(told, refusal=refusal)
        for key in set(self.spot_told) - live:
            del self.spot_told[key]

    def delete_policy(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self.policies.pop(key, None)
        self.invalid.pop(key, None)
        self._last_status.pop(key, None)
        self.annotations.pop(key, None)
        self.events.pop(key, None)
        self.conflicts.pop(key, None)
        self.last_scale_up.pop(key, None)
        self.last_on_demand_scale_up.pop(key, None)
        self.on_demand_covers.pop(key, None)
        self.spot_told.pop(key, None)

    def upsert_pricing(self, name: str, spec: Mapping[str, Any] | None) -> GPUPricingSpec:
        parsed = parse_gpu_pricing_spec(spec)
        self.sheets[name] = price_sheet_from_gpu_pricing(name, parsed)
        return parsed

    def delete_pricing(self, name: str) -> None:
        self.sheets.pop(name, None)

    def prices_for(self, spec: InferenceCostPolicySpec) -> PriceSheet:
        """The referenced GPUPricing sheet (or the default), then the policy's own overrides,
        which apply to whatever GPU the workload runs on."""
        base = self.default_prices
        pricing = spec.pricing
        if pricing and pricing.catalog_ref and pricing.catalog_ref in self.sheets:
            base = self.sheets[pricing.catalog_ref]
        if pricing and pricing.usd_per_gpu_hour:
            overrides = [e for gpu in GPUS for e in pricing.overrides_for(gpu, "policy override")]
            return base.with_overrides(overrides, name=f"{base.name}+policy")
        return base

    def missing_catalog(self, spec: InferenceCostPolicySpec) -> str | None:
        pricing = spec.pricing
        if pricing and pricing.catalog_ref and pricing.catalog_ref not in self.sheets:
            return pricing.catalog_ref
        return None

    def views(self) -> list[PolicyView]:
        return [self.view(ns, name, r.spec) for (ns, name), r in sorted(self.policies.items())]

    def view(self, namespace: str, name: str, spec: InferenceCostPolicySpec) -> PolicyView:
        selector = None
        if spec.selector is not None:
            selector = to_wire(spec.selector)
        target = (spec.target_ref.kind.value, spec.target_ref.name) if spec.target_ref else None
        drift = spec.drift
        return PolicyView(
            namespace=namespace,
            name=name,
            window=spec.window,
            window_s=duration_seconds(spec.window),
            selector=selector,
            target=target,
            baseline_window=drift.baseline_window if drift else None,
            engine=spec.engine.value,
            model=spec.model,
            gpu=spec.gpu,
            api_comparison=tuple(
                ApiPrice(a.name, a.input_usd_per_million, a.output_usd_per_million)
                for a in spec.api_comparison or ()
            ),
            drift_threshold_ratio=drift.threshold_ratio if drift else 1.2,
            drift_min_tokens=float(drift.min_tokens) if drift else 100_000.0,
            prices=self.prices_for(spec),
            spot=_spot_view(spec.spot),
            metrics=_overrides(spec),
            semantic=_semantic(spec),
        )

    def tick_interval_s(self, default: float = 30.0) -> float:
        intervals = [duration_seconds(r.spec.interval) for r in self.policies.values()]
        return min(intervals, default=default)

    # --- status ------------------------------------------------------------------------------

    def status_for(
        self,
        key: PolicyKey,
        figures: Iterable[WorkloadFigures],
        prometheus_ok: bool,
        now: dt.datetime,
    ) -> InferenceCostPolicyStatus:
        record = self.policies[key]
        spec = record.spec
        figs = list(figures)
        usd_per_hour = sum(f.total_hourly_cost_usd for f in figs)
        tokens = [f.total_tokens_per_second for f in figs if f.total_tokens_per_second is not None]
        total_tps = sum(tokens) if tokens else None
        priced = [f for f in figs if f.usd_per_million_tokens is not None]
        usd_per_million = (
            usd_per_hour / 3600 / total_tps * 1e6
            if priced and total_tps and usd_per_hour > 0
            else None
        )
        stale = not figs or any(f.stale for f in figs) or not prometheus_ok
        gpu_util = _weighted((f.gpu_utilization_ratio, sum(f.gpus.values())) for f in figs)
        capacity = _weighted(
            (f.capacity_utilization_ratio, f.output_tokens_per_second or 0.0) for f in figs
        )
        savings = [
            s
            for f in figs
            for s in (f.prefix_cache_savings_usd_per_hour, f.semantic_cache_savings_usd_per_hour)
        ]
        baseline = _weighted(
            (f.baseline_usd_per_million_tokens, f.total_tokens_per_second or 0.0) for f in figs
        )
        drift = usd_per_million / baseline if usd_per_million and baseline else None
        threshold = spec.drift.threshold_ratio if spec.drift else None
        window_tokens = (total_tps or 0.0) * duration_seconds(spec.window)
        min_tokens = spec.drift.min_tokens if spec.drift else 0
        drifting = bool(drift and threshold and drift > threshold and window_tokens >= min_tokens)
        problems = sorted({p for f in figs for p in f.problems})
        missing = self.missing_catalog(spec)
        if missing:
            problems.insert(0, f"GPUPricing {missing!r} not found; using the default sheet")
        conditions = [
            _condition(
                ConditionType.READY,
                bool(figs) and not problems,
                "Pricing" if figs and not problems else ("NoWorkloads" if not figs else "Problems"),
                "; ".join(problems)[:1000]
                if problems
                else ("" if figs else "the selector matches no Deployment or StatefulSet"),
                now,
                record.generation,
            ),
            _condition(
                ConditionType.METRICS_AVAILABLE,
                total_tps is not None,
                "TokensSeen" if total_tps is not None else "NoTokenSeries",
                "" if total_tps is not None else "no token counters for the policy's pods",
                now,
                record.generation,
            ),
            _condition(
                ConditionType.STALE,
                stale,
                "InputsMissing" if stale else "Fresh",
                "" if prometheus_ok else "Prometheus queries failed or were partial",
                now,
                record.generation,
            ),
            _condition(
                ConditionType.DRIFTING,
                drifting,
                "AboveThreshold" if drifting else "WithinThreshold",
                f"drift {drift:.2f} > {threshold}" if drifting and drift else "",
                now,
                record.generation,
            ),
        ]
        if spec.spot is not None and spec.spot.mode is SpotMode.AUTO:
            conflict = self.conflicts.get(key)
            conditions.append(
                _condition(
                    ConditionType.CONFLICT,
                    conflict is not None,
                    "AnotherAutoscaler" if conflict else "NoConflict",
                    conflict or "",
                    now,
                    record.generation,
                )
            )
        previous = self._last_status.get(key)
        if previous is not None:
            conditions = _keep_transition_times(conditions, previous[1])
        return InferenceCostPolicyStatus(
            usd_per_million_tokens=_finite(usd_per_million),
            tokens_per_second=_finite(total_tps),
            gpu_utilization=_finite(gpu_util),
            capacity_utilization=_finite(capacity),
            cache_savings_usd_per_hour=_finite(sum(s for s in savings if s is not None))
            if any(s is not None for s in savings)
            else None,
            drift_ratio=_finite(drift),
            recommended_spot_replicas=next(
                (
                    f.spot_recommended_replicas
                    for f in figs
                    if f.spot_recommended_replicas is not None
                ),
                None,
            ),
            recommended_on_demand_replicas=next(
                (
                    f.on_demand_recommended_replicas
                    for f in figs
                    if f.on_demand_recommended_replicas is not None
                ),
                None,
            ),
            spot_note=next((f.spot_note[:MAX_SPOT_NOTE] for f in figs if f.spot_note), None),
            workloads=len(figs),
            stale=stale,
            conditions=conditions,
            last_updated=now,
        )

    def status_patch_due(
        self,
        key: PolicyKey,
        status: InferenceCostPolicyStatus,
        now_s: float,
        min_interval_s: float = STATUS_MIN_INTERVAL_S,
        budget: WriteBudget | None = None,
    ) -> dict[str, Any] | None:
        """The status body to merge-patch, or None while the last one is recent and no
        condition changed (at most one patch per `min_interval_s` per policy). Fields that
        became unknown are sent as null, so a merge patch removes them instead of leaving an
        old figure behind."""
        body = status_patch(status)
        last = self._last_status.get(key)
        flips = False
        if last is not None:
            last_time, last_body = last
            if body == last_body:
                return None
            flips = _condition_states(last_body) != _condition_states(body)
            if not flips and now_s - last_time < min_interval_s:
                return None
        if not flips and budget is not None and not budget.take(now_s):
            return None  # over the budget (first writes too): a later timer run sends it
        self._last_status[key] = (now_s, body)
        return body

    def status_not_written(self, key: PolicyKey) -> None:
        """The patch `status_patch_due` returned did not land (409, API away): send it again
        at the next timer run instead of waiting for a change."""
        self._last_status.pop(key, None)


def _keep_transition_times(
    conditions: list[Condition], previous: Mapping[str, Any]
) -> list[Condition]:
    """lastTransitionTime moves only when a condition's status changes (API conventions)."""
    before = {c["type"]: c for c in previous.get("conditions") or ()}
    kept = []
    for c in conditions:
        old = before.get(c.type.value)
        if old is not None and old.get("status") == c.status.value:
            c = c.model_copy(
                update={
                    "last_transition_time": dt.datetime.fromisoformat(old["lastTransitionTime"])
                }
            )
        kept.append(c)
    return kept


def _condition_states(body: Mapping[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in body.get("conditions") or ()}


def _condition(
    kind: ConditionType,
    true: bool,
    reason: str,
    message: str,
    now: dt.datetime,
    generation: int | None,
) -> Condition:
    return Condition(
        type=kind,
        status=ConditionStatus.TRUE if true else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        last_transition_time=now,
        observed_generation=generation,
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value >= 0 else None


def _weighted(pairs: Iterable[tuple[float | None, float]]) -> float | None:
    num = den = 0.0
    for value, weight in pairs:
        if value is not None and weight > 0:
            num += value * weight
            den += weight
    return num / den if den > 0 else None


def invalid_status(
    message: str, generation: int | None, now: dt.datetime
) -> InferenceCostPolicyStatus:
    """The status of a policy whose spec does not validate."""
    return InferenceCostPolicyStatus(
        conditions=[
            _condition(ConditionType.READY, False, "InvalidSpec", message[:1000], now, generation)
        ],
        stale=True,
        last_updated=now,
    )


def _spot_view(spot: SpotSpec | None) -> SpotView | None:
    if spot is None or spot.mode is SpotMode.OFF or spot.spot_target_ref is None:
        return None
    return SpotView(
        mode=spot.mode.value,
        target=(spot.spot_target_ref.kind.value, spot.spot_target_ref.name),
        min_replicas=spot.min_replicas,
        max_replicas=spot.max_replicas,
        max_spot_fraction=spot.max_spot_fraction,
        target_utilization=spot.target_utilization,
        burst_quantile=spot.burst_quantile,
        max_step=spot.max_step,
        scale_up_stabilization_s=spot.scale_up_stabilization_seconds,
        scale_down_stabilization_s=spot.scale_down_stabilization_seconds,
        cold_start_s=spot.cold_start_seconds,
        interruptions_per_replica_hour=spot.interruptions_per_replica_hour,
        burst_queue_s=spot.burst_queue_seconds,
        on_demand_target=None
        if spot.on_demand_target_ref is None
        else (spot.on_demand_target_ref.kind.value, spot.on_demand_target_ref.name),
        on_demand_min_replicas=spot.on_demand_min_replicas or 1,
        on_demand_max_replicas=spot.on_demand_max_replicas,
        on_demand_base="fraction" if spot.on_demand_base is OnDemandBase.FRACTION else "p50",
        traits=WorkloadTraits(
            slo_bound=bool(spot.slo_bound),
            multi_turn_state=bool(spot.multi_turn_state),
            tight_p99=bool(spot.tight_p99),
        ),
    )


def _overrides(spec: InferenceCostPolicySpec) -> MetricOverrides | None:
    m = spec.metrics
    if m is None:
        return None
    overrides = MetricOverrides(
        input_tokens=m.input_tokens,
        output_tokens=m.output_tokens,
        # SGLang-style `cachedTokens` is a hit-token counter too (hits ÷ prompt tokens).
        prefix_hit_tokens=m.prefix_cache_hits or m.cached_tokens,
        prefix_query_tokens=m.prefix_cache_queries,
    )
    return overrides if overrides.by_family() else None


def _semantic(spec: InferenceCostPolicySpec) -> SemanticCounters | None:
    semantic = spec.cache.semantic if spec.cache else None
    if semantic is None:
        return None
    return SemanticCounters(
        tokens_served=semantic.tokens_served_metric,
        hits=semantic.hits_metric,
        match_labels=tuple(sorted((semantic.match_labels or {}).items())),
    )
