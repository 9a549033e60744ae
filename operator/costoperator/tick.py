"""One tick for all policies: a fixed set of queries, joined to workloads in Python.

Blocking I/O (the Prometheus client) runs in a worker thread (`asyncio.to_thread` in the
operator); this module is synchronous and has no kopf dependency, so it is tested directly.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from costengine.pricing import PriceSheet
from costoperator.cluster import PodInfo
from costoperator.crds import duration_seconds
from costoperator.exporter import SnapshotKey
from costoperator.figures import (
    PodKey,
    PodRates,
    PolicyView,
    WorkloadCapacity,
    WorkloadFigures,
    carry_forward,
    priced_figures,
    with_semantic_savings,
    workload_capacity,
)
from costoperator.promclient import PromClient, PromError, QueryResult
from costoperator.queries import (
    BURST_WINDOW_LABEL,
    CUSTOM_ENGINE,
    DCGM_SOURCE_LABEL,
    SEMANTIC_METRIC_LABEL,
    Family,
    NamedQuery,
    baseline_query,
    phase_query,
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

#: The operator's tick interval when the caller does not say (`OperatorConfig`'s default).
DEFAULT_TICK_INTERVAL_S = 30.0

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
    """Queries this tick waited for."""
    baseline_refreshes: int = 0
    """Drift-baseline queries it started in the background (`BaselineCache`)."""
    phase_refreshes: int = 0
    """Phase-time queries it started in the background (`PhaseCache`)."""
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
        if not q.custom and q.family is not Family.OUTPUT_TOKENS and field_name is not None:
            # Most rows of a tick: one field per pod. (A loop of its own, without the branches
            # below: ~10,000 rows per family at 10,000 pods.)
            for labels, value in result.samples:
                ns, pod = labels.get("namespace"), labels.get("pod")
                if ns and pod:
                    slot = per_pod.get((ns, pod))
                    if slot is None:
                        per_pod[(ns, pod)] = {field_name: value}
                    else:
                        slot[field_name] = value
            return
        for labels, value in result.samples:
            ns, pod = labels.get("namespace"), labels.get("pod")
            if not ns or not pod:
                continue
            slot = per_pod.get((ns, pod))
            if slot is None:
                slot = per_pod[(ns, pod)] = {}
            if q.custom:
                slot.setdefault("custom", {})[q.family] = value
            elif q.family is Family.OUTPUT_TOKENS:
                engine = labels.get("engine", "")
                if engine == CUSTOM_ENGINE:
                    slot.setdefault("custom", {})[Family.OUTPUT_TOKENS] = value
                    slot.setdefault("engine", engine)
                # A pod exposing two engines' counters: the first engine by name wins.
                elif slot.get("engine", CUSTOM_ENGINE) == CUSTOM_ENGINE or engine < slot["engine"]:
                    slot["engine"] = engine
                    slot["output_tokens_per_second"] = value
            elif q.family is Family.PHASE_SECONDS:
                phase = labels.get("phase")
                if phase == "prefill":
                    slot["prefill_seconds_per_second"] = value
                elif phase == "decode":
                    slot["decode_gpu_seconds_per_second"] = value

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


def burst_rows(result: QueryResult) -> dict[PodKey, dict[float, float]]:
    """Per pod, window (s) → peak tokens/s, from the `burst_query` answer."""
    out: dict[PodKey, dict[float, float]] = {}
    for labels, value in result.samples:
        ns, pod, window = labels.get("namespace"), labels.get("pod"), labels.get(BURST_WINDOW_LABEL)
        if not ns or not pod or not window or not math.isfinite(value) or value < 0:
            continue
        try:
            seconds = float(window)
        except ValueError:
            continue
        if seconds > 0:
            out.setdefault((ns, pod), {})[seconds] = value
    return out


def workload_burst_peaks(
    live: Iterable[PodInfo],
    census: Mapping[PodKey, PodRates],
    bursts: Mapping[PodKey, Mapping[float, float]] | None,
) -> dict[float, float] | None:
    """`WorkloadFigures.burst_peaks`: per window, the sum of the peaks of the workload's live
    pods that the census counts (the pods its token rates come from), over the windows every
    one of them answered. {} without such pods; None without burst rows (`bursts` None: the
    query failed or was partial) or when one of the pods has none or no window is common to
    all: a peak summed over some pods only would understate the burst."""
    pods = [(p.namespace, p.name) for p in live if (p.namespace, p.name) in census]
    if not pods:
        return {}
    if bursts is None:
        return None
    rows = [bursts.get(key) for key in pods]
    present = [row for row in rows if row]
    if len(present) < len(rows):
        return None
    common = set.intersection(*(set(row) for row in present))
    if not common:
        return None
    return {window: sum(row[window] for row in present) for window in sorted(common)}


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


BaselineKey = tuple[str, str, str, str]
"""(baseline window, namespace, policy, workload)."""


def baseline_rows(window: str, result: QueryResult) -> dict[BaselineKey, float]:
    """One baseline answer: (window, namespace, policy, workload) → baseline $/1M."""
    return {
        (
            window,
            s.labels.get("namespace", ""),
            s.labels.get("policy", ""),
            s.labels.get("workload", ""),
        ): s.value
        for s in result.samples
    }


def baselines(results: Mapping[NamedQuery, QueryResult]) -> dict[BaselineKey, float]:
    """Every baseline answer of a set of results (`baseline_rows`)."""
    out = {}
    for q, result in results.items():
        if q.family is Family.BASELINE and q.window:
            out.update(baseline_rows(q.window, result))
    return out


#: A cached drift baseline is refreshed once it is older than this, or than 1% of its window.
BASELINE_REFRESH_S = 300.0
#: ...or than this while a workload with tokens has none (new: its series not scraped yet).
BASELINE_LACKING_REFRESH_S = 15.0
#: Kept phase times are refreshed once older than this, or than a fifth of their window.
PHASE_REFRESH_S = 60.0

V = TypeVar("V")


class RefreshedAnswers(Generic[V]):
    """One query per window whose answers are kept between ticks and refreshed in the
    background: asked inside a tick only while the cache has no answer for the window (the
    first tick, a window no policy used before, an answer older than `max_age_s`), after that
    in a background thread once older than `period_s`, started after the tick's own queries so
    a refresh never delays them, one in flight per window. A failed refresh is logged and tried
    again at the next tick; the old answer stays. Thread-safe: the refresh thread stores,
    ticks read. Subclasses say what is asked, how often, and what is kept of an answer."""

    family: Family
    what: str
    lacking_refresh_s: float = math.inf
    """Period of a window in which a tick found something lacking (`refresh_due`)."""

    def __init__(self, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._values: dict[str, V] = {}
        self._asked_at: dict[str, float] = {}
        self._refreshing: dict[str, threading.Thread] = {}
        self._outcomes: Counter[str] = Counter()

    def period_s(self, window: str) -> float:
        raise NotImplementedError

    def max_age_s(self, window: str) -> float:
        """Oldest answer a tick still uses; older, the query goes into the tick again."""
        return math.inf

    def query(self, window: str) -> str:
        raise NotImplementedError

    def digest(self, window: str, result: QueryResult) -> V:
        raise NotImplementedError

    def missing(self, windows: Iterable[str], now: float) -> set[str]:
        """Windows with no answer young enough to use: their query goes into the tick."""
        return set(windows) - self._current(now).keys()

    def retain(self, windows: Iterable[str]) -> None:
        """Forget windows no policy uses any more."""
        keep = set(windows)
        with self._lock:
            for w in set(self._values) - keep:
                del self._values[w]
                self._asked_at.pop(w, None)

    def store(self, window: str, result: QueryResult, asked_at: float) -> None:
        """An answer replaces the window's whole (series gone drop out)."""
        value = self.digest(window, result)
        with self._lock:
            self._values[window] = value
            self._asked_at[window] = asked_at

    def refresh_due(
        self,
        client: PromClient,
        windows: Iterable[str],
        now: float,
        lacking: Iterable[str] = (),
    ) -> list[str]:
        """Start a background refresh of every cached window older than its period (one
        in flight per window); `lacking`: windows refreshed after `lacking_refresh_s` instead.
        Returns the windows whose refresh started."""
        started = []
        lacking = set(lacking)
        with self._lock:
            for w in sorted(set(windows)):
                asked = self._asked_at.get(w)
                period = self.period_s(w)
                if w in lacking:
                    period = min(period, self.lacking_refresh_s)
                if asked is None or w in self._refreshing or now - asked < period:
                    continue
                thread = threading.Thread(
                    target=self._refresh,
                    args=(client, w, now),
                    name=f"{self.family.value}-{w}",
                    daemon=True,
                )
                self._refreshing[w] = thread
                started.append((w, thread))
        for _, thread in started:
            thread.start()
        return [w for w, _ in started]

    def _refresh(self, client: PromClient, window: str, asked_at: float) -> None:
        outcome = "error"
        try:
            result = client.query(self.query(window), asked_at)
        except PromError as exc:
            log.warning("%s %s not refreshed (kept; tried again): %s", self.what, window, exc)
        except Exception:  # the thread must not die silently
            log.exception("%s %s refresh failed", self.what, window)
        else:
            outcome = "partial" if result.partial else "success"
            self.store(window, result, asked_at)
        finally:
            with self._lock:
                self._refreshing.pop(window, None)
                self._outcomes[outcome] += 1

    def store_asked(self, results: Mapping[NamedQuery, QueryResult], now: float) -> None:
        """Keep the answers a tick asked for itself (windows that had none young enough)."""
        for q, result in results.items():
            if q.family is self.family and q.window:
                self.store(q.window, result, now)

    def take_outcomes(self) -> Counter[str]:
        """Outcomes of the background refreshes finished since the last call."""
        with self._lock:
            outcomes, self._outcomes = self._outcomes, Counter()
        return outcomes

    def wait(self, timeout_s: float | None = None) -> None:
        """Until the refreshes in flight have finished (tests, benchmarks, shutdown)."""
        with self._lock:
            threads = list(self._refreshing.values())
        for thread in threads:
            thread.join(timeout_s)

    def _current(self, now: float | None = None) -> dict[str, V]:
        """Per window, the last answer; with `now`, only those young enough to use."""
        with self._lock:
            return {
                w: v
                for w, v in self._values.items()
                if now is None or now - self._asked_at[w] <= self.max_age_s(w)
            }


class BaselineCache(RefreshedAnswers[dict[BaselineKey, float]]):
    """Drift baselines kept between ticks.

    The baseline query averages the operator's own series over the baseline window: at 1,000
    policies and 24 h at a 30 s scrape that is 23 million samples, 1.2 s of Prometheus CPU and
    1.2 s of wall time (bench/tick_scale.py `--baseline-history`), as much as the rest of the
    tick together. A day's average moves by well under 1% in five minutes, so a window's
    baseline is refreshed (`RefreshedAnswers`) once older than `refresh_s` or 1% of the window,
    whichever is shorter. While a workload that has tokens now has no baseline in it (a new
    workload, whose own series Prometheus had not scraped yet), a window is refreshed after
    `BASELINE_LACKING_REFRESH_S` instead. An old baseline is kept for as long as refreshes
    fail."""

    family = Family.BASELINE
    what = "drift baseline"
    lacking_refresh_s = BASELINE_LACKING_REFRESH_S

    def __init__(self, refresh_s: float = BASELINE_REFRESH_S) -> None:
        super().__init__(refresh_s)

    def period_s(self, window: str) -> float:
        return min(self.refresh_s, duration_seconds(window) / 100)

    def query(self, window: str) -> str:
        return baseline_query(window)

    def digest(self, window: str, result: QueryResult) -> dict[BaselineKey, float]:
        return baseline_rows(window, result)

    def values(self) -> dict[BaselineKey, float]:
        return {k: v for rows in self._current().values() for k, v in rows.items()}


class PhaseCache(RefreshedAnswers[QueryResult]):
    """vLLM's measured phase times (`queries.phase_query`) kept between ticks.

    They split each workload's cost into input and output by prefill's share of GPU time. At
    three series per pod the phase query is the costliest of a tick: 0.43 s of the 1.37 s of
    Prometheus CPU at 1,000 policies, and a quarter of the tick's wall time
    (bench/tick_scale.py). A share over a rate window moves slowly, so it is refreshed
    (`RefreshedAnswers`) once older than `refresh_s` or a fifth of the window, whichever is
    shorter: the window it was measured over overlaps the tick's by at least 80%. An answer is
    used for at most one window's length; older (every refresh failed), the query goes back
    into the tick. A pod that started since the last answer has no phase times until the
    next: its workload's split comes from its other pods, or from the throughput model."""

    family = Family.PHASE_SECONDS
    what = "phase times"

    def __init__(self, refresh_s: float = PHASE_REFRESH_S) -> None:
        super().__init__(refresh_s)

    def period_s(self, window: str) -> float:
        return min(self.refresh_s, duration_seconds(window) / 5)

    def max_age_s(self, window: str) -> float:
        return duration_seconds(window)

    def query(self, window: str) -> str:
        return phase_query(window)

    def digest(self, window: str, result: QueryResult) -> QueryResult:
        return result

    def answers(self, now: float) -> dict[str, QueryResult]:
        """Per window, the last answer young enough to use."""
        return self._current(now)


#: How long the GPU-busy query goes without the fallback family before it looks again.
GPU_FALLBACK_RECHECK_S = 600.0


class GpuSource:
    """Whether the GPU-busy query carries the DCGM_FI_DEV_GPU_UTIL fallback
    (`queries.gpu_busy_query`).

    It does until an answer with it shows that no pod needed it; then the preferred family
    alone is asked for, half the query's cost on a fleet whose exporters report both. It comes
    back at the next tick when a pod in the census has no GPU-busy row (a pod on an exporter
    without profiling metrics, say; one that had no row with the fallback either does not count),
    and at least every `recheck_s`. The price: such a new pod's GPU utilization is missing for
    one tick. An answer that failed changes nothing."""

    def __init__(self, recheck_s: float = GPU_FALLBACK_RECHECK_S) -> None:
        self.recheck_s = recheck_s
        self._checked_at: float | None = None
        self._fallback_used = True
        self._dark: set[PodKey] = set()
        self._look_again = False

    def with_fallback(self, now: float) -> bool:
        return (
            self._checked_at is None
            or self._fallback_used
            or self._look_again
            or now - self._checked_at >= self.recheck_s
        )

    def observe(
        self,
        with_fallback: bool,
        answers: Sequence[QueryResult] | None,
        rates: Mapping[str, Mapping[PodKey, PodRates]],
        now: float,
    ) -> None:
        """After a tick: its GPU-busy answers (None if one failed) and the rates they gave."""
        if answers is None:
            return
        without = {
            key
            for per_pod in rates.values()
            for key, r in per_pod.items()
            if r.gpu_busy_ratio is None
        }
        if with_fallback:
            self._checked_at = now
            self._fallback_used = any(
                s.labels.get(DCGM_SOURCE_LABEL) == "fallback"
                for answer in answers
                for s in answer.samples
            )
            self._dark = without
            self._look_again = False
        else:
            self._look_again = bool(without - self._dark)


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
    meanwhile: Callable[[], None] | None = None,
    at: float | None = None,
) -> tuple[dict[NamedQuery, QueryResult], Counter[str], list[str]]:
    """Every query, `QUERY_WORKERS` at a time, all evaluated at `at` (None: when each
    arrives). `meanwhile` runs in the calling thread once they are sent (Prometheus is
    evaluating the first ones, the thread would only wait); `on_result` sees each answer in the
    calling thread as soon as it arrives (the others still in flight); errors come back in
    query order."""

    def one(q: NamedQuery) -> QueryResult | PromError:
        try:
            return client.query(q.promql, at)
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
        if meanwhile is not None:
            meanwhile()
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
    baselines: BaselineCache | None = None,
    gpu_source: GpuSource | None = None,
    phases: PhaseCache | None = None,
    interval_s: float = DEFAULT_TICK_INTERVAL_S,
) -> TickReport:
    """One tick. With `demand` (kept across ticks by the caller), policies with spot planning
    get their recommendation on their spot workload's figures, and the tick asks for the
    burst signal over its `interval_s` (`queries.burst_query`; a failure of that query leaves
    the planner on the rate and the figures fresh). With `baselines` and `phases`
    (kept across ticks by the caller), drift baselines and vLLM's phase times are refreshed in
    the background instead of queried in every tick. With `gpu_source` (kept likewise), the
    GPU-busy query leaves out the fallback family while no pod needs it."""
    with cyclic_gc_paused():
        report = _run_tick(
            client,
            policies,
            cluster,
            prices,
            previous,
            now,
            baselines or BaselineCache(),
            gpu_source or GpuSource(),
            phases or PhaseCache(),
            interval_s,
        )
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
    baseline_cache: BaselineCache,
    gpu_source: GpuSource,
    phase_cache: PhaseCache,
    interval_s: float = DEFAULT_TICK_INTERVAL_S,
) -> TickReport:
    started = time.perf_counter()
    now = time.time() if now is None else now
    policies = list(policies)
    baseline_windows = {p.baseline_window for p in policies if p.baseline_window}
    windows = {p.window for p in policies}
    baseline_cache.retain(baseline_windows)
    phase_cache.retain(windows)
    gpu_fallback = gpu_source.with_fallback(now)
    planning = any(p.spot is not None for p in policies)
    kept_phases = phase_cache.answers(now)
    phase_windows = windows - kept_phases.keys()
    queries = tick_queries(
        windows=windows,
        baseline_windows=baseline_cache.missing(baseline_windows, now),
        phase_windows=phase_windows,
        overrides={p.metrics for p in policies if p.metrics},
        semantic={p.semantic for p in policies if p.semantic},
        gpu_fallback=gpu_fallback,
        burst_range_s=interval_s if planning else None,
        burst_namespaces={p.namespace for p in policies if p.spot is not None},
    )
    fold = RateFold()
    for w, kept in kept_phases.items():  # a window no policy uses is never read from the fold
        fold.add(NamedQuery(Family.PHASE_SECONDS, w, phase_query(w)), kept)
    # The cluster side of every workload's figures, built while Prometheus evaluates.
    workloads: list[tuple[PolicyView, list[tuple[str, WorkloadCapacity]]]] = []

    def capacities() -> None:
        pods = cluster.pods_by_workload()
        nodes = cluster.nodes()
        for policy in policies:
            sheet = policy.prices or prices
            of_policy = []
            for w in cluster.workloads_of(policy):
                its_pods = pods.get((w.namespace, w.kind, w.name), [])
                of_policy.append((w.name, workload_capacity(policy, its_pods, nodes, sheet)))
            workloads.append((policy, of_policy))

    # Every query at the tick's own time: the figures are of one instant (a scrape landing
    # while the queries are in flight is in none or all of them), and that instant is `now`.
    results, outcomes, errors = run_queries(client, queries, fold.add, capacities, at=now)
    # The burst signal is the planner's refinement, not a figure: without it (an error, a
    # partial answer) the planner reads the rate and the figures are as fresh as the rest.
    burst_asked = next((q for q in queries if q.family is Family.BURST), None)
    burst_answer = results.pop(burst_asked, None) if burst_asked is not None else None
    bursts = burst_rows(burst_answer) if burst_answer and not burst_answer.partial else None
    for e in errors:
        if e.startswith(f"{Family.BURST.value}: "):
            log.warning("the burst query failed; the spot planner reads the rate: %s", e)
    errors = [e for e in errors if not e.startswith(f"{Family.BURST.value}: ")]
    partial = any(r.partial for r in results.values())
    for cache in (baseline_cache, phase_cache):
        cache.store_asked(results, now)
        outcomes.update(cache.take_outcomes())
    rates = fold.rates()
    gpu_asked = [q for q in queries if q.family is Family.GPU_BUSY]
    gpu_answers = [results[q] for q in gpu_asked if q in results]
    gpu_source.observe(
        gpu_fallback, gpu_answers if len(gpu_answers) == len(gpu_asked) else None, rates, now
    )
    base = baseline_cache.values()
    semantic = semantic_rows(results)
    figures: dict[SnapshotKey, WorkloadFigures] = {}
    lacking: set[str] = set()
    stale = bool(partial or errors)
    for policy, of_policy in workloads:
        window_rates = rates.get(policy.window, {})
        mine: dict[SnapshotKey, WorkloadFigures] = {}
        for name, capacity in of_policy:
            key = (policy.namespace, policy.name, name)
            baseline = (
                base.get((policy.baseline_window, policy.namespace, policy.name, name))
                if policy.baseline_window
                else None
            )
            current = priced_figures(policy, name, capacity, window_rates, baseline, now)
            if policy.spot is not None:
                peaks = workload_burst_peaks(capacity.live, window_rates, bursts)
                current = replace(current, burst_peaks=peaks)
            if (
                policy.baseline_window
                and baseline is None
                and current.usd_per_million_tokens is not None
            ):
                lacking.add(policy.baseline_window)
            if stale:
                current = _marked_stale(current)
            mine[key] = carry_forward(previous.get(key), current)
        if policy.semantic is not None:
            mine = with_semantic_savings(policy, mine, semantic.get(policy.window, []))
        figures.update(mine)
    # After this tick's own queries, so a refresh never delays them.
    refreshing = baseline_cache.refresh_due(client, baseline_windows, now, lacking)
    phase_refreshing = phase_cache.refresh_due(client, windows, now)
    return TickReport(
        figures=figures,
        queries=len(queries),
        baseline_refreshes=len(refreshing),
        phase_refreshes=len(phase_refreshing),
        outcomes=outcomes,
        errors=errors,
        partial=partial,
        seconds=time.perf_counter() - started,
        now=now,
    )


def _marked_stale(f: WorkloadFigures) -> WorkloadFigures:
    return replace(f, stale=True)
