"""The spot planner in the operator: inputs gathered from a tick's figures, the result on the
spot workload's figures and on /metrics, and no recommendation without data."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import generate_latest

from costengine.pricing import CapacityType, PriceSheet, seed_price_sheet
from costengine.spotplan import (
    ReplicaEconomics,
    SpotLimits,
    SpotPlan,
    WorkloadTraits,
    plan_spot,
)
from costoperator.exporter import Snapshot, build_registry
from costoperator.figures import PolicyView, SpotView, WorkloadFigures
from costoperator.spot import (
    DemandHistory,
    policy_burst_peaks,
    policy_plan,
    replica_capacity,
    with_recommendations,
)

OD, SPOT = CapacityType.ON_DEMAND, CapacityType.SPOT


def plan_for_policy(
    policy: PolicyView,
    figures: dict[str, WorkloadFigures],
    prices: PriceSheet,
    history: DemandHistory,
    now: float,
    global_cap: int | None = None,
) -> tuple[SpotPlan | None, str]:
    """`policy_plan`'s spot plan (the one these tests look at), or None and why not."""
    planned, why = policy_plan(policy, figures, prices, history, now, global_cap)
    return (None if planned is None else planned.spot), why


PRICES = seed_price_sheet()  # A100-80GB: $2.21 on demand, $0.73 spot
CAPACITY = 2000.0  # tokens/s one 4-GPU replica serves fully busy


def figures(
    workload: str,
    replicas: int,
    capacity: CapacityType,
    tokens_per_second: float | None,
    *,
    stale: bool = False,
    replica_capacity: float | None = CAPACITY,
    gpu_utilization: float | None = None,
) -> WorkloadFigures:
    return WorkloadFigures(
        namespace="inference",
        policy="llama70b",
        workload=workload,
        model="llama-2-70b",
        gpu="A100-80GB",
        engine="vllm",
        hourly_cost_usd={capacity: replicas * 4 * (2.21 if capacity is OD else 0.73)},
        gpus={capacity: replicas * 4.0},
        replicas={capacity: replicas},
        input_tokens_per_second=None if tokens_per_second is None else tokens_per_second * 0.8,
        output_tokens_per_second=None if tokens_per_second is None else tokens_per_second * 0.2,
        gpu_utilization_ratio=gpu_utilization,
        replica_capacity_tokens_per_second=replica_capacity,
        stale=stale,
    )


def policy(**spot: object) -> PolicyView:
    return PolicyView(
        namespace="inference",
        name="llama70b",
        window="5m",
        window_s=300,
        spot=SpotView(
            mode="Recommend",
            target=("Deployment", "llama70b-spot"),
            **spot,
        ),
    )


def fleet(
    od_tps: float | None, spot_tps: float = 0.0, spot_replicas: int = 0, **kw: object
) -> dict[str, WorkloadFigures]:
    return {
        "llama70b": figures("llama70b", 2, OD, od_tps, **kw),
        "llama70b-spot": figures("llama70b-spot", spot_replicas, SPOT, spot_tps),
    }


def test_burst_beyond_the_on_demand_base_gets_spot_replicas_and_savings() -> None:
    # 2 on-demand replicas run at most 2 × 2000 × 0.7 = 2800 tokens/s at target utilization;
    # 5000 tokens/s × 1.1 headroom needs ceil(5500 / 1400) = 4 replicas: 2 more on spot.
    plan, why = plan_for_policy(policy(), fleet(5000), PRICES, DemandHistory(), now=100)
    assert plan is not None, why
    expected = plan_spot(
        [5000],
        5000,
        2,
        ReplicaEconomics(CAPACITY, 4, 2.21, 0.73),
        SpotLimits(max_replicas=8),
        recent_peak_horizon=1,
    )
    assert plan.spot_replicas == expected.spot_replicas == 2
    assert plan.savings_usd_per_hour == pytest.approx(expected.savings_usd_per_hour)
    assert plan.savings_usd_per_hour > 0


def test_the_recent_peak_sizes_spot_but_an_old_one_does_not() -> None:
    history = DemandHistory()
    plan_for_policy(policy(), fleet(9000), PRICES, history, now=0)  # a burst, an hour ago
    plan, _ = plan_for_policy(policy(), fleet(2000), PRICES, history, now=3000)
    assert plan is not None
    assert plan.spot_replicas == 0
    plan, _ = plan_for_policy(policy(), fleet(2000), PRICES, history, now=3030)
    history.add(("inference", "llama70b"), 3040, 8000)  # a burst within the cold start
    plan, _ = plan_for_policy(policy(), fleet(2000), PRICES, history, now=3050)
    assert plan is not None
    assert plan.spot_replicas > 0


def spot_per_tick(demand: list[float], **spot: object) -> list[int]:
    """The recommended spot replicas at each of `demand`'s ticks (30 s apart, from 0), the
    policy's history carried from tick to tick; the last tick must give a plan."""
    history = DemandHistory()
    replicas = []
    for i, tps in enumerate(demand):
        plan, why = plan_for_policy(policy(**spot), fleet(tps), PRICES, history, now=30 * i)
        replicas.append(-1 if plan is None else plan.spot_replicas)
    assert plan is not None, why
    return replicas


def test_noise_within_the_slack_is_sized_at_the_level_over_the_scale_down_window() -> None:
    # 2 on-demand replicas of 2,000 tokens/s (1,400 at 70%). Noisy traffic around 4,000
    # tokens/s for five minutes, now at a high of 4,700: sized as it is, ceil(4700 / 1400) = 4
    # replicas (2 spot); the level over the 300 s scale-down window is the median, 4,200:
    # ceil(4200 / 1400) = 3 (1 spot), which still serve 4,700 at full throughput.
    noisy = [4000.0, 4600.0, 3500.0, 4400.0, 3700.0] * 2 + [4700.0]
    assert spot_per_tick(noisy)[-1] == 1
    assert spot_per_tick(noisy, scale_down_stabilization_s=300)[-1] == 1
    # No window: the sample is the level.
    assert spot_per_tick(noisy, scale_down_stabilization_s=0)[-1] == 2


def test_a_fall_lowers_the_level_once_two_of_the_latest_three_samples_show_it() -> None:
    # 4,000 tokens/s for five minutes: ceil(4000 / 1400) = 3 replicas, 1 spot beside the 2 on
    # demand. One tick at 1,000 is one odd sample: the median of the latest three is still
    # 4,000 (this tick's sample counts once, not also as the history's last). A second one is a
    # fall: the level is 1,000 at once, not after half the window's median, and the 2 on-demand
    # replicas serve it (the actuator's scale-down window still holds the spot replica).
    assert spot_per_tick([4000.0] * 10 + [1000.0, 1000.0])[-2:] == [1, 0]


def test_the_burst_quantile_of_the_policy_sets_the_margin() -> None:
    # An hour at 1,000 tokens/s with one burst to 5,000: at 1,000 now, the rises seen within
    # the lead (300 s, 10 ticks) are 4,000 for the 10 ticks before the burst, 1 in 12 of the
    # hour's samples, and 0 for the rest. The default P90 keeps no margin for a burst that
    # rare (1,000 needs 1 replica, served by the 2 on demand); burstQuantile 0.99 keeps one
    # burst's worth at full throughput: ceil(5000 / 2000) = 3 replicas, 1 spot.
    hour = [5000.0 if i == 60 else 1000.0 for i in range(121)]
    assert spot_per_tick(hour)[-1] == 0
    assert spot_per_tick(hour, burst_quantile=0.99)[-1] == 1


def test_the_policys_cold_start_sets_the_lead_and_refuses_spot_over_five_minutes() -> None:
    # A 1-minute rate window; 1,000 tokens/s (the 2 on-demand replicas serve it) with a burst
    # to 5,000 every 15 minutes, now quiet. The burst margin counts the rises seen within the
    # lead, a tick and a cold start: 30 + 120 s (5 ticks) sees the burst from 5 of every 30
    # samples, over the P90's tenth, so it keeps ceil(5000 / 2000) = 3 replicas, 1 spot; a
    # 30 s cold start (the lead is then the 60 s rate window, 2 ticks) sees it from 2 in 30,
    # under a tenth.
    quiet, burst = [1000.0] * 29, [5000.0]
    demand = (quiet + burst) * 4 + quiet[:1]

    def spot_now(**spot: object) -> int:
        history = DemandHistory()
        view = replace(policy(**spot), window="1m", window_s=60)
        for i, tps in enumerate(demand):
            plan, why = plan_for_policy(view, fleet(tps), PRICES, history, now=30 * i)
        assert plan is not None, why
        return plan.spot_replicas

    assert spot_now() == 1
    assert spot_now(cold_start_s=30) == 0
    plan, why = plan_for_policy(
        policy(cold_start_s=600), fleet(5000), PRICES, DemandHistory(), now=1
    )
    assert plan is not None
    assert plan.refused
    assert plan.spot_replicas == 0
    assert "cold start (600 s) exceeds the seed's 300 s" in why


def test_the_lead_spans_the_tick_that_sees_a_rise_and_the_cold_start() -> None:
    # 1,000 tokens/s (the 2 on-demand replicas serve it) with a burst to 5,000 every 45 ticks,
    # now quiet. A rise just after a tick is seen at the next one, and the replicas that tick
    # asks for serve a cold start later, so the lead is the tick interval and the cold start:
    # 30 + 120 s, 5 ticks, sees the burst from 5 of every 45 samples, over the P90's tenth,
    # and keeps ceil(5000 / 2000) = 3 replicas, 1 spot. The cold start alone (4 ticks, 4 in
    # 45) is under it and keeps none; so is a 90 s cold start with its tick (4 ticks); ticks
    # 15 s apart see it with a 120 s cold start from 9 of every 45 samples: 1 spot again.
    quiet, burst = [1000.0] * 44, [5000.0]
    demand = (quiet + burst) * 3 + quiet[:1]

    def spot_now(tick_s: float = 30, **spot: object) -> int:
        history = DemandHistory()
        view = replace(policy(**spot), window="1m", window_s=60)
        for i, tps in enumerate(demand):
            plan, why = plan_for_policy(view, fleet(tps), PRICES, history, now=tick_s * i)
        assert plan is not None, why
        return plan.spot_replicas

    assert spot_now() == 1
    assert spot_now(cold_start_s=90) == 0
    assert spot_now(tick_s=15) == 1
    history = DemandHistory()
    assert history.previous(("inference", "llama70b"), before=10) is None
    history.add(("inference", "llama70b"), 0, 1.0)
    history.add(("inference", "llama70b"), 30, 1.0)
    assert history.previous(("inference", "llama70b"), before=30) == 0
    assert history.previous(("inference", "llama70b"), before=31) == 30


def test_the_pods_measured_cold_start_is_used_unless_the_policy_sets_one() -> None:
    def why_at(spot_start: float | None, od_start: float | None, **spot: object) -> str:
        workloads = fleet(5000)
        workloads["llama70b-spot"] = replace(
            workloads["llama70b-spot"], measured_cold_start_s=spot_start
        )
        workloads["llama70b"] = replace(workloads["llama70b"], measured_cold_start_s=od_start)
        plan, why = plan_for_policy(policy(**spot), workloads, PRICES, DemandHistory(), now=1)
        assert plan is not None, why
        assert plan.refused == ("refused: the cold start" in why)
        return why

    refusal = "refused: the cold start ({:g} s) exceeds the seed's 300 s"
    assert refusal.format(420) in why_at(420.0, None)  # the spot pods' own
    assert refusal.format(420) in why_at(420.0, 60.0)
    assert "cold start" not in why_at(200.0, 900.0)  # the spot pods' own wins
    assert refusal.format(900) in why_at(None, 900.0)  # on demand: a lower bound for spot
    assert "cold start" not in why_at(None, 60.0)  # below the default: the default stands
    assert "cold start" not in why_at(420.0, None, cold_start_s=180)  # the policy's wins
    assert refusal.format(600) in why_at(60.0, None, cold_start_s=600)


def test_the_policys_interruption_rate_prices_spot_out() -> None:
    # 5,000 tokens/s needs 2 spot replicas beside the 2 on demand (the first test). At 20
    # preemptions a replica-hour, each covered on demand for 150 s, a spot replica costs
    # 4 × 0.73 + 20 × 150 / 3600 × 4 × 2.21 = $10.29/h, more than the $8.84 on demand.
    plan, why = plan_for_policy(policy(), fleet(5000), PRICES, DemandHistory(), now=1)
    assert plan is not None, why
    assert plan.spot_replicas == 2
    plan, why = plan_for_policy(
        policy(interruptions_per_replica_hour=20), fleet(5000), PRICES, DemandHistory(), now=1
    )
    assert plan is not None
    assert plan.spot_replicas == 0
    assert "costs $10.29/h once interruptions are" in why


def test_the_policys_spot_hostile_traits_refuse_or_warn() -> None:
    # An hour at 6,000 tokens/s: the P50 base is ceil(6000 / 1400) = 5 replicas and the 2 on
    # demand fall short of it, so 3 spot replicas would carry typical traffic.
    history = DemandHistory()
    for i in range(120):
        history.add(("inference", "llama70b"), 30.0 * i, 6000.0)
    plain, why = plan_for_policy(policy(), fleet(6000), PRICES, history, now=3600)
    assert plain is not None
    assert plain.spot_replicas == 3
    assert not plain.refused
    assert "warning: the on-demand fleet (2) is below the" in why
    slo, why = plan_for_policy(
        policy(traits=WorkloadTraits(slo_bound=True)), fleet(6000), PRICES, history, now=3630
    )
    assert slo is not None
    assert slo.refused
    assert slo.spot_replicas == 0
    assert "refused: the workload is SLO-bound" in why
    chat, why = plan_for_policy(
        policy(traits=WorkloadTraits(multi_turn_state=True, tight_p99=True)),
        fleet(6000),
        PRICES,
        history,
        now=3660,
    )
    assert chat is not None
    assert chat.spot_replicas == 3
    assert "multi-turn conversation state" in why
    assert "P99 latency" in why


def test_limits_of_the_policy_bound_the_recommendation() -> None:
    plan, _ = plan_for_policy(policy(max_replicas=1), fleet(20000), PRICES, DemandHistory(), now=1)
    assert plan is not None
    assert plan.spot_replicas == 1
    plan, _ = plan_for_policy(
        policy(max_spot_fraction=0.5), fleet(20000), PRICES, DemandHistory(), now=1
    )
    assert plan is not None
    assert plan.spot_replicas == 2


@pytest.mark.parametrize(
    ("workloads", "reason"),
    [
        (fleet(5000, stale=True), "stale"),
        ({"llama70b": figures("llama70b", 2, OD, 5000)}, "spotTargetRef"),
        (fleet(None), "stale"),
        (fleet(5000, replica_capacity=None), "capacity"),
    ],
)
def test_no_recommendation_without_data(workloads: dict[str, WorkloadFigures], reason: str) -> None:
    history = DemandHistory()
    plan, why = plan_for_policy(policy(), workloads, PRICES, history, now=1)
    assert plan is None
    assert reason in why
    if reason == "stale":
        assert history.values(("inference", "llama70b")) == []  # no data is not demand


def test_the_spot_workload_says_when_the_policys_demand_rises() -> None:
    """`spot_demand_rising`, which the actuator holds a spot scale-down on: this tick's
    demand against the previous tick's sample, past the 0.7 target utilization's slack."""
    view = policy()
    key = ("inference", "llama70b", "llama70b-spot")
    history = DemandHistory()
    rising = []
    for now, tps in ((0, 1000.0), (30, 1300.0), (60, 2000.0), (90, 1900.0)):
        tick = {("inference", "llama70b", w): f for w, f in fleet(tps).items()}
        rising.append(with_recommendations([view], tick, PRICES, history, now=now)[key])
    assert [f.spot_demand_rising for f in rising] == [False, False, True, False]
    # No plan (stale inputs): no rise either.
    stale = {("inference", "llama70b", w): replace(f, stale=True) for w, f in fleet(9000.0).items()}
    out = with_recommendations([view], stale, PRICES, history, now=120)[key]
    assert out.spot_recommended_replicas is None
    assert not out.spot_demand_rising


def test_capacity_falls_back_to_measured_rate_over_gpu_busy() -> None:
    f = figures("llama70b", 2, OD, 1000, replica_capacity=None, gpu_utilization=0.25)
    assert replica_capacity(f) == pytest.approx(1000 / 2 / 0.25)
    idle = figures("llama70b", 2, OD, 10, replica_capacity=None, gpu_utilization=0.01)
    assert replica_capacity(idle) is None


def test_recommendation_is_exported_and_cleared_when_data_goes_missing() -> None:
    view = policy()
    tick = {("inference", "llama70b", w): f for w, f in fleet(5000).items()}
    history = DemandHistory()
    out = with_recommendations([view], tick, PRICES, history, now=10)
    spot = out[("inference", "llama70b", "llama70b-spot")]
    assert spot.spot_recommended_replicas == 2
    snapshot = Snapshot()
    snapshot.replace(out)
    registry, _ = build_registry(snapshot)
    text = generate_latest(registry).decode()
    assert "llmcost_spot_recommended_replicas{" in text
    assert 'workload="llama70b-spot"} 2.0' in text
    savings = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("llmcost_spot_projected_savings_usd_per_hour{")
    ]
    assert len(savings) == 1
    assert savings[0] > 0
    assert math.isfinite(savings[0])

    stale = dict(tick.items())
    stale[("inference", "llama70b", "llama70b")] = figures("llama70b", 2, OD, 5000, stale=True)
    # The previous tick's recommendation rides on carried-forward figures: it must go.
    stale[("inference", "llama70b", "llama70b-spot")] = spot
    out = with_recommendations([view], stale, PRICES, history, now=40)
    spot = out[("inference", "llama70b", "llama70b-spot")]
    assert spot.spot_recommended_replicas is None
    assert spot.spot_projected_savings_usd_per_hour is None
    assert "stale" in spot.spot_note


def test_history_is_bounded_in_time_and_forgets_deleted_policies() -> None:
    history = DemandHistory(keep_s=60)
    for t in range(0, 300, 30):
        history.add(("ns", "a"), t, float(t))
    assert history.values(("ns", "a")) == [210.0, 240.0, 270.0]
    history.add(("ns", "b"), 0, 1.0)
    history.forget_except([("ns", "a")])
    assert history.values(("ns", "b")) == []


def bursty(
    tps: float, peaks: dict[float, float] | None, starting: int = 0
) -> dict[str, WorkloadFigures]:
    """`fleet(tps)` with the on-demand workload's burst peaks (the spot one runs no pods)."""
    workloads = fleet(tps)
    workloads["llama70b"] = replace(workloads["llama70b"], burst_peaks=peaks)
    workloads["llama70b-spot"] = replace(
        workloads["llama70b-spot"], burst_peaks={}, starting_replicas=starting
    )
    return workloads


def test_a_burst_the_rate_window_hides_is_sized_from_its_peak_within_the_queue() -> None:
    """The 5-minute rate shows 2,000 tokens/s; the tick's peak 30 s rate was 6,000. With the
    default 30 s queue at 15 s resolution that is 6,000 × 30 ÷ 45 = 4,000 tokens/s, carried at
    full throughput: 2 replicas of 2,000, none of them spot beside the 2 on demand; with no
    queue (burstQueueSeconds 0) the peak itself, 6,000: 3 replicas, 1 spot. The rate alone
    needs ceil(2000 / 1400) = 2."""
    peaks = {30.0: 6000.0, 60.0: 3500.0, 120.0: 2600.0}

    def spot_now(**spot: object) -> int:
        history = DemandHistory()
        plan = None
        for i in range(10):
            plan, _ = plan_for_policy(
                policy(**spot), bursty(2000, peaks if i == 9 else None), PRICES, history, 30 * i
            )
        assert plan is not None
        return plan.spot_replicas

    assert spot_now() == 0
    assert spot_now(burst_queue_s=0) == 1
    # 9,000 at the peak: 6,000 with the queue, 3 replicas (1 spot); 9,000 without, 5 (3 spot).
    peaks = {30.0: 9000.0, 60.0: 5000.0, 120.0: 3000.0}
    assert spot_now() == 1
    assert spot_now(burst_queue_s=0) == 3


def test_the_burst_signal_is_held_for_the_lead_and_read_only_while_spot_serves() -> None:
    # No burst margin (quantile 0), so only the held signal carries the burst.
    history = DemandHistory()
    peaks = {30.0: 9000.0, 60.0: 5000.0, 120.0: 3000.0}  # 6,000 within the 30 s queue
    for i in range(8):
        plan_for_policy(
            policy(burst_quantile=0.0), bursty(2000, {30.0: 2000.0}), PRICES, history, 30 * i
        )
    plan, _ = plan_for_policy(policy(burst_quantile=0.0), bursty(2000, peaks), PRICES, history, 240)
    assert plan is not None
    assert plan.spot_replicas == 1
    # Quiet again: held for the lead (the policy's 300 s rate window, longer than the 120 s
    # cold start: this tick and the 9 before it) the burst still counts, then the steady
    # ceil(2000 / 1400) = 2 replicas are the fleet.
    after = []
    for i in range(1, 12):
        plan, _ = plan_for_policy(
            policy(burst_quantile=0.0), bursty(2000, {30.0: 2000.0}), PRICES, history, 240 + 30 * i
        )
        assert plan is not None
        after.append(plan.needed_replicas)
    assert after == [3] * 9 + [2, 2]
    # With the default P90 margin the burst, seen from this level, is kept as a margin.
    plan, _ = plan_for_policy(policy(), bursty(2000, {30.0: 2000.0}), PRICES, history, 600)
    assert plan is not None
    assert plan.needed_replicas == 3
    # A spot replica starting: the burst term reads the rate (2,000 at full throughput beside
    # the steady 2,000 at 70%: 2 replicas), not the burst that just came.
    history = DemandHistory()
    for i in range(8):
        plan_for_policy(policy(), bursty(2000, {30.0: 2000.0}), PRICES, history, 30 * i)
    plan, _ = plan_for_policy(policy(), bursty(2000, peaks, starting=1), PRICES, history, 240)
    assert plan is not None
    assert plan.needed_replicas == 2
    # A workload whose signal is incomplete (None): the rate.
    history = DemandHistory()
    plan, _ = plan_for_policy(policy(), bursty(2000, None), PRICES, history, 0)
    assert plan is not None
    assert plan.needed_replicas == 2
    assert history.burst_values(("inference", "llama70b")) == [2000.0]


def test_policy_burst_peaks_sum_the_windows_every_workload_has() -> None:
    a = figures("a", 1, OD, 100)
    with_peaks = [
        replace(a, burst_peaks={30.0: 100.0, 60.0: 80.0}),
        replace(a, burst_peaks={30.0: 50.0, 60.0: 40.0, 120.0: 30.0}),
        replace(a, burst_peaks={}),  # no live pods: no constraint
    ]
    assert policy_burst_peaks(with_peaks) == {30.0: 150.0, 60.0: 120.0}
    assert policy_burst_peaks([*with_peaks, replace(a, burst_peaks=None)]) is None
    assert (
        policy_burst_peaks(
            [replace(a, burst_peaks={30.0: 1.0}), replace(a, burst_peaks={60.0: 1.0})]
        )
        is None
    )
    assert policy_burst_peaks([replace(a, burst_peaks={})]) is None


def test_spot_replicas_under_a_notice_get_replacements_that_start_now() -> None:
    """fleet(5000) plans 2 spot replicas (the first test). With 1 of the 2 running ones on a
    noticed node the recommendation is 3: the plan's 2 and a replacement that starts during
    the notice; with both noticed, 4. The plan itself, its savings and its limits, is the
    same; the note says what was added."""
    view = policy()

    def recommend(noticed: int, spot_view: PolicyView = view) -> WorkloadFigures:
        tick = {("inference", "llama70b", w): f for w, f in fleet(5000, spot_replicas=2).items()}
        key = ("inference", "llama70b", "llama70b-spot")
        tick[key] = replace(tick[key], noticed_replicas=noticed)
        return with_recommendations([spot_view], tick, PRICES, DemandHistory(), now=10)[key]

    calm = recommend(0)
    assert calm.spot_recommended_replicas == 2
    assert "notice" not in calm.spot_note
    one = recommend(1)
    assert one.spot_recommended_replicas == 3
    assert one.spot_projected_savings_usd_per_hour == calm.spot_projected_savings_usd_per_hour
    assert "1 spot replica under a preemption notice; 1 replacement asked for now" in one.spot_note
    assert recommend(2).spot_recommended_replicas == 4
    # maxReplicas 3 leaves room for one replacement of the two; the note says so.
    capped = recommend(2, policy(max_replicas=3))
    assert capped.spot_recommended_replicas == 3
    assert "1 replacement asked for now" in capped.spot_note
    assert "maxReplicas or the global cap leave no more room" in capped.spot_note
    # A plan that keeps no spot (demand within the on-demand fleet) replaces none.
    tick = {("inference", "llama70b", w): f for w, f in fleet(1000, spot_replicas=2).items()}
    key = ("inference", "llama70b", "llama70b-spot")
    tick[key] = replace(tick[key], noticed_replicas=2)
    quiet = with_recommendations([view], tick, PRICES, DemandHistory(), now=10)[key]
    assert quiet.spot_recommended_replicas == 0
    assert "2 spot replicas under a preemption notice; none replaced" in quiet.spot_note


def test_the_burst_term_reads_the_rate_while_a_spot_replica_is_under_notice() -> None:
    """As while one starts (the test above): the queue the burst signal spends is the
    noticed replica's to carry once it goes."""
    peaks = {30.0: 9000.0, 60.0: 5000.0, 120.0: 3000.0}  # 6,000 within the 30 s queue
    needed = {}
    for noticed in (0, 1):
        history = DemandHistory()
        for i in range(8):
            plan_for_policy(policy(), bursty(2000, {30.0: 2000.0}), PRICES, history, 30 * i)
        workloads = bursty(2000, peaks)
        workloads["llama70b-spot"] = replace(workloads["llama70b-spot"], noticed_replicas=noticed)
        plan, _ = plan_for_policy(policy(), workloads, PRICES, history, 240)
        assert plan is not None
        needed[noticed] = plan.needed_replicas
    assert needed == {0: 3, 1: 2}


def od_policy(**spot: object) -> PolicyView:
    """`policy()` with the on-demand workload as `onDemandTargetRef` (at most 8 replicas)."""
    spot = {"on_demand_target": ("Deployment", "llama70b"), "on_demand_max_replicas": 8, **spot}
    return policy(**spot)


def test_with_an_on_demand_target_the_planner_sizes_both_halves() -> None:
    """2,000 tokens/s replicas at 70%, no history. P50 base: the P50 of demand at the target
    utilization carries it all (5,000 → 4 on demand, no spot). Fraction base: on demand only as
    the 0.7 spot fraction requires (2 on demand allow 4 spot): 5,000 → 2 + 2, 9,000 → 3 + 4.
    The spot plan is beside the planned base, not the 2 running."""

    def plan(tps: float, **spot: object) -> tuple[int | None, int]:
        planned, _ = policy_plan(od_policy(**spot), fleet(tps), PRICES, DemandHistory(), now=1)
        assert planned is not None
        return planned.on_demand_replicas, planned.spot.spot_replicas

    assert plan(5000) == (4, 0)
    assert plan(9000) == (7, 0)
    assert plan(5000, on_demand_base="fraction") == (2, 2)
    assert plan(9000, on_demand_base="fraction") == (3, 4)
    assert plan(1000, on_demand_base="fraction") == (1, 0)  # never below onDemandMinReplicas 1
    # Held to the workload's limits, with a warning.
    planned, why = policy_plan(
        od_policy(on_demand_base="fraction", on_demand_max_replicas=2),
        fleet(9000),
        PRICES,
        DemandHistory(),
        now=1,
    )
    assert planned is not None
    assert planned.on_demand_replicas == 2
    assert "the on-demand plan is 3 replicas for llama70b, held to" in why
    # A target that is not among the policy's workloads (or is the spot one): no plan.
    for bad in (("Deployment", "other"), ("Deployment", "llama70b-spot")):
        planned, why = policy_plan(
            od_policy(on_demand_target=bad), fleet(5000), PRICES, DemandHistory(), now=1
        )
        assert planned is None
        assert "onDemandTargetRef" in why


def test_spot_that_does_not_serve_is_covered_on_demand_not_replaced_on_spot() -> None:
    """Fraction base at 5,000 tokens/s: 2 + 2. One spot replica with no node yet: 3 on demand for
    it meanwhile (once past its workload's wait for a node, where one is measured); one starting
    on its node: no cover (it serves no later than on demand asked for now); one under a notice:
    cover, and no spot replacement (the cover is on demand, as in the backtest's planner). Make
    before break: 4 on demand running and no spot serving yet, on demand stays at 4 until spot
    serves."""
    view = od_policy(on_demand_base="fraction")

    def recommend(**spot_state: Any) -> tuple[int | None, int | None, str]:
        tick = {("inference", "llama70b", w): f for w, f in fleet(5000, spot_replicas=2).items()}
        spot_key = ("inference", "llama70b", "llama70b-spot")
        serving = spot_state.pop("serving", 2)
        tick[spot_key] = replace(tick[spot_key], serving_replicas=serving, **spot_state)
        out = with_recommendations([view], tick, PRICES, DemandHistory(), now=10)
        od = out[("inference", "llama70b", "llama70b")]
        sp = out[spot_key]
        return od.on_demand_recommended_replicas, sp.spot_recommended_replicas, sp.spot_note

    assert recommend()[:2] == (2, 2)
    od, sp, note = recommend(starting_replicas=1, unplaced_replicas=1, serving=1)
    assert (od, sp) == (3, 2)
    assert "1 on-demand replica for spot that has no node yet" in note
    od, sp, note = recommend(starting_replicas=1, serving=1)
    assert (od, sp) == (2, 2)
    assert "on-demand replica for spot" not in note
    # On its node but created more than two cold starts (2 × 120 s) ago and still not serving:
    # overdue, covered; one created within them is on track.
    stuck = {"starting_replicas": 1, "serving": 1}
    assert recommend(**stuck, placed_starting_since=(10 - 241.0,))[:2] == (3, 2)
    assert recommend(**stuck, placed_starting_since=(10 - 239.0,))[:2] == (2, 2)
    # Where the workload's pods waited up to 60 s for a node (a provisioner starting one for
    # each), one with no node is given 1.5 × 60 s before it is covered; at most a cold start.
    waiting = {"starting_replicas": 1, "unplaced_replicas": 1, "serving": 1}
    assert recommend(**waiting, time_to_node_s=60.0, unplaced_since=(10 - 89.0,))[:2] == (2, 2)
    assert recommend(**waiting, time_to_node_s=60.0, unplaced_since=(10 - 91.0,))[:2] == (3, 2)
    assert recommend(**waiting, time_to_node_s=100.0, unplaced_since=(10 - 119.0,))[:2] == (2, 2)
    assert recommend(**waiting, time_to_node_s=100.0, unplaced_since=(10 - 121.0,))[:2] == (3, 2)
    assert recommend(**waiting, time_to_node_s=60.0)[:2] == (3, 2)  # created when? covered
    assert recommend(**waiting, time_to_node_s=0.0, unplaced_since=(10.0,))[:2] == (3, 2)
    od, sp, note = recommend(noticed_replicas=1)
    assert (od, sp) == (3, 2)
    assert "replacement" not in note
    # Both spot replicas waiting for a node: both carried on demand; one of them placed, one.
    assert recommend(serving=0, starting_replicas=2, unplaced_replicas=2)[:2] == (4, 2)
    assert recommend(serving=0, starting_replicas=2, unplaced_replicas=1)[:2] == (3, 2)
    # Make before break: 4 on demand run and the 2 spot replicas are not there yet (no pods):
    # on demand stays at 4 - 0; once both spot replicas serve, it goes to 2.
    tick = {("inference", "llama70b", w): f for w, f in fleet(5000).items()}
    tick[("inference", "llama70b", "llama70b")] = figures("llama70b", 4, OD, 5000)
    out = with_recommendations([view], tick, PRICES, DemandHistory(), now=10)
    assert out[("inference", "llama70b", "llama70b")].on_demand_recommended_replicas == 4
    spot_key = ("inference", "llama70b", "llama70b-spot")
    tick[spot_key] = replace(figures("llama70b-spot", 2, SPOT, 0.0), serving_replicas=2)
    out = with_recommendations([view], tick, PRICES, DemandHistory(), now=10)
    assert out[("inference", "llama70b", "llama70b")].on_demand_recommended_replicas == 2


def test_the_on_demand_recommendation_goes_with_the_data() -> None:
    view = od_policy()
    tick = {("inference", "llama70b", w): f for w, f in fleet(5000).items()}
    out = with_recommendations([view], tick, PRICES, DemandHistory(), now=10)
    assert out[("inference", "llama70b", "llama70b")].on_demand_recommended_replicas == 4

    def exported(figures: dict[tuple[str, str, str], WorkloadFigures]) -> list[str]:
        snapshot = Snapshot()
        snapshot.replace(figures)
        text = generate_latest(build_registry(snapshot)[0]).decode()
        return [s for s in text.splitlines() if s.startswith("llmcost_on_demand_recommended")]

    (line,) = exported(out)
    assert 'workload="llama70b"' in line
    assert line.endswith(" 4.0")
    stale = dict(out)
    stale[("inference", "llama70b", "llama70b")] = replace(
        out[("inference", "llama70b", "llama70b")], stale=True
    )
    out = with_recommendations([view], stale, PRICES, DemandHistory(), now=40)
    assert out[("inference", "llama70b", "llama70b")].on_demand_recommended_replicas is None
    assert exported(out) == []  # absent, not the last value (RELIABILITY 1)
    # Without a target the figure stays unset.
    out = with_recommendations([policy()], tick, PRICES, DemandHistory(), now=10)
    assert out[("inference", "llama70b", "llama70b")].on_demand_recommended_replicas is None
