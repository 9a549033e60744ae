"""Spot burst planning and the scale governor: worked examples, refusals, safety properties."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costengine.backtest import constant_capacity_shortfall
from costengine.cost import HOURS_PER_MONTH
from costengine.errors import CostEngineError, InvalidInputError
from costengine.spot import hybrid_spot_cost
from costengine.spotplan import (
    Decision,
    GovernorLimits,
    GovernorState,
    ReplicaEconomics,
    SpotLimits,
    WorkloadTraits,
    burst_margin,
    demand_rising,
    govern,
    hold,
    notice_replacements,
    on_demand_for_spot,
    on_demand_needed,
    plan_fleet,
    plan_spot,
    serviceable_rate,
    spot_fraction_bound,
    sustained_level,
)
from costengine.tenancy import _quantile

# The seed's A100 prices: $2.21/h on demand, $0.73/h spot.
SEED = ReplicaEconomics(
    tokens_per_second=1000,
    gpus_per_replica=1,
    on_demand_usd_per_gpu_hour=2.21,
    spot_usd_per_gpu_hour=0.73,
    interruptions_per_replica_hour=0,
    lost_work_s_per_interruption=0,
)
# Replicas serve exactly their capacity, no margin: N × 1000 tokens/s needs N replicas. The
# seed sizes spot for the peak: the recent-peak rule.
EXACT = SpotLimits(target_utilization=1.0, headroom=0.0, burst_quantile=None)
# Typical traffic 4,000 tokens/s (P50 → 4 on demand); with a current 8,000 (→ 4 more on spot).
SEED_HISTORY = [3000.0, 4000.0, 4000.0, 4000.0, 5000.0]


# --- The planner: worked examples ---------------------------------------------------------------


def test_seed_hybrid_hour_agrees_with_hybrid_spot_cost() -> None:
    """Base 4 on demand + 4 spot for a steady hour: 4 × 2.21 + 4 × 0.73 against 8 × 2.21."""
    plan = plan_spot(SEED_HISTORY, 8000, 4, SEED, EXACT)
    assert plan.recommended_on_demand_base == 4
    assert plan.spot_replicas == 4
    assert not plan.refused
    assert plan.reasons == ()
    assert plan.expected_usd_per_hour == pytest.approx(4 * 2.21 + 4 * 0.73)
    assert plan.all_on_demand_usd_per_hour == pytest.approx(8 * 2.21)
    month = hybrid_spot_cost(4, 4, 2.21, 0.73, spot_duty_ratio=1.0, all_on_demand_gpus=8)
    assert plan.expected_usd_per_hour * HOURS_PER_MONTH == pytest.approx(month.monthly_hybrid_usd)
    assert plan.savings_usd_per_month == pytest.approx(month.monthly_savings_usd)


@pytest.mark.parametrize("gpus_per_replica", [1, 2])
def test_interruption_cost_agrees_with_hybrid_spot_cost(gpus_per_replica: int) -> None:
    """A preempted replica idles all its GPUs, so the per-replica rate prices like
    hybrid_spot_cost's per-GPU rate over the replica's GPUs."""
    econ = ReplicaEconomics(1000, gpus_per_replica, 2.21, 0.73, 120, 0.1, 30)
    plan = plan_spot(SEED_HISTORY, 8000, 4, econ, EXACT)
    assert plan.spot_replicas == 4
    month = hybrid_spot_cost(
        4 * gpus_per_replica,
        4 * gpus_per_replica,
        2.21,
        0.73,
        1.0,
        8 * gpus_per_replica,
        interruptions_per_spot_gpu_hour=0.1,
        cold_start_s=120,
        lost_work_s_per_interruption=30,
    )
    assert plan.interruption_usd_per_hour * HOURS_PER_MONTH == pytest.approx(
        month.monthly_interruption_usd
    )
    assert plan.expected_usd_per_hour * HOURS_PER_MONTH == pytest.approx(month.monthly_hybrid_usd)


def test_interruption_pricing_by_hand() -> None:
    # 3 spot replicas × 0.05 preemptions/h = 0.15 preemptions/h; each leaves 120 s cold start
    # + 30 s redone work = 150 s uncovered → 22.5 s/h = 0.00625 h of a 2-GPU replica on demand
    # at 2 × $2.21 = $4.42/h → $0.027625/h.
    econ = ReplicaEconomics(1000, 2, 2.21, 0.73, 120, 0.05, 30)
    plan = plan_spot([], 7000, 4, econ, EXACT)
    assert plan.spot_replicas == 3
    assert plan.interruption_usd_per_hour == pytest.approx(0.027625)
    assert plan.expected_usd_per_hour == pytest.approx(4 * 4.42 + 3 * 1.46 + 0.027625)
    assert plan.all_on_demand_usd_per_hour == pytest.approx(7 * 4.42)


def test_recent_peak_rule_sizes_for_the_peak_with_headroom_at_target_utilization() -> None:
    limits = SpotLimits(target_utilization=0.5, headroom=0.25, max_replicas=20, burst_quantile=None)
    history = [9000.0, 1000.0, 2000.0, 1600.0]
    # All history: 9,000 × 1.25 = 11,250 tokens/s over 500 usable → 23 replicas.
    everything = plan_spot(history, 1000, 10, SEED, limits)
    assert everything.demand_tokens_per_second == pytest.approx(11_250)
    assert everything.needed_replicas == 23
    assert everything.unclamped_spot_replicas == 13
    # The last two samples: 2,000 × 1.25 = 2,500 → 5 replicas, all on demand.
    recent = plan_spot(history, 1000, 10, SEED, limits, recent_peak_horizon=2)
    assert recent.demand_tokens_per_second == pytest.approx(2500)
    assert recent.needed_replicas == 5
    assert recent.spot_replicas == 0
    # Horizon 0: only the current demand counts; a horizon beyond the history is all of it.
    assert plan_spot(history, 1000, 10, SEED, limits, recent_peak_horizon=0).needed_replicas == 3
    assert plan_spot(history, 0, 10, SEED, limits, recent_peak_horizon=99).needed_replicas == 23


def test_burst_margin_is_the_quantile_of_the_rises_within_the_lead() -> None:
    history = [0.0, 0.0, 600.0, 0.0, 0.0, 0.0, 700.0, 100.0]
    # From silence (current 0) every sample counts. Lead 2: the rises are 600, 600, 0 (fell),
    # 0, 700, 700, 0, 0: the top is 700, the bottom 0, the median half-way from 0 to 600.
    assert burst_margin(history, 0, 2, 1.0) == 700
    assert burst_margin(history, 0, 2, 0.0) == 0
    assert burst_margin(history, 0, 2, 0.5) == pytest.approx(300)
    # Lead 1: only 0 → 600 and 0 → 700 rise.
    assert burst_margin(history, 0, 1, 0.5) == 0
    assert burst_margin(history, 0, 1, 1.0) == 700
    # No lead: against every later sample (0 → 700 from each 0 before it).
    assert burst_margin(history, 0, None, 0.5) == 700
    # At 100 tokens/s only 600, 700 and 100 are at or above the current level, and demand
    # fell after each: no margin.
    assert burst_margin(history, 100, 2, 1.0) == 0
    assert burst_margin(history, 0, 0, 1.0) == burst_margin([], 5.0, 4, 1.0) == 0


def test_burst_margin_counts_rises_from_the_current_level_or_above() -> None:
    # At 100: 100 → 500 twice, 500 → 100 and 900 → 100 fall; 0 → 900 starts below and does not
    # count (at the top of a burst the rises from silence would stack a second burst).
    history = [100.0, 500.0, 100.0, 500.0, 0.0, 900.0]
    assert burst_margin(history, 100, 1, 1.0) == 400
    assert burst_margin(history, 100, 1, 0.5) == 0
    assert burst_margin(history, 0, 1, 1.0) == 900


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0, 1e5), max_size=30),
    st.floats(0, 1e5),
    st.none() | st.integers(0, 10),
    st.floats(0, 1),
)
def test_burst_margin_matches_the_rises_counted_one_by_one(
    history: list[float], current: float, lead: int | None, q: float
) -> None:
    samples = [*history, current]
    span = len(samples) if lead is None else lead
    rises = [
        max(0.0, max(samples[i + 1 : i + 1 + span]) - samples[i])
        for i in range(len(samples) - 1)
        if span > 0 and samples[i] >= current
    ]
    expected = _quantile(rises, q) if rises else 0.0
    assert burst_margin(history, current, lead, q) == pytest.approx(expected)


def test_burst_rule_keeps_spare_replicas_for_bursts_from_silence_and_none_for_flat_traffic() -> (
    None
):
    limits = SpotLimits(max_replicas=20)  # target utilization 0.7, P90 burst margin
    # Flat traffic: nothing rises, so the fleet is the current demand at the target
    # utilization, ceil(4000 / 700) = 6; the peak rule with 10% headroom would ask for 7.
    flat = plan_spot([4000.0] * 20, 4000, 2, SEED, limits, recent_peak_horizon=4)
    assert flat.needed_replicas == 6
    peak = replace(limits, burst_quantile=None, headroom=0.1)
    assert plan_spot([4000.0] * 20, 4000, 2, SEED, peak, recent_peak_horizon=4).needed_replicas == 7
    # A 5,000 tokens/s burst from silence every 8 samples: 16 of the 40 samples see one within
    # the next 4, so the P90 rise from silence is 5,000. Now silent, and the burst of the last
    # cold start past: the peak rule keeps nothing, the burst rule 5 replicas (5,000 at full
    # throughput).
    history = [5000.0 if i % 8 == 0 else 0.0 for i in range(40)]
    assert plan_spot(history, 0, 2, SEED, peak, recent_peak_horizon=4).needed_replicas == 0
    bursty = plan_spot(history, 0, 2, SEED, limits, recent_peak_horizon=4)
    assert bursty.needed_replicas == 5
    assert bursty.spot_replicas == 3
    assert bursty.demand_tokens_per_second == pytest.approx(5000 * 0.7)
    # At the top of a burst no rise was ever seen from there (demand fell after each): the
    # margin is 0 and the steady term sizes the fleet, ceil(5000 / 700) = 8, not a second
    # burst stacked on the first.
    assert plan_spot(history, 5000, 2, SEED, limits, recent_peak_horizon=4).needed_replicas == 8


def test_serviceable_rate_by_hand() -> None:
    # Steady 600 tokens/s, 30 s latency, 15 s resolution: 120 s of work (72,000 tokens) within
    # 120 + 15 s needs 533.3 tokens/s, the longest window's; the shorter ones need less.
    steady = {30.0: 600.0, 60.0: 600.0, 120.0: 600.0}
    assert serviceable_rate(steady, 30, 15) == pytest.approx(600 * 120 / 135)
    # A 30 s burst at 1,500 tokens/s over 50: the 30 s window shows it at its height, the
    # 120 s one at 412.5. 45,000 tokens within 30 + 15 s: 1,000 tokens/s.
    burst = {30.0: 1500.0, 60.0: 775.0, 120.0: 412.5}
    assert serviceable_rate(burst, 30, 15) == pytest.approx(1000)
    # No queue (a latency bound within the resolution): the highest peak itself.
    assert serviceable_rate(burst, 10, 15) == 1500
    assert serviceable_rate(burst, 0, 0) == 1500
    assert serviceable_rate({}, 30, 15) == 0
    with pytest.raises(InvalidInputError, match="latency_s"):
        serviceable_rate(burst, -1, 15)
    with pytest.raises(InvalidInputError, match="peak over 30 s"):
        serviceable_rate({30.0: -1.0}, 30, 15)


@settings(max_examples=200, deadline=None)
@given(
    demand=st.lists(st.floats(min_value=0, max_value=5000), min_size=1, max_size=24),
    deadline=st.integers(min_value=1, max_value=6),
)
def test_serviceable_rate_over_every_window_is_the_least_constant_capacity(
    demand: list[float], deadline: int
) -> None:
    """With the peaks of every window length at step resolution, the signal is exactly the
    least constant throughput that serves the work within the latency bound: the simulator's
    queue drops nothing at it and drops work a little below it."""
    step = 10.0
    peaks = {
        n * step: max(sum(demand[i : i + n]) for i in range(len(demand) - n + 1)) / (n * step)
        for n in range(1, len(demand) + 1)
    }
    rate = serviceable_rate(peaks, deadline * step, step)
    padded = [*demand, *[0.0] * deadline]
    assert constant_capacity_shortfall(padded, rate * step * (1 + 1e-9), deadline) == (
        pytest.approx(0, abs=1e-6)
    )
    if rate > 1:
        assert constant_capacity_shortfall(padded, rate * step * 0.99, deadline) > 0


def test_the_burst_term_reads_the_queue_aware_signal_held_for_the_lead() -> None:
    limits = SpotLimits(max_replicas=20)  # target utilization 0.7, P90 burst margin
    # The rate (600 tokens/s) is flat, but the signal saw 3,500 a sample ago: held for the
    # lead of 4 samples, the burst term carries it at full throughput (4 replicas), where the
    # rate alone needs ceil(600 / 700) = 1.
    rates = [600.0] * 14
    signal = [400.0] * 9 + [3500.0, 500.0]
    assert plan_spot(rates, 600, 1, SEED, limits, recent_peak_horizon=4).needed_replicas == 1
    held = plan_spot(rates, 600, 1, SEED, limits, recent_peak_horizon=4, burst_history=signal,
                     current_burst=500)  # fmt: skip
    assert held.needed_replicas == 4
    assert held.demand_tokens_per_second == pytest.approx(3500 * 0.7)
    # Once the peak has left the lead it is not held: the held signal is 400 × 9, 3,500 × 4,
    # 500 and the current 500; no rise was seen from 500 or above (the rises before the peak
    # start below it), so the burst term is the current 500 and the steady term's 1 replica
    # is the fleet.
    later = [*signal, 500.0, 500.0, 500.0]
    plan = plan_spot(rates, 600, 1, SEED, limits, recent_peak_horizon=4, burst_history=later,
                     current_burst=500)  # fmt: skip
    assert burst_margin([400.0] * 9 + [3500.0] * 4 + [500.0], 500, 4, 0.9) == 0
    assert plan.needed_replicas == 1
    # A lead of 6 still holds it.
    longer = plan_spot(rates, 600, 1, SEED, limits, recent_peak_horizon=6, burst_history=later,
                       current_burst=500)  # fmt: skip
    assert longer.needed_replicas == 4
    # Without the signal (None) the burst term is the rate's, as before.
    assert plan_spot(rates, 600, 1, SEED, limits, recent_peak_horizon=4, burst_history=signal,
                     current_burst=None).needed_replicas == 1  # fmt: skip


def test_sustained_level_is_the_median_unless_a_rise_passes_the_slack_or_a_fall_holds() -> None:
    noisy = [4000.0, 4600.0, 3500.0, 4400.0, 3700.0]
    # Noise within the slack: the median of the horizon's samples and the current one.
    assert sustained_level(noisy, 4700, 5, 0.7) == pytest.approx(4200)
    assert sustained_level(noisy, 4700, 2, 0.7) == pytest.approx(4400)
    assert sustained_level(noisy, 4700, None, 0.7) == pytest.approx(4200)
    assert sustained_level(noisy, 4700, 0, 0.7) == 4700  # no horizon: the current sample
    # One low sample: the latest three (4,400, 3,700, 1,000) have a median of 3,700, so the
    # level does not follow the odd sample down, only to that median (below the long 3,850).
    assert sustained_level(noisy, 1000, 5, 0.7) == pytest.approx(3700)
    # A fall that holds: the latest three samples' median is the level at once, not after
    # half the horizon of the long median (2,350 over 5 samples, 3,600 over 7); the
    # scale-down window holds it anyway.
    fallen = [*noisy, 1200.0, 1100.0]
    assert sustained_level(fallen, 1000, 5, 0.7) == pytest.approx(1100)
    assert sustained_level(fallen, 1000, 7, 0.7) == pytest.approx(1100)
    # Below the long median but the latest three higher: the long median.
    assert sustained_level([4000.0, 4600.0, 3500.0, 4400.0, 4700.0], 4100, 5, 0.7) == (
        pytest.approx(4250)
    )
    # A horizon of 0 is the current sample, even when it falls.
    assert sustained_level(fallen, 1000, 0, 0.7) == 1000
    # Past the slack (above 4,200 ÷ 0.7 = 6,000): a new level, counted as it is.
    assert sustained_level(noisy, 6100, 5, 0.7) == 6100
    assert sustained_level(noisy, 5900, 5, 0.7) == pytest.approx(4200)


def test_a_rise_the_history_has_seen_is_a_burst_not_a_new_level() -> None:
    """Past the slack, a rise no higher than the median plus the quantile of the rises the
    history took from the median or above within the lead is a burst (the burst term carries
    it); higher, or without a quantile, a new level."""
    bursty = [50.0, 50.0, 1500.0, 1500.0, 50.0, 50.0, 50.0, 1500.0, 1500.0, 50.0]
    # The median of the last 10 and the current one is 50; the rises from 50 within 2 samples
    # were 1,450 (four of the seven starts) or 0: the P90 is 1,450.
    assert burst_margin(bursty, 50, 2, 0.9) == pytest.approx(1450)
    assert sustained_level(bursty, 1500, 10, 0.7, lead=2, burst_quantile=0.9) == pytest.approx(50)
    assert sustained_level(bursty, 1500, 10, 0.7) == 1500  # no quantile: counted as it is
    # Higher than any rise seen: a new level.
    assert sustained_level(bursty, 1600, 10, 0.7, lead=2, burst_quantile=0.9) == 1600
    # A history of no rises (flat, then this one): a new level, as before.
    flat = [50.0] * 10
    assert sustained_level(flat, 1500, 10, 0.7, lead=2, burst_quantile=0.9) == 1500
    # Rises of that size were rare (one of ten starts): the P90 of the rises is 145, so a
    # new level.
    rare = [50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 1500.0, 50.0]
    assert sustained_level(rare, 1500, 10, 0.7, lead=1, burst_quantile=0.9) == 1500
    # Within the slack nothing changes: the median.
    noisy = [4000.0, 4600.0, 3500.0, 4400.0, 3700.0]
    assert sustained_level(noisy, 4700, 5, 0.7, lead=2, burst_quantile=0.9) == pytest.approx(4200)


def test_the_sustained_level_keeps_the_slack_over_the_level_not_over_each_sample() -> None:
    limits = SpotLimits(max_replicas=20)  # target utilization 0.7, P90 burst margin
    noisy = [4000.0, 4600.0, 3500.0, 4400.0, 3700.0] * 4
    # At a noisy high of 4,700 tokens/s: without a level the slack goes on top of it,
    # ceil(4700 / 700) = 7 replicas; with a level of the median of the last 10 samples and the
    # current one (4,000) the steady term needs ceil(4000 / 700) = 6, and the burst term still
    # carries 4,700 at full throughput (no rise was seen from 4,700 or above).
    assert plan_spot(noisy, 4700, 2, SEED, limits, recent_peak_horizon=4).needed_replicas == 7
    plan = plan_spot(noisy, 4700, 2, SEED, limits, recent_peak_horizon=4, level_horizon=10)
    assert plan.needed_replicas == 6
    assert plan.needed_replicas * SEED.tokens_per_second >= 4700
    assert plan.demand_tokens_per_second == pytest.approx(4000)
    # A rise past the slack is sized as it is, level or not: ceil(7000 / 700) = 10.
    for level in (0, 10):
        rise = plan_spot(noisy, 7000, 2, SEED, limits, recent_peak_horizon=4, level_horizon=level)
        assert rise.needed_replicas == 10
    # The recent-peak rule has no steady term and ignores the level.
    peak = replace(limits, burst_quantile=None, headroom=0.1)
    for level in (0, 10):
        assert plan_spot(noisy, 4700, 2, SEED, peak, level_horizon=level).needed_replicas == 8


def test_base_covers_the_quantile_of_history_and_current_without_headroom() -> None:
    limits = SpotLimits(target_utilization=0.5, headroom=0.5)
    # Median of {100, 200, 900, 1200, 1300} is 900 → 900 / 500 → 2 on demand.
    plan = plan_spot([100, 200, 1200, 1300], 900, 2, SEED, limits)
    assert plan.recommended_on_demand_base == 2
    p90 = plan_spot([100, 200, 1200, 1300], 900, 2, SEED, SpotLimits(base_quantile=0.9))
    assert p90.recommended_on_demand_base == 2  # 1260 / 700 → 2
    # Some demand but a median of 0 still keeps one on-demand replica.
    assert plan_spot([0, 0, 0, 0], 10, 1, SEED, limits).recommended_on_demand_base == 1


def test_zero_demand_needs_no_spot_and_no_base() -> None:
    plan = plan_spot([], 0, 0, SEED)
    assert (plan.needed_replicas, plan.spot_replicas, plan.recommended_on_demand_base) == (0, 0, 0)
    assert not plan.refused
    assert plan.reasons == ()
    assert plan.expected_usd_per_hour == 0
    assert plan.savings_usd_per_hour == 0


def test_demand_within_the_on_demand_fleet_needs_no_spot() -> None:
    plan = plan_spot(SEED_HISTORY, 3000, 4, SEED, EXACT)
    assert plan.needed_replicas == 5  # the history's 5,000 peak, not the current 3,000
    assert plan.spot_replicas == 1
    assert plan_spot(SEED_HISTORY, 3000, 5, SEED, EXACT).spot_replicas == 0


# --- The planner: refusals ----------------------------------------------------------------------


def test_refuses_cold_start_over_five_minutes() -> None:
    slow = ReplicaEconomics(1000, 1, 2.21, 0.73, cold_start_s=301)
    plan = plan_spot(SEED_HISTORY, 8000, 4, slow, EXACT)
    assert plan.refused
    assert plan.spot_replicas == 0
    assert plan.unclamped_spot_replicas == 4
    assert len(plan.reasons) == 1
    assert "cold start (301 s)" in plan.reasons[0]
    assert plan.expected_usd_per_hour == pytest.approx(4 * 2.21)
    at_limit = ReplicaEconomics(1000, 1, 2.21, 0.73, cold_start_s=300)
    assert not plan_spot(SEED_HISTORY, 8000, 4, at_limit, EXACT).refused


def test_refuses_spot_as_the_primary_fleet() -> None:
    limits = SpotLimits(target_utilization=1.0, headroom=0.0, max_spot_fraction=1.0)
    plan = plan_spot(SEED_HISTORY, 8000, 0, SEED, limits)
    assert plan.refused
    assert plan.spot_replicas == 0
    assert any("primary fleet" in r and "at least 4" in r for r in plan.reasons)


def test_refuses_a_single_replica_deployment_on_spot() -> None:
    """One replica of demand, none on demand, spot allowed to be everything."""
    plan = plan_spot([], 500, 0, SEED, SpotLimits(max_spot_fraction=1.0))
    assert plan.refused
    assert plan.spot_replicas == 0
    assert any("single replica" in r for r in plan.reasons)
    assert any("primary fleet" in r for r in plan.reasons)
    # A floor of one spot replica with no demand and no on-demand fleet is refused as well.
    idle = plan_spot([], 0, 0, SEED, SpotLimits(min_replicas=1, max_spot_fraction=1.0))
    assert idle.refused
    assert any("single replica" in r for r in idle.reasons)


def test_refuses_slo_bound_spot_below_the_p50_base() -> None:
    slo = WorkloadTraits(slo_bound=True)
    # P50 of the history is 4,000 → base 4; only 3 on demand: spot would carry typical traffic.
    short = plan_spot(SEED_HISTORY, 8000, 3, SEED, EXACT, slo)
    assert short.refused
    assert short.spot_replicas == 0
    assert any("SLO-bound" in r and "P50 base (4)" in r for r in short.reasons)
    # With the base on demand, spot only bursts: allowed.
    covered = plan_spot(SEED_HISTORY, 8000, 4, SEED, EXACT, slo)
    assert not covered.refused
    assert covered.spot_replicas == 4


def test_a_refusal_overrides_min_replicas() -> None:
    slow = ReplicaEconomics(1000, 1, 2.21, 0.73, cold_start_s=600)
    plan = plan_spot([], 0, 4, slow, SpotLimits(min_replicas=2))
    assert plan.refused
    assert plan.spot_replicas == 0


# --- The planner: warnings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("traits", "needle"),
    [
        (WorkloadTraits(multi_turn_state=True), "multi-turn"),
        (WorkloadTraits(tight_p99=True), "P99"),
    ],
)
def test_hostile_traits_warn_but_do_not_refuse(traits: WorkloadTraits, needle: str) -> None:
    plan = plan_spot(SEED_HISTORY, 8000, 4, SEED, EXACT, traits)
    assert not plan.refused
    assert plan.spot_replicas == 4
    assert len(plan.reasons) == 1
    assert needle in plan.reasons[0]
    assert plan.reasons[0].startswith("warning:")


def test_trait_warnings_only_when_spot_is_recommended() -> None:
    traits = WorkloadTraits(multi_turn_state=True, tight_p99=True)
    assert plan_spot([], 3000, 4, SEED, EXACT, traits).reasons == ()


def test_below_base_without_slo_is_a_warning() -> None:
    plan = plan_spot(SEED_HISTORY, 8000, 3, SEED, EXACT)
    assert not plan.refused
    assert plan.spot_replicas == 5
    assert any("below the P50 base (4)" in r for r in plan.reasons)


def test_no_spot_when_interruptions_make_it_dearer_than_on_demand() -> None:
    # Each preemption leaves 300 s on demand. 8/h: 2,400 s = 0.667 h × $2.21 = $1.473, plus
    # $0.73 spot = $2.203/h, still under $2.21. 9/h: 0.75 h × $2.21 + $0.73 = $2.3875/h.
    cheap = ReplicaEconomics(1000, 1, 2.21, 0.73, 300, 8, 0)
    assert plan_spot(SEED_HISTORY, 8000, 4, cheap, EXACT).spot_replicas == 4
    dear = ReplicaEconomics(1000, 1, 2.21, 0.73, 300, 9, 0)
    plan = plan_spot(SEED_HISTORY, 8000, 4, dear, EXACT)
    assert plan.spot_replicas == 0
    assert not plan.refused
    assert len(plan.reasons) == 1
    assert "$2.39/h" in plan.reasons[0]
    assert "no spot is recommended" in plan.reasons[0]
    assert plan.savings_usd_per_hour == 0


def test_spot_as_dear_as_on_demand_is_not_recommended() -> None:
    same = ReplicaEconomics(1000, 1, 2.21, 2.21, interruptions_per_replica_hour=0)
    assert plan_spot(SEED_HISTORY, 8000, 4, same, EXACT).spot_replicas == 0


# --- The planner: limits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "on_demand", "bound"),
    [
        (0.7, 3, 7),  # 0.7 × 3 ÷ 0.3 is 6.999… in floats; 7 ÷ 10 = 0.7 is allowed
        (0.5, 4, 4),
        (0.6, 1, 1),  # 2 ÷ 3 = 0.67 > 0.6
        (0.0, 10, 0),
        (1.0, 0, None),
    ],
)
def test_spot_fraction_bound(fraction: float, on_demand: int, bound: int | None) -> None:
    assert spot_fraction_bound(fraction, on_demand) == bound


def test_fraction_clamps_spot_and_reports_the_shortfall() -> None:
    limits = SpotLimits(target_utilization=1.0, headroom=0.0, max_spot_fraction=0.5)
    plan = plan_spot([], 8000, 3, SEED, limits)
    assert plan.unclamped_spot_replicas == 5
    assert plan.spot_replicas == 3
    assert any(
        "max_spot_fraction 0.5 allow 3" in r and "2 replicas short" in r for r in plan.reasons
    )
    # 4 on demand allow 4 spot: 8 in all, the needed fleet.
    assert any("4 on-demand replicas would let spot carry the rest" in r for r in plan.reasons)
    # With spot capped at 3 too, 5 on demand (5 + 3); with spot's own cap binding (2 below the
    # fraction's 3), more on demand does not lift spot's cap, so no such remedy is offered.
    capped = plan_spot([], 8000, 3, SEED, replace(limits, max_replicas=3))
    assert any("5 on-demand replicas would let spot carry" in r for r in capped.reasons)
    capped = plan_spot([], 8000, 3, SEED, replace(limits, max_replicas=2))
    assert any("max_replicas 2 allow 2" in r for r in capped.reasons)
    assert not any("would let spot carry" in r for r in capped.reasons)


@given(
    st.integers(0, 40),
    st.integers(0, 20),
    st.integers(0, 30),
    st.sampled_from([0, 0.3, 0.5, 0.7, 0.9, 1.0]),
)
def test_on_demand_for_spot_is_the_fewest_that_lets_spot_carry_the_rest(
    needed: int, on_demand: int, most: int, fraction: float
) -> None:
    limits = SpotLimits(max_replicas=most, max_spot_fraction=fraction)

    def carries(od: int) -> bool:
        bound = spot_fraction_bound(fraction, od)
        return od + min(most, most if bound is None else bound) >= needed

    found = on_demand_for_spot(needed, on_demand, limits)
    if found is None:
        assert not any(carries(od) for od in range(on_demand, needed))
    else:
        assert on_demand <= found < needed
        assert carries(found)
        assert not any(carries(od) for od in range(on_demand, found))


def test_fraction_below_min_replicas_wins() -> None:
    limits = SpotLimits(min_replicas=3, max_spot_fraction=0.5)
    plan = plan_spot([], 0, 2, SEED, limits)
    assert plan.spot_replicas == 2
    assert any("below min_replicas (3); the fraction wins" in r for r in plan.reasons)


def test_min_replicas_floor_applies_without_demand() -> None:
    plan = plan_spot([], 0, 4, SEED, SpotLimits(min_replicas=2))
    assert plan.spot_replicas == 2
    assert plan.reasons == ()


def test_max_replicas_and_global_cap() -> None:
    wide = SpotLimits(target_utilization=1.0, headroom=0.0, max_spot_fraction=1.0)
    assert plan_spot([], 20_000, 4, SEED, wide).spot_replicas == 8
    capped = SpotLimits(target_utilization=1.0, headroom=0.0, max_spot_fraction=1.0, global_cap=3)
    plan = plan_spot([], 20_000, 4, SEED, capped)
    assert plan.unclamped_spot_replicas == 16
    assert plan.spot_replicas == 3
    assert any("max_replicas 8 and global cap 3 allow 3" in r for r in plan.reasons)
    below_min = SpotLimits(min_replicas=4, global_cap=1)
    plan = plan_spot([], 0, 4, SEED, below_min)
    assert plan.spot_replicas == 1
    assert any("global cap (1) is below min_replicas (4)" in r for r in plan.reasons)


def test_plan_fleet_sizes_on_demand_as_the_backtests_planner_does() -> None:
    """8,000 tokens/s of 1,000-tokens/s replicas at 100%: 8 replicas. With a spot fraction of
    0.5, n on demand allow n spot, so the fraction base is 4 + 4; the P50 base of a history
    at this level is all 8 on demand; of a quieter history, 1, raised to 4 as well."""
    limits = SpotLimits(target_utilization=1.0, headroom=0.0, max_spot_fraction=0.5)

    def fleet(rule: str, history: list[float] | None = None, **kw: int) -> tuple[int, int, int]:
        state = {"on_demand_now": 2, "spot_ready": 0, "spot_not_serving": 0, **kw}
        f = plan_fleet(history or [], 8000, SEED, limits, base_rule=rule, **state)
        assert f.on_demand_replicas == f.base_replicas + f.cover_replicas
        return f.base_replicas, f.cover_replicas, f.spot.spot_replicas

    assert fleet("fraction") == (4, 0, 4)
    assert fleet("p50", [8000.0] * 9) == (8, 0, 0)
    assert fleet("p50", [1000.0] * 9) == (4, 0, 4)
    # Two spot replicas starting (or under notice): carried on demand meanwhile.
    assert fleet("fraction", spot_not_serving=2) == (4, 2, 4)
    assert fleet("fraction", spot_not_serving=9) == (4, 4, 4)  # never past the needed fleet
    # Make before break: 7 on demand now, 2 spot serving: on demand goes only to 8 - 2 = 6.
    assert fleet("fraction", on_demand_now=7, spot_ready=2) == (4, 2, 4)
    assert fleet("fraction", on_demand_now=7, spot_ready=4) == (4, 0, 4)
    # Spot refused (a cold start over 5 minutes): on demand carries the whole fleet.
    slow = replace(SEED, cold_start_s=600)
    f = plan_fleet([], 8000, slow, limits, base_rule="fraction", on_demand_now=2, spot_ready=0,
                   spot_not_serving=0)  # fmt: skip
    assert (f.on_demand_replicas, f.spot.spot_replicas) == (8, 0)
    assert f.spot.refused
    with pytest.raises(InvalidInputError, match="base rule"):
        plan_fleet([], 1, SEED, base_rule="market", on_demand_now=1, spot_ready=0,
                   spot_not_serving=0)  # fmt: skip


def test_on_demand_needed_raises_until_spot_carries_the_rest() -> None:
    limits = SpotLimits(target_utilization=1.0, headroom=0.0, max_spot_fraction=0.5)
    od, plan = on_demand_needed(lambda n: plan_spot([], 8000, n, SEED, limits), 0)
    assert (od, plan.spot_replicas, plan.needed_replicas) == (4, 4, 8)
    od, plan = on_demand_needed(lambda n: plan_spot([], 8000, n, SEED, limits), 6)
    assert (od, plan.spot_replicas) == (6, 2)  # already enough: the start stands


def test_notice_replacements_by_hand() -> None:
    limits = SpotLimits(max_replicas=8)
    assert notice_replacements(4, 2, limits) == 2  # each noticed replica the plan keeps
    assert notice_replacements(1, 3, limits) == 1  # the plan keeps one: one replacement
    assert notice_replacements(0, 3, limits) == 0  # the plan lets spot go: none
    assert notice_replacements(7, 3, limits) == 1  # max_replicas leaves room for one
    assert notice_replacements(8, 3, limits) == 0
    assert notice_replacements(4, 3, replace(limits, global_cap=5)) == 1
    assert notice_replacements(6, 2, replace(limits, global_cap=5)) == 0  # above the cap already
    assert notice_replacements(4, 0, limits) == 0


@given(
    st.integers(0, 40),
    st.integers(0, 40),
    st.integers(0, 30),
    st.one_of(st.none(), st.integers(0, 30)),
)
def test_notice_replacements_replace_what_the_plan_keeps_within_the_limits(
    planned: int, noticed: int, max_replicas: int, cap: int | None
) -> None:
    limits = SpotLimits(max_replicas=max_replicas, global_cap=cap)
    extra = notice_replacements(planned, noticed, limits)
    ceiling = max_replicas if cap is None else min(max_replicas, cap)
    assert 0 <= extra <= min(noticed, planned)
    assert extra == 0 or planned + extra <= ceiling
    # as many as the limits leave room for: one more would break one of the bounds
    assert extra == min(noticed, planned) or planned + extra + 1 > ceiling


@pytest.mark.parametrize(
    "build",
    [
        lambda: SpotLimits(min_replicas=3, max_replicas=2),
        lambda: SpotLimits(max_spot_fraction=1.5),
        lambda: SpotLimits(target_utilization=0),
        lambda: SpotLimits(headroom=-0.1),
        lambda: SpotLimits(global_cap=-1),
        lambda: ReplicaEconomics(0, 1, 2.21, 0.73),
        lambda: ReplicaEconomics(1000, 1, -1, 0.73),
        lambda: plan_spot([1.0, -2.0], 0, 1, SEED),
        lambda: plan_spot([], float("nan"), 1, SEED),
        lambda: plan_spot([], 0, -1, SEED),
        lambda: plan_spot([], 0, 1, SEED, recent_peak_horizon=-1),
        lambda: plan_spot([], 0, 1, SEED, level_horizon=-1),
        lambda: sustained_level([], -1, 0, 0.7),
        lambda: sustained_level([], 0, 0, 0),
        lambda: notice_replacements(-1, 0, SpotLimits()),
        lambda: notice_replacements(0, -1, SpotLimits()),
        lambda: GovernorLimits(min_replicas=5, max_replicas=4),
        lambda: GovernorLimits(0, 4, max_step_up=0),
        lambda: GovernorLimits(0, 4, scale_down_window_s=-1),
    ],
)
def test_invalid_inputs_raise_a_cost_engine_error(build: Callable[[], object]) -> None:
    with pytest.raises(InvalidInputError):
        build()


def test_error_messages_name_the_parameter() -> None:
    with pytest.raises(CostEngineError, match=r"demand_history\[1\]"):
        plan_spot([1.0, -2.0], 0, 1, SEED)
    with pytest.raises(
        CostEngineError, match=r"min_replicas \(3\) must not exceed max_replicas \(2\)"
    ):
        SpotLimits(min_replicas=3, max_replicas=2)


# --- The planner: properties --------------------------------------------------------------------


@st.composite
def spot_limits(draw: st.DrawFn) -> SpotLimits:
    low = draw(st.integers(0, 10))
    return SpotLimits(
        min_replicas=low,
        max_replicas=draw(st.integers(low, 20)),
        max_spot_fraction=draw(st.floats(0, 1)),
        target_utilization=draw(st.floats(0.05, 1)),
        base_quantile=draw(st.floats(0, 1)),
        headroom=draw(st.floats(0, 1)),
        burst_quantile=draw(st.none() | st.floats(0, 1)),
        global_cap=draw(st.none() | st.integers(0, 20)),
    )


economics = st.builds(
    ReplicaEconomics,
    tokens_per_second=st.floats(1, 1e4),
    gpus_per_replica=st.sampled_from([0.5, 1, 2, 4, 8]),
    on_demand_usd_per_gpu_hour=st.floats(0, 10),
    spot_usd_per_gpu_hour=st.floats(0, 10),
    cold_start_s=st.floats(0, 600),
    interruptions_per_replica_hour=st.floats(0, 5),
    lost_work_s_per_interruption=st.floats(0, 600),
)
demand = st.floats(0, 1e5)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(demand, max_size=20),
    demand,
    st.integers(0, 20),
    economics,
    spot_limits(),
    st.builds(WorkloadTraits, st.booleans(), st.booleans(), st.booleans()),
    st.none() | st.integers(0, 25),
)
def test_plan_stays_within_its_limits_and_prices_consistently(
    history: list[float],
    current: float,
    on_demand: int,
    econ: ReplicaEconomics,
    limits: SpotLimits,
    traits: WorkloadTraits,
    horizon: int | None,
) -> None:
    plan = plan_spot(history, current, on_demand, econ, limits, traits, horizon)
    upper = (
        limits.max_replicas
        if limits.global_cap is None
        else min(limits.max_replicas, limits.global_cap)
    )
    assert 0 <= plan.spot_replicas <= upper
    total = on_demand + plan.spot_replicas
    assert plan.spot_replicas <= limits.max_spot_fraction * total + 1e-9
    bound = spot_fraction_bound(limits.max_spot_fraction, on_demand)
    floor = min(limits.min_replicas, upper, limits.min_replicas if bound is None else bound)
    uneconomic = any("no spot is recommended" in r for r in plan.reasons)
    if not plan.refused and not uneconomic:
        assert plan.spot_replicas >= floor
    if plan.refused:
        assert plan.spot_replicas == 0
        assert all(r.startswith("refused:") for r in plan.reasons)
    if plan.spot_replicas > 0:
        assert on_demand >= 1
        assert econ.cold_start_s <= 300
        assert plan.savings_usd_per_hour > 0  # spot is recommended only when cheaper
    assert plan.savings_usd_per_hour == pytest.approx(
        plan.all_on_demand_usd_per_hour - plan.expected_usd_per_hour
    )
    assert plan.savings_usd_per_month == pytest.approx(plan.savings_usd_per_hour * 730)
    assert plan.needed_replicas * econ.tokens_per_second * limits.target_utilization >= (
        plan.demand_tokens_per_second * (1 - 1e-9)
    )
    if limits.burst_quantile is not None:
        # Steady serving at the target utilization, the burst at full throughput.
        steady = current * (1 + limits.headroom)
        usable = econ.tokens_per_second * limits.target_utilization
        assert plan.needed_replicas * usable >= steady * (1 - 1e-9)
        margin = burst_margin(history, current, horizon, limits.burst_quantile)
        assert plan.needed_replicas * econ.tokens_per_second >= (current + margin) * (1 - 1e-9)


# --- The governor: worked examples --------------------------------------------------------------

LIMITS = GovernorLimits(min_replicas=1, max_replicas=8)


def started(current: int, at: float = 0.0, limits: GovernorLimits = LIMITS) -> GovernorState:
    """The state after one steady tick at `current`, long enough ago for any period."""
    return govern(GovernorState(), current, current, at, limits).state


def test_scale_up_is_step_limited() -> None:
    d = govern(started(1, at=-1000), 1, 7, 0, LIMITS)
    assert (d.desired, d.direction) == (3, "up")
    assert d.reason == "step-limited from 7 to 3 (+2 per 60s)"
    assert d.state.last_scale_up_at == 0


def test_scale_up_at_most_once_per_period() -> None:
    first = govern(started(1, at=-1000), 1, 7, 0, LIMITS)
    soon = govern(first.state, 3, 7, 59, LIMITS)
    assert (soon.desired, soon.direction) == (3, "none")
    assert "held" in soon.reason
    later = govern(soon.state, 3, 7, 60, LIMITS)
    assert (later.desired, later.direction) == (5, "up")


def test_scale_down_only_to_the_highest_recommendation_in_the_window() -> None:
    state = started(6, at=0)
    d = govern(state, 6, 2, 100, LIMITS)
    assert (d.desired, d.direction) == (6, "none")
    assert d.reason == "held by stabilization window (max 6 in last 300s)"
    d = govern(d.state, 6, 4, 200, LIMITS)
    assert d.desired == 6
    d = govern(d.state, 6, 3, 301, LIMITS)  # the 6 from t=0 has left; 4 from t=200 is highest
    assert (d.desired, d.direction) == (4, "down")
    d = govern(d.state, 4, 3, 501, LIMITS)
    assert (d.desired, d.direction) == (3, "down")


def test_fresh_state_never_scales_down_before_a_full_window() -> None:
    """As the HPA seeds its window with the current count: an operator restart is not a cue."""
    d = govern(GovernorState(), 7, 2, 1000, LIMITS)
    assert (d.desired, d.direction) == (7, "none")
    assert govern(d.state, 7, 2, 1300, LIMITS).desired == 2


def test_recommendation_clamped_to_max_and_global_cap() -> None:
    capped = GovernorLimits(min_replicas=1, max_replicas=8, global_cap=4, max_step_up=10)
    d = govern(started(2, at=-1000, limits=capped), 2, 50, 0, capped)
    assert d.desired == 4
    assert d.reason == "scaled up to 4"


def test_current_outside_the_bounds_moves_in_at_once() -> None:
    d = govern(started(3, at=0), 12, 12, 10, LIMITS)
    assert (d.desired, d.direction, d.reason) == (8, "down", "clamped to max 8")
    capped = GovernorLimits(min_replicas=4, max_replicas=8, global_cap=3)
    d = govern(GovernorState(), 0, 0, 0, capped)
    assert (d.desired, d.direction, d.reason) == (3, "up", "clamped to min 3")
    assert d.state.last_scale_up_at == 0
    d = govern(GovernorState(), 7, 7, 0, capped)
    assert (d.desired, d.reason) == (3, "clamped to global cap 3")


def test_hold_keeps_current_but_clamps_into_bounds() -> None:
    state = started(5, at=0)
    d = hold(state, 5, 10, "no metrics", LIMITS)
    assert (d.desired, d.direction) == (5, "none")
    assert d.reason == "holding at 5: no metrics"
    d = hold(state, 9, 10, "no metrics", LIMITS)
    assert (d.desired, d.direction, d.reason) == (8, "down", "no metrics; clamped to max 8")
    d = hold(state, 0, 10, "no metrics", LIMITS)
    assert (d.desired, d.direction) == (1, "up")


def test_time_going_backwards_is_an_error() -> None:
    state = started(3, at=100)
    with pytest.raises(InvalidInputError, match="earlier than the governor's last tick"):
        govern(state, 3, 3, 99.5, LIMITS)
    with pytest.raises(InvalidInputError, match="earlier"):
        hold(state, 3, 50, "no metrics", LIMITS)
    govern(state, 3, 3, 100, LIMITS)  # the same instant is fine


def test_state_drops_recommendations_outside_the_window() -> None:
    state = GovernorState()
    for t in range(0, 3600, 15):
        state = govern(state, 8, 8 - (t // 15) % 8, float(t), LIMITS).state
    assert all(t >= 3585 - 300 for t, _ in state.recommendations)
    assert len(state.recommendations) <= 8


# --- The governor: properties -------------------------------------------------------------------


@st.composite
def governor_limits(draw: st.DrawFn) -> GovernorLimits:
    low = draw(st.integers(0, 10))
    return GovernorLimits(
        min_replicas=low,
        max_replicas=draw(st.integers(low, 20)),
        global_cap=draw(st.none() | st.integers(0, 20)),
        max_step_up=draw(st.integers(1, 4)),
        scale_up_period_s=draw(st.sampled_from([0.0, 30.0, 60.0, 120.0])),
        scale_down_window_s=draw(st.sampled_from([0.0, 60.0, 300.0, 600.0])),
    )


ticks = st.lists(
    st.tuples(
        st.sampled_from([0.0, 1.0, 15.0, 30.0, 59.0, 60.0, 200.0]), st.none() | st.integers(0, 40)
    ),
    min_size=1,
    max_size=80,
)


@dataclass
class Tick:
    now: float
    current: int
    recommended: int | None
    decision: Decision


def simulate(
    limits: GovernorLimits, current: int, steps: list[tuple[float, int | None]]
) -> list[Tick]:
    state, now, out = GovernorState(), 0.0, []
    for dt, rec in steps:
        now += dt
        if rec is None:
            d = hold(state, current, now, "no data", limits)
        else:
            d = govern(state, current, rec, now, limits)
        out.append(Tick(now, current, rec, d))
        state, current = d.state, d.desired
    return out


@settings(max_examples=300, deadline=None)
@given(governor_limits(), st.integers(0, 30), ticks)
def test_governor_safety_rules_hold_for_any_sequence(
    limits: GovernorLimits, start: int, steps: list[tuple[float, int | None]]
) -> None:
    upper = (
        limits.max_replicas
        if limits.global_cap is None
        else min(limits.max_replicas, limits.global_cap)
    )
    lower = min(limits.min_replicas, upper)
    history = simulate(limits, start, steps)
    ups: list[float] = []
    for i, tick in enumerate(history):
        d = tick.decision
        assert lower <= d.desired <= upper
        assert d.direction == (
            "up" if d.desired > tick.current else "down" if d.desired < tick.current else "none"
        )
        in_bounds = lower <= tick.current <= upper
        if d.direction == "up":
            if in_bounds:
                assert d.desired - tick.current <= limits.max_step_up
                assert tick.recommended is not None  # holding never follows a recommendation
            ups.append(tick.now)
        if d.direction == "down" and in_bounds:
            assert tick.recommended is not None
            window = [
                min(max(t.recommended, lower), upper)
                for t in history[: i + 1]
                if t.recommended is not None
                and (t is tick or t.now > tick.now - limits.scale_down_window_s)
            ]
            assert d.desired >= max(window)
        assert len(d.state.recommendations) <= upper - lower + 1
    for earlier, later in itertools.pairwise(ups):
        assert later - earlier >= limits.scale_up_period_s


@settings(max_examples=200, deadline=None)
@given(governor_limits(), st.integers(0, 30), ticks, st.lists(st.booleans(), min_size=80))
def test_a_rising_tick_scales_down_only_into_bounds(
    limits: GovernorLimits, start: int, steps: list[tuple[float, int | None]], rising: list[bool]
) -> None:
    """`rising` holds the window's scale-down for that tick, never the clamp into bounds,
    and never a scale-up; the tick's recommendation still enters the window."""
    upper = limits.clamp(10**6)
    lower = min(limits.min_replicas, upper)
    state, now, current = GovernorState(), 0.0, start
    for (dt, rec), up in zip(steps, rising, strict=False):
        now += dt
        if rec is None:
            continue
        held = govern(state, current, rec, now, limits, rising=up)
        free = govern(state, current, rec, now, limits)
        assert held.state == free.state
        if up and lower <= current <= upper:
            assert held.desired == max(free.desired, current)
        else:
            assert held == free
        state, current = held.state, held.desired


def test_a_scale_down_waits_for_a_tick_whose_demand_does_not_rise() -> None:
    """The window has let 8 go (its 8 is older than 300 s); a tick that sees demand rise
    holds 8, and the next one that does not scales down to the window's highest, which the
    held tick's recommendation is part of."""
    limits = GovernorLimits(min_replicas=1, max_replicas=10)
    first = govern(GovernorState(), 8, 8, 0.0, limits)
    held = govern(first.state, 8, 3, 400.0, limits, rising=True)
    assert (held.desired, held.direction) == (8, "none")
    assert "demand is rising" in held.reason
    nxt = govern(held.state, 8, 2, 430.0, limits)
    assert (nxt.desired, nxt.direction) == (3, "down")
    # Without the rise the first tick scales down at once.
    assert govern(first.state, 8, 3, 400.0, limits).desired == 3
    # Out of bounds, the clamp wins over the hold.
    tight = GovernorLimits(min_replicas=1, max_replicas=5)
    clamped = govern(GovernorState(), 8, 8, 0.0, tight, rising=True)
    assert clamped.desired == 5


@pytest.mark.parametrize(
    ("previous", "current", "rising"),
    [
        (None, 100.0, False),  # no history: nothing to rise from
        (0.0, 0.0, False),
        (0.0, 1.0, True),  # from silence
        (70.0, 100.0, False),  # within the 0.7 target utilization's slack: noise
        (69.0, 100.0, True),
        (100.0, 50.0, False),
    ],
)
def test_demand_rises_past_the_target_utilizations_slack(
    previous: float | None, current: float, rising: bool
) -> None:
    assert demand_rising(previous, current, 0.7) is rising


def test_the_plan_says_when_its_demand_rises() -> None:
    e = ReplicaEconomics(1000, 1, 2.21, 0.73, 120, 0.05, 30)
    rises = plan_spot([500.0, 500.0], 900.0, 2, e)
    steady = plan_spot([500.0, 800.0], 900.0, 2, e)
    assert rises.demand_rising
    assert not steady.demand_rising
    assert not plan_spot([], 900.0, 2, e).demand_rising


def count_changes(history: list[Tick]) -> tuple[int, int]:
    """(replica changes, direction reversals)."""
    moves = [t.decision.direction for t in history if t.decision.direction != "none"]
    reversals = sum(1 for a, b in itertools.pairwise(moves) if a != b)
    return len(moves), reversals


def test_flapping_recommendation_changes_replicas_at_most_a_few_times_an_hour() -> None:
    """2, 8, 2, 8, … every 30 s tick for an hour. The 300 s stabilization window always holds
    an 8, so scale-down never happens; scale-up climbs 2 → 4 → 6 → 8 at +2 per 60 s and then
    stays: 3 changes, no reversal. ≤ 6 leaves room for the climb, never for flapping."""
    limits = GovernorLimits(min_replicas=1, max_replicas=8)
    steps: list[tuple[float, int | None]] = [(30.0, 2 if i % 2 == 0 else 8) for i in range(120)]
    changes, reversals = count_changes(simulate(limits, 2, steps))
    assert changes <= 6
    assert reversals == 0
    # The same signal without the window and the period flaps on every tick.
    loose = GovernorLimits(1, 8, max_step_up=10, scale_up_period_s=0, scale_down_window_s=0)
    loose_changes, loose_reversals = count_changes(simulate(loose, 2, steps))
    assert loose_changes >= 100
    assert loose_reversals >= 100
