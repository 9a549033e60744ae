"""`llmcost demo`, the embedded default, as a user runs it: one command, clean exit."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

LLMCOST = shutil.which("llmcost") or str(Path(sys.executable).with_name("llmcost"))


def test_demo_runs_prices_the_fleet_and_stops_cleanly(
    prometheus_bin: Path, shared_data: Path
) -> None:
    done = subprocess.run(
        [LLMCOST, "demo", "--duration", "40", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)
    workloads = result["workloads"]
    assert set(workloads) == {"llama70b", "llama70b-spot", "sglang-llama8b", "chat8b"}
    llama = workloads["llama70b"]
    assert llama["llmcost_cost_per_million_tokens_usd.all"] > 0
    assert llama["llmcost_hourly_cost_usd.on_demand"] == 8 * 2.21  # the example's override
    assert workloads["llama70b-spot"]["llmcost_hourly_cost_usd.spot"] == 4 * 0.73
    assert all(
        math.isfinite(v) for w in workloads.values() for v in w.values() if isinstance(v, float)
    )
    policies = {p["name"]: p for p in result["policies"]}
    assert policies["llama70b"]["ready"] == "True"
    # It says where things are, and leaves no Prometheus behind.
    assert "Prometheus" in done.stderr
    assert "/metrics" in done.stderr
    # Its own Prometheus, by the address it printed: another one on the machine is not its.
    address = re.search(r"^Prometheus\s+http://(\S+)$", done.stderr, re.MULTILINE)
    assert address is not None, done.stderr
    own = f"prometheus .*--web.listen-address={re.escape(address.group(1))}"
    leftover = subprocess.run(["pgrep", "-f", own], capture_output=True)
    assert leftover.returncode == 1, leftover.stdout
