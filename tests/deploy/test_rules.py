"""The shipped recording and alerting rules (RELIABILITY 22): `promtool check rules` and
`promtool test rules` on deploy/prometheus/, every alert tested firing and not firing, every
recording rule tested, and only metric names of DESIGN's contract used.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.deploy import DEPLOY

from costoperator.exporter import Snapshot, build_registry

RULES = DEPLOY / "prometheus" / "llmcost-rules.yaml"
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yaml"))


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _tests() -> list[dict[str, Any]]:
    return [
        test
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
    ]


def test_rules_pass_promtool_check(promtool: Path) -> None:
    done = subprocess.run(
        [str(promtool), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_rule_unit_tests_pass(promtool: Path, path: Path) -> None:
    done = subprocess.run(
        [str(promtool), "test", "rules", path.name],
        capture_output=True,
        text=True,
        cwd=path.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for test in _tests():
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    alerts = {r["alert"] for r in _rules() if "alert" in r}
    assert alerts == {
        "LLMCostPerMillionTokensDrift",
        "LLMCostDataStale",
        "LLMCostPrefixCacheHitRatioCollapse",
        "LLMCostSpotSavingsLost",
        "LLMCostOperatorDown",
        "LLMCostOperatorAbsent",
        "LLMCostOperatorQueriesFailing",
    }
    assert alerts <= firing
    assert alerts <= silent


def test_the_tests_cover_counter_resets_gaps_and_stale_series() -> None:
    values = [s["values"] for t in _tests() for s in t.get("input_series", [])]
    assert any("stale" in v for v in values)
    assert any(re.search(r"(^| )_", v) for v in values)  # missed scrapes
    counters = [
        s["values"]
        for t in _tests()
        for s in t.get("input_series", [])
        if s["series"].split("{")[0].endswith("_total")
    ]
    assert any(re.search(r"\+\d+x\d+ 0", v) for v in counters)  # a reset to zero mid-series


def test_every_recording_rule_is_tested() -> None:
    tested = {
        re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", case["expr"]).group(0)  # type: ignore[union-attr]
        for test in _tests()
        for case in test.get("promql_expr_test", [])
    }
    assert {r["record"] for r in _rules() if "record" in r} <= tested


def test_rules_read_only_contract_metrics() -> None:
    """Every `llmcost_` name in the rules is a series the operator exports (DESIGN: names are a
    contract) or one of the rules' own recorded series."""
    registry, _ = build_registry(Snapshot())  # every family, even with no series yet
    exported = {
        f"{family.name}{suffix}"
        for family in registry.collect()
        for suffix in ("", "_total", "_bucket", "_count", "_sum")
    }
    recorded = {r["record"] for r in _rules() if "record" in r}
    for rule in _rules():
        for name in re.findall(r"[a-z_:]*llmcost_[a-z_]+(?::[a-z_]+)?", rule["expr"]):
            assert name in exported | recorded, name
