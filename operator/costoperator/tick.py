"""One tick for all policies: a fixed set of queries, joined to workloads in Python.

Blocking I/O (the Prometheus client) runs in a worker thread (`asyncio.to_thread` in the
operator); this module is synchronous and has no kopf dependency, so it is tested directly.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Any

from costengine.pricing import PriceSheet
from costoperator.exporter import SnapshotKey
from costoperator.figures import (
    PodKey,
    PodRates,
    PolicyView,
    WorkloadFigures,
    carry_forward,
    with_semantic_savings,
    workload_figures,
)
from costoperator.promclient import PromClient, PromError, QueryResult
from costoperator.queries import (
    CUSTOM_ENGINE,
    SEMANTIC_METRIC_LABEL,
    Family,
    NamedQuery,
    tick_queries,
)
from costoperator.spot import (
    DemandHistory,
    demand_history_query,
    seed_demand_history,
    with_recommendations,
)
from costoperator.state import ClusterState

log = logging.getLogger(__name__)

_RATE_FIELDS = {
    Family.INPUT_TOKENS: "input_tokens_per_second",
    Family.OUTPUT_TOKENS: "output_tokens_per_second",
    Family.PREFIX_HIT_TOKENS: "prefix_hit_tokens_per_second",
    Family.PREFIX_QUERY_TOKENS: "prefix_query_tokens_per_second",
    Family.REQUESTS: "requests_per_second",
    Family.GPU_BUSY: "gpu_busy_ratio",
}


@dataclass
class TickReport:
    figures: dict[SnapshotKey, WorkloadFigures]
    queries: int
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    partial: bool = False
    seconds: float = 0.0
    now: float = 0.0

    @property
    def prometheus_ok(self) -> bool:
        return not self.errors


class RateFold:
    """`rates_by_window`, one query result at a time: the tick folds each answer in as it
    arrives, while Prometheus is still evaluating the others."""

    def __init__(self) -> None:
        self._values: dict[str, dict[PodKey, dict[str, Any]]] = {}

    def add(self, q: NamedQuery, result: QueryResult) -> None:
        if q.window is None or q.family in (Family.BASELINE, Family.SEMANTIC):
            return
        per_pod = self._values.setdefault(q.window, {})
        field_name = _RATE_FIELDS.get(q.family)
        for s in result.samples:
            labels = s.labels
            ns, pod = labels.get("namespace"), labels.get("pod")
            if not ns or not pod:
                continue
            slot = per_pod.get((ns, pod))
            if slot is None:
                slot = per_pod[(ns, pod)] = {}
            if q.custom:
                slot.setdefault("custom", {})[q.family] = s.value
            elif q.family is Family.OUTPUT_TOKENS:
                engine = labels.get("engine", "")
                if engine == CUSTOM_ENGINE:
                    slot.setdefault("custom", {})[Family.OUTPUT_TOKENS] = s.value
                    slot.setdefault("engine", engine)
                # A pod exposing two engines' counters: the first engine by name wins.
                elif slot.get("engine", CUSTOM_ENGINE) == CUSTOM_ENGINE or engine < slot["engine"]:
                    slot["engine"] = engine
                    slot["output_tokens_per_second"] = s.value
            elif q.family is Family.PHASE_SECONDS:
                phase = labels.get("phase")
                if phase == "prefill":
                    slot["prefill_seconds_per_second"] = s.value
                elif phase == "decode":
                    slot["decode_gpu_seconds_per_second"] = s.value
            elif field_name is not None:
                slot[field_name] = s.value

    def rates(self) -> dict[str, dict[PodKey, PodRates]]:
        """The output-token query is the census: a pod it does not return has no live token
        series (its target disappeared, or it serves no known engine), so it has no data in
        that window, whatever the other families still answer from the shrinking window."""
        return {
            window: {
                key: PodRates(**fields) for key, fields in per_pod.items() if "engine" in fields
            }
            for window, per_pod in self._values.items()
        }


def rates_by_window(results: Mapping[NamedQuery, QueryResult]) -> dict[str, dict[PodKey, PodRates]]:
    """Per window, per pod: the rates of every family that returned a sample (`RateFold`)."""
    fold = RateFold()
    for q, result in results.items():
        fold.add(q, result)
    return fold.rates()


def semantic_rows(
    results: Mapping[NamedQuery, QueryResult],
) -> dict[str, list[tuple[str, Mapping[str, str], float]]]:
    """Per window, the semantic-cache rows: (counter name, labels, rate)."""
    out: dict[str, list[tuple[str, Mapping[str, str], float]]] = {}
    for q, result in results.items():
        if q.family is Family.SEMANTIC and q.window:
            rows = out.setdefault(q.window, [])
            for s in result.samples:
                name = s.labels.get(SEMANTIC_METRIC_LABEL)
                if name:
                    rows.append((name, s.labels, s.value))
    return out


def baselines(results: Mapping[NamedQuery, QueryResult]) -> dict[tuple[str, str, str, str], float]:
    """(baseline window, namespace, policy, workload) → baseline $/1M."""
    out = {}
    for q, result in results.items():
        if q.family is Family.BASELINE and q.window:
            for s in result.samples:
                key = (
                    q.window,
                    s.labels.get("namespace", ""),
                    s.labels.get("policy", ""),
                    s.labels.get("workload", ""),
                )
                out[key] = s.value
    return out


_QUERY_COST_RANK = {
    family: rank
    for rank, family in enumerate((Family.PHASE_SECONDS, Family.GPU_BUSY, Family.OUTPUT_TOKENS))
}

#: Queries in flight at once: Prometheus evaluates one while the client decodes another.
QUERY_WORKERS = 4


def run_queries(
    client: PromClient,
    queries: Iterable[NamedQuery],
    on_result: Callable[[NamedQuery, QueryResult], None] | None = None,
) -> tuple[dict[NamedQuery, QueryResult], Counter[str], list[str]]:
    """Every query, `QUERY_WORKERS` at a time. `on_result` sees each answer in the calling
    thread as soon as it arrives (the others still in flight); errors come back in query order."""

    def one(q: NamedQuery) -> QueryResult | PromError:
        try:
            return client.query(q.promql)
        except PromError as exc:
            return exc

    queries = list(queries)
    answers: dict[NamedQuery, QueryResult | PromError] = {}
    with ThreadPoolExecutor(max_workers=QUERY_WORKERS) as pool:
        # Longest first (the phase, GPU and census queries cost 2-4x a one-counter family in
        # Prometheus): the short ones fill in behind them instead of the long ones finishing last.
        ordered = sorted(
            queries, key=lambda q: _QUERY_COST_RANK.get(q.family, len(_QUERY_COST_RANK))
        )
        pending = {pool.submit(one, q): q for q in ordered}
        for future in as_completed(pending):
            q = pending[future]
            answer = answers[q] = future.result()
            if on_result is not None and not isinstance(answer, PromError):
                on_result(q, answer)
    results: dict[NamedQuery, QueryResult] = {}
    outcomes: Counter[str] = Counter()
    errors: list[str] = []
    for q in queries:
        answer = answers[q]
        if isinstance(answer, PromError):
            outcomes["error"] += 1
            errors.append(f"{q.family.value}: {answer}")
            continue
        results[q] = answer
        outcomes["partial" if answer.partial else "success"] += 1
        if answer.rejected:
            outcomes["invalid"] += len(answer.rejected)
            log.warning(
                "dropped invalid samples of %s: %s", q.family.value, "; ".join(answer.rejected[:5])
            )
    return results, outcomes, errors


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one tick. A tick at 10,000 pods builds ~100,000
    short-lived objects that hold no cycles (reference counting frees them); the collector
    would trace them, and the whole heap at each full collection, several times per tick
    (0.3 s of a 1.6 s tick, bench/tick_scale.py). The pause is process-wide and lasts one tick,
    which query timeouts bound; collection resumes as usual after it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def restore_demand_history(
    client: PromClient,
    history: DemandHistory,
    policies: Iterable[PolicyView],
    now: float,
    step_s: float,
    tried: set[tuple[str, str]],
) -> list[tuple[str, str]]:
    """Seed the spot planner's demand history of policies not tried yet from what the operator
    exported before (one range query over the history's length, at the tick interval), so a
    restart or a new leader does not plan from an empty hour. A policy counts as tried once
    Prometheus answered, whether or not it had history; on an error it is tried next tick.
    Returns the policies seeded."""
    pending = {(p.namespace, p.name) for p in policies if p.spot is not None} - tried
    if not pending:
        return []
    query = demand_history_query(name for _, name in pending)
    try:
        series = client.query_range(query, now - history.keep_s, now, step_s)
    except PromError as exc:
        log.warning("demand history not restored (tried again next tick): %s", exc)
        return []
    tried.update(pending)
    seeded = seed_demand_history(history, series, pending)
    if seeded:
        log.info("demand history restored from Prometheus for %d policies", len(seeded))
    return seeded


def run_tick(
    client: PromClient,
    policies: Sequence[PolicyView],
    cluster: ClusterState,
    prices: PriceSheet,
    previous: Mapping[SnapshotKey, WorkloadFigures],
    now: float | None = None,
    demand: DemandHistory | None = None,
    spot_global_cap: int | None = None,
) -> TickReport:
    """One tick. With `demand` (kept across ticks by the caller), policies with spot planning
    get their recommendation on their spot workload's figures."""
    with cyclic_gc_paused():
        report = _run_tick(client, policies, cluster, prices, previous, now)
        if demand is not None:
            report.figures = with_recommendations(
                policies, report.figures, prices, demand, report.now, spot_global_cap
            )
        return report


def _run_tick(
    client: PromClient,
    policies: Iterable[PolicyView],
    cluster: ClusterState,
    prices: PriceSheet,
    previous: Mapping[SnapshotKey, WorkloadFigures],
    now: float | None,
) -> TickReport:
    started = time.perf_counter()
    now = time.time() if now is None else now
    policies = list(policies)
    queries = tick_queries(
        windows={p.window for p in policies},
        baseline_windows={p.baseline_window for p in policies if p.baseline_window},
        overrides={p.metrics for p in policies if p.metrics},
        semantic={p.semantic for p in policies if p.semantic},
    )
    fold = RateFold()
    results, outcomes, errors = run_queries(client, queries, fold.add)
    partial = any(r.partial for r in results.values())
    rates = fold.rates()
    base = baselines(results)
    semantic = semantic_rows(results)
    pods = cluster.pods_by_workload()
    nodes = cluster.nodes()
    figures: dict[SnapshotKey, WorkloadFigures] = {}
    for policy in policies:
        window_rates = rates.get(policy.window, {})
        mine: dict[SnapshotKey, WorkloadFigures] = {}
        for w in cluster.workloads_of(policy):
            key = (policy.namespace, policy.name, w.name)
            baseline = (
                base.get((policy.baseline_window, policy.namespace, policy.name, w.name))
                if policy.baseline_window
                else None
            )
            current = workload_figures(
                policy,
                w.name,
                pods.get((w.namespace, w.kind, w.name), []),
                nodes,
                window_rates,
                policy.prices or prices,
                baseline,
                now,
            )
            if partial or errors:
                current = _marked_stale(current)
            mine[key] = carry_forward(previous.get(key), current)
        if policy.semantic is not None:
            mine = with_semantic_savings(policy, mine, semantic.get(policy.window, []))
        figures.update(mine)
    return TickReport(
        figures=figures,
        queries=len(queries),
        outcomes=outcomes,
        errors=errors,
        partial=partial,
        seconds=time.perf_counter() - started,
        now=now,
    )


def _marked_stale(f: WorkloadFigures) -> WorkloadFigures:
    return replace(f, stale=True)
