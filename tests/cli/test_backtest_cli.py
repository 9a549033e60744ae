"""`llmcost backtest` as users and scripts call it, on the shared real traces."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

LLMCOST = shutil.which("llmcost") or str(Path(sys.executable).with_name("llmcost"))
POLICIES = ["on_demand_peak", "seed_hybrid", "reactive", "planner", "oracle"]
# The oracle's best plan within a few seconds is enough here (it is close to optimal early);
# the benchmark gives it the default 20 s.
FAST_ORACLE = ["--oracle-time-limit-s", "3"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LLMCOST, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def conv_run(
    shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("backtest")
    trace = shared_data / "traces" / "azure_llm_2023_conv.csv"
    done = run(
        "backtest", "--trace", str(trace), "--output", "json", "--out", str(out), *FAST_ORACLE
    )
    assert done.returncode == 0, done.stderr
    return done, json.loads(done.stdout), out


def test_json_has_the_five_policies_with_the_design_keys(
    conv_run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path],
) -> None:
    _, doc, _ = conv_run
    assert list(doc["policies"]) == POLICIES
    for name, p in doc["policies"].items():
        for key in (
            "cost_usd",
            "shortfall_token_ratio",
            "scale_actions",
            "usd_per_million_tokens",
            "savings_vs_on_demand_peak_ratio",
            "preemptions",
        ):
            assert key in p, (name, key)
        assert p["cost_usd"] > 0
        assert 0 <= p["shortfall_token_ratio"] <= 1
        assert p["usd_per_million_tokens"] == pytest.approx(
            p["cost_usd"] / p["served_tokens"] * 1e6
        )
    assert doc["policies"]["on_demand_peak"]["shortfall_token_ratio"] == 0
    assert doc["policies"]["on_demand_peak"]["savings_vs_on_demand_peak_ratio"] == 0
    # The options used are part of the result, with the documented defaults.
    opts = doc["options"]
    assert opts["cold_start_s"] == 120
    assert opts["billing_granularity_s"] == 60
    assert opts["preemption_notice_s"] == 120
    assert opts["planner_base"] == "fraction"  # the notice covers the cold start
    assert opts["planner_level"] is True
    assert opts["preemption_speedup"] == 1
    assert doc["fleets"]["on_demand_peak_replicas"] == 8
    assert doc["load_scale"] > 0
    assert set(doc["goals"]) == {
        "planner_within_10pct_of_oracle",
        "planner_within_10pct_of_oracle_bound",
        "planner_not_dearer_than_seed_hybrid",
    }
    # The bound goal is the plan goal where the solve decides it, and undecided (null) where
    # the planner is within 10% of the plan but not of the bound.
    goals = doc["goals"]
    bound_goal = goals["planner_within_10pct_of_oracle_bound"]
    assert bound_goal in (None, goals["planner_within_10pct_of_oracle"])
    planner_usd = doc["policies"]["planner"]["cost_usd"]
    undecided = goals["planner_within_10pct_of_oracle"] and (
        planner_usd > 1.1 * doc["oracle"]["lower_bound_usd"]
    )
    assert (bound_goal is None) == bool(undecided)


def test_the_oracle_is_the_cheapest(
    conv_run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path],
) -> None:
    _, doc, _ = conv_run
    policies = doc["policies"]
    oracle = policies["oracle"]
    assert oracle["shortfall_token_ratio"] == 0
    assert doc["oracle"]["lower_bound_usd"] <= oracle["cost_usd"]
    for name, p in policies.items():
        assert oracle["cost_usd"] <= p["cost_usd"], name


def test_out_writes_the_summary_and_the_plots(
    conv_run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path],
) -> None:
    _, doc, out = conv_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary == doc
    for name in ("capacity.png", "cumulative_cost.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        assert len(data) > 10_000, name
    assert sorted(Path(f).name for f in doc["files"]) == [
        "capacity.png",
        "cumulative_cost.png",
        "summary.json",
    ]


def test_progress_goes_to_stderr_and_names_each_policy(
    conv_run: tuple[subprocess.CompletedProcess[str], dict[str, Any], Path],
) -> None:
    done, _, _ = conv_run
    for name in POLICIES:
        assert f"backtest: {name}: simulating" in done.stderr
    assert "backtest: oracle: solving" in done.stderr


def test_the_table_for_people(shared_data: Path) -> None:
    trace = shared_data / "traces" / "azure_llm_2023_code.csv"
    done = run(
        "backtest", "--trace", str(trace), "--policy", "planner", "--policy", "seed_hybrid",
        "--quiet", "--preemption-speedup", "24",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    for needle in ("on_demand_peak", "seed_hybrid", "planner", "preemption_4-node"):
        assert needle in done.stdout
    assert "oracle" not in done.stdout.split("Policies")[1].split("Goals")[0]


def test_the_burst_margin_serves_the_bursty_code_trace_for_less_than_the_recent_peak(
    shared_data: Path,
) -> None:
    """Azure code bursts from near silence, faster than a 120 s cold start. Sizing for the
    peak of the planner's reaction time × 1.1 (the earlier rule) serves it only by holding
    that peak's slack through the quiet; the burst margin (the P90 of the rises seen within
    the reaction time) serves it within the goal's 0.5% of tokens for less. (While the lead
    was a cold start without the tick that sees a rise, the recent peak fell 1.12% short.)"""
    trace = shared_data / "traces" / "azure_llm_2023_code.csv"
    docs = {}
    for rule, args in (("burst", []), ("peak", ["--planner-recent-peak"])):
        done = run(
            "backtest", "--trace", str(trace), "--policy", "planner", "--quiet",
            "--output", "json", *args,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        docs[rule] = json.loads(done.stdout)
    assert docs["burst"]["options"]["planner_burst_quantile"] == 0.9
    assert docs["peak"]["options"]["planner_burst_quantile"] is None
    burst = docs["burst"]["policies"]["planner"]
    peak = docs["peak"]["policies"]["planner"]
    assert burst["shortfall_token_ratio"] <= 0.005
    assert burst["shortfall_token_ratio"] <= peak["shortfall_token_ratio"]
    assert burst["cost_usd"] < 0.95 * peak["cost_usd"]


@pytest.mark.parametrize("cold_start_s", [60, 90, 120, 180])
def test_the_code_trace_stays_within_the_shortfall_budget_at_other_cold_starts(
    shared_data: Path, cold_start_s: int
) -> None:
    """The planner was worked out at a 120 s cold start; a shorter one should be no harder.
    With the lead one cold start, without the tick that sees a rise, a 90 s cold start lost
    0.98% of code's tokens (`bench/backtest_conditions.py`); the lead is the reaction time,
    a tick and a cold start. A cold start past the warm-up is scored from two cold starts on.
    At 60 s, a spot replica released on the tick a burst began lost 0.69%; the governor now
    holds a scale-down while demand rises (`costengine.spotplan.govern`)."""
    trace = shared_data / "traces" / "azure_llm_2023_code.csv"
    done = run(
        "backtest", "--trace", str(trace), "--policy", "planner", "--quiet", "--output", "json",
        "--cold-start-s", str(cold_start_s), "--warmup-s", str(max(300, 2 * cold_start_s)),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    planner = json.loads(done.stdout)["policies"]["planner"]
    assert planner["shortfall_token_ratio"] <= 0.005


@pytest.mark.parametrize(
    "args", [["--peak-replicas", "16"], ["--latency-bound-s", "60"]], ids=["peak-16", "latency-60"]
)
def test_a_spot_release_waits_while_demand_rises(shared_data: Path, args: list[str]) -> None:
    """Code's trace away from the defaults (`bench/backtest_conditions.py`): with 16 replicas
    at the peak, or a 60 s latency bound, the window let a spot replica go on the tick a
    burst began, and the burst found the fleet a replica short for a cold start (0.72% and
    0.88% of the tokens short). The governor holds a scale-down on a tick whose demand rises
    past the target utilization's slack, and the release comes a tick later."""
    trace = shared_data / "traces" / "azure_llm_2023_code.csv"
    done = run(
        "backtest", "--trace", str(trace), "--policy", "planner", "--quiet", "--output", "json",
        *args,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    planner = json.loads(done.stdout)["policies"]["planner"]
    assert planner["shortfall_token_ratio"] <= 0.005


def test_the_preemption_notice_keeps_the_code_trace_within_the_shortfall_budget_under_stress(
    shared_data: Path,
) -> None:
    """A day of the real AWS market in the code trace's hour: told nothing before a preemption,
    the planner covers lost spot a cold start late and drops more than 0.5% of the tokens;
    AWS's two-minute notice (the default) starts the on-demand cover in time."""
    trace = shared_data / "traces" / "azure_llm_2023_code.csv"
    docs = {}
    for notice, args in (("aws", []), ("none", ["--preemption-notice-s", "0"])):
        done = run(
            "backtest", "--trace", str(trace), "--policy", "planner", "--quiet",
            "--preemption-speedup", "24", "--output", "json", *args,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        docs[notice] = json.loads(done.stdout)
    assert docs["none"]["options"]["preemption_notice_s"] == 0
    assert docs["none"]["options"]["planner_base"] == "p50"  # 0 s < a 120 s cold start
    aws = docs["aws"]["policies"]["planner"]
    none = docs["none"]["policies"]["planner"]
    assert aws["preemptions"] > 0
    assert none["preemptions"] > 0
    assert aws["shortfall_token_ratio"] <= 0.005 < none["shortfall_token_ratio"]


def test_the_base_can_be_chosen_whatever_the_notice(shared_data: Path) -> None:
    trace = shared_data / "traces" / "azure_llm_2023_conv.csv"
    for args, base in (
        (["--planner-base", "p50"], "p50"),
        (["--planner-base", "market", "--preemption-notice-s", "30"], "market"),
        (["--planner-base", "fraction", "--preemption-notice-s", "0"], "fraction"),
    ):
        done = run(
            "backtest", "--trace", str(trace), "--policy", "planner", "--quiet", "--output",
            "json", *args,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["options"]["planner_base"] == base


def test_the_sustained_level_can_be_switched_off(shared_data: Path) -> None:
    """Without the level the planner sizes each tick's noisy rate at the target utilization:
    on the conversation trace it costs more, and neither drops tokens."""
    trace = shared_data / "traces" / "azure_llm_2023_conv.csv"
    docs = {}
    for name, args in (("level", []), ("none", ["--no-planner-level"])):
        done = run(
            "backtest", "--trace", str(trace), "--policy", "planner", "--quiet", "--output",
            "json", *args,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        docs[name] = json.loads(done.stdout)
    assert docs["level"]["options"]["planner_level"] is True
    assert docs["none"]["options"]["planner_level"] is False
    level, none = docs["level"]["policies"]["planner"], docs["none"]["policies"]["planner"]
    assert level["cost_usd"] < none["cost_usd"]
    assert level["shortfall_token_ratio"] == none["shortfall_token_ratio"] == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--trace", "no/such/trace.csv"], "trace file not found"),
        (["--trace", "{spot}"], "not a Mooncake trace"),
        (["--trace", "{conv}", "--model", "lama-2-70b"], "llama-2-70b"),
        (["--trace", "{conv}", "--preemption-trace", "no/such.json"], "spot trace"),
        (["--trace", "{conv}", "--control-period-s", "25"], "whole number of steps"),
        (["--trace", "{conv}", "--warmup-s", "99999"], "nothing of the"),
        (["--trace", "{conv}", "--oracle-utilization", "1.5"], "oracle_utilization"),
        (["--trace", "{conv}", "--planner-burst-quantile", "1.5"], "planner_burst_quantile"),
        (["--trace", "{conv}", "--planner-headroom", "-0.1"], "planner_headroom"),
        (["--trace", "{conv}", "--preemption-notice-s", "-1"], "preemption_notice_s"),
        (["--trace", "{conv}", "--planner-base", "peak"], "--planner-base"),
        (["--trace", "{conv}", "--out", "/proc/llmcost-backtest"], "cannot write"),
    ],
)
def test_bad_input_exits_2_with_one_line(shared_data: Path, args: list[str], needle: str) -> None:
    spot = "preemption_4-node_aws-08-03-2023_us-east-1f_v100_1.json"
    paths = {
        "{spot}": str(shared_data / "spot" / spot),
        "{conv}": str(shared_data / "traces" / "azure_llm_2023_conv.csv"),
    }
    args = [paths.get(a, a) for a in args]
    done = run("backtest", *args, "--quiet", "--policy", "on_demand_peak")
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert needle in lines[0]
    assert "Traceback" not in done.stderr
