"""The spot planner in the operator: each tick's figures → a spot replica recommendation.

Per policy with `spec.spot.mode` Recommend or Auto: the policy's total token rate is the
demand (kept per tick in `DemandHistory`), the workloads other than `spotTargetRef` are the
on-demand base, and one replica's capacity comes from the throughput model at the measured
request shape (or, without a model, from measured tokens/s over the measured GPU busy
fraction). A replica's cold start is the policy's `coldStartSeconds`, else what its pods show
(creation to Ready, `measured_cold_start`), else the planner's default; the policy's
interruption rate and spot-hostile traits go in as they are. The burst term reads the
queue-aware burst signal (`costengine.spotplan.serviceable_rate` of the tick's peak 30, 60 and
120 s token rates, `queries.burst_query`, within `burstQueueSeconds`) while every spot replica
serves, else the rate. `costengine.spotplan.plan_spot` does the planning; this module only
gathers its inputs and attaches the result to the spot workload's figures, where the exporter
publishes `llmcost_spot_recommended_replicas` and `llmcost_spot_projected_savings_usd_per_hour`.

Preemption notices: spot pods on a node under a notice taint (`cluster.DEFAULT_NOTICE_TAINTS`:
AWS Node Termination Handler's, GKE's, Karpenter's) still serve, but not for long. Each one
the plan keeps gets a replacement in the recommendation now
(`costengine.spotplan.notice_replacements`), so its cold start runs during the notice instead
of after the preemption, and the burst term reads the rate while any is under notice, as
while any starts. Once the noticed pods are gone the recommendation falls back and the
scale-down window holds the extra replicas for its length, as it holds any fall.

Nothing here writes to a workload: Recommend mode only publishes (RELIABILITY 10). Missing or
stale inputs produce no recommendation (RELIABILITY 1: no data is never a reason to scale).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from costengine.errors import CostEngineError
from costengine.pricing import CapacityType, PriceSheet
from costengine.spotplan import (
    DEFAULT_COLD_START_S,
    PLANNER_HISTORY_S,
    SpotPlan,
    notice_replacements,
    plan_fleet,
    plan_spot,
    serviceable_rate,
)
from costoperator.exporter import by_policy
from costoperator.figures import PolicyView, WorkloadFigures
from costoperator.queries import BURST_STEP_S

#: Demand history kept per policy: the planner's base quantile looks at this much.
HISTORY_S = PLANNER_HISTORY_S
#: Below this GPU busy fraction, measured tokens/s ÷ busy is too noisy to be a capacity.
MIN_BUSY_FOR_CAPACITY = 0.05


class DemandHistory:
    """Per policy, the total tokens/s of recent ticks (oldest first), an hour at most, and the
    queue-aware burst signal of the same ticks (`burst_values`)."""

    def __init__(self, keep_s: float = HISTORY_S) -> None:
        self.keep_s = keep_s
        self._samples: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        self._bursts: dict[tuple[str, str], deque[tuple[float, float]]] = {}

    def add(
        self,
        key: tuple[str, str],
        now: float,
        tokens_per_second: float,
        burst_tokens_per_second: float | None = None,
    ) -> None:
        """One tick's sample; the burst signal is the rate when the tick had none."""
        burst = tokens_per_second if burst_tokens_per_second is None else burst_tokens_per_second
        for store, value in ((self._samples, tokens_per_second), (self._bursts, burst)):
            samples = store.setdefault(key, deque())
            samples.append((now, value))
            while samples and samples[0][0] < now - self.keep_s:
                samples.popleft()

    def seed(self, key: tuple[str, str], samples: Iterable[tuple[float, float]]) -> bool:
        """Start a policy's history from earlier samples (after a restart, from Prometheus);
        only while it has none of its own, so nothing is counted twice."""
        if self._samples.get(key):
            return False
        self._samples[key] = deque(sorted(samples))
        self._bursts[key] = deque(self._samples[key])  # the rate: no burst signal is exported
        return True

    def values(self, key: tuple[str, str], before: float | None = None) -> list[float]:
        """The samples (oldest first), those taken before `before` when it is given."""
        return [v for t, v in self._samples.get(key, ()) if before is None or t < before]

    def burst_values(self, key: tuple[str, str], before: float | None = None) -> list[float]:
        """The burst signal's samples (oldest first), those taken before `before` when given."""
        return [v for t, v in self._bursts.get(key, ()) if before is None or t < before]

    def previous(self, key: tuple[str, str], before: float) -> float | None:
        """When the latest sample before `before` was taken (the previous tick), or None."""
        for t, _ in reversed(self._samples.get(key, ())):  # oldest first
            if t < before:
                return t
        return None

    def count(self, key: tuple[str, str], since: float, before: float | None = None) -> int:
        """How many samples are at or after `since` (and before `before` when it is given)."""
        return sum(
            1
            for t, _ in self._samples.get(key, ())
            if t >= since and (before is None or t < before)
        )

    def forget_except(self, keys: Iterable[tuple[str, str]]) -> None:
        """Drop the history of deleted policies (memory stays bounded by live policies)."""
        live = set(keys)
        for store in (self._samples, self._bursts):
            for key in list(store):
                if key not in live:
                    del store[key]


def demand_history_query(policy_names: Iterable[str]) -> str:
    """The planner's demand per policy, from the operator's own exported series: the history a
    restarted operator (or a new leader) starts from. Every replica exports the same figures,
    so instances are collapsed (max) before the workloads and token types are summed. Only the
    named policies (namespaces are told apart by the caller)."""
    # Policy names are DNS-1123 subdomains: `.` is their only regex-special character. A raw
    # (backquoted) PromQL string keeps the backslash as it is.
    names = "|".join(sorted({n.replace(".", "\\.") for n in policy_names}))
    keys = "namespace, policy, workload, token_type"
    return (
        f"sum by (namespace, policy) "
        f"(max by ({keys}) (llmcost_tokens_per_second{{policy=~`{names}`}}))"
    )


def seed_demand_history(
    history: DemandHistory,
    series: Iterable[tuple[Mapping[str, str], list[tuple[float, float]]]],
    policies: Iterable[tuple[str, str]],
) -> list[tuple[str, str]]:
    """Seed the named policies' histories from `demand_history_query` rows; returns those
    seeded (a policy that already has history of its own keeps it)."""
    wanted = set(policies)
    seeded = []
    for labels, points in series:
        key = (labels.get("namespace", ""), labels.get("policy", ""))
        if key in wanted and history.seed(key, points):
            seeded.append(key)
    return seeded


def policy_burst_peaks(figures: Iterable[WorkloadFigures]) -> dict[float, float] | None:
    """Per window, the policy's peak tokens/s: the sum of its workloads' `burst_peaks` over
    the windows all of them (with live pods) have. None when one has no complete signal, no
    window is common, or no workload has live pods."""
    rows = []
    for f in figures:
        if f.burst_peaks is None:
            return None
        if f.burst_peaks:
            rows.append(f.burst_peaks)
    if not rows:
        return None
    common = set.intersection(*(set(row) for row in rows))
    if not common:
        return None
    return {window: sum(row[window] for row in rows) for window in sorted(common)}


def replica_capacity(f: WorkloadFigures) -> float | None:
    """Tokens/s one replica of this workload serves when fully busy, if known."""
    if f.replica_capacity_tokens_per_second:
        return f.replica_capacity_tokens_per_second
    replicas = sum(f.replicas.values())
    tps = f.total_tokens_per_second
    busy = f.gpu_utilization_ratio
    if tps and replicas and busy and busy >= MIN_BUSY_FOR_CAPACITY:
        return tps / replicas / busy
    return None


def measured_cold_start(
    spot: WorkloadFigures, on_demand: Iterable[WorkloadFigures]
) -> float | None:
    """The cold start the pods show (creation to Ready, `cluster.ready_after_s`): the spot
    workload's own; without spot pods measured, the on-demand workloads' when it is longer than
    the planner's default (same server and model load, but a spot replica may also wait for a
    node, so theirs only ever raises the assumption); else None (the default)."""
    if spot.measured_cold_start_s is not None:
        return spot.measured_cold_start_s
    measured = [f.measured_cold_start_s for f in on_demand if f.measured_cold_start_s is not None]
    if measured and max(measured) > DEFAULT_COLD_START_S:
        return max(measured)
    return None


#: A spot pod on its node not serving after this many cold starts may not serve at all.
OVERDUE_COLD_STARTS = 2.0


def overdue(spot: WorkloadFigures, now: float, cold_start_s: float) -> int:
    """Spot pods on a node that still do not serve `OVERDUE_COLD_STARTS` cold starts after
    their creation (an image pull backing off, a crash loop, a bad node): covered on demand
    like spot with no node, as they may not serve at all. One on track is not: it serves no
    later than an on-demand replica asked for now."""
    return sum(
        1 for c in spot.placed_starting_since if now - c > OVERDUE_COLD_STARTS * cold_start_s
    )


#: A spot pod with no node is given this many times the longest wait for a node the
#: workload's live pods took (a provisioner starting a node for each) before it is covered.
PLACEMENT_GRACE = 1.5


def placement_grace(spot: WorkloadFigures, cold_start_s: float) -> float:
    """How long a spot pod may wait for a node before it is counted as not given by the
    market: `PLACEMENT_GRACE` × the workload's measured time to a node (`time_to_node_s`), at
    most one cold start; 0 (at once) where pods find room on a node or nothing is measured.
    Where a provisioner starts a node for every spot pod, covering each at once would ask
    for on demand at every spot scale-up and release it a node's start later."""
    if not spot.time_to_node_s:
        return 0.0
    return min(PLACEMENT_GRACE * spot.time_to_node_s, cold_start_s)


def waiting_for_market(spot: WorkloadFigures, now: float, cold_start_s: float) -> int:
    """Spot pods with no node that the market may not give, covered on demand: those waiting
    longer than `placement_grace`, and those whose creation time is unknown."""
    grace = placement_grace(spot, cold_start_s)
    unknown = max(0, spot.unplaced_replicas - len(spot.unplaced_since))
    return unknown + sum(1 for c in spot.unplaced_since if grace <= 0 or now - c >= grace)


#: The words of `plan_spot`'s warning for an on-demand fleet below its P50 base.
BELOW_BASE_WARNING = "so spot carries typical traffic, not only bursts"


@dataclass(frozen=True, slots=True)
class PolicyPlan:
    spot: SpotPlan
    """The spot plan (beside the planned on-demand base with `onDemandTargetRef`, else beside
    the on-demand replicas running)."""
    on_demand_replicas: int | None = None
    """With `onDemandTargetRef`: the count for that workload (`plan_fleet`'s on-demand fleet
    less the other on-demand workloads' replicas, within its limits); else None."""
    on_demand_cover: int = 0
    """Of `on_demand_replicas`, the cover (`FleetPlan.cover_replicas`): Auto mode adds it
    after the governor, so its release is not held by the scale-down window."""


def policy_plan(
    policy: PolicyView,
    figures: Mapping[str, WorkloadFigures],
    prices: PriceSheet,
    history: DemandHistory,
    now: float,
    global_cap: int | None = None,
) -> tuple[PolicyPlan | None, str]:
    """The plan for one policy's workloads (by workload name), or None and why not."""
    spot = policy.spot
    if spot is None:
        return None, "spot planning is off"
    kind, name = spot.target
    if name not in figures:
        return None, f"spotTargetRef {kind} {name} is not among the policy's workloads"
    od_target = spot.on_demand_target
    if od_target is not None and (od_target[1] not in figures or od_target[1] == name):
        return None, (
            f"onDemandTargetRef {od_target[0]} {od_target[1]} is not among the policy's "
            "workloads other than the spot one"
        )
    base = [f for w, f in figures.items() if w != name]
    everything = list(figures.values())
    if any(f.stale for f in everything) or any(f.total_tokens_per_second is None for f in base):
        return None, "inputs are missing or stale: no recommendation (holding)"
    demand = sum(f.total_tokens_per_second or 0.0 for f in everything)
    key = (policy.namespace, policy.name)
    peaks = policy_burst_peaks(everything)
    burst = serviceable_rate(peaks, spot.queue_s, BURST_STEP_S) if peaks else None
    history.add(key, now, demand, burst)
    capacities = [c for f in base for c in [replica_capacity(f)] if c]
    if not capacities:
        return None, "no replica capacity: set spec.model, or wait for GPU utilization data"
    gpus = sum(sum(f.gpus.values()) for f in base)
    replicas = sum(sum(f.replicas.values()) for f in base)
    gpu_names = {g for f in everything for g in f.gpu.split(",") if g}
    if len(gpu_names) != 1 or not replicas or not gpus:
        return None, "the on-demand workloads need running GPU pods of one GPU type"
    gpu = next(iter(gpu_names))
    try:
        on_demand_usd = prices.usd_per_gpu_hour(gpu, CapacityType.ON_DEMAND)
        spot_usd = prices.usd_per_gpu_hour(gpu, CapacityType.SPOT)
    except CostEngineError as exc:
        return None, f"no price: {exc}"
    economics = spot.economics(
        min(capacities),
        gpus / replicas,
        on_demand_usd,
        spot_usd,
        measured_cold_start(figures[name], base),
    )
    # The planner's lead is its reaction time (at least the rate window): a rise just after
    # the previous tick is seen at this one, and a spot replica ordered now serves a cold start
    # later, so the fleet a tick plans carries demand for a tick interval and a cold start,
    # and the burst margin counts rises within that many samples. The sustained level is the
    # median over the scale-down window, whose maximum the actuator holds. The history passed
    # is the samples before this tick's, which is passed as the current one.
    previous = history.previous(key, before=now)
    reaction_s = economics.cold_start_s + (0.0 if previous is None else now - previous)
    lead = history.count(key, since=now - max(reaction_s, policy.window_s), before=now)
    level = history.count(key, since=now - spot.scale_down_window_s, before=now)
    on_demand = sum(f.replicas.get(CapacityType.ON_DEMAND, 0) for f in base)
    # Bursts may queue within `burstQueueSeconds` only while every spot replica serves and
    # stays: while some start (a preemption's replacement, a scale-up) or are under a notice,
    # the queue is theirs to carry, as in the backtest's planner.
    target = figures[name]
    queue = burst is not None and target.starting_replicas == 0 and target.noticed_replicas == 0
    inputs = {
        "recent_peak_horizon": lead,
        "level_horizon": level,
        "burst_history": history.burst_values(key, before=now) if queue else None,
        "current_burst": burst if queue else None,
    }
    limits = spot.limits(global_cap)
    try:
        if od_target is None:
            plan = plan_spot(
                history.values(key, before=now),
                demand,
                on_demand,
                economics,
                limits,
                spot.traits,
                **inputs,  # type: ignore[arg-type]
            )
            return PolicyPlan(plan), "; ".join(plan.reasons)
        # Both halves, as the backtest's planner sizes them. The other on-demand workloads
        # (if any) stay as they run; spot with no node past the wait its workload's pods
        # took for one (the market may not give one) or leaving under a notice is carried on
        # demand meanwhile, and on demand is released only as spot serves. A spot pod
        # starting on its node is not covered (it serves no later than an on-demand replica
        # asked for now would) unless it is overdue.
        fixed = sum(
            f.replicas.get(CapacityType.ON_DEMAND, 0)
            for w, f in figures.items()
            if w not in (name, od_target[1])
        )
        fleet = plan_fleet(
            history.values(key, before=now),
            demand,
            economics,
            limits,
            spot.traits,
            base_rule=spot.on_demand_base,
            on_demand_now=on_demand,
            spot_ready=max(0, target.serving_replicas - target.noticed_replicas),
            spot_not_serving=waiting_for_market(target, now, economics.cold_start_s)
            + overdue(target, now, economics.cold_start_s)
            + target.noticed_replicas,
            **inputs,  # type: ignore[arg-type]
        )
    except CostEngineError as exc:
        return None, f"planner: {exc}"
    wanted = fleet.on_demand_replicas - fixed
    most = spot.on_demand_max_replicas or spot.on_demand_min_replicas

    def within(n: int) -> int:
        return min(max(n, spot.on_demand_min_replicas), most)

    count = within(wanted)
    od_base = within(fleet.base_replicas - fixed)
    # Below the P50 base is what the Fraction rule chooses: not a warning here.
    reasons = [
        r
        for r in fleet.spot.reasons
        if not (spot.on_demand_base == "fraction" and BELOW_BASE_WARNING in r)
    ]
    if fleet.cover_replicas:
        reasons.append(
            f"note: {fleet.cover_replicas} on-demand replica"
            f"{'s' if fleet.cover_replicas != 1 else ''} for spot that has no node yet or is "
            "overdue, is under a preemption notice, or is yet to replace on demand"
        )
    if count != wanted:
        reasons.append(
            f"warning: the on-demand plan is {wanted} replicas for {od_target[1]}, held to "
            f"onDemandMinReplicas..onDemandMaxReplicas ({spot.on_demand_min_replicas}..{most})"
        )
    return PolicyPlan(fleet.spot, count, max(0, count - od_base)), "; ".join(reasons)


def notice_note(noticed: int, replacements: int) -> str:
    """The recommendation's note on spot replicas under a preemption notice."""
    pods = f"{noticed} spot replica{'s' if noticed != 1 else ''}"
    asked = (
        f"{replacements} replacement{'s' if replacements != 1 else ''} asked for now, to start "
        "before the preemption"
        if replacements
        else "none replaced"
    )
    short = (
        " (the plan keeps fewer, or maxReplicas or the global cap leave no more room)"
        if replacements < noticed
        else ""
    )
    return f"note: {pods} under a preemption notice; {asked}{short}"


def with_recommendations(
    policies: Iterable[PolicyView],
    figures: Mapping[tuple[str, str, str], WorkloadFigures],
    default_prices: PriceSheet,
    history: DemandHistory,
    now: float,
    global_cap: int | None = None,
) -> dict[tuple[str, str, str], WorkloadFigures]:
    """The tick's figures, with each planned policy's recommendation on its spot workload."""
    out = dict(figures)
    grouped = by_policy(figures)
    planned = []
    for policy in policies:
        if policy.spot is None:
            continue
        planned.append((policy.namespace, policy.name))
        mine = {w: f for (_, _, w), f in grouped.get(planned[-1], {}).items()}
        planned_now, why = policy_plan(
            policy, mine, policy.prices or default_prices, history, now, global_cap
        )
        od_target = policy.spot.on_demand_target
        od_key = None if od_target is None else (policy.namespace, policy.name, od_target[1])
        if od_key is not None and od_key in out:  # absent without a plan (RELIABILITY 1)
            out[od_key] = replace(
                out[od_key],
                on_demand_recommended_replicas=None
                if planned_now is None
                else planned_now.on_demand_replicas,
                on_demand_cover_replicas=0 if planned_now is None else planned_now.on_demand_cover,
            )
        key = (policy.namespace, policy.name, policy.spot.target[1])
        if key not in out:
            continue
        if planned_now is None:  # absent, not a number from another tick (RELIABILITY 1)
            out[key] = replace(
                out[key],
                spot_recommended_replicas=None,
                spot_projected_savings_usd_per_hour=None,
                spot_demand_rising=False,
                spot_note=why,
                spot_refusal="",
            )
            continue
        plan = planned_now.spot
        noticed = out[key].noticed_replicas
        # Spot under notice: replaced on spot, or with an on-demand target, covered on demand
        # (`policy_plan`), as the backtest's planner does.
        extra = (
            notice_replacements(plan.spot_replicas, noticed, policy.spot.limits(global_cap))
            if od_target is None
            else 0
        )
        if noticed and od_target is None:
            why = "; ".join(x for x in (why, notice_note(noticed, extra)) if x)
        out[key] = replace(
            out[key],
            spot_recommended_replicas=plan.spot_replicas + extra,
            spot_demand_rising=plan.demand_rising,
            spot_projected_savings_usd_per_hour=plan.savings_usd_per_hour
            if math.isfinite(plan.savings_usd_per_hour)
            else None,
            spot_note=why,
            spot_refusal="; ".join(r for r in plan.reasons if r.startswith("refused:")),
        )
    history.forget_except(planned)
    return out
