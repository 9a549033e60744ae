"""`llmcost demo`: the embedded default, live.

A real Prometheus scrapes a simulated inference fleet (real vLLM/SGLang/DCGM metric names,
driven by real request traces); kmock's Kubernetes emulator holds the fleet's nodes, workloads,
pods and the example policies of deploy/examples; the operator watches them, prices them and
serves /metrics. The terminal shows what the operator exports, refreshed every few seconds.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.table import Table

from costoperator.cli.render import jsonable, make_console, money, num, pct
from costoperator.promserver import find_binary
from costoperator.stack import Stack, default_stack
from costoperator.traces import TraceError, find_shared_data

REFRESH_S = 3.0


def _workloads(stack: Stack) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = defaultdict(dict)
    for name, labels, value in stack.operator_samples():
        workload = labels.get("workload")
        if not workload or not name.startswith("llmcost_"):
            continue
        row = rows[workload]
        row.setdefault("policy", labels.get("policy"))
        row.setdefault("engine", labels.get("engine"))
        row.setdefault("gpu", labels.get("gpu"))
        suffix = (
            labels.get("token_type")
            or labels.get("capacity_type")
            or labels.get("cache")
            or labels.get("api")
        )
        row[f"{name}{'.' + suffix if suffix else ''}"] = value
    return dict(sorted(rows.items()))


def _policies(stack: Stack) -> list[dict[str, Any]]:
    out = []
    for body in stack.cluster.list("icp"):
        status = body.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        out.append(
            {
                "namespace": body["metadata"]["namespace"],
                "name": body["metadata"]["name"],
                "ready": conditions.get("Ready", {}).get("status"),
                "reason": conditions.get("Ready", {}).get("reason"),
                "usd_per_million_tokens": status.get("usdPerMillionTokens"),
                "tokens_per_second": status.get("tokensPerSecond"),
                "drift_ratio": status.get("driftRatio"),
                "spot": status.get("recommendedSpotReplicas"),
                "stale": status.get("stale"),
            }
        )
    return out


def _capacity(row: dict[str, Any]) -> str:
    spot = row.get("llmcost_gpus.spot") or 0
    od = row.get("llmcost_gpus.on_demand") or 0
    return "spot" if spot and not od else ("on-demand" if od and not spot else "mixed")


def _spot(row: dict[str, Any]) -> str:
    replicas = row.get("llmcost_spot_recommended_replicas")
    if replicas is None:
        return "—"
    return f"{replicas:g} ({money(row.get('llmcost_spot_projected_savings_usd_per_hour'))})"


def _view(stack: Stack) -> Group:
    workloads = _workloads(stack)
    table = Table(
        title=f"llm-cost-operator: live figures ({time.time() - stack.started_at:.0f} s)",
        title_justify="left",
    )
    for h in (
        "workload",
        "GPUs",
        "$/h",
        "tok/s in/out",
        "$/1M all",
        "in / out",
        "GPU util",
        "cap. util",
        "prefix saved $/h",
        "spot rec. (saves $/h)",
        "stale",
    ):
        table.add_column(h, justify="left" if h == "workload" else "right")
    for name, r in workloads.items():
        gpus = (r.get("llmcost_gpus.on_demand") or 0) + (r.get("llmcost_gpus.spot") or 0)
        usd_h = (r.get("llmcost_hourly_cost_usd.on_demand") or 0) + (
            r.get("llmcost_hourly_cost_usd.spot") or 0
        )
        table.add_row(
            f"{name} ({r.get('engine')}, {_capacity(r)})",
            f"{gpus:g}× {r.get('gpu')}",
            money(usd_h),
            f"{num(r.get('llmcost_tokens_per_second.input'))} / "
            f"{num(r.get('llmcost_tokens_per_second.output'))}",
            money(r.get("llmcost_cost_per_million_tokens_usd.all"), 3),
            f"{money(r.get('llmcost_cost_per_million_tokens_usd.input'), 3)} / "
            f"{money(r.get('llmcost_cost_per_million_tokens_usd.output'), 3)}",
            pct(r.get("llmcost_gpu_utilization_ratio"), 0),
            pct(r.get("llmcost_capacity_utilization_ratio"), 0),
            money(r.get("llmcost_cache_savings_usd_per_hour.prefix"), 3),
            _spot(r),
            "yes" if r.get("llmcost_data_stale") else "no",
        )
    policies = Table(title="InferenceCostPolicy status (kubectl get icp)", title_justify="left")
    for h in ("policy", "Ready", "$/1M", "tokens/s", "drift", "spot rec.", "stale"):
        policies.add_column(h, justify="left" if h == "policy" else "right")
    for p in _policies(stack):
        policies.add_row(
            f"{p['namespace']}/{p['name']}",
            f"{p['ready']} ({p['reason']})" if p["ready"] else "—",
            money(p["usd_per_million_tokens"], 3),
            num(p["tokens_per_second"]),
            f"{p['drift_ratio']:.2f}" if p["drift_ratio"] is not None else "—",
            str(p["spot"]) if p["spot"] is not None else "—",
            str(p["stale"]).lower() if p["stale"] is not None else "—",
        )
    return Group(table, policies)


def run_live_demo(
    traces: Path | None, duration_s: float | None, speedup: float, window: str, output: str
) -> None:
    traces_dir = traces or (
        p.parent if (p := find_shared_data("traces", "azure_llm_2023_conv.csv")) else None
    )
    if traces_dir is None:
        raise TraceError(
            "the shared data folder (../shared/data beside the project) was not found; "
            "pass --traces DIR with the Azure and Mooncake traces"
        )
    if find_binary("prometheus") is None:
        raise TraceError(
            "Prometheus is not installed: run scripts/install-prometheus "
            "(Debian: apt-get install prometheus)"
        )
    err = make_console(stderr=True)
    stack = default_stack(traces_dir, window=window, interval="10s", speedup=speedup)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with err.status("starting…") as status:
            stack.start(progress=lambda what: status.update(f"starting {what}…"))
        err.print(f"Prometheus      {stack.prometheus.url}")
        err.print(f"operator        {stack.metrics_url}")
        err.print(f"Kubernetes API  {stack.cluster.url}  (KUBECONFIG={stack.cluster.kubeconfig})")
        err.print(
            f"policies        deploy/examples (window {window}); traffic: real traces"
            f"{f' at {speedup:g}× speed' if speedup != 1 else ''}; first figures in ~20 s"
        )
        err.print(
            "[dim]Ctrl-C stops[/dim]"
            + (f" [dim](or after {duration_s:g} s)[/dim]" if duration_s else "")
        )
        deadline = time.time() + duration_s if duration_s else None
        if output == "table":
            with Live(_view(stack), console=make_console(), refresh_per_second=1) as live:
                while not stopping and (deadline is None or time.time() < deadline):
                    time.sleep(REFRESH_S)
                    live.update(_view(stack))
        else:
            while not stopping and (deadline is None or time.time() < deadline):
                time.sleep(1)
            result = {
                "elapsed_s": time.time() - stack.started_at,
                "prometheus": stack.prometheus.url,
                "workloads": _workloads(stack),
                "policies": _policies(stack),
            }
            sys.stdout.write(json.dumps(jsonable(result), indent=2, allow_nan=False) + "\n")
    except KeyboardInterrupt:
        pass
    finally:
        err.print("[dim]stopping…[/dim]")
        stack.stop()
        signal.signal(signal.SIGTERM, previous)
