"""The backtest's fleet model, spot replay, oracle and policies on small hand-made cases."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest

from costengine.backtest import (
    PLANNER_BASES,
    POLICIES,
    BacktestResult,
    BacktestSettings,
    FleetCount,
    FleetModel,
    Observation,
    OracleProgram,
    OracleSolution,
    PlannerBase,
    PlannerPolicy,
    PolicyResult,
    StaticPolicy,
    constant_capacity_shortfall,
    demand_per_step,
    goals,
    make_policy,
    oracle_program,
    run_backtest,
    simulate,
    spot_availability,
    sustained_peak_tokens_per_second,
)
from costengine.errors import InvalidInputError
from costengine.spotplan import spot_fraction_bound
from costoperator.backtest import BacktestError, read_spot_trace, solve_oracle

# One replica serves 10 tokens/s; a replica-second costs $1 on demand and $0.25 on spot
# (3600 $/h on one GPU), so costs read as replica-seconds.
TINY = FleetModel(
    replica_tokens_per_second=10,
    gpus_per_replica=1,
    on_demand_usd_per_gpu_hour=3600,
    spot_usd_per_gpu_hour=900,
    step_s=1,
    control_period_s=1,
    latency_bound_s=2,
    cold_start_s=0,
    billing_granularity_s=1,
    billing_minimum_s=0,
    target_utilization=1.0,
    warmup_s=0,
    rate_window_s=1,
)


class Scripted:
    """Desired (on-demand, spot) per control tick, from a list (the last repeats)."""

    name = "scripted"

    def __init__(self, script: Sequence[tuple[int, int]]) -> None:
        self.script = list(script)
        self.seen: list[Observation] = []

    def decide(self, obs: Observation) -> tuple[int, int]:
        self.seen.append(obs)
        return self.script[min(len(self.seen) - 1, len(self.script) - 1)]


def oracle_solver(program: OracleProgram) -> OracleSolution:
    return solve_oracle(program, time_limit_s=10)


# --- The fluid step arithmetic -----------------------------------------------------------------


def test_a_burst_is_served_within_the_bound_and_the_rest_is_shortfall() -> None:
    # 30 tokens arrive at once; one replica serves 10 a step; they may wait 2 steps.
    r = simulate([30, 0, 0], StaticPolicy("one", 1), TINY)
    s = r.series
    assert s.served_tokens_per_second == [10, 10, 0]
    assert s.queued_tokens == [20, 0, 0]
    assert s.shortfall_tokens == [0, 10, 0]
    assert r.served_tokens == 20
    assert r.shortfall_tokens == 10
    assert r.shortfall_token_ratio == pytest.approx(1 / 3)


def test_a_longer_latency_bound_turns_the_same_burst_into_no_shortfall() -> None:
    fleet = FleetModel(**{**_fields(TINY), "latency_bound_s": 3})
    r = simulate([30, 0, 0], StaticPolicy("one", 1), fleet)
    assert r.series.served_tokens_per_second == [10, 10, 10]
    assert r.shortfall_tokens == 0


def test_work_is_served_first_come_first_served() -> None:
    # Step 0's leftover goes before step 1's arrivals: 5 of step 0's tokens run out of time,
    # then step 1's are served in time (serving the newest first would drop 15 instead).
    r = simulate([25, 10, 0], StaticPolicy("one", 1), TINY)
    assert r.series.served_tokens_per_second == [10, 10, 10]
    assert r.series.shortfall_tokens == [0, 5, 0]


def test_a_new_replica_serves_only_after_its_cold_start_but_is_billed_from_the_request() -> None:
    fleet = FleetModel(**{**_fields(TINY), "cold_start_s": 2, "latency_bound_s": 1})
    # One replica at first; a second one asked for at t = 1 serves from t = 3.
    r = simulate([20] * 5, Scripted([(1, 0), (2, 0)]), fleet)
    assert r.series.on_demand_ready == [1, 1, 1, 2, 2]
    assert r.series.on_demand_starting == [0, 1, 1, 0, 0]
    assert r.series.served_tokens_per_second == [10, 10, 10, 20, 20]
    assert r.shortfall_tokens == 30
    # 5 replica-seconds for the first, 4 (t = 1 … 5, cold start included) for the second.
    assert r.cost_usd == pytest.approx(9)
    assert r.scale_actions == 1


@pytest.mark.parametrize(
    ("granularity", "minimum", "lifetime", "billed"),
    [
        (60, 60, 10, 60),  # EC2-style minimum
        (60, 60, 61, 120),  # per started minute
        (1, 60, 61, 61),  # EC2: per second past the minute
        (60, 0, 120, 120),
    ],
)
def test_billing_rounds_each_replica_lifetime_up(
    granularity: float, minimum: float, lifetime: float, billed: float
) -> None:
    fleet = FleetModel(
        **{**_fields(TINY), "billing_granularity_s": granularity, "billing_minimum_s": minimum}
    )
    assert fleet.billed_s(lifetime) == billed
    # Through the simulation: one replica alive for `lifetime` one-second steps.
    r = simulate([0.0] * int(lifetime), StaticPolicy("one", 1), fleet)
    assert r.cost_usd == pytest.approx(billed)


def test_a_released_replica_is_billed_its_rounded_lifetime() -> None:
    fleet = FleetModel(**{**_fields(TINY), "billing_granularity_s": 5})
    # Two replicas, then one after t = 2: the second lived 2 s, billed 5; the first 8 s → 10.
    r = simulate([0.0] * 8, Scripted([(2, 0), (2, 0), (1, 0)]), fleet)
    assert r.cost_usd == pytest.approx(15)


def test_the_warm_up_is_simulated_but_not_scored() -> None:
    fleet = FleetModel(**{**_fields(TINY), "warmup_s": 2})
    r = simulate([100, 100, 10, 10], StaticPolicy("one", 1), fleet)
    assert r.demand_tokens == 20
    assert r.shortfall_tokens == 0  # the warm-up's backlog is forgotten, not dropped
    assert r.cost_usd == pytest.approx(2)
    assert r.series.cumulative_usd == [0, 0, 1, 2]


def test_sustained_peak_spreads_a_burst_over_the_latency_bound() -> None:
    # Steady demand needs its rate, less what may still wait when the trace ends (k − 1 steps).
    assert sustained_peak_tokens_per_second([5] * 99, 1, 2) == pytest.approx(5 * 99 / 100)
    # 30 tokens may be served over 2 steps: 15 tokens/s, not 30.
    assert sustained_peak_tokens_per_second([30, 0, 0], 1, 2) == pytest.approx(15)
    peak = sustained_peak_tokens_per_second([30, 0, 0], 1, 2)
    assert constant_capacity_shortfall([30, 0, 0], peak, 2) == 0
    assert constant_capacity_shortfall([30, 0, 0], peak * 0.99, 2) > 0


def test_demand_per_step_bins_arrivals() -> None:
    assert demand_per_step([(0.0, 5), (0.5, 5), (2.1, 7)], 1) == [10, 0, 7]


# --- Spot preemptions ----------------------------------------------------------------------


def test_a_spot_replica_is_lost_when_a_one_node_trace_drops_to_no_capacity() -> None:
    # A 1-node trace read as availability (1 = running): running, running, then preempted.
    market = spot_availability(
        [1, 1, 0, 0, 1], gap_s=1, nodes=1, pool_replicas=1, steps=5, step_s=1,
        values_are_preempted=False,
    )  # fmt: skip
    assert market == [1, 1, 0, 0, 1]
    r = simulate([10.0] * 5, StaticPolicy("hybrid", 1, 1), TINY, market)
    assert r.preemptions == 1
    assert r.series.spot_ready == [1, 1, 0, 0, 1]  # replaced when the market gives it back
    assert r.series.on_demand_ready == [1] * 5


def test_spot_values_counting_preemptions_are_read_the_other_way_round() -> None:
    market = spot_availability(
        [0, 0, 1], gap_s=1, nodes=1, pool_replicas=4, steps=3, step_s=1
    )  # the default reading: a value counts preempted instances
    assert market == [4, 4, 0]


def test_a_multi_node_trace_scales_to_the_pool_and_time_maps_with_speedup() -> None:
    values = [4, 3, 2, 0]  # instances available of 4, one 100 s tick each
    kw = {"gap_s": 100.0, "nodes": 4, "pool_replicas": 8, "step_s": 10.0}
    real_time = spot_availability(values, steps=25, values_are_preempted=False, **kw)
    assert real_time[:10] == [8] * 10
    assert real_time[10:20] == [6] * 10
    compressed = spot_availability(values, steps=4, values_are_preempted=False, speedup=10, **kw)
    assert compressed == [8, 6, 4, 0]
    shifted = spot_availability(values, steps=1, values_are_preempted=False, offset_s=300, **kw)
    assert shifted == [0]


def test_spot_cannot_start_while_the_market_is_below_the_desired_count() -> None:
    r = simulate([0.0] * 4, StaticPolicy("hybrid", 1, 3), TINY, [1, 1, 3, 3])
    assert r.series.spot_ready == [1, 1, 3, 3]
    assert r.preemptions == 0


def test_read_spot_trace_takes_the_pool_size_from_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "preemption_4-node_x.json"
    path.write_text(json.dumps({"metadata": {"gap_seconds": 300}, "data": [0, 1, 4]}))
    trace = read_spot_trace(path)
    assert (trace.nodes, trace.gap_s, trace.values) == (4, 300.0, [0.0, 1.0, 4.0])


@pytest.mark.parametrize(
    "content", ["not json", '{"data": [1]}', '{"metadata": {"gap_seconds": 0}, "data": [1]}']
)
def test_a_broken_spot_trace_is_a_backtest_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "spot.json"
    path.write_text(content)
    with pytest.raises(BacktestError, match="spot trace"):
        read_spot_trace(path)


def test_the_shared_spot_traces_all_read(shared_data: Path) -> None:
    for path in sorted((shared_data / "spot").glob("*.json")):
        trace = read_spot_trace(path)
        assert max(trace.values) <= trace.nodes
        assert trace.gap_s > 0


# --- The oracle ----------------------------------------------------------------------------


def test_the_oracle_finds_the_hand_computed_optimum() -> None:
    # Demand 10, 20, 10 tokens, served in the step it arrives (bound 1 s): 1, 2, 1 replicas.
    # Spot may be at most half the fleet and the fleet has at least one on-demand replica, so
    # the cheapest plan is 1 on demand throughout and 1 spot in the middle step:
    # 3 × $1 + 1 × $0.25 = $3.25.
    fleet = FleetModel(**{**_fields(TINY), "latency_bound_s": 1})
    program = oracle_program([10, 20, 10], fleet, None, max_spot_replicas=8, max_spot_fraction=0.5)
    solution = oracle_solver(program)
    assert solution.objective_usd == pytest.approx(3.25)
    assert program.schedule(solution.x) == [(1, 0), (1, 1), (1, 0)]
    assert solution.lower_bound_usd <= solution.objective_usd + 1e-9


def test_the_oracle_pays_cold_starts_and_respects_the_market() -> None:
    # As above with a 1 s cold start: a spot replica for the middle step costs $0.25 + a $0.25
    # start; no spot in the market there forces a second on-demand replica ($1 + $1 start).
    fleet = FleetModel(**{**_fields(TINY), "latency_bound_s": 1, "cold_start_s": 1})
    free = oracle_solver(oracle_program([10, 20, 10], fleet, None, 8, 0.5))
    assert free.objective_usd == pytest.approx(3.5)
    none = oracle_solver(oracle_program([10, 20, 10], fleet, [8, 0, 8], 8, 0.5))
    assert none.objective_usd == pytest.approx(5.0)


def test_the_oracle_plans_no_replica_busier_than_the_target_utilization() -> None:
    # Demand 10, 20, 10 tokens at half a replica's 10 tokens/s: 2, 4, 2 replicas, spot at most
    # half of them: 1+1, 2+2, 1+1 = 4 on demand and 4 spot replica-seconds, $4 + $1.
    fleet = FleetModel(**{**_fields(TINY), "latency_bound_s": 1, "target_utilization": 0.5})
    program = oracle_program([10, 20, 10], fleet, None, 8, 0.5, utilization=0.5)
    solution = oracle_solver(program)
    assert solution.objective_usd == pytest.approx(5.0)
    assert program.schedule(solution.x) == [(1, 1), (2, 2), (1, 1)]
    # run_backtest plans the oracle at the fleet's target utilization unless told otherwise.
    demand = [10.0, 20.0, 10.0]
    at_target = run_backtest(demand, BacktestSettings(fleet), None, oracle_solver, ("oracle",))
    busy = BacktestSettings(fleet, oracle_utilization=1.0)
    full = run_backtest(demand, busy, None, oracle_solver, ("oracle",))
    assert at_target.oracle is not None
    assert full.oracle is not None
    assert at_target.oracle.objective_usd == pytest.approx(5.0)
    assert full.oracle.objective_usd == pytest.approx(3.25)
    with pytest.raises(InvalidInputError, match="oracle_utilization"):
        BacktestSettings(fleet, oracle_utilization=1.5)


# The seed's prices on 4-GPU replicas of 100 tokens/s, ticking each minute: small enough for
# the oracle to solve at once.
SMALL = FleetModel(
    replica_tokens_per_second=100,
    gpus_per_replica=4,
    on_demand_usd_per_gpu_hour=2.21,
    spot_usd_per_gpu_hour=0.73,
    control_period_s=60,
    cold_start_s=60,
    warmup_s=60,
)


def test_the_oracle_is_no_dearer_than_any_policy_that_serves_all_demand() -> None:
    fleet = SMALL
    demand = _bursty(150)
    market = [8] * 60 + [2] * 30 + [8] * 60
    # Planned 100% busy, it bounds every policy (they may run replicas that busy too).
    settings = BacktestSettings(fleet, oracle_utilization=1.0)
    result = run_backtest(demand, settings, market, oracle_solver)
    oracle = result.policies["oracle"]
    assert oracle.shortfall_token_ratio == 0
    assert result.oracle is not None
    assert result.oracle.lower_bound_usd <= oracle.cost_usd
    for name, r in result.policies.items():
        if r.shortfall_tokens == 0:
            assert oracle.cost_usd <= r.cost_usd + 1e-9, name


def test_the_oracle_goal_against_its_bound_passes_only_on_what_the_solver_proved() -> None:
    result = run_backtest(_bursty(150), BacktestSettings(SMALL), [8] * 150, oracle_solver)
    planner, oracle = result.policies["planner"], result.policies["oracle"]
    solution = result.oracle
    assert solution is not None
    assert planner.shortfall_token_ratio <= 0.005

    def faked(plan_usd: float, bound_usd: float, short: float | None = None) -> BacktestResult:
        p = planner if short is None else replace(planner, shortfall_token_ratio=short)
        return replace(
            result,
            policies={
                **result.policies,
                "planner": p,
                "oracle": replace(oracle, cost_usd=plan_usd),
            },
            oracle=replace(solution, lower_bound_usd=bound_usd),
        )

    # (oracle's plan, its bound, planner's shortfall) -> (plan goal, bound goal).
    usd = planner.cost_usd
    cases = [
        ((usd / 1.05, usd / 1.05, None), (True, True)),  # proven: the bound is at the plan
        ((usd / 1.05, usd / 1.2, None), (True, None)),  # the gap straddles the margin: undecided
        ((usd / 1.2, usd / 1.3, None), (False, False)),  # past 10% of the plan: proven out
        ((usd / 1.05, usd / 1.05, 0.01), (False, False)),  # 1% short
    ]
    for (plan_usd, bound_usd, short), expected in cases:
        g = goals(faked(plan_usd, bound_usd, short))
        got = (g["planner_within_10pct_of_oracle"], g["planner_within_10pct_of_oracle_bound"])
        assert got == expected, (plan_usd, bound_usd, short)
    # Without the oracle's run there is no bound.
    alone = replace(result, policies={"planner": planner}, oracle=None)
    assert goals(alone)["planner_within_10pct_of_oracle_bound"] is None


def test_on_demand_peak_never_falls_short() -> None:
    fleet = FleetModel(replica_tokens_per_second=50, gpus_per_replica=1,
                       on_demand_usd_per_gpu_hour=1, spot_usd_per_gpu_hour=0.3)  # fmt: skip
    for seed in range(5):
        demand = _bursty(240, seed)
        result = run_backtest(demand, BacktestSettings(fleet), None, None, ("on_demand_peak",))
        assert result.policies["on_demand_peak"].shortfall_tokens == 0


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="unknown policy"):
        run_backtest([1.0] * 60, BacktestSettings(TINY), None, None, ("cheapest",))


# --- The planner ---------------------------------------------------------------------------


def test_the_planner_never_exceeds_its_limits() -> None:
    fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                       on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73)  # fmt: skip
    demand = _bursty(720, seed=3)
    market = [(i // 40) % 5 * 2 for i in range(720)]  # 0, 2, 4, 6, 8 replicas, changing
    for fraction in (0.3, 0.7):
        planner = make_policy("planner", fleet, 10, 3, 6, fraction)
        assert isinstance(planner, PlannerPolicy)
        r = simulate(demand, planner, fleet, market)
        decisions = planner.decisions
        assert decisions
        for od, spot in decisions:
            assert od >= 1
            assert 0 <= spot <= 6
            bound = spot_fraction_bound(fraction, od)
            assert bound is None or spot <= bound
        assert max(r.series.spot_ready) <= 6


def test_a_flapping_signal_changes_the_planners_replicas_a_few_times_an_hour() -> None:
    """RELIABILITY 9: a metric alternating every tick changes replicas at most a few times an
    hour (the governor's step limit and stabilization window)."""
    fleet = FleetModel(replica_tokens_per_second=1000, gpus_per_replica=4,
                       on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                       rate_window_s=30, warmup_s=0)  # fmt: skip
    per = fleet.steps_per_period
    hour = int(3600 / fleet.step_s)
    high, low = 8000 * fleet.step_s, 2000 * fleet.step_s
    demand = [high if (t // per) % 2 == 0 else low for t in range(hour)]
    for base in ("p50", "fraction"):
        planner = make_policy("planner", fleet, 12, 4, 8, 0.7, planner_base=base)
        assert isinstance(planner, PlannerPolicy)
        r = simulate(demand, planner, fleet)
        assert r.spot_replica_hours > 0  # the signal did call for spot
        assert r.scale_actions <= 6, base
        assert len(planner.decisions) == hour // per  # it decided every tick
    # The market base also falls as spot runs without preemptions: a one-way drift, on demand
    # to spot, that settles; the flapping signal itself still moves nothing.
    drifting = make_policy("planner", fleet, 12, 4, 8, 0.7, planner_base="market")
    assert isinstance(drifting, PlannerPolicy)
    r = simulate(demand, drifting, fleet)
    od = [o for o, _ in drifting.decisions]
    spot = [s for _, s in drifting.decisions]
    assert od == sorted(od, reverse=True)
    assert spot == sorted(spot)
    assert od[-1] < od[0]
    assert r.scale_actions <= 10
    assert len(set(drifting.decisions[len(od) // 2 :])) == 1  # settled in the second half hour


def test_short_bursts_every_few_minutes_keep_the_planners_replicas() -> None:
    """30 s bursts at 30× the baseline every 4 minutes, for two hours: released between bursts,
    replicas would come back a cold start after the next one has gone. The planner's 300 s
    window holds them: within the issue's 0.5% of tokens short (lost while the history learns
    the bursts, none after the third), a few actions, all while it learns: from the third burst
    on the fleet does not move. (A scale-down window shortened from a replay of the observed
    rates, tried and not shipped, dropped 7.1% here: BENCHMARKS.md.)"""
    fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                       on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                       warmup_s=0)  # fmt: skip
    demand = [(1500.0 if t % 24 < 3 else 50.0) * fleet.step_s for t in range(720)]
    planner = make_policy("planner", fleet, 16, 8, 12, 0.7)
    r = simulate(demand, planner, fleet)
    assert r.shortfall_tokens <= 0.005 * sum(demand)
    assert r.scale_actions <= 8
    assert sum(r.series.shortfall_tokens[3 * 24 :]) == 0  # none after the first three bursts
    assert len(set(_fleets(r)[3 * 24 :])) == 1


def _fleets(r: PolicyResult) -> list[tuple[int, int]]:
    """Per step, the on-demand and spot replicas asked for (ready or starting)."""
    s = r.series
    return [
        (s.on_demand_ready[i] + s.on_demand_starting[i], s.spot_ready[i] + s.spot_starting[i])
        for i in range(len(s.demand_tokens_per_second))
    ]


def test_bursts_that_recur_past_the_scale_down_window_are_served_once_the_signal_knows_them() -> (
    None
):
    """30 s bursts at 30× the baseline every 7 minutes, past the 300 s window: the window
    releases the replicas a burst asked for (they serve after it) before the next one. The
    60 s rate shows each burst at half its height, and a fleet for that loses a step of each
    burst; the queue-aware signal sees the 30 s peak, so once the history holds a burst the
    fleet between bursts serves the next one whole. And it stays: a burst the history has
    seen is not a new level (`sustained_level`), so it asks for no slack over itself that
    would be ready after it and released before the next one (70 actions in the two hours
    when every burst counted as a level, 10 now, none after the fourth burst)."""
    fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                       on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                       warmup_s=0)  # fmt: skip
    demand = [(1500.0 if t % 42 < 3 else 50.0) * fleet.step_s for t in range(720)]
    queue = simulate(demand, make_policy("planner", fleet, 16, 8, 12, 0.7), fleet)
    rate = simulate(
        demand, make_policy("planner", fleet, 16, 8, 12, 0.7, planner_queue=False), fleet
    )
    assert sum(queue.series.shortfall_tokens[2 * 42 :]) == 0  # none after the second burst
    assert sum(rate.series.shortfall_tokens[2 * 42 :]) > 0.05 * sum(demand)
    assert queue.shortfall_tokens < rate.shortfall_tokens / 3
    assert queue.scale_actions <= 12
    assert len(set(_fleets(queue)[4 * 42 :])) == 1


def test_the_lead_is_the_reaction_time_a_tick_and_a_cold_start() -> None:
    """40 s bursts at 12× the baseline every 6 minutes, with a 60 s cold start. A rise just
    after a tick is seen at the next one, and that tick's replicas serve a cold start later:
    the lead that holds the burst signal and counts the rises is a tick and a cold start (3
    ticks). With the cold start alone (2 ticks) the rises counted from the level missed the
    60 s rate's peak, which comes at a burst's third tick: the level's rise rule saw each
    burst's rate as a new level and asked for replicas ready after the burst, and the
    scale-down window released them as the next burst began: 75 actions in the two hours,
    0.75% of the tokens short, never settled. Now 0.38% short (the second burst), and from
    the fourth burst on the fleet does not move."""
    fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                       on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                       warmup_s=0, cold_start_s=60)  # fmt: skip
    demand = [(1200.0 if t % 36 < 4 else 100.0) * fleet.step_s for t in range(720)]
    r = simulate(demand, make_policy("planner", fleet, 16, 8, 12, 0.7), fleet)
    assert r.shortfall_tokens <= 0.005 * sum(demand)
    assert sum(r.series.shortfall_tokens[3 * 36 :]) == 0  # none after the third burst
    assert r.scale_actions <= 16
    assert len(set(_fleets(r)[4 * 36 :])) == 1


def test_bursts_half_the_time_get_the_fleet_they_need_not_a_levels_slack_over_them() -> None:
    """60 s bursts at 30× the baseline every 2 minutes: the bursts need 10 replicas (1,500
    tokens/s for 60 s served within the 30 s bound: 1,000 tokens/s). Counted as a new level at
    each burst, the 60 s rate asked for 1,500 ÷ 0.7 (22, all the limits allow) for the whole
    two hours; a rise the history has seen is a burst, which the burst term sizes."""
    fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                       on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                       warmup_s=0)  # fmt: skip
    demand = [(1500.0 if t % 12 < 6 else 50.0) * fleet.step_s for t in range(720)]
    r = simulate(demand, make_policy("planner", fleet, 16, 8, 12, 0.7), fleet)
    assert r.shortfall_tokens == 0
    after = _fleets(r)[10 * 6 :]  # from the tenth minute
    assert max(od + spot for od, spot in after) <= 12
    assert r.scale_actions <= 4


def test_the_planner_gives_bursts_the_rate_while_spot_is_missing_or_under_notice() -> None:
    """The queue-aware signal lets bursts queue; while spot replicas are missing or under
    notice that queue is the gap's, so the burst term reads the rate then."""
    fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                       on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                       warmup_s=0)  # fmt: skip
    planner = make_policy("planner", fleet, 16, 8, 12, 0.7)
    assert isinstance(planner, PlannerPolicy)
    whole = FleetCount(desired=3, ready=3, starting=0)
    seen = Observation(now_s=600, demand_tokens_per_second=100, history_tokens_per_second=(),
                       queued_tokens=0, on_demand=whole, spot=whole, preemptions=0,
                       spot_replica_s=0, burst_tokens_per_second=900)  # fmt: skip
    assert planner._queue_is_ours(seen)
    missing = FleetCount(desired=3, ready=1, starting=1)
    assert not planner._queue_is_ours(replace(seen, spot=missing))
    assert not planner._queue_is_ours(replace(seen, spot_noticed=1))
    assert not planner._queue_is_ours(replace(seen, burst_tokens_per_second=None))
    planner.queue_aware = False
    assert not planner._queue_is_ours(seen)


def test_the_sustained_level_spares_the_slack_on_noise_at_no_shortfall() -> None:
    """Noisy steady traffic (400 ± 80 tokens/s a step, 4 replicas at 70%): sizing each tick's
    noisy rate at the target utilization, the scale-down window holds the slack over its
    noisiest sample; the sustained level (the median over the window) keeps it over the level.
    Cheaper, fewer actions, nothing short either way."""
    fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                       on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                       warmup_s=0)  # fmt: skip
    noise = random.Random(7)
    demand = [max(0.0, noise.gauss(400, 80)) * fleet.step_s for _ in range(720)]
    leveled = make_policy("planner", fleet, 16, 8, 12, 0.7)
    assert isinstance(leveled, PlannerPolicy)
    assert leveled.level_horizon == 10  # the 300 s scale-down window, in 30 s ticks
    per_sample = make_policy("planner", fleet, 16, 8, 12, 0.7)
    assert isinstance(per_sample, PlannerPolicy)
    per_sample.level_horizon = 0
    a, b = simulate(demand, leveled, fleet), simulate(demand, per_sample, fleet)
    assert a.shortfall_tokens == b.shortfall_tokens == 0
    assert a.cost_usd < 0.95 * b.cost_usd
    assert a.scale_actions <= b.scale_actions


def test_a_fall_is_held_by_the_scale_down_window_only_not_also_by_the_level() -> None:
    """800 ± 40 tokens/s for an hour, then 200 ± 40 (12 replicas at 70%, then 3-4): the
    sustained level follows the fall once the latest three samples show it, so the fleet comes
    down when the 300 s scale-down window has passed (and the burst signal, whose longest
    window is 120 s, has seen the fall), not half the level's horizon later as well (at 450 s
    with the long median alone)."""
    fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                       on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                       warmup_s=0)  # fmt: skip
    noise = random.Random(7)
    demand = [max(0.0, noise.gauss(800 if t < 360 else 200, 40)) * fleet.step_s for t in range(720)]
    planner = make_policy("planner", fleet, 16, 8, 12, 0.7)
    assert isinstance(planner, PlannerPolicy)
    result = simulate(demand, planner, fleet)
    assert result.shortfall_tokens == 0
    fall_tick = 360 // fleet.steps_per_period
    totals = [o + s for o, s in planner.decisions]
    assert totals[fall_tick - 1] == 12
    down = next(i for i in range(fall_tick, len(totals)) if totals[i] <= 6)
    assert (down - fall_tick) * fleet.control_period_s <= 300 + 120


def test_the_planner_covers_spot_the_market_does_not_give_with_on_demand() -> None:
    fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                       on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                       warmup_s=300)  # fmt: skip
    # Minutes of 400 and 1,000 tokens/s: the P50 base (7 replicas at full throughput) alone
    # drops work in the busy minutes, so spot that never comes must be made up on demand, also
    # once the planner has given up on spot, and when it tries spot again: the on-demand
    # replicas spot is to replace stay until spot serves (make before break).
    demand = [(1000.0 if (t // 6) % 2 else 400.0) * fleet.step_s for t in range(360)]
    with_spot = simulate(demand, make_policy("planner", fleet, 12, 2, 8, 0.7), fleet)
    no_market = simulate(demand, make_policy("planner", fleet, 12, 2, 8, 0.7), fleet, [0] * 360)
    assert with_spot.spot_replica_hours > 0
    assert no_market.spot_replica_hours == 0
    assert no_market.shortfall_tokens == with_spot.shortfall_tokens == 0
    assert no_market.on_demand_replica_hours > with_spot.on_demand_replica_hours


def test_policies_see_the_spot_replicas_under_a_preemption_notice() -> None:
    # Four spot replicas, the market down to one at step 60 (600 s): with a 60 s notice the
    # ticks at steps 54, 57 and 60 are told that three will go (a step's preemptions come after
    # its decision, so the tick at 60 still has them); with none, nobody is told.
    market = [4] * 60 + [1] * 30
    for notice, told in ((60.0, {54: 3, 57: 3, 60: 3}), (0.0, {})):
        fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=1,
                           on_demand_usd_per_gpu_hour=2, spot_usd_per_gpu_hour=1,
                           warmup_s=0, preemption_notice_s=notice)  # fmt: skip
        policy = Scripted([(1, 4)])
        r = simulate([100.0] * 90, policy, fleet, market)
        noticed = {round(o.now_s / fleet.step_s): o.spot_noticed for o in policy.seen}
        assert {t: n for t, n in noticed.items() if n} == told
        assert r.preemptions == 3
    with pytest.raises(InvalidInputError, match="preemption_notice_s"):
        FleetModel(replica_tokens_per_second=1, gpus_per_replica=1, on_demand_usd_per_gpu_hour=1,
                   spot_usd_per_gpu_hour=1, preemption_notice_s=-1)  # fmt: skip


def test_a_notice_of_a_cold_start_lets_the_cover_serve_before_spot_goes() -> None:
    # 500 tokens/s all along (8 replicas at 70%); after 80 calm minutes the market takes all spot
    # back. The market base has fallen below what on demand alone can carry at 100% by then (the
    # fraction base is there from the start), so the cover decides it: asked for at the
    # preemption (no notice) it serves a cold start late and work is dropped; a shorter notice
    # shortens the gap; a notice of a cold start closes it, and so does one that leaves a gap
    # the queue carries within the 30 s latency bound (90 s).
    market = [12 if t < 480 else 0 for t in range(720)]
    for base in ("market", "fraction"):
        _cover_at_the_notice(base, market)


def _cover_at_the_notice(base: PlannerBase, market: list[int]) -> None:
    short: dict[float, float] = {}
    covered_at: dict[float, int] = {}
    for notice in (0.0, 60.0, 90.0, 120.0):
        fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                           on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                           warmup_s=0, preemption_notice_s=notice)  # fmt: skip
        planner = make_policy("planner", fleet, 16, 8, 12, 0.7, planner_base=base)
        assert isinstance(planner, PlannerPolicy)
        r = simulate([500.0 * fleet.step_s] * 720, planner, fleet, market)
        assert r.preemptions > 0
        short[notice] = r.shortfall_tokens
        covered_at[notice] = next(
            i for i, (od, _) in enumerate(planner.decisions) if i > 100 and od == 8
        )
    assert short[0.0] > short[60.0] > short[90.0] == short[120.0] == 0, base
    per = FleetModel(
        replica_tokens_per_second=1,
        gpus_per_replica=1,
        on_demand_usd_per_gpu_hour=1,
        spot_usd_per_gpu_hour=1,
    ).control_period_s
    assert covered_at[0.0] * per == 4800 + 30  # the first tick after the preemption
    assert covered_at[120.0] * per == 4800 - 120  # the tick the notice comes


def test_the_fraction_base_is_the_default_when_the_notice_covers_the_cold_start() -> None:
    """The notice and the latency bound must span the cold start: the queue carries a gap of
    up to the bound between a preemption and its cover serving
    (`test_a_notice_of_a_cold_start_lets_the_cover_serve_before_spot_goes`)."""

    def fleet(notice: float, cold: float = 120, bound: float = 30) -> FleetModel:
        return FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                          on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                          preemption_notice_s=notice, cold_start_s=cold,
                          latency_bound_s=bound)  # fmt: skip

    cases = ((fleet(120), "fraction"), (fleet(30), "p50"), (fleet(0, cold=0), "fraction"),
             (fleet(300, cold=240), "fraction"), (fleet(120, cold=180), "p50"),
             (fleet(90), "fraction"), (fleet(80), "p50"), (fleet(30, cold=60), "fraction"),
             (fleet(120, cold=180, bound=60), "fraction"), (fleet(0, bound=60), "p50"))  # fmt: skip
    for f, default in cases:
        assert BacktestSettings(f).base == default
        planner = make_policy("planner", f, 12, 4, 8, 0.7)
        assert isinstance(planner, PlannerPolicy)
        assert planner.base == default
        for chosen in PLANNER_BASES:
            assert BacktestSettings(f, planner_base=chosen).base == chosen
            planner = make_policy("planner", f, 12, 4, 8, 0.7, planner_base=chosen)
            assert isinstance(planner, PlannerPolicy)
            assert planner.base == chosen
    for bad in (
        lambda: BacktestSettings(fleet(120), planner_base=cast(PlannerBase, "peak")),
        lambda: make_policy(
            "planner", fleet(120), 12, 4, 8, 0.7, planner_base=cast(PlannerBase, "P5")
        ),
    ):
        with pytest.raises(InvalidInputError, match="unknown planner base"):
            bad()


def test_the_operator_base_keeps_on_demand_fixed_and_replaces_noticed_spot_with_spot() -> None:
    """The live operator's shape: on demand stays at seed_hybrid's base whatever demand does;
    spot follows the plan beside it, and a replica under notice gets a spot replacement (not
    on-demand cover) while the market has room for one."""
    fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                       on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                       warmup_s=0)  # fmt: skip
    # Two hours of a slow wave around 800 tokens/s: 8-15 replicas at 70%.
    demand = [(800 + 200 * math.sin(t / 60)) * fleet.step_s for t in range(720)]
    policy = make_policy("planner", fleet, 16, 8, 12, 0.7, planner_base="operator")
    assert isinstance(policy, PlannerPolicy)
    result = simulate(demand, policy, fleet)
    assert {od for od, _ in policy.decisions} == {8}  # the seed base, never moved
    spot = [s for _, s in policy.decisions]
    assert min(spot) < max(spot) <= 12  # spot follows the wave, within its cap
    assert result.on_demand_scale_actions == 0
    # A replica under notice: the plan's spot and a replacement.
    whole = FleetCount(desired=4, ready=4, starting=0)
    seen = Observation(now_s=0, demand_tokens_per_second=1000, history_tokens_per_second=(),
                       queued_tokens=0, on_demand=FleetCount(8, 8, 0), spot=whole,
                       preemptions=0, spot_replica_s=0)  # fmt: skip
    fresh = make_policy("planner", fleet, 16, 8, 12, 0.7, planner_base="operator")
    noticed = make_policy("planner", fleet, 16, 8, 12, 0.7, planner_base="operator")
    assert isinstance(fresh, PlannerPolicy)
    assert isinstance(noticed, PlannerPolicy)
    od, planned = fresh.decide(seen)
    assert (od, planned) == (8, 7)  # ceil(1000 / 70) = 15 replicas at 70%: 7 beside the 8
    assert noticed.decide(replace(seen, spot_noticed=1)) == (8, 8)
    # Six noticed: the spot cap of 12 leaves room for 5 replacements; the spot governor then
    # steps up from what runs (4) by 2 a minute at most, as for any rise.
    capped = make_policy("planner", fleet, 16, 8, 12, 0.7, planner_base="operator")
    assert isinstance(capped, PlannerPolicy)
    assert capped.decide(replace(seen, spot_noticed=6)) == (8, 12)
    assert noticed.decide(replace(seen, now_s=30, spot_noticed=6)) == (8, 6)


def test_a_calm_market_lowers_the_market_base_and_a_stormy_one_keeps_the_p50_base() -> None:
    fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                       on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                       warmup_s=0)  # fmt: skip
    # Two hours of a slow wave around 800 tokens/s: a P50 base of several replicas.
    demand = [(800 + 200 * math.sin(t / 60)) * fleet.step_s for t in range(720)]

    def run(base: PlannerBase, market: list[int] | None) -> tuple[PlannerPolicy, PolicyResult]:
        planner = make_policy("planner", fleet, 16, 8, 12, 0.7, planner_base=base)
        assert isinstance(planner, PlannerPolicy)
        return planner, simulate(demand, planner, fleet, market)

    # No preemptions: the estimate of the interruption rate falls with the spot replica-hours
    # run, and the base with it, to what the spot fraction alone requires; spot carries more.
    _, calm = run("p50", None)
    market_base, calmer = run("market", None)
    assert calmer.shortfall_tokens == calm.shortfall_tokens == 0
    assert calmer.on_demand_replica_hours < 0.8 * calm.on_demand_replica_hours
    assert calmer.spot_replica_hours > calm.spot_replica_hours
    assert calmer.cost_usd < calm.cost_usd
    late = market_base.decisions[-10:]
    for od, spot in late:
        # On demand is now what the spot fraction requires of this fleet: with one on-demand
        # replica less, spot could not make up the same fleet.
        fewer = od - 1
        assert fewer + (spot_fraction_bound(0.7, fewer) or 0) < od + spot
    # A market that takes spot away every few minutes from the start: the rate seen is above
    # the configured one at once, so the base is the P50 base throughout.
    storm = [0 if (t // 12) % 3 == 0 else 12 for t in range(720)]
    stormy_seed, _ = run("p50", storm)
    stormy_market, _ = run("market", storm)
    assert stormy_market.decisions == stormy_seed.decisions
    # The fraction base is there from the first tick, calm market or not: cheaper than the
    # market base in the calm, on demand only as the fraction requires throughout; in the storm
    # the cover and the interruption pricing, not the base, bring the on demand.
    fraction, calmest = run("fraction", None)
    assert calmest.shortfall_tokens == 0
    assert calmest.on_demand_replica_hours < calmer.on_demand_replica_hours
    assert calmest.cost_usd < calmer.cost_usd
    for od, spot in fraction.decisions[1:]:
        fewer = od - 1
        assert fewer + (spot_fraction_bound(0.7, fewer) or 0) < od + spot


def test_every_policy_runs_and_reports_in_order() -> None:
    fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                       on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                       control_period_s=60)  # fmt: skip
    result = run_backtest(_bursty(150), BacktestSettings(fleet), None, oracle_solver)
    assert tuple(result.policies) == POLICIES
    assert result.savings_vs_on_demand_peak_ratio("on_demand_peak") == 0
    for r in result.policies.values():
        assert r.cost_usd > 0
        assert math.isclose(r.cost_usd, r.on_demand_usd + r.spot_usd)
        assert r.series.cumulative_usd[-1] == pytest.approx(r.cost_usd)


# --- helpers -------------------------------------------------------------------------------


def _fields(fleet: FleetModel) -> dict[str, float]:
    return {name: getattr(fleet, name) for name in FleetModel.__dataclass_fields__}


def _bursty(steps: int, seed: int = 0) -> list[float]:
    """Tokens per 10 s step: a slow wave with bursts (deterministic, no RNG dependency)."""
    out = []
    for t in range(steps):
        wave = 300 + 200 * math.sin(2 * math.pi * t / 120 + seed)
        burst = 900 if (t * 7 + seed * 13) % 53 < 3 else 0
        out.append((wave + burst) * 10)
    return out


def test_what_the_solver_prints_in_c_does_not_reach_stdout() -> None:
    """HiGHS prints a stray line on C stdout (ERGO-Code/HiGHS#2783); `--output json` must stay
    parseable, so the solve runs with C stdout sent to stderr."""
    script = (
        "import ctypes, sys\n"
        "from costoperator.backtest import _c_stdout_to_stderr\n"
        "print('before', flush=True)\n"
        "with _c_stdout_to_stderr():\n"
        "    ctypes.CDLL(None).printf(b'from C\\n')\n"
        "print('after')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == "before\nafter\n"
    assert "from C" in done.stderr


def test_the_operator_replay_covers_spot_the_market_has_not_given_not_spot_starting() -> None:
    """``operator-fraction``: 1,000 tokens/s needs 15 replicas at 70%, 5 on demand beside 10
    spot at a 0.7 fraction. Spot the market gave, starting on its node, serves no later than
    on demand asked for now, so it gets no cover; spot it has not given (desired, not
    existing) and spot under notice do."""
    fleet = FleetModel(replica_tokens_per_second=100, gpus_per_replica=4,
                       on_demand_usd_per_gpu_hour=2.21, spot_usd_per_gpu_hour=0.73,
                       warmup_s=0)  # fmt: skip

    def decide(spot: FleetCount, noticed: int = 0) -> tuple[int, int]:
        policy = make_policy("planner", fleet, 16, 8, 12, 0.7, planner_base="operator-fraction")
        seen = Observation(now_s=0, demand_tokens_per_second=1000, history_tokens_per_second=(),
                           queued_tokens=0, on_demand=FleetCount(5, 5, 0), spot=spot,
                           preemptions=0, spot_replica_s=0, spot_noticed=noticed)  # fmt: skip
        return policy.decide(seen)

    assert decide(FleetCount(desired=10, ready=10, starting=0)) == (5, 10)
    assert decide(FleetCount(desired=10, ready=8, starting=2)) == (5, 10)  # starting: none
    assert decide(FleetCount(desired=10, ready=8, starting=0)) == (7, 10)  # not given: 2
    assert decide(FleetCount(desired=10, ready=6, starting=2)) == (7, 10)
    assert decide(FleetCount(desired=10, ready=10, starting=0), noticed=1) == (6, 10)
    assert decide(FleetCount(desired=10, ready=8, starting=0), noticed=1) == (8, 10)


def test_a_policy_observes_the_last_hour_of_ticks_as_the_operator_keeps(
    shared_data: Path,
) -> None:
    """Past an hour the history is the last hour's ticks (PLANNER_HISTORY_S), as the
    operator's DemandHistory keeps: a long trace replays what the operator would plan, and a
    tick's work does not grow with the trace. The real conv trace, replayed twice."""
    from costengine.spotplan import PLANNER_HISTORY_S
    from costoperator.traces import read_trace

    requests = read_trace(shared_data / "traces" / "azure_llm_2023_conv.csv")
    per_s = [0.0] * (int(requests[-1].arrival_s) + 1)
    for r in requests:
        per_s[int(r.arrival_s)] += r.input_tokens + r.output_tokens
    demand = per_s * 2
    fleet = replace(TINY, control_period_s=30, rate_window_s=30)
    policy = Scripted([(1, 0)])
    simulate(demand, policy, fleet)
    kept = int(PLANNER_HISTORY_S / 30)
    lengths = [len(o.history_tokens_per_second) for o in policy.seen]
    assert lengths[: kept + 1] == list(range(kept + 1))
    assert set(lengths[kept:]) == {kept}
    rates = [o.demand_tokens_per_second for o in policy.seen]
    late = policy.seen[-1]
    assert list(late.history_tokens_per_second) == rates[-1 - kept : -1]
    assert len(late.burst_history) == kept
