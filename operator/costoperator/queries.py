"""The operator's PromQL: named templates, one query per metric family for ALL policies.

A tick issues one query per family per distinct rate window (plus one drift-baseline query per
distinct baseline window), whatever the number of policies or pods:
`sum by (namespace, pod) (rate(...[w]))` over the union of every engine's metric name for that
family. A pod runs one engine, so the union never double counts. The output-token query is
also the census: it has one branch per engine, labelled `engine`, and keeps only series that
are live now (`rate(x[w]) and x`): a target that disappeared gets staleness markers, and its
pod drops out at once instead of answering from a shrinking window for a window's length.

Rates are taken per series before summing (`sum(rate(x[w]))`), so counter resets from pod
restarts or spot preemptions never produce negative or inflated figures (RELIABILITY 5).

Label conventions: engine servers are scraped per pod, so Prometheus' Kubernetes discovery puts
`namespace`/`pod` on their series. The DCGM exporter reports the pod using a GPU in its own
`pod`/`namespace` labels, which become `exported_pod`/`exported_namespace` when the scrape
config does not honour labels; both are normalised to `namespace`/`pod` here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from costengine.spotplan import BURST_WINDOWS_S


class Family(StrEnum):
    INPUT_TOKENS = "input_tokens"
    OUTPUT_TOKENS = "output_tokens"
    PREFIX_HIT_TOKENS = "prefix_hit_tokens"
    PREFIX_QUERY_TOKENS = "prefix_query_tokens"
    REQUESTS = "requests"
    GPU_BUSY = "gpu_busy"
    PHASE_SECONDS = "phase_seconds"
    SEMANTIC = "semantic"
    BASELINE = "baseline"
    BURST = "burst"


@dataclass(frozen=True, slots=True)
class EngineProfile:
    """Counter names of one serving engine (DESIGN.md "Engine metric profiles")."""

    name: str
    input_tokens: str
    output_tokens: str
    prefix_hit_tokens: str | None = None
    prefix_query_tokens: str | None = None
    requests: str | None = None


ENGINE_PROFILES: dict[str, EngineProfile] = {
    "vllm": EngineProfile(
        "vllm",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_queries_total",
        # Requests from the prompt-length histogram's count, not `vllm:request_success_total`:
        # vLLM observes it once per finished request whatever the finish reason, where the
        # success counter is one series per reason (stop, length, abort; v1 creates all three
        # up front), so this reads a third of the series for the same count.
        "vllm:request_prompt_tokens_count",
    ),
    "sglang": EngineProfile(
        "sglang",
        "sglang:prompt_tokens_total",
        "sglang:generation_tokens_total",
        "sglang:cached_tokens_total",
        None,  # SGLang's hit ratio is cached ÷ prompt tokens
        "sglang:num_requests_total",
    ),
    "tgi": EngineProfile(
        "tgi",
        "tgi_request_input_length_sum",
        "tgi_request_generated_tokens_sum",
        requests="tgi_request_count",
    ),
    "nim": EngineProfile(
        "nim", "prompt_tokens_total", "generation_tokens_total", requests="request_success_total"
    ),
}

#: vLLM's per-request phase-time histograms: input/output cost split by measured GPU time.
PREFILL_SECONDS = "vllm:request_prefill_time_seconds_sum"
DECODE_SECONDS = "vllm:request_decode_time_seconds_sum"
#: Sequences in the running batch (a gauge): decode seconds summed per request overcount GPU
#: time by the batch size, since one decode step serves the whole batch.
RUNNING_GAUGES = ("vllm:num_requests_running", "sglang:num_running_reqs")
GPU_BUSY_PREFERRED = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"  # 0..1, correct on MIG
GPU_BUSY_FALLBACK = "DCGM_FI_DEV_GPU_UTIL"  # 0..100, reads 0 on MIG devices
#: Label on each GPU-busy row: which of the two families answered for the pod.
DCGM_SOURCE_LABEL = "dcgm"


def gpu_busy_query(window: str, fallback: bool = True) -> str:
    """Per pod, the mean GPU busy ratio over `window`: the preferred family, and with
    `fallback` DCGM_FI_DEV_GPU_UTIL ÷ 100 for pods the preferred family does not cover. Each
    row is labelled `dcgm="preferred"` or `dcgm="fallback"` (`or on (namespace, pod)`, so a pod
    gets one row). PromQL evaluates both sides of `or` in full, and dcgm-exporter's profiling
    configuration exports GPU_UTIL beside GR_ENGINE_ACTIVE on every GPU: the fallback doubles
    the query's cost on such a fleet, so the tick leaves it out while no pod needs it
    (`tick.GpuSource`)."""
    preferred = (
        f'label_replace({_dcgm(GPU_BUSY_PREFERRED, window)}, "{DCGM_SOURCE_LABEL}", '
        '"preferred", "", "")'
    )
    if not fallback:
        return preferred
    return (
        f"{preferred} or on (namespace, pod) "
        f'label_replace({_dcgm(GPU_BUSY_FALLBACK, window, " / 100")}, "{DCGM_SOURCE_LABEL}", '
        '"fallback", "", "")'
    )


@dataclass(frozen=True, slots=True)
class NamedQuery:
    family: Family
    window: str | None
    promql: str
    custom: bool = False
    """Over the counters that policies' `spec.metrics` name instead of the engine's."""


#: The `engine` label of the output query's branch over `spec.metrics` output counters.
CUSTOM_ENGINE = "custom"
#: The label that names the counter of a semantic-cache row (rate() drops `__name__`).
SEMANTIC_METRIC_LABEL = "llmcost_metric"
#: The label that names a burst row's window, in seconds (`burst_query`).
BURST_WINDOW_LABEL = "llmcost_burst_window"
#: The label that keeps a pod's output-token series apart from its input ones in `burst_query`.
BURST_FAMILY_LABEL = "llmcost_family"
#: The burst query's subquery step: the resolution of the queue-aware burst signal (the
#: usual scrape interval; a shorter step only re-reads the same samples).
BURST_STEP_S = 15.0


@dataclass(frozen=True, slots=True)
class MetricOverrides:
    """A policy's `spec.metrics`: counter names read instead of the engine's, per family."""

    input_tokens: str | None = None
    output_tokens: str | None = None
    prefix_hit_tokens: str | None = None
    prefix_query_tokens: str | None = None

    def by_family(self) -> dict[Family, str]:
        names = {
            Family.INPUT_TOKENS: self.input_tokens,
            Family.OUTPUT_TOKENS: self.output_tokens,
            Family.PREFIX_HIT_TOKENS: self.prefix_hit_tokens,
            Family.PREFIX_QUERY_TOKENS: self.prefix_query_tokens,
        }
        return {family: name for family, name in names.items() if name}


@dataclass(frozen=True, slots=True)
class SemanticCounters:
    """A policy's `spec.cache.semantic`: a gateway's counters and which of its series count."""

    tokens_served: str
    hits: str | None = None
    match_labels: tuple[tuple[str, str], ...] = ()
    """Label matchers; empty = the series in the policy's namespace."""

    def names(self) -> tuple[str, ...]:
        return (self.tokens_served, self.hits) if self.hits else (self.tokens_served,)

    def grouping(self) -> set[str]:
        return {key for key, _ in self.match_labels} or {"namespace"}


def _names_regex(names: Iterable[str]) -> str:
    # Metric names hold only [a-zA-Z0-9_:], none of them regex-special, so no escaping needed.
    return "|".join(sorted(set(names)))


def _rate_sum(names: Iterable[str], window: str) -> str:
    return f'sum by (namespace, pod) (rate({{__name__=~"{_names_regex(names)}"}}[{window}]))'


def _dcgm(metric: str, window: str, scale: str = "") -> str:
    # Averaged per (pod, exporter convention) first: GPUs of one pod collapse to one series
    # before the (per series) label rewrite, which is most of this query's cost at scale. A
    # pod seen under both conventions (two exporters) gets the mean of the two.
    inner = (
        "avg by (namespace, pod, exported_namespace, exported_pod) "
        f"(avg_over_time({metric}[{window}])){scale}"
    )
    relabeled = (
        f'label_replace(label_replace({inner}, "pod", "$1", "exported_pod", "(.+)"), '
        f'"namespace", "$1", "exported_namespace", "(.+)")'
    )
    return f"avg by (namespace, pod) ({relabeled})"


def _spellings(name: str) -> set[str]:
    """A name and its underscore spelling: an exporter negotiated into OpenMetrics by
    prometheus_client can expose `vllm:x` as `vllm_x` (prometheus/client_python#1177)."""
    return {name, name.replace(":", "_")}


def family_names(
    profiles: Iterable[EngineProfile],
) -> dict[Family, set[str]]:
    names: dict[Family, set[str]] = {
        Family.INPUT_TOKENS: set(),
        Family.OUTPUT_TOKENS: set(),
        Family.PREFIX_HIT_TOKENS: set(),
        Family.PREFIX_QUERY_TOKENS: set(),
        Family.REQUESTS: set(),
    }
    for p in profiles:
        names[Family.INPUT_TOKENS] |= _spellings(p.input_tokens)
        names[Family.OUTPUT_TOKENS] |= _spellings(p.output_tokens)
        if p.prefix_hit_tokens:
            names[Family.PREFIX_HIT_TOKENS] |= _spellings(p.prefix_hit_tokens)
        if p.prefix_query_tokens:
            names[Family.PREFIX_QUERY_TOKENS] |= _spellings(p.prefix_query_tokens)
        if p.requests:
            names[Family.REQUESTS] |= _spellings(p.requests)
    return names


def _live_rate_by_engine(branches: Mapping[str, set[str]], window: str) -> str:
    """Output tokens/s per pod, one branch per engine labelled `engine`, live series only."""
    out = []
    for engine, names in branches.items():
        selector = f'{{__name__=~"{_names_regex(names)}"}}'
        rate = f"sum by (namespace, pod) (rate({selector}[{window}]) and {selector})"
        out.append(f'label_replace({rate}, "engine", "{engine}", "", "")')
    return " or ".join(out)


def _semantic(counters: Iterable[SemanticCounters], window: str) -> str | None:
    """Per counter name, its rate summed by the labels that policies match on (or namespace);
    one branch per name, labelled with it."""
    grouping: dict[str, set[str]] = {}
    for c in counters:
        for name in c.names():
            grouping.setdefault(name, set()).update(c.grouping())
    branches = [
        f"label_replace(sum by ({', '.join(sorted(keys))}) (rate({name}[{window}])), "
        f'"{SEMANTIC_METRIC_LABEL}", "{name}", "", "")'
        for name, keys in sorted(grouping.items())
    ]
    return " or ".join(branches) if branches else None


def burst_query(range_s: float, namespaces: Iterable[str] | None = None) -> str:
    """Per pod and window of `BURST_WINDOWS_S`: the highest total (input + output) tokens/s
    of any such window ending in the last `range_s` (at least one `BURST_STEP_S`), a subquery
    at `BURST_STEP_S`; rows labelled `llmcost_burst_window` with the window's seconds. The
    input of the planner's queue-aware burst signal (`costengine.spotplan.serviceable_rate`):
    the policy's rate window shows a burst shorter than itself at a fraction of its height.
    Engine counters only: a pod whose tokens come from `spec.metrics` counters has no row,
    and its policy's planner reads the rate instead. `namespaces`: only pods there (the
    namespaces of the policies that plan spot; the query reads every token series it selects
    at three windows, the costliest of a tick at scale, BENCHMARKS.md); None: all."""
    names = family_names(ENGINE_PROFILES.values())
    families = (names[Family.INPUT_TOKENS], names[Family.OUTPUT_TOKENS])
    # Namespaces are DNS labels ([a-z0-9-]): nothing to escape in the regex.
    where = f', namespace=~"{"|".join(sorted(set(namespaces)))}"' if namespaces is not None else ""
    span = f"{max(BURST_STEP_S, round(range_s)):g}s"
    step = f"{BURST_STEP_S:g}s"
    branches = []
    for window in BURST_WINDOWS_S:
        # One `rate` over both families would hold two series per pod that differ only in
        # the name it drops, which Prometheus refuses: the output series get a label of their
        # own first, so the union (`or`) keeps both and each rate is evaluated once.
        inp, out = (
            f'rate({{__name__=~"{_names_regex(members)}"{where}}}[{window:g}s])'
            for members in families
        )
        tagged = f'label_replace({out}, "{BURST_FAMILY_LABEL}", "output", "", "")'
        total = f"(sum by (namespace, pod) ({inp} or {tagged}))"
        branches.append(
            f"label_replace(max_over_time({total}[{span}:{step}]), "
            f'"{BURST_WINDOW_LABEL}", "{window:g}", "", "")'
        )
    return " or ".join(branches)


def tick_queries(
    windows: Iterable[str],
    baseline_windows: Iterable[str] = (),
    overrides: Iterable[MetricOverrides] = (),
    semantic: Iterable[SemanticCounters] = (),
    gpu_fallback: bool = True,
    phase_windows: Iterable[str] | None = None,
    burst_range_s: float | None = None,
    burst_namespaces: Iterable[str] | None = None,
) -> list[NamedQuery]:
    """Every query of one tick: per distinct rate window, one per family; one drift baseline
    per distinct baseline window. Policies' `spec.metrics` add at most one query per
    overridden family (over the union of the names they give) and a branch to the output
    query; `spec.cache.semantic` adds one query with a branch per counter name. None of these
    grows with the number of policies. `gpu_fallback`: see `gpu_busy_query`. `phase_windows`:
    the windows whose phase query is in the tick (None: all; the others' answers are kept
    between ticks, `tick.PhaseCache`). `burst_range_s`: one `burst_query` over that range (the
    tick interval; None: none, no policy plans spot)."""
    if phase_windows is not None:
        phase_windows = set(phase_windows)
    names = family_names(ENGINE_PROFILES.values())
    custom: dict[Family, set[str]] = {}
    for o in overrides:
        for family, name in o.by_family().items():
            custom.setdefault(family, set()).update(_spellings(name))
    engines = {p.name: _spellings(p.output_tokens) for p in ENGINE_PROFILES.values()}
    if Family.OUTPUT_TOKENS in custom:
        engines[CUSTOM_ENGINE] = custom[Family.OUTPUT_TOKENS]
    semantic = list(semantic)
    queries: list[NamedQuery] = []
    for w in sorted(set(windows)):
        for family, members in names.items():
            if family is Family.OUTPUT_TOKENS:
                queries.append(NamedQuery(family, w, _live_rate_by_engine(engines, w)))
            elif members:
                queries.append(NamedQuery(family, w, _rate_sum(members, w)))
        for family, members in sorted(custom.items()):
            if family is not Family.OUTPUT_TOKENS:
                queries.append(NamedQuery(family, w, _rate_sum(members, w), custom=True))
        if (promql := _semantic(semantic, w)) is not None:
            queries.append(NamedQuery(Family.SEMANTIC, w, promql))
        queries.append(NamedQuery(Family.GPU_BUSY, w, gpu_busy_query(w, gpu_fallback)))
        if phase_windows is None or w in phase_windows:
            queries.append(NamedQuery(Family.PHASE_SECONDS, w, phase_query(w)))
    for bw in sorted(set(baseline_windows)):
        queries.append(NamedQuery(Family.BASELINE, bw, baseline_query(bw)))
    if burst_range_s is not None:
        burst = burst_query(burst_range_s, burst_namespaces)
        queries.append(NamedQuery(Family.BURST, None, burst))
    return queries


def phase_query(window: str) -> str:
    """Per vLLM pod, GPU seconds per second in prefill and in decode (rows labelled `phase`):
    the input/output split by measured time. vLLM times each request's phases. Prefill
    seconds are GPU seconds (a prompt has the GPU to itself); decode seconds are shared by
    every sequence of the running batch, so decode GPU time is decode seconds ÷ the mean
    batch. Three series per pod: the costliest query of a tick (bench/tick_scale.py)."""
    running = f'{{__name__=~"{_names_regex(set().union(*map(_spellings, RUNNING_GAUGES)))}"}}'
    decode_gpu = (
        f"sum by (namespace, pod) (rate({DECODE_SECONDS}[{window}])) / "
        f"clamp_min(sum by (namespace, pod) (avg_over_time({running}[{window}])), 1)"
    )
    return (
        f"label_replace(sum by (namespace, pod) (rate({PREFILL_SECONDS}[{window}])), "
        f'"phase", "prefill", "", "") or '
        f'label_replace({decode_gpu}, "phase", "decode", "", "")'
    )


def baseline_query(window: str) -> str:
    """$/1M over the baseline window from the operator's own exported series: total cost ÷
    total tokens (a ratio of averages, never an average of ratios). Prometheus keeps the
    history, so the baseline survives an operator restart."""
    keys = "namespace, policy, workload"
    return (
        f"sum by ({keys}) (avg_over_time(llmcost_hourly_cost_usd[{window}])) "
        f"/ on ({keys}) "
        f"sum by ({keys}) (avg_over_time(llmcost_tokens_per_second[{window}])) "
        f"* 1e6 / 3600"
    )
