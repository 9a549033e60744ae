"""The `llmcost` command line as users and scripts call it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from costoperator.cli import main

LLMCOST = shutil.which("llmcost") or str(Path(sys.executable).with_name("llmcost"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LLMCOST, *args], capture_output=True, text=True, timeout=120)


def json_of(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    assert main([*args, "--output", "json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out
    assert "Infinity" not in out
    return json.loads(out)


def test_estimate_reproduces_the_seed_headline_through_the_console_script() -> None:
    done = run(
        "estimate",
        "--gpu-hourly-usd",
        "2.21",
        "--tokens-per-second",
        "2400",
        "--utilization",
        "0.7",
        "--gpus",
        "4",
        "--output",
        "json",
    )
    assert done.returncode == 0, done.stderr
    assert round(json.loads(done.stdout)["usd_per_million_tokens"], 2) == 1.46


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["estimate", "--gpu-hourly-usd", "-2", "--tokens-per-second", "100"], "gpu_cost_per_hour"),
        (
            [
                "estimate",
                "--gpu-hourly-usd",
                "2",
                "--tokens-per-second",
                "100",
                "--utilization",
                "1.2",
            ],
            "utilization",
        ),
        (["estimate", "--gpu-hourly-usd", "abc", "--tokens-per-second", "100"], "--gpu-hourly-usd"),
        (["throughput", "--model", "llama-2-70b", "--gpu", "A100"], "did you mean"),
        (["throughput", "--model", "lama-2-70b", "--gpu", "A100-80GB"], "llama-2-70b"),
        (["throughput", "--model", "llama-2-70b", "--gpu", "A100-80GB"], "--tp"),
        (
            ["rightsize", "--model", "llama-2-7b", "--tokens-per-second", "100", "--prices", "gcp"],
            "price sheet",
        ),
        (["estimate", "--bogus"], "--bogus"),
        (
            ["run", "--prometheus-url", "http://p:9090", "-A", "--notice-taint", "not a taint!"],
            "--notice-taint 'not a taint!' is not a taint key",
        ),
        (
            ["run", "--prometheus-url", "http://p:9090", "-A", "--spot-global-cap", "-1"],
            "--spot-global-cap",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(args: list[str], needle: str) -> None:
    done = run(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert needle in lines[0]
    assert "Traceback" not in done.stderr


def test_throughput_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    r = json_of(
        capsys,
        "throughput",
        "--model",
        "llama-2-70b",
        "--gpu",
        "A100-80GB",
        "--tp",
        "4",
        "--batch",
        "16",
        "--context",
        "576",
    )
    assert r["decode_tokens_per_second"] > 0
    assert r["prefill_tokens_per_second"] > r["decode_tokens_per_second"]
    assert r["engine"] == "vllm"
    assert r["seed_formula_decode_tokens_per_second"] > r["decode_tokens_per_second"]
    fp8 = json_of(
        capsys,
        "throughput",
        "--model",
        "llama-2-70b",
        "--gpu",
        "H100-SXM",
        "--tp",
        "4",
        "--batch",
        "16",
        "--quant",
        "fp8",
        "--engine",
        "trtllm",
    )
    assert fp8["weight_gb_per_gpu"] < r["weight_gb_per_gpu"] / 1.8


def test_throughput_warns_when_the_batch_does_not_fit(capsys: pytest.CaptureFixture[str]) -> None:
    r = json_of(
        capsys,
        "throughput",
        "--model",
        "llama-2-13b",
        "--gpu",
        "L4",
        "--tp",
        "2",
        "--batch",
        "256",
        "--context",
        "4096",
    )
    assert not r["fits_batch_in_memory"]
    assert "KV cache" in r["warning"]


def test_rightsize_ranks_candidates(capsys: pytest.CaptureFixture[str]) -> None:
    r = json_of(
        capsys,
        "rightsize",
        "--model",
        "llama-3.1-8b",
        "--tokens-per-second",
        "800",
        "--prices",
        "aws-us-east-1",
        "--capacity",
        "on_demand",
        "--capacity",
        "spot",
    )
    candidates = r["candidates"]
    assert {c["capacity_type"] for c in candidates} == {"on_demand", "spot"}
    costs = [c["usd_per_million_tokens"] for c in candidates]
    assert costs == sorted(costs)
    assert all(c["feasible"] for c in candidates)


def test_caching_spot_breakeven_tenancy_stack_defaults_are_the_seeds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert round(json_of(capsys, "caching", "prefix")["prefix"]["usd_saved_per_hour"], 2) == 8.70
    hybrid = json_of(capsys, "spot")["hybrid"]
    assert round(hybrid["monthly_all_on_demand_usd"]) == 9_680
    assert round(hybrid["savings_ratio"], 3) == 0.201
    be = json_of(capsys, "breakeven")
    assert [round(v["api_usd"]) for v in be["volumes"]] == [6_250, 62_500]
    assert round(be["volumes"][0]["self_hosted"]["total_usd"]) == 6_453
    assert round(json_of(capsys, "tenancy", "lora")["lora"]["cost_ratio"]) == 49
    mux = json_of(capsys, "tenancy", "multiplex")["multiplexing"]
    assert mux["quantile"] is None
    assert round(mux["shared_utilization_ratio"], 2) == 0.68
    assert round(json_of(capsys, "stack")["total_reduction_ratio"], 3) == 0.976
    own = json_of(capsys, "stack", "--lever", "a=0.5", "--lever", "b=0.5")
    assert own["total_reduction_ratio"] == 0.75


def test_semantic_template_and_batching(capsys: pytest.CaptureFixture[str]) -> None:
    sem = json_of(
        capsys, "caching", "semantic", "--requests-per-hour", "10000", "--hit-ratio", "0.2"
    )
    assert sem["semantic"]["requests_served_from_cache_per_hour"] == 2000
    tpl = json_of(
        capsys,
        "caching",
        "template",
        "--template-tokens",
        "1500",
        "--dynamic-tokens",
        "500",
        "--requests-per-hour",
        "1000",
    )
    assert tpl["template"]["prefill_reduction_ratio"] == pytest.approx(0.75)
    bat = json_of(capsys, "batching", "--model", "llama-2-7b", "--gpu", "H100-SXM")
    levels = bat["load_levels"]
    assert [lv["batch"] for lv in levels] == sorted(lv["batch"] for lv in levels)
    costs = [lv["usd_per_million_tokens"] for lv in levels]
    assert costs == sorted(costs, reverse=True)
    assert bat["usd_per_hour"] == 4.50


def test_tenancy_multiplex_on_real_traces(
    capsys: pytest.CaptureFixture[str], shared_data: Path
) -> None:
    traces = shared_data / "traces"
    args = ["tenancy", "multiplex"]
    for name in (
        "azure_llm_2023_code.csv",
        "azure_llm_2023_conv.csv",
        "mooncake_conversation.jsonl",
    ):
        args += ["--trace", str(traces / name)]
    mux = json_of(capsys, *args)["multiplexing"]
    assert mux["tenants"] == 3
    assert 0 < mux["shared_capacity"] < mux["dedicated_capacity"]


@pytest.mark.parametrize("kind", ["gpus", "models", "prices", "engines", "quantizations"])
def test_catalog_lists(capsys: pytest.CaptureFixture[str], kind: str) -> None:
    assert json_of(capsys, "catalog", kind)[kind]


def test_every_command_has_help_with_an_example() -> None:
    top = run("--help")
    assert top.returncode == 0
    for command in (
        "estimate",
        "throughput",
        "rightsize",
        "batching",
        "spot",
        "breakeven",
        "stack",
        "catalog",
        "demo",
    ):
        assert command in top.stdout
        done = run(command, "--help")
        assert done.returncode == 0, done.stderr
        assert "--output" in done.stdout


def test_table_output_is_for_people() -> None:
    done = run("estimate", "--gpu-hourly-usd", "2.21", "--tokens-per-second", "2400", "--gpus", "4")
    assert done.returncode == 0
    assert "$1.4616" in done.stdout


def test_piped_tables_are_not_cut_to_80_columns() -> None:
    """Piped (a file, a pager, a CI log) rich would assume 80 columns and cut the rightsize
    table's cells to "…"; COLUMNS, when set, still decides."""
    args = ("rightsize", "--model", "llama-3.1-70b", "--tokens-per-second", "5000")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    piped = subprocess.run(
        [LLMCOST, *args], capture_output=True, text=True, timeout=120, env=env, check=True
    )
    assert "$/1M at capacity" in piped.stdout
    assert "on_demand" in piped.stdout
    assert "…" not in piped.stdout
    narrow = subprocess.run(
        [LLMCOST, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "COLUMNS": "80"},
        check=True,
    )
    assert "…" in narrow.stdout
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80


def test_demo_prices_the_real_traces(capsys: pytest.CaptureFixture[str]) -> None:
    r = json_of(capsys, "tour")
    assert round(r["seed_headline_usd_per_million_tokens"], 2) == 1.46
    traces = {t["label"]: t for t in r["traces"]}
    assert [traces[k]["requests"] for k in ("azure-conv", "azure-code", "mooncake")] == [
        19_366,
        8_819,
        12_031,
    ]
    assert r["rightsize_aws_prices"][0]["feasible"]
    for t in traces.values():
        plan = t["hybrid_plan"]
        assert plan["base_replicas_on_demand"] >= 1
        cost = plan["cost"]
        assert 0 < cost["monthly_hybrid_usd"] <= cost["monthly_all_on_demand_usd"]
    # The bursty code trace (peak 6x its median) is where spot pays; the flat one needs none.
    assert traces["azure-code"]["hybrid_plan"]["peak_spot_replicas"] > 0
    assert traces["azure-code"]["hybrid_plan"]["cost"]["savings_ratio"] > 0.5


def test_demo_on_one_trace(capsys: pytest.CaptureFixture[str], shared_data: Path) -> None:
    trace = shared_data / "traces" / "mooncake_conversation.jsonl"
    r = json_of(capsys, "tour", "--trace", str(trace))
    assert [t["file"] for t in r["traces"]] == [trace.name]


def test_demo_with_a_missing_trace_is_a_clear_error() -> None:
    done = run("tour", "--trace", "/nonexistent/trace.csv")
    assert done.returncode == 2
    assert "trace file not found" in done.stderr
