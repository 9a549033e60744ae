"""Auto mode: turn each tick's spot recommendation into a scale of the spot workload, safely.

`decide` is pure (no I/O, no clock): from a policy, the tick's figures and the cluster picture
it returns one `Step` — scale to a count, hold, paused or conflict — and keeps the scale
governor's state per policy (`costengine.spotplan.govern`/`hold`). The handler carries a scale
step out through `ScaleClient` (the workload's `scale` subresource, the only write RBAC grants:
RELIABILITY 18), posts an event and counts it in `llmcost_scale_actions_total`.

The safety rules (RELIABILITY 8-13):
- desired replicas are clamped to [minReplicas, maxReplicas] and the operator's global cap;
  scale-up is step-limited per period; scale-down waits out a stabilization window (the
  highest recommendation in it wins), and spot's waits for a tick whose demand does not rise
  past the target utilization's slack (`WorkloadFigures.spot_demand_rising`) — all in
  `costengine.spotplan.govern`;
- `llmcost.io/pause-scaling: "true"` on the policy stops scaling at the next tick; cost export
  goes on;
- a spot workload that an HPA or a KEDA ScaledObject already targets is never scaled: the policy
  gets a `Conflict` condition instead;
- missing, stale or partial data holds the current count (`onMetricsLoss: Hold`): no data is
  never a reason to scale down;
- one active instance: only the holder of the leader Lease calls `decide` (leader.py); a
  standby keeps no governor state, and a new leader starts from what the policy records;
- a restart does not reset the step period: before each scale request the handler writes the
  policy's `status.scaling` (time, from, to); a restarted operator or a new leader passes the
  age of the last recorded scale-up as `since_scale_up_s`, so a second scale-up waits out the
  period even when the first one's process died mid-step. Scale-down needs no record: a fresh
  governor seeds its stabilization window with the current count. Nor does a restart forget
  the on-demand cover: `status.onDemandScaling.coverReplicas` says how much of the count it
  is, so the count is not taken for base (held by the window) with a second cover added;
  a hold whose cover changed rewrites it (`refreshed_cover`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from costengine.errors import CostEngineError
from costengine.pricing import CapacityType
from costengine.spotplan import (
    GovernorLimits,
    GovernorState,
    govern,
    hold,
    spot_fraction_bound,
)
from costoperator.figures import PolicyView, WorkloadFigures
from costoperator.state import ClusterState

PAUSE_ANNOTATION = "llmcost.io/pause-scaling"


class StepKind(StrEnum):
    SCALE = "scale"
    HOLD = "hold"
    PAUSED = "paused"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    namespace: str
    policy: str
    workload_kind: str
    workload: str
    current: int | None
    desired: int | None
    direction: str
    """up, down or none."""
    reason: str
    role: str = "spot"
    """The workload's role in the policy: spot (`spotTargetRef`) or on-demand
    (`onDemandTargetRef`)."""
    cover: int = 0
    """Of `desired` (on demand), the cover for spot that does not serve: written in the
    scale's record (`status.onDemandScaling.coverReplicas`) for a restart to resume from."""

    @property
    def workload_ref(self) -> str:
        """Kind/name, as the scaling record names the workload."""
        return f"{self.workload_kind}/{self.workload}"


@dataclass(frozen=True, slots=True)
class RecordedCover:
    """The cover in the last on-demand scale a policy's status records: for `workload`
    (Kind/name), `cover` of the `to_replicas` asked for."""

    workload: str
    to_replicas: int
    cover: int

    def matches(self, workload: str, replicas: int) -> bool:
        """The record is of `workload`, which still runs what it asked for (cover included)."""
        return (self.workload, self.to_replicas) == (workload, replicas)


def refreshed_cover(step: Step, record: RecordedCover | None) -> RecordedCover | None:
    """The record an on-demand hold must write, or None: the workload still runs the count the
    record asked for, but the cover's share of it changed (spot came to serve while the base
    rose to the same count, or the reverse). A restart resumes from the record, and with the
    old split it would take base for cover and release it at once (a scale-down of capacity
    the plan needs), or cover for base and add it again."""
    if step.kind is not StepKind.HOLD or step.role != ON_DEMAND_ROLE or step.current is None:
        return None
    workload = step.workload_ref
    if record is None or not record.matches(workload, step.current) or record.cover == step.cover:
        return None
    return RecordedCover(workload, step.current, step.cover)


def paused(annotations: Mapping[str, str] | None) -> bool:
    value = (annotations or {}).get(PAUSE_ANNOTATION, "")
    return value.strip().lower() in ("true", "1", "yes")


def governor_limits(policy: PolicyView, global_cap: int | None) -> GovernorLimits:
    spot = policy.spot
    assert spot is not None
    return GovernorLimits(
        min_replicas=spot.min_replicas,
        max_replicas=max(spot.most_replicas(global_cap), spot.min_replicas),
        global_cap=global_cap,
        max_step_up=spot.max_step or 2,
        scale_up_period_s=float(
            spot.scale_up_stabilization_s if spot.scale_up_stabilization_s is not None else 60
        ),
        scale_down_window_s=spot.scale_down_window_s,
    )


def on_demand_limits(policy: PolicyView) -> GovernorLimits:
    """The governor's limits for `onDemandTargetRef`: its min and max, the spot workload's
    step and windows."""
    spot = policy.spot
    assert spot is not None
    most = spot.on_demand_max_replicas or spot.on_demand_min_replicas
    return GovernorLimits(
        min_replicas=spot.on_demand_min_replicas,
        max_replicas=max(most, spot.on_demand_min_replicas),
        max_step_up=spot.max_step or 2,
        scale_up_period_s=float(
            spot.scale_up_stabilization_s if spot.scale_up_stabilization_s is not None else 60
        ),
        scale_down_window_s=spot.scale_down_window_s,
    )


SPOT_ROLE, ON_DEMAND_ROLE = "spot", "on-demand"


@dataclass
class Actuator:
    """Per policy and workload role (spot, on-demand), the governor's state; `decide_all`
    (`decide` per role) is called once per tick per Auto policy."""

    global_cap: int | None = None
    states: dict[tuple[str, str, str], GovernorState] = field(default_factory=dict)
    last: dict[tuple[str, str, str], StepKind] = field(default_factory=dict)
    """Per policy and role, the kind of its previous step (an event marks a change, not
    every tick)."""
    covers: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """Per policy and role, the cover included in the count it last asked for."""

    def forget(self) -> None:
        """Drop every policy's state (this instance stopped leading)."""
        self.states.clear()
        self.last.clear()
        self.covers.clear()

    def forget_except(self, keys: set[tuple[str, str]]) -> None:
        for kept in (self.states, self.last, self.covers):
            for key in [k for k in kept if k[:2] not in keys]:
                del kept[key]

    def changed(self, step: Step) -> bool:
        """Record `step`; whether its kind differs from the previous step of its policy and
        workload role."""
        key = (step.namespace, step.policy, step.role)
        previous, self.last[key] = self.last.get(key), step.kind
        return previous is not step.kind

    def decide_all(
        self,
        policy: PolicyView,
        figures: Mapping[tuple[str, str, str], WorkloadFigures],
        cluster: ClusterState,
        *,
        annotations: Mapping[str, str] | None,
        data_ok: bool,
        now: float,
        since_scale_up_s: float | None = None,
        since_on_demand_scale_up_s: float | None = None,
        on_demand_record: RecordedCover | None = None,
    ) -> list[Step]:
        """The policy's steps: the spot workload's, and with `onDemandTargetRef` the on-demand
        workload's first. With both: a conflict on either holds both (spot is planned beside
        the planned on-demand base), and the spot step is held to the spot fraction of the
        on-demand fleet that the on-demand step leaves (a safety bound, applied at once, as
        the backtest's planner does)."""
        spot_step = self.decide(
            policy,
            figures,
            cluster,
            annotations=annotations,
            data_ok=data_ok,
            now=now,
            since_scale_up_s=since_scale_up_s,
        )
        spot = policy.spot
        if spot is None or spot.on_demand_target is None:
            return [spot_step]
        od_step = self.decide(
            policy,
            figures,
            cluster,
            annotations=annotations,
            data_ok=data_ok,
            now=now,
            since_scale_up_s=since_on_demand_scale_up_s,
            role=ON_DEMAND_ROLE,
            record=on_demand_record,
        )
        conflicts = [s for s in (od_step, spot_step) if s.kind is StepKind.CONFLICT]
        if conflicts:
            reason = "; ".join(s.reason for s in conflicts)
            return [
                replace(s, kind=StepKind.CONFLICT, reason=reason, desired=None, direction="none")
                for s in (od_step, spot_step)
            ]
        od_figure = figures.get((policy.namespace, policy.name, spot.on_demand_target[1]))
        if not data_ok or od_figure is None or od_figure.on_demand_recommended_replicas is None:
            return [od_step, spot_step]  # holding: no data is never a reason to scale down
        return [od_step, self._within_fraction(policy, figures, od_step, spot_step)]

    def _within_fraction(
        self,
        policy: PolicyView,
        figures: Mapping[tuple[str, str, str], WorkloadFigures],
        od_step: Step,
        spot_step: Step,
    ) -> Step:
        spot = policy.spot
        assert spot is not None
        if spot_step.current is None or spot_step.kind not in (StepKind.SCALE, StepKind.HOLD):
            return spot_step
        on_demand_now = sum(
            f.replicas.get(CapacityType.ON_DEMAND, 0)
            for (ns, pol, w), f in figures.items()
            if (ns, pol) == (policy.namespace, policy.name) and w != spot.target[1]
        )
        after = on_demand_now
        if od_step.kind is StepKind.SCALE and od_step.desired is not None:
            after += od_step.desired - (od_step.current or 0)
        bound = spot_fraction_bound(spot.limits(self.global_cap).max_spot_fraction, after)
        desired = spot_step.desired if spot_step.desired is not None else spot_step.current
        if bound is None or desired <= bound:
            return spot_step
        if bound == spot_step.current:
            return replace(spot_step, kind=StepKind.HOLD, desired=bound, direction="none")
        return replace(
            spot_step,
            kind=StepKind.SCALE,
            desired=bound,
            direction="up" if bound > spot_step.current else "down",
            reason=f"held to maxSpotFraction beside {after} on-demand replicas",
        )

    def decide(
        self,
        policy: PolicyView,
        figures: Mapping[tuple[str, str, str], WorkloadFigures],
        cluster: ClusterState,
        *,
        annotations: Mapping[str, str] | None,
        data_ok: bool,
        now: float,
        since_scale_up_s: float | None = None,
        role: str = SPOT_ROLE,
        record: RecordedCover | None = None,
    ) -> Step:
        """The step of the policy's spot workload, or with `role` ON_DEMAND_ROLE of its
        `onDemandTargetRef` (its own limits, state and cover). `since_scale_up_s`: the age of
        that workload's last scale-up recorded in the policy's status, and `record` the cover
        in its last recorded scale, used only when this actuator has no state for it yet
        (after a restart or a change of leader)."""
        spot = policy.spot
        assert spot is not None, "decide() is for policies with spot planning"
        on_demand = role == ON_DEMAND_ROLE
        target = spot.on_demand_target if on_demand else spot.target
        assert target is not None, "the on-demand role needs an onDemandTargetRef"
        kind, name = target
        figure = figures.get((policy.namespace, policy.name, name))
        rising = False
        if figure is None:
            recommended, note, cover = None, "", 0
        elif on_demand:
            recommended = figure.on_demand_recommended_replicas
            note, cover = figure.spot_note, figure.on_demand_cover_replicas
        else:
            recommended, note, cover = figure.spot_recommended_replicas, figure.spot_note, 0
            # Spot carries the bursts: its scale-down waits while demand rises (`govern`).
            rising = figure.spot_demand_rising
        return self._decide(
            policy,
            role,
            kind,
            name,
            recommended,
            note,
            on_demand_limits(policy) if on_demand else governor_limits(policy, self.global_cap),
            cluster,
            annotations=annotations,
            data_ok=data_ok,
            now=now,
            since_scale_up_s=since_scale_up_s,
            cover=cover,
            record=record,
            rising=rising,
        )

    def _decide(
        self,
        policy: PolicyView,
        role: str,
        kind: str,
        name: str,
        recommended: int | None,
        note: str,
        limits: GovernorLimits,
        cluster: ClusterState,
        *,
        annotations: Mapping[str, str] | None,
        data_ok: bool,
        now: float,
        since_scale_up_s: float | None,
        cover: int = 0,
        record: RecordedCover | None = None,
        rising: bool = False,
    ) -> Step:
        """`recommended` includes `cover` replicas that the governor does not hold; `rising`
        holds a scale-down (`costengine.spotplan.govern`)."""
        key = (policy.namespace, policy.name, role)

        def step(
            what: StepKind,
            reason: str,
            current: int | None = None,
            desired: int | None = None,
            direction: str = "none",
            cover: int = 0,
        ) -> Step:
            return Step(
                what,
                policy.namespace,
                policy.name,
                kind,
                name,
                current,
                desired,
                direction,
                reason,
                role,
                cover,
            )

        scaler = cluster.scaler_of(policy.namespace, kind, name)
        if scaler is not None:
            return step(
                StepKind.CONFLICT,
                f"{kind} {name} is already scaled by {scaler}; the operator will not scale it",
            )
        if paused(annotations):
            return step(StepKind.PAUSED, f"{PAUSE_ANNOTATION} is set: scaling paused")
        workload = cluster.workload(policy.namespace, kind, name)
        if workload is None or workload.replicas is None:
            return step(StepKind.HOLD, f"{kind} {name} not found or has no replica count")
        current = workload.replicas
        state = self.states.get(key)
        fresh = state is None
        if state is None:
            resumed = (
                now - max(since_scale_up_s, 0.0)
                if since_scale_up_s is not None and since_scale_up_s < limits.scale_up_period_s
                else None
            )
            state = GovernorState(last_scale_up_at=resumed)
        # The cover (on demand for spot that does not serve) is added after the governor, at
        # once and in full: it replaces capacity the fleet lost or has yet to gain, so the
        # fleet does not grow by it, and a market that takes several spot replicas at once
        # must not wait out step periods (the backtest's storms: 0.45-4.7% of tokens short
        # with the cover at a step's worth, 0% without). Its release as spot serves is not
        # held by the scale-down window. The governor sees the count without the cover it
        # added last time (after a restart, the cover its record says).
        previous_cover = self.covers.get(key, 0)
        if fresh and record is not None and record.matches(f"{kind}/{name}", current):
            previous_cover = min(record.cover, current)
        try:
            if not data_ok or recommended is None:
                why = (
                    "Prometheus queries failed or were partial"
                    if not data_ok
                    else note or "no recommendation"
                )
                decision = hold(state, current, now, f"holding: {why}", limits)
                desired, cover_now = decision.desired, previous_cover
            else:
                base_now = max(0, current - previous_cover)
                decision = govern(state, base_now, recommended - cover, now, limits, rising=rising)
                desired = limits.clamp(decision.desired + cover)
                cover_now = desired - decision.desired
        except CostEngineError as exc:  # e.g. a clock that went backwards: start afresh
            self.states.pop(key, None)
            self.covers.pop(key, None)
            return step(StepKind.HOLD, f"governor: {exc}", current)
        self.states[key] = decision.state
        if cover_now:
            self.covers[key] = cover_now
        else:
            self.covers.pop(key, None)
        reason = decision.reason
        if cover_now:
            reason = f"{reason}; {cover_now} of them cover spot that does not serve"
        if desired == current:
            return step(StepKind.HOLD, reason, current, current, cover=cover_now)
        return step(
            StepKind.SCALE,
            reason,
            current,
            desired,
            "up" if desired > current else "down",
            cover=cover_now,
        )


class ScaleClient(Protocol):
    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> None: ...

    def record(
        self, namespace: str, policy: str, record: Mapping[str, Any], on_demand: bool = False
    ) -> None:
        """Merge `record` into the policy's `status.scaling`, or with `on_demand` its
        `status.onDemandScaling` (written before the scale)."""
        ...


class KubernetesScaleClient:
    """Writes `spec.replicas` through the workload's `scale` subresource (merge patch), and the
    scaling record into the policy's status subresource."""

    def __init__(self) -> None:
        from kubernetes import client

        from costoperator.kubeapi import PolicyStatusClient, api_client

        api = api_client()
        self._apps = client.AppsV1Api(api)
        self._status = PolicyStatusClient(api)

    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> None:
        body: dict[str, Any] = {"spec": {"replicas": replicas}}
        patch = (
            self._apps.patch_namespaced_deployment_scale
            if kind == "Deployment"
            else self._apps.patch_namespaced_stateful_set_scale
        )
        patch(name, namespace, body, _content_type="application/merge-patch+json")

    def record(
        self, namespace: str, policy: str, record: Mapping[str, Any], on_demand: bool = False
    ) -> None:
        field = "onDemandScaling" if on_demand else "scaling"
        self._status.patch(namespace, policy, {field: dict(record)})
