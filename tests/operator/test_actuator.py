"""Auto mode's decisions (actuator.Actuator.decide): clamps, step limits, stabilization, pause,
conflicts with other autoscalers, and holding on missing data. Pure: no API calls here; the
end-to-end test (tests/e2e/test_operator_e2e.py) scales a workload through the emulator."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from costengine.pricing import CapacityType
from costoperator.actuator import (
    PAUSE_ANNOTATION,
    Actuator,
    RecordedCover,
    Step,
    StepKind,
    refreshed_cover,
)
from costoperator.figures import PolicyView, SpotView, WorkloadFigures
from costoperator.state import ClusterState

NS, SPOT = "inference", "llama70b-spot"


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"namespace": NS, "name": name, "labels": {"app": "llama70b"}},
        "spec": {"replicas": replicas},
    }


def policy(**spot: Any) -> PolicyView:
    view = SpotView(mode="Auto", target=("Deployment", SPOT), max_replicas=8)
    return PolicyView(NS, "llama70b", "5m", 300.0, spot=replace(view, **spot))


def figures(recommended: int | None, note: str = "") -> dict[tuple[str, str, str], Any]:
    f = WorkloadFigures(
        namespace=NS,
        policy="llama70b",
        workload=SPOT,
        model="llama-2-70b",
        gpu="A100-80GB",
        engine="vllm",
        hourly_cost_usd={CapacityType.SPOT: 2.92},
        gpus={CapacityType.SPOT: 4.0},
        replicas={CapacityType.SPOT: 1},
        spot_recommended_replicas=recommended,
        spot_note=note,
    )
    return {(NS, "llama70b", SPOT): f}


@pytest.fixture
def cluster() -> ClusterState:
    state = ClusterState()
    state.upsert_workload("Deployment", deployment(SPOT, 1))
    return state


def decide(
    actuator: Actuator,
    cluster: ClusterState,
    recommended: int | None,
    now: float,
    view: PolicyView | None = None,
    annotations: dict[str, str] | None = None,
    data_ok: bool = True,
) -> Step:
    step = actuator.decide(
        view or policy(),
        figures(recommended),
        cluster,
        annotations=annotations,
        data_ok=data_ok,
        now=now,
    )
    if step.kind is StepKind.SCALE:  # as the API would: the workload now has that count
        cluster.upsert_workload("Deployment", deployment(SPOT, step.desired or 0))
    return step


def test_scale_up_is_step_limited_and_once_per_period(cluster: ClusterState) -> None:
    actuator = Actuator()
    step = decide(actuator, cluster, 7, now=0)
    assert (step.kind, step.current, step.desired, step.direction) == (StepKind.SCALE, 1, 3, "up")
    assert decide(actuator, cluster, 7, now=30).kind is StepKind.HOLD  # within the 60 s period
    step = decide(actuator, cluster, 7, now=61)
    assert (step.desired, step.direction) == (5, "up")


def test_scale_down_waits_out_the_stabilization_window(cluster: ClusterState) -> None:
    actuator = Actuator()
    view = policy(max_step=8)
    assert decide(actuator, cluster, 6, now=0, view=view).desired == 6
    assert decide(actuator, cluster, 2, now=100, view=view).kind is StepKind.HOLD
    assert decide(actuator, cluster, 2, now=299, view=view).kind is StepKind.HOLD
    step = decide(actuator, cluster, 2, now=401, view=view)
    assert (step.kind, step.desired, step.direction) == (StepKind.SCALE, 2, "down")


def test_a_spot_scale_down_waits_while_demand_rises(fleet: ClusterState) -> None:
    """The window lets spot go from 6 to 2, but the tick's demand rose past the slack
    (`spot_demand_rising`): spot holds at 6 and scales down at the next tick that does not
    rise. The on-demand target's scale-down is not held by it (spot carries the bursts)."""
    actuator = Actuator()
    view = od_policy(max_step=8)

    def tick(spot: int, on_demand: int, now: float, rising: bool) -> dict[str, Step]:
        running = fleet.workload(NS, "Deployment", OD)
        assert running is not None
        figs = both(spot, on_demand, running.replicas or 0)
        key = (NS, "llama70b", SPOT)
        figs[key] = replace(figs[key], spot_demand_rising=rising)
        steps = actuator.decide_all(view, figs, fleet, annotations=None, data_ok=True, now=now)
        for step in steps:
            if step.kind is StepKind.SCALE:
                fleet.upsert_workload("Deployment", deployment(step.workload, step.desired or 0))
        return {s.role: s for s in steps}

    steps = tick(6, 4, 0, rising=False)
    assert (steps["spot"].desired, steps["on-demand"].desired) == (6, 4)
    steps = tick(2, 3, 400, rising=True)
    assert (steps["spot"].kind, steps["spot"].desired) == (StepKind.HOLD, 6)
    assert "demand is rising" in steps["spot"].reason
    assert (steps["on-demand"].kind, steps["on-demand"].desired) == (StepKind.SCALE, 3)
    steps = tick(2, 3, 430, rising=False)
    assert (steps["spot"].kind, steps["spot"].desired) == (StepKind.SCALE, 2)


def test_policy_limits_and_the_global_cap_clamp_the_count(cluster: ClusterState) -> None:
    step = decide(Actuator(), cluster, 50, now=0, view=policy(max_step=100, max_replicas=4))
    assert step.desired == 4
    cluster.upsert_workload("Deployment", deployment(SPOT, 1))
    step = decide(Actuator(global_cap=2), cluster, 50, now=0, view=policy(max_step=100))
    assert step.desired == 2
    # Below minReplicas is corrected at once, whatever the recommendation.
    cluster.upsert_workload("Deployment", deployment(SPOT, 0))
    step = decide(Actuator(), cluster, 0, now=0, view=policy(min_replicas=2))
    assert (step.kind, step.desired) == (StepKind.SCALE, 2)


@pytest.mark.parametrize(
    ("recommended", "data_ok"),
    [(None, True), (0, False)],
    ids=["no recommendation", "prometheus failed"],
)
def test_missing_data_holds_and_never_scales_down(
    cluster: ClusterState, recommended: int | None, data_ok: bool
) -> None:
    cluster.upsert_workload("Deployment", deployment(SPOT, 5))
    actuator = Actuator()
    for t in range(0, 3600, 30):
        step = decide(actuator, cluster, recommended, now=t, data_ok=data_ok)
        assert step.kind is StepKind.HOLD
        assert step.reason.startswith("holding")
    assert cluster.workload(NS, "Deployment", SPOT).replicas == 5  # type: ignore[union-attr]


def test_pause_annotation_stops_scaling_at_the_next_tick(cluster: ClusterState) -> None:
    actuator = Actuator()
    paused = {PAUSE_ANNOTATION: "true"}
    step = decide(actuator, cluster, 7, now=0, annotations=paused)
    assert step.kind is StepKind.PAUSED
    assert decide(actuator, cluster, 7, now=30, annotations={PAUSE_ANNOTATION: "false"}).desired
    assert decide(actuator, cluster, 7, now=200, annotations=paused).kind is StepKind.PAUSED


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        (
            "HorizontalPodAutoscaler",
            {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": SPOT}},
        ),
        ("ScaledObject", {"scaleTargetRef": {"name": SPOT}}),  # kind defaults to Deployment
    ],
)
def test_a_workload_driven_by_another_autoscaler_is_a_conflict(
    cluster: ClusterState, kind: str, spec: dict[str, Any]
) -> None:
    cluster.upsert_scaler(kind, {"metadata": {"namespace": NS, "name": "other"}, "spec": spec})
    step = decide(Actuator(), cluster, 7, now=0)
    assert step.kind is StepKind.CONFLICT
    assert f"{kind}/other" in step.reason
    cluster.delete_scaler(kind, NS, "other")
    assert decide(Actuator(), cluster, 7, now=0).kind is StepKind.SCALE


def test_an_autoscaler_of_another_workload_is_no_conflict(cluster: ClusterState) -> None:
    spec = {"scaleTargetRef": {"kind": "Deployment", "name": "llama70b"}}
    cluster.upsert_scaler(
        "HorizontalPodAutoscaler", {"metadata": {"namespace": NS, "name": "h"}, "spec": spec}
    )
    assert decide(Actuator(), cluster, 3, now=0).kind is StepKind.SCALE


def test_alternating_recommendations_change_replicas_a_few_times_an_hour(
    cluster: ClusterState,
) -> None:
    """RELIABILITY 9: a signal flipping every 30 s tick between 1 and 8."""
    actuator = Actuator()
    scales = [
        step
        for t in range(0, 3600, 30)
        if (step := decide(actuator, cluster, 8 if (t // 30) % 2 else 1, now=t)).kind
        is StepKind.SCALE
    ]
    assert [s.direction for s in scales] == ["up"] * len(scales)  # never back down
    assert len(scales) <= 4  # 1 → 3 → 5 → 7 → 8


# --- with an on-demand target (spec.spot.onDemandTargetRef) ------------------------------------

OD = "llama70b"


def od_policy(**spot: Any) -> PolicyView:
    return policy(
        on_demand_target=("Deployment", OD),
        on_demand_min_replicas=1,
        on_demand_max_replicas=6,
        max_spot_fraction=0.7,
        **spot,
    )


def both(
    spot: int | None, on_demand: int | None, od_running: int, cover: int = 0
) -> dict[Any, Any]:
    out = figures(spot)
    out[(NS, "llama70b", OD)] = replace(
        out[(NS, "llama70b", SPOT)],
        workload=OD,
        hourly_cost_usd={CapacityType.ON_DEMAND: 8.84 * od_running},
        gpus={CapacityType.ON_DEMAND: 4.0 * od_running},
        replicas={CapacityType.ON_DEMAND: od_running},
        spot_recommended_replicas=None,
        on_demand_recommended_replicas=on_demand,
        on_demand_cover_replicas=cover,
    )
    return out


@pytest.fixture
def fleet() -> ClusterState:
    state = ClusterState()
    state.upsert_workload("Deployment", deployment(SPOT, 1))
    state.upsert_workload("Deployment", deployment(OD, 3))
    return state


def decide_all(
    actuator: Actuator,
    cluster: ClusterState,
    spot: int | None,
    on_demand: int | None,
    now: float,
    view: PolicyView | None = None,
    **kw: Any,
) -> dict[str, Step]:
    running = cluster.workload(NS, "Deployment", OD)
    assert running is not None
    steps = actuator.decide_all(
        view or od_policy(),
        both(spot, on_demand, running.replicas or 0, kw.get("cover", 0)),
        cluster,
        annotations=kw.get("annotations"),
        data_ok=kw.get("data_ok", True),
        now=now,
        on_demand_record=kw.get("on_demand_record"),
        since_on_demand_scale_up_s=kw.get("since_on_demand_scale_up_s"),
    )
    for step in steps:
        if step.kind is StepKind.SCALE:
            cluster.upsert_workload("Deployment", deployment(step.workload, step.desired or 0))
    return {s.role: s for s in steps}


def test_the_on_demand_target_gets_its_own_governed_step(fleet: ClusterState) -> None:
    """Its own limits (1..6) and step limit (+2 a period), its own state: the spot step's
    period does not hold it back, nor it the spot step's."""
    actuator = Actuator()
    steps = decide_all(actuator, fleet, 2, 6, now=0)
    assert (steps["on-demand"].kind, steps["on-demand"].desired) == (StepKind.SCALE, 5)
    assert (steps["spot"].kind, steps["spot"].desired) == (StepKind.SCALE, 2)
    steps = decide_all(actuator, fleet, 3, 9, now=30)  # within both periods: held
    assert steps["on-demand"].desired == 5
    assert steps["spot"].desired == 2
    steps = decide_all(actuator, fleet, 3, 9, now=90)
    assert steps["on-demand"].desired == 6  # onDemandMaxReplicas
    assert steps["spot"].desired == 3
    # Scale-down waits out the window, per role.
    steps = decide_all(actuator, fleet, 0, 1, now=120)
    assert steps["on-demand"].kind is StepKind.HOLD
    assert steps["spot"].kind is StepKind.HOLD
    steps = decide_all(actuator, fleet, 0, 1, now=400)
    assert (steps["on-demand"].desired, steps["spot"].desired) == (1, 0)
    assert actuator.changed(steps["on-demand"])  # each role keeps its own previous kind
    assert actuator.changed(steps["spot"])


def test_spot_is_held_to_the_fraction_of_the_on_demand_fleet_left(fleet: ClusterState) -> None:
    """3 on demand allow 7 spot at 0.7; a spot recommendation of 8 with the on-demand step
    held at 3 (its window): spot goes to 7, not 8. And when on demand falls, spot above the
    new bound comes down at once (a safety bound), not after the window."""
    actuator = Actuator()
    fleet.upsert_workload("Deployment", deployment(SPOT, 6))
    steps = decide_all(actuator, fleet, 8, 3, now=0)
    assert steps["on-demand"].kind is StepKind.HOLD
    assert steps["spot"].desired == 7
    assert "maxSpotFraction" in steps["spot"].reason
    # 400 s later the on-demand fleet falls to 1 (its window passed): 2 spot at most beside it.
    decide_all(actuator, fleet, 7, 3, now=100)
    steps = decide_all(actuator, fleet, 7, 1, now=500)
    assert steps["on-demand"].desired == 1
    assert (steps["spot"].kind, steps["spot"].desired) == (StepKind.SCALE, 2)
    assert steps["spot"].direction == "down"


def test_an_autoscaler_on_the_on_demand_target_holds_both(fleet: ClusterState) -> None:
    spec = {"scaleTargetRef": {"kind": "Deployment", "name": OD}}
    fleet.upsert_scaler(
        "HorizontalPodAutoscaler", {"metadata": {"namespace": NS, "name": "base"}, "spec": spec}
    )
    steps = decide_all(Actuator(), fleet, 4, 5, now=0)
    assert {s.kind for s in steps.values()} == {StepKind.CONFLICT}
    assert all("HorizontalPodAutoscaler/base" in s.reason for s in steps.values())
    assert all(s.desired is None for s in steps.values())


def test_pause_and_missing_data_hold_the_on_demand_target_too(fleet: ClusterState) -> None:
    paused = decide_all(Actuator(), fleet, 4, 5, now=0, annotations={PAUSE_ANNOTATION: "true"})
    assert {s.kind for s in paused.values()} == {StepKind.PAUSED}
    lost = decide_all(Actuator(), fleet, 4, 1, now=0, data_ok=False)
    assert lost["on-demand"].kind is StepKind.HOLD
    assert lost["on-demand"].current == 3  # never scaled down on no data
    # Nor spot by the fraction bound: 1 on demand running allows 2, 6 run; on no data, held.
    fleet.upsert_workload("Deployment", deployment(SPOT, 6))
    fleet.upsert_workload("Deployment", deployment(OD, 1))
    lost = decide_all(Actuator(), fleet, 6, 1, now=0, data_ok=False)
    assert (lost["spot"].kind, lost["spot"].current) == (StepKind.HOLD, 6)
    assert decide_all(Actuator(), fleet, 6, 1, now=0)["spot"].desired == 2  # with data: bound
    unknown = decide_all(Actuator(), fleet, 4, None, now=0)
    assert unknown["on-demand"].kind is StepKind.HOLD


def test_the_on_demand_cover_comes_at_once_and_goes_as_spot_serves(fleet: ClusterState) -> None:
    """The cover (on demand for spot that does not serve) is added after the governor, at
    once and in full (it replaces lost capacity: the fleet does not grow by it), and released
    without waiting out the window; the base part is governed as ever."""
    actuator = Actuator()
    steps = decide_all(actuator, fleet, 2, 3, now=0)  # base 3, as it runs
    assert steps["on-demand"].kind is StepKind.HOLD
    steps = decide_all(actuator, fleet, 2, 5, now=10, cover=2)  # 2 spot replicas with no node
    assert (steps["on-demand"].desired, steps["on-demand"].direction) == (5, "up")
    assert "2 of them cover spot" in steps["on-demand"].reason
    steps = decide_all(actuator, fleet, 4, 6, now=20, cover=3)  # within the step period
    assert steps["on-demand"].desired == 6  # 3 + 3, onDemandMaxReplicas
    steps = decide_all(actuator, fleet, 2, 3, now=40)  # spot serves: the cover goes at once
    assert (steps["on-demand"].desired, steps["on-demand"].direction) == (3, "down")
    # A base that falls still waits out the window.
    steps = decide_all(actuator, fleet, 2, 1, now=50)
    assert steps["on-demand"].kind is StepKind.HOLD


def test_a_restart_resumes_the_cover_from_the_record(fleet: ClusterState) -> None:
    """Base 3 and 2 of cover run (5). A fresh actuator (a restart, a new leader) told by the
    record that 2 of the 5 are cover keeps 5 for the same plan, and releases the cover at once
    when spot serves. Without the record it took the 5 for base and added the cover again (to
    onDemandMaxReplicas, 6);
    a record the workload no longer runs (another count) is not believed."""
    actuator = Actuator()
    decide_all(actuator, fleet, 2, 3, now=0)
    steps = decide_all(actuator, fleet, 2, 5, now=10, cover=2)
    assert (steps["on-demand"].desired, steps["on-demand"].cover) == (5, 2)
    record = RecordedCover(f"Deployment/{OD}", 5, 2)
    resumed = Actuator()
    steps = decide_all(resumed, fleet, 2, 5, now=100, cover=2, on_demand_record=record)
    assert steps["on-demand"].kind is StepKind.HOLD
    assert steps["on-demand"].current == 5
    steps = decide_all(resumed, fleet, 2, 3, now=110, on_demand_record=record)
    assert (steps["on-demand"].desired, steps["on-demand"].direction) == (3, "down")
    # Without the record, or with one for another count or workload: the count is base.
    fleet.upsert_workload("Deployment", deployment(OD, 5))
    for stale in (
        None,
        RecordedCover(f"Deployment/{OD}", 4, 2),
        RecordedCover("Deployment/x", 5, 2),
    ):
        steps = decide_all(Actuator(), fleet, 2, 5, now=100, cover=2, on_demand_record=stale)
        assert steps["on-demand"].desired == 6  # 5 + 2, held to onDemandMaxReplicas


def test_a_hold_whose_cover_changed_rewrites_the_record(fleet: ClusterState) -> None:
    """Base 3 and 2 of cover run (5, recorded so). Spot comes to serve as the base rises to 5:
    the count holds, all of it base now, and the hold's record says so. A restart within the
    step period from the old record would take 2 of the base for cover, release them at once
    and, the period holding the base's rise back, scale the plan's 5 down to 3."""
    actuator = Actuator()
    decide_all(actuator, fleet, 2, 3, now=0)
    steps = decide_all(actuator, fleet, 2, 5, now=10, cover=2)
    assert (steps["on-demand"].desired, steps["on-demand"].cover) == (5, 2)
    old = RecordedCover(f"Deployment/{OD}", 5, 2)
    assert refreshed_cover(steps["on-demand"], old) is None  # a scale writes its own record
    steps = decide_all(actuator, fleet, 2, 5, now=30)  # spot serves; the base is 5
    held = steps["on-demand"]
    assert (held.kind, held.current, held.cover) == (StepKind.HOLD, 5, 0)
    new = refreshed_cover(held, old)
    assert new == RecordedCover(f"Deployment/{OD}", 5, 0)
    assert refreshed_cover(held, new) is None  # written once
    # What each record gives a restart 10 s later (30 s after the recorded scale-up):
    restart = {"since_on_demand_scale_up_s": 30.0}
    steps = decide_all(Actuator(), fleet, 2, 5, now=100, on_demand_record=new, **restart)
    assert (steps["on-demand"].kind, steps["on-demand"].current) == (StepKind.HOLD, 5)
    steps = decide_all(Actuator(), fleet, 2, 5, now=100, on_demand_record=old, **restart)
    assert (steps["on-demand"].desired, steps["on-demand"].direction) == (3, "down")


def test_only_an_on_demand_hold_of_the_recorded_count_rewrites_the_record() -> None:
    record = RecordedCover(f"Deployment/{OD}", 5, 2)

    def step(kind: StepKind, role: str = "on-demand", current: int | None = 5) -> Step:
        return Step(kind, NS, "llama70b", "Deployment", OD, current, current, "none", "", role)

    assert refreshed_cover(step(StepKind.HOLD), record) == RecordedCover(f"Deployment/{OD}", 5, 0)
    for unchanged in (
        step(StepKind.HOLD, role="spot"),
        step(StepKind.HOLD, current=None),
        step(StepKind.HOLD, current=4),  # another count: the record is not believed anyway
        step(StepKind.PAUSED),
        step(StepKind.CONFLICT),
    ):
        assert refreshed_cover(unchanged, record) is None
    assert refreshed_cover(step(StepKind.HOLD), None) is None
    assert refreshed_cover(step(StepKind.HOLD), RecordedCover("Deployment/x", 5, 2)) is None
