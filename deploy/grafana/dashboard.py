"""The llm-cost-operator Grafana dashboard, as code (grafana-foundation-sdk).

`build()` returns the dashboard as a JSON-ready dict. `deploy/generate.py` writes it to
`helm/llm-cost-operator/dashboards/llm-cost-operator.json` (the chart's dashboard ConfigMap) and
`deploy/grafana/llm-cost-operator.json` (to import by hand); edit this file, never the JSON.

Every panel query reads the operator's exported metrics (DESIGN "Exported metrics") or the
recording rules of the chart's PrometheusRule (`deploy/prometheus/llmcost-rules.yaml`), and
the end-to-end test evaluates each one against a real Prometheus: no panel may come up empty.
Templated by data source, namespace and workload; `$operator_job` is the `job` label the chart's
ServiceMonitor gives the operator's own series (chart value `serviceMonitor.job`).
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import (
    ReduceDataOptions,
    StackingConfig,
    VizLegendOptions,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)

UID = "llm-cost-operator"
TITLE = "LLM inference cost"
OPERATOR_JOB = "llmcost-operator"

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
#: Workload selector of every panel on the operator's per-workload series.
W = 'namespace=~"$namespace", workload=~"$workload"'
#: Policy selector for the policy-level recording rules.
P = 'namespace=~"$namespace"'
#: The operator's own series.
J = 'job="$operator_job"'


def _query(expr: str, legend: str, ref_id: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref_id)
        .range()
        .datasource(DATASOURCE)
    )


def _legend() -> VizLegendOptions:
    return (
        VizLegendOptions()
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "mean"])
    )


def _timeseries(
    title: str,
    description: str,
    unit: str,
    queries: list[tuple[str, str]],
    *,
    width: int = 12,
    stacked: bool = False,
    decimals: int | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(width)
        .fill_opacity(10)
        .legend(_legend())
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    if stacked:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL)).fill_opacity(40)
    for i, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + i)))
    return panel


def _stat(title: str, description: str, unit: str, expr: str, legend: str = "") -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(4)
        .span(6)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(_query(expr, legend))
    )


def _variables(builder: dash.Dashboard) -> dash.Dashboard:
    return (
        builder.with_variable(
            dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            dash.QueryVariable("namespace")
            .label("Namespace")
            .datasource(DATASOURCE)
            .query("label_values(llmcost_hourly_cost_usd, namespace)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_variable(
            dash.QueryVariable("workload")
            .label("Workload")
            .datasource(DATASOURCE)
            .query('label_values(llmcost_hourly_cost_usd{namespace=~"$namespace"}, workload)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_variable(
            dash.ConstantVariable("operator_job")
            .label("Operator job")
            .value(OPERATOR_JOB)
            .description("The job label of the operator's own series (serviceMonitor.job).")
        )
    )


def _cost_row(builder: dash.Dashboard) -> dash.Dashboard:
    return (
        builder.with_row(dash.Row("Cost"))
        .with_panel(
            _stat(
                "Fleet cost",
                "What the selected workloads' GPUs cost per hour, all capacity types.",
                "currencyUSD",
                f"sum(llmcost_hourly_cost_usd{{{W}}})",
            )
        )
        .with_panel(
            _stat(
                "Tokens per second",
                "Measured input + output tokens per second of the selected workloads.",
                "short",
                f"sum(llmcost_tokens_per_second{{{W}}})",
            )
        )
        .with_panel(
            _stat(
                "Cache savings",
                "Dollars per hour the prefix and semantic caches save (tokens not recomputed).",
                "currencyUSD",
                f"sum(llmcost_cache_savings_usd_per_hour{{{W}}})",
            )
        )
        .with_panel(
            _stat(
                "Stale workloads",
                "Workloads whose token or GPU metrics are missing or old (llmcost_data_stale).",
                "none",
                f"sum(llmcost_data_stale{{{W}}})",
            )
        )
        .with_panel(
            _timeseries(
                "$ per 1M tokens by workload and token type",
                "Live USD per million tokens: all tokens, and split into input (prefill) and "
                "output (decode) by measured GPU time.",
                "currencyUSD",
                [
                    (
                        f"llmcost_cost_per_million_tokens_usd{{{W}}}",
                        "{{workload}} {{token_type}}",
                    )
                ],
                decimals=3,
            )
        )
        .with_panel(
            _timeseries(
                "$ per 1M tokens by policy",
                "Policy-level USD per million tokens: the policy's total hourly cost over its "
                "total tokens (recording rules), never an average of workload ratios.",
                "currencyUSD",
                [
                    (
                        f"namespace_policy:llmcost_cost_per_million_tokens_usd:ratio{{{P}}}",
                        "{{namespace}}/{{policy}} all",
                    ),
                    (
                        "namespace_policy_token_type:llmcost_cost_per_million_tokens_usd:ratio"
                        f"{{{P}}}",
                        "{{namespace}}/{{policy}} {{token_type}}",
                    ),
                ],
                decimals=3,
            )
        )
        .with_panel(
            _timeseries(
                "Hourly cost by capacity type",
                "USD per hour of the GPUs the selected workloads hold, on-demand and spot.",
                "currencyUSD",
                [
                    (
                        f"sum by (capacity_type) (llmcost_hourly_cost_usd{{{W}}})",
                        "{{capacity_type}}",
                    )
                ],
                stacked=True,
            )
        )
        .with_panel(
            _timeseries(
                "Hourly cost by workload",
                "USD per hour by workload and capacity type.",
                "currencyUSD",
                [
                    (
                        f"llmcost_hourly_cost_usd{{{W}}} > 0",
                        "{{workload}} {{capacity_type}}",
                    )
                ],
                stacked=True,
            )
        )
    )


def _utilization_row(builder: dash.Dashboard) -> dash.Dashboard:
    return (
        builder.with_row(dash.Row("Utilization"))
        .with_panel(
            _timeseries(
                "GPU utilization",
                "DCGM busy fraction of the workload's GPUs (graphics engine active).",
                "percentunit",
                [(f"llmcost_gpu_utilization_ratio{{{W}}}", "{{workload}}")],
                width=8,
            )
        )
        .with_panel(
            _timeseries(
                "Capacity utilization",
                "Measured tokens per second over the throughput model's maximum for the "
                "workload's model, GPUs and request shape.",
                "percentunit",
                [(f"llmcost_capacity_utilization_ratio{{{W}}}", "{{workload}}")],
                width=8,
            )
        )
        .with_panel(
            _timeseries(
                "$ per 1M tokens: live vs at full capacity",
                "What the same GPUs would cost per million tokens at full utilization: the gap "
                "is the price of idle capacity.",
                "currencyUSD",
                [
                    (
                        f'llmcost_cost_per_million_tokens_usd{{{W}, token_type="all"}}',
                        "{{workload}} live",
                    ),
                    (
                        f"llmcost_cost_per_million_tokens_at_capacity_usd{{{W}}}",
                        "{{workload}} at capacity",
                    ),
                ],
                width=8,
                decimals=3,
            )
        )
        .with_panel(
            _timeseries(
                "Tokens per second",
                "Measured input and output tokens per second.",
                "short",
                [(f"llmcost_tokens_per_second{{{W}}}", "{{workload}} {{token_type}}")],
                width=12,
            )
        )
        .with_panel(
            _timeseries(
                "GPUs by capacity type",
                "GPUs allocated to the selected workloads.",
                "short",
                [(f"sum by (capacity_type) (llmcost_gpus{{{W}}})", "{{capacity_type}}")],
                width=12,
                stacked=True,
            )
        )
    )


def _cache_and_drift_row(builder: dash.Dashboard) -> dash.Dashboard:
    return (
        builder.with_row(dash.Row("Caches and drift"))
        .with_panel(
            _timeseries(
                "Cache savings",
                "Dollars per hour saved by the prefix cache (prompt tokens not recomputed, "
                "priced at the workload's prefill cost) and a gateway's semantic cache.",
                "currencyUSD",
                [
                    (
                        f"llmcost_cache_savings_usd_per_hour{{{W}}}",
                        "{{workload}} {{cache}}",
                    )
                ],
                width=8,
            )
        )
        .with_panel(
            _timeseries(
                "Cache hit ratio",
                "Share of prompt tokens (prefix) or requests (semantic) served from cache.",
                "percentunit",
                [(f"llmcost_cache_hit_ratio{{{W}}}", "{{workload}} {{cache}}")],
                width=8,
            )
        )
        .with_panel(
            _timeseries(
                "Drift: live ÷ baseline $/1M",
                "The live cost per million tokens over its baseline (spec.drift.baselineWindow); "
                "the drift alert fires above the chart's threshold.",
                "none",
                [(f"llmcost_cost_drift_ratio{{{W}}}", "{{workload}}")],
                width=8,
                decimals=2,
            )
        )
        .with_panel(
            _timeseries(
                "$ per 1M tokens vs drift baseline",
                "Live cost per million tokens next to its baseline.",
                "currencyUSD",
                [
                    (
                        f'llmcost_cost_per_million_tokens_usd{{{W}, token_type="all"}}',
                        "{{workload}} live",
                    ),
                    (
                        f"llmcost_cost_baseline_per_million_tokens_usd{{{W}}}",
                        "{{workload}} baseline",
                    ),
                ],
                width=24,
                decimals=3,
            )
        )
    )


def _spot_row(builder: dash.Dashboard) -> dash.Dashboard:
    return (
        builder.with_row(dash.Row("Spot"))
        .with_panel(
            _timeseries(
                "Spot: recommended vs actual replicas",
                "The spot planner's replica count for each spot workload next to the replicas "
                "it runs on spot nodes (Recommend mode publishes; Auto mode scales).",
                "short",
                [
                    (
                        f"llmcost_spot_recommended_replicas{{{W}}}",
                        "{{workload}} recommended",
                    ),
                    (
                        f'llmcost_replicas{{{W}, capacity_type="spot"}}'
                        " and on (namespace, policy, workload)"
                        f" llmcost_spot_recommended_replicas{{{W}}}",
                        "{{workload}} on spot",
                    ),
                ],
                decimals=0,
            )
        )
        .with_panel(
            _timeseries(
                "On demand: recommended vs actual replicas",
                "With spec.spot.onDemandTargetRef: the planner's on-demand count for that "
                "workload (its base, plus cover for spot with no node, overdue or under a "
                "preemption notice) next to the replicas it runs on on-demand nodes.",
                "short",
                [
                    (
                        f"llmcost_on_demand_recommended_replicas{{{W}}}",
                        "{{workload}} recommended",
                    ),
                    (
                        f'llmcost_replicas{{{W}, capacity_type="on_demand"}}'
                        " and on (namespace, policy, workload)"
                        f" llmcost_on_demand_recommended_replicas{{{W}}}",
                        "{{workload}} on demand",
                    ),
                ],
                decimals=0,
            )
        )
        .with_panel(
            _timeseries(
                "Spot: projected savings",
                "USD per hour the planner's spot replicas save against serving the same "
                "demand on-demand only.",
                "currencyUSD",
                [(f"llmcost_spot_projected_savings_usd_per_hour{{{W}}}", "{{workload}}")],
            )
        )
        .with_panel(
            _timeseries(
                "API-equivalent savings",
                "What the same tokens would cost at each compared API (spec.apiComparison) "
                "minus what they cost here, USD per hour (recording rule).",
                "currencyUSD",
                [
                    (
                        "namespace_policy_api:llmcost_api_equivalent_savings_usd_per_hour:sum"
                        f"{{{P}}}",
                        "{{namespace}}/{{policy}} vs {{api}}",
                    )
                ],
            )
        )
        .with_panel(
            _timeseries(
                "$ per 1M tokens: self-hosted vs API",
                "The same tokens priced at each compared API, next to the live cost here.",
                "currencyUSD",
                [
                    (
                        f"llmcost_api_equivalent_cost_per_million_tokens_usd{{{W}}}",
                        "{{workload}} at {{api}}",
                    ),
                    (
                        f'llmcost_cost_per_million_tokens_usd{{{W}, token_type="all"}}'
                        " and on (namespace, policy, workload)"
                        f" llmcost_api_equivalent_cost_per_million_tokens_usd{{{W}}}",
                        "{{workload}} self-hosted",
                    ),
                ],
                decimals=3,
            )
        )
    )


def _operator_row(builder: dash.Dashboard) -> dash.Dashboard:
    return (
        builder.with_row(dash.Row("Operator health"))
        .with_panel(
            _timeseries(
                "Operator up",
                "1 while Prometheus scrapes the operator (alerts: LLMCostOperatorDown/Absent).",
                "none",
                [(f"up{{{J}}}", "{{instance}}")],
                width=6,
                decimals=0,
            )
        )
        .with_panel(
            _timeseries(
                "Prometheus queries by outcome",
                "The operator's PromQL queries per second: success, error, invalid (NaN, Inf, "
                "duplicates) and partial (warnings).",
                "reqps",
                [
                    (
                        "sum by (outcome) "
                        f"(rate(llmcost_prometheus_queries_total{{{J}}}[$__rate_interval]))",
                        "{{outcome}}",
                    )
                ],
                width=6,
            )
        )
        .with_panel(
            _timeseries(
                "Tick duration",
                "Wall time of one operator tick (all policies, one query set), p50 and p95.",
                "s",
                [
                    (
                        "histogram_quantile(0.5, sum by (le) "
                        f"(rate(llmcost_tick_duration_seconds_bucket{{{J}}}[$__rate_interval])))",
                        "p50",
                    ),
                    (
                        "histogram_quantile(0.95, sum by (le) "
                        f"(rate(llmcost_tick_duration_seconds_bucket{{{J}}}[$__rate_interval])))",
                        "p95",
                    ),
                ],
                width=6,
            )
        )
        .with_panel(
            _timeseries(
                "Scale actions",
                "Spot scale actions in the last hour, by direction and mode.",
                "short",
                [
                    (
                        "sum by (direction, mode) "
                        f"(increase(llmcost_scale_actions_total{{{J}}}[1h]))",
                        "{{direction}} ({{mode}})",
                    )
                ],
                width=6,
                decimals=0,
            )
        )
    )


def build() -> dict[str, Any]:
    """The dashboard as a dict, ready for `json.dumps`."""
    builder = (
        dash.Dashboard(TITLE)
        .uid(UID)
        .description(
            "llm-cost-operator: live $ per 1M tokens, hourly cost, utilization, cache savings, "
            "drift, spot and API comparison, and the operator's health."
        )
        .tags(["llm", "inference", "cost", "llm-cost-operator"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
    )
    builder = _variables(builder)
    for row in (_cost_row, _utilization_row, _cache_and_drift_row, _spot_row, _operator_row):
        builder = row(builder)
    encoded = JSONEncoder(sort_keys=True).encode(builder.build())
    result: dict[str, Any] = json.loads(encoded)
    return result


def render() -> str:
    """The dashboard's JSON text as written to disk."""
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


__all__ = ["OPERATOR_JOB", "TITLE", "UID", "build", "render"]
