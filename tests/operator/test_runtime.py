"""Policies, price sheets and status between the handlers and the tick."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from costengine.pricing import CapacityType
from costengine.spotplan import WorkloadTraits
from costoperator.actuator import RecordedCover
from costoperator.crds import PolicySpecError, parse_policy_status
from costoperator.figures import WorkloadFigures
from costoperator.runtime import Runtime

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
NOW = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return doc


def test_design_example_policy_becomes_a_view_with_its_overrides() -> None:
    rt = Runtime()
    doc = example("llama70b.yaml")
    rt.upsert_policy("inference", "llama70b", doc["spec"], 1)
    (view,) = rt.views()
    assert view.window == "5m"
    assert view.window_s == 300
    assert view.selector == {"matchLabels": {"app": "llama70b"}}
    assert view.baseline_window == "24h"
    assert view.api_comparison[0].name == "gpt-4o"
    assert view.prices is not None
    assert view.prices.usd_per_gpu_hour("A100-80GB", CapacityType.SPOT) == 0.73
    assert view.prices.usd_per_gpu_hour("H100-SXM", CapacityType.ON_DEMAND) == 2.21  # override
    assert rt.tick_interval_s() == 30


def test_spot_fields_reach_the_planners_limits() -> None:
    rt = Runtime()
    doc = example("llama70b.yaml")
    doc["spec"]["spot"].update(burstQuantile=0.99, targetUtilization=0.6, maxSpotFraction=0.5)
    rt.upsert_policy("inference", "llama70b", doc["spec"], 1)
    (view,) = rt.views()
    assert view.spot is not None
    limits = view.spot.limits(global_cap=None)
    assert (limits.burst_quantile, limits.target_utilization, limits.max_spot_fraction) == (
        0.99,
        0.6,
        0.5,
    )
    del doc["spec"]["spot"]["burstQuantile"]
    rt.upsert_policy("inference", "llama70b", doc["spec"], 2)
    (view,) = rt.views()
    assert view.spot is not None
    assert view.spot.limits(global_cap=None).burst_quantile == 0.9  # the planner's default


def test_spot_economics_and_traits_reach_the_planner() -> None:
    rt = Runtime()
    doc = example("llama70b.yaml")
    spot = doc["spec"]["spot"]
    for field in ("coldStartSeconds", "interruptionsPerReplicaHour", "sloBound", "tightP99"):
        spot.pop(field, None)
    rt.upsert_policy("inference", "llama70b", doc["spec"], 1)
    (view,) = rt.views()
    assert view.spot is not None
    unset = view.spot.economics(2000.0, 4.0, 2.21, 0.73)
    assert (unset.cold_start_s, unset.interruptions_per_replica_hour) == (120.0, 0.05)
    assert view.spot.traits == WorkloadTraits()
    spot.update(coldStartSeconds=240, interruptionsPerReplicaHour=0.5, sloBound=True, tightP99=True)
    rt.upsert_policy("inference", "llama70b", doc["spec"], 2)
    (view,) = rt.views()
    assert view.spot is not None
    e = view.spot.economics(2000.0, 4.0, 2.21, 0.73)
    assert (e.tokens_per_second, e.gpus_per_replica, e.on_demand_usd_per_gpu_hour) == (
        2000.0,
        4.0,
        2.21,
    )
    assert (e.spot_usd_per_gpu_hour, e.cold_start_s, e.interruptions_per_replica_hour) == (
        0.73,
        240.0,
        0.5,
    )
    assert view.spot.traits == WorkloadTraits(slo_bound=True, tight_p99=True)


def test_the_spot_planners_note_is_in_the_status_and_cleared_with_it() -> None:
    rt = Runtime()
    doc = example("llama70b.yaml")
    rt.upsert_policy("inference", "llama70b", doc["spec"], 1)
    key = ("inference", "llama70b")
    note = "refused: the cold start (600 s) exceeds the seed's 300 s limit for spot " + "x" * 2000
    spot = figures(2.92, 100, 50, workload="llama70b-spot", spot_recommended_replicas=0)
    noted = replace(spot, spot_note=note)
    status = rt.status_for(key, [figures(8.84, 1000, 500), noted], True, NOW)
    assert status.recommended_spot_replicas == 0
    assert status.spot_note == note[:1000]
    patch = rt.status_patch_due(key, status, 0.0)
    assert patch is not None
    assert patch["spotNote"] == note[:1000]
    assert parse_policy_status(patch) is not None  # within the status schema
    # A plan without refusals or warnings: the note is removed, not left from the last one.
    status = rt.status_for(key, [figures(8.84, 1000, 500), spot], True, NOW)
    assert status.spot_note is None
    cleared = rt.status_patch_due(key, status, 1000.0)
    assert cleared is not None
    assert "spotNote" in cleared
    assert cleared["spotNote"] is None


def test_recommend_mode_tells_refusals_and_count_changes_in_events() -> None:
    rt = Runtime()
    doc = example("llama70b.yaml")  # spot.mode: Recommend, the 300 s default window
    rt.upsert_policy("inference", "llama70b", doc["spec"], 1)
    key = ("inference", "llama70b")
    spot = figures(2.92, 100, 50, workload="llama70b-spot")

    def tick(now: float, count: int | None, note: str = "", saves: float = 0.0) -> list[Any]:
        f = replace(
            spot,
            spot_recommended_replicas=count,
            spot_projected_savings_usd_per_hour=saves,
            spot_note=note,
            spot_refusal="; ".join(r for r in note.split("; ") if r.startswith("refused:")),
        )
        rt.recommend_events(rt.views(), {("inference", "llama70b", "llama70b-spot"): f}, now)
        return rt.take_events(key)

    assert tick(0, 2, saves=12.5) == [
        (
            "Normal",
            "SpotRecommendation",
            "Deployment llama70b-spot: 2 spot replicas recommended, saving $12.50/h against "
            "all on demand",
        )
    ]
    assert tick(30, 2, saves=12.5) == []  # unchanged
    assert tick(60, 3) == []  # changed within the window: told at its end, if it lasts
    assert tick(299, 3) == []
    assert [e[1] for e in tick(300, 3)] == ["SpotRecommendation"]
    assert tick(330, None) == []  # no data is no news
    refused = "refused: the cold start (600 s) exceeds the seed's 300 s limit for spot"
    assert tick(360, 0, note=f"warning: something; {refused}") == [
        ("Warning", "SpotRefused", f"Deployment llama70b-spot: {refused}")
    ]  # the count changed too, within the window
    assert tick(390, 0, note=refused) == []  # still refused: told once
    assert [e[1] for e in tick(600, 0, note=refused)] == ["SpotRecommendation"]
    assert tick(630, 2) == []  # no longer refused, the count within the window
    assert [e[1] for e in tick(660, 0, note=refused)] == ["SpotRefused"]  # refused again
    rt.delete_policy(*key)
    assert rt.spot_told == {}


def test_gpupricing_sheet_is_used_by_reference() -> None:
    rt = Runtime()
    rt.upsert_pricing("seed", example("gpupricing-seed.yaml")["spec"])
    spec = {"selector": {"matchLabels": {"app": "x"}}, "pricing": {"catalogRef": "seed"}}
    rt.upsert_policy("ns", "p", spec, 1)
    (view,) = rt.views()
    assert view.prices is not None
    assert view.prices.name == "seed"
    missing = {"selector": {"matchLabels": {"app": "x"}}, "pricing": {"catalogRef": "nope"}}
    parsed = rt.upsert_policy("ns", "q", missing, 1)
    assert rt.missing_catalog(parsed) == "nope"


def test_invalid_spec_is_remembered_and_unpriced() -> None:
    rt = Runtime()
    rt.upsert_policy("ns", "p", {"selector": {"matchLabels": {"app": "x"}}}, 1)
    with pytest.raises(PolicySpecError, match="maxReplicas"):
        rt.upsert_policy(
            "ns",
            "p",
            {
                "selector": {"matchLabels": {"app": "x"}},
                "spot": {
                    "mode": "Recommend",
                    "minReplicas": 5,
                    "maxReplicas": 2,
                    "spotTargetRef": {"kind": "Deployment", "name": "s"},
                },
            },
            2,
        )
    assert rt.views() == []
    assert ("ns", "p") in rt.invalid
    rt.delete_policy("ns", "p")
    assert not rt.invalid


def figures(
    usd_per_hour: float, in_tps: float | None, out_tps: float | None, **kw: Any
) -> WorkloadFigures:
    return WorkloadFigures(
        namespace="ns",
        policy="p",
        workload=kw.pop("workload", "w"),
        model="",
        gpu="A100-80GB",
        engine="vllm",
        hourly_cost_usd={CapacityType.ON_DEMAND: usd_per_hour},
        gpus={CapacityType.ON_DEMAND: 4.0},
        replicas={CapacityType.ON_DEMAND: 1},
        input_tokens_per_second=in_tps,
        output_tokens_per_second=out_tps,
        usd_per_million_tokens=usd_per_hour / 3600 / ((in_tps or 0) + (out_tps or 0)) * 1e6
        if in_tps and out_tps
        else None,
        stale=in_tps is None,
        **kw,
    )


def test_policy_status_is_total_cost_over_total_tokens() -> None:
    rt = Runtime()
    rt.upsert_policy(
        "ns",
        "p",
        {
            "selector": {"matchLabels": {"app": "x"}},
            "drift": {"thresholdRatio": 1.2, "minTokens": 10},
        },
        3,
    )
    a = figures(8.84, 1000, 500, gpu_utilization_ratio=0.5, baseline_usd_per_million_tokens=1.0)
    b = figures(
        2.92,
        100,
        50,
        workload="w-spot",
        gpu_utilization_ratio=1.0,
        baseline_usd_per_million_tokens=1.0,
    )
    status = rt.status_for(("ns", "p"), [a, b], True, NOW)
    assert status.usd_per_million_tokens == pytest.approx((8.84 + 2.92) / 3600 / 1650 * 1e6)
    assert status.tokens_per_second == 1650
    assert status.gpu_utilization == pytest.approx(0.75)
    assert status.workloads == 2
    conditions = {c.type.value: c for c in status.conditions or []}
    assert conditions["Ready"].status.value == "True"
    assert conditions["Drifting"].status.value == "True"  # ~1.98 vs baseline 1.0
    assert conditions["Ready"].observed_generation == 3
    # Round-trips through the status schema (what the API server stores).
    assert parse_policy_status(rt.status_patch_due(("ns", "p"), status, 0.0)) is not None


def test_no_workloads_and_no_data_are_conditions_not_zeros() -> None:
    rt = Runtime()
    rt.upsert_policy("ns", "p", {"selector": {"matchLabels": {"app": "x"}}}, 1)
    empty = rt.status_for(("ns", "p"), [], True, NOW)
    assert empty.usd_per_million_tokens is None
    ready = next(c for c in empty.conditions or [] if c.type.value == "Ready")
    assert ready.reason == "NoWorkloads"
    quiet = rt.status_for(("ns", "p"), [figures(8.84, None, None)], False, NOW)
    assert quiet.stale
    assert quiet.tokens_per_second is None


def test_status_patches_are_rate_limited_unless_a_condition_flips() -> None:
    rt = Runtime()
    key = ("ns", "p")
    rt.upsert_policy("ns", "p", {"selector": {"matchLabels": {"app": "x"}}}, 1)
    first = rt.status_for(key, [figures(8.84, 1000, 500)], True, NOW)
    body = rt.status_patch_due(key, first, 0.0, min_interval_s=30)
    assert body is not None
    assert body["capacityUtilization"] is None  # unknown figures are removed, not left behind
    busier = rt.status_for(key, [figures(8.84, 2000, 500)], True, NOW)
    assert rt.status_patch_due(key, busier, 10.0, min_interval_s=30) is None
    assert rt.status_patch_due(key, busier, 31.0, min_interval_s=30) is not None
    stale = rt.status_for(key, [figures(8.84, None, None)], False, NOW)
    assert rt.status_patch_due(key, stale, 32.0, min_interval_s=30) is not None  # Stale flipped
    again = rt.status_for(key, [figures(8.84, None, None)], False, NOW + dt.timedelta(minutes=1))
    body = rt.status_patch_due(key, again, 100.0, min_interval_s=30)
    # lastTransitionTime moves only when a condition's status changes.
    if body is not None:
        stale_cond = next(c for c in body["conditions"] if c["type"] == "Stale")
        assert stale_cond["lastTransitionTime"].startswith("2026-11-24T00:00:00")


def test_write_budget_spreads_writes_that_fall_due_together() -> None:
    from costoperator.runtime import WriteBudget

    budget = WriteBudget(per_s=10)
    taken = sum(budget.take(100.0) for _ in range(1000))  # 1,000 policies due at once
    assert taken == 10  # the burst
    # Over the next 100 s, asked 200 times a second (1,000 timers every 5 s): 10 a second.
    granted = sum(budget.take(100.0 + i / 200) for i in range(1, 20_001))
    assert 995 <= granted <= 1001
    with pytest.raises(ValueError, match="positive"):
        WriteBudget(per_s=0)


def test_a_condition_flip_is_written_even_over_budget() -> None:
    from costoperator.runtime import WriteBudget

    rt = Runtime()
    key = ("ns", "p")
    rt.upsert_policy("ns", "p", {"selector": {"matchLabels": {"app": "x"}}}, 1)
    budget = WriteBudget(per_s=1, burst=1)
    first = rt.status_for(key, [figures(8.84, 1000, 500)], True, NOW)
    assert rt.status_patch_due(key, first, 0.0, 0.0, budget) is not None
    busier = rt.status_for(key, [figures(8.84, 2000, 500)], True, NOW)
    assert rt.status_patch_due(key, busier, 0.5, 0.0, budget) is None  # bucket empty
    stale = rt.status_for(key, [figures(8.84, None, None)], False, NOW)
    assert rt.status_patch_due(key, stale, 0.6, 0.0, budget) is not None  # Stale flipped


def test_both_scaling_records_are_read_back_for_the_step_period() -> None:
    """A restarted operator or a new leader resumes each workload's scale-up period from its
    own record: `status.scaling` (spot) and `status.onDemandScaling` (onDemandTargetRef)."""
    rt = Runtime()

    def record(at: str, up: str | None) -> dict[str, Any]:
        out = {"lastScaleTime": at, "workload": "Deployment/x", "fromReplicas": 1, "toReplicas": 2}
        return out if up is None else {**out, "lastScaleUpTime": up}

    spot_up, od_up = "2026-12-07T00:00:10+00:00", "2026-12-07T00:00:40+00:00"
    body = {
        "metadata": {"annotations": {}},
        "status": {"scaling": record(spot_up, spot_up), "onDemandScaling": record(od_up, od_up)},
    }
    rt.remember_object("inference", "llama70b", body)
    key = ("inference", "llama70b")
    assert rt.last_scale_up[key] == dt.datetime.fromisoformat(spot_up).timestamp()
    assert rt.last_on_demand_scale_up[key] == dt.datetime.fromisoformat(od_up).timestamp()
    # And the on-demand record's cover (none written: none, as before the field).
    assert rt.on_demand_covers[key] == RecordedCover("Deployment/x", 2, 0)
    covered = {**record(od_up, od_up), "toReplicas": 5, "coverReplicas": 2}
    rt.remember_object("inference", "llama70b", {"status": {"onDemandScaling": covered}})
    assert rt.on_demand_covers[key] == RecordedCover("Deployment/x", 5, 2)
    # A garbled on-demand record leaves the spot one alone (that period restarts afresh).
    garbled = {"metadata": {}, "status": {"scaling": record(spot_up, spot_up),
                                          "onDemandScaling": {"toReplicas": "many"}}}  # fmt: skip
    fresh = Runtime()
    fresh.remember_object("inference", "llama70b", garbled)
    assert key in fresh.last_scale_up
    assert key not in fresh.last_on_demand_scale_up
    rt.delete_policy("inference", "llama70b")
    assert key not in rt.last_on_demand_scale_up
    assert key not in rt.on_demand_covers
