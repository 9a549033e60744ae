"""The simulated fleet in the exporters' own words: vLLM v1, SGLang and DCGM metric families.

Names, types, help texts and labels are the real exporters':
- vLLM v1 (`vllm/v1/metrics/loggers.py`, `PrometheusStatLogger`): labels `model_name` (the
  served model name) and `engine` (the engine core index, "0" for one engine per server).
- SGLang (`python/sglang/srt/metrics/collector.py`): label `model_name`.
- NVIDIA dcgm-exporter (default counters): one series per GPU with `gpu`, `UUID`, `device`,
  `modelName`, `Hostname`, and, with Kubernetes pod mapping on, `container`, `namespace`, `pod`
  of the pod holding the GPU (empty for an unallocated GPU).

Engine series carry no pod or namespace label, as with the real servers: Prometheus adds those
from the scrape target. Each pod and each node is therefore its own scrape endpoint.

Collectors read a snapshot through a callable and do no I/O; `describe()` computes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric

from costoperator.sim.pod import HistogramSnapshot, PodStats

#: vLLM v1's label names, in its order.
VLLM_LABELS = ("model_name", "engine")
#: The engine core index vLLM puts in `engine` (one engine core per API server).
VLLM_ENGINE_INDEX = "0"
SGLANG_LABELS = ("model_name",)
DCGM_LABELS = ("gpu", "UUID", "device", "modelName", "Hostname", "container", "namespace", "pod")


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU's DCGM series: identity labels and the busy fraction over the last interval."""

    index: int
    uuid: str
    model_name: str
    hostname: str
    container: str
    namespace: str
    pod: str
    busy_ratio: float


#: HELP texts, as the exporters publish them (names without the `_total` counters get).
HELP: dict[str, str] = {
    "vllm:num_requests_running": "Number of requests in model execution batches.",
    "vllm:num_requests_waiting": "Number of requests waiting to be processed.",
    "vllm:prefix_cache_queries": "Prefix cache queries, in terms of number of queried tokens.",
    "vllm:prefix_cache_hits": "Prefix cache hits, in terms of number of cached tokens.",
    "vllm:prompt_tokens": "Number of prefill tokens processed.",
    "vllm:generation_tokens": "Number of generation tokens processed.",
    "vllm:request_prefill_time_seconds": "Histogram of time spent in PREFILL phase for request.",
    "vllm:request_decode_time_seconds": "Histogram of time spent in DECODE phase for request.",
    "vllm:request_success": "Count of successfully processed requests.",
    "vllm:request_prompt_tokens": "Number of prefill tokens processed.",
    "sglang:num_requests": "The number of processed requests.",
    "sglang:prompt_tokens": "Number of prefill tokens processed.",
    "sglang:generation_tokens": "Number of generation tokens processed.",
    "sglang:cached_tokens": "Number of cached prompt tokens.",
    "sglang:num_running_reqs": "The number of running requests.",
    "sglang:num_queue_reqs": "The number of requests in the waiting queue.",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "Ratio of time the graphics engine is active.",
    "DCGM_FI_DEV_GPU_UTIL": "GPU utilization (in %).",
}


class _Families:
    """Builds one exporter's families, all with the same label names and values."""

    def __init__(
        self, labels: Sequence[str], values: Sequence[str], created_unix_s: float | None
    ) -> None:
        self.labels = list(labels)
        self.values = list(values)
        self.created = created_unix_s
        self.out: list[Metric] = []

    def gauge(self, name: str, value: float) -> None:
        family = GaugeMetricFamily(name, HELP[name], labels=self.labels)
        family.add_metric(self.values, value)
        self.out.append(family)

    def counter(self, name: str, value: float, extra: Mapping[str, str] | None = None) -> None:
        extra = extra or {}
        family = CounterMetricFamily(name, HELP[name], labels=[*self.labels, *extra])
        family.add_metric([*self.values, *extra.values()], value, self.created)
        self.out.append(family)

    def histogram(self, name: str, snap: HistogramSnapshot) -> None:
        family = HistogramMetricFamily(name, HELP[name], labels=self.labels)
        # HistogramMetricFamily takes no created time (its 4th argument is a timestamp).
        family.add_metric(self.values, snap.cumulative(), snap.sum_s)
        self.out.append(family)


def vllm_families(stats: PodStats, created_unix_s: float | None = None) -> list[Metric]:
    """A vLLM v1 server's token, prefix-cache, scheduler and phase-time series."""
    f = _Families(VLLM_LABELS, (stats.served_model_name, VLLM_ENGINE_INDEX), created_unix_s)
    f.gauge("vllm:num_requests_running", stats.running)
    f.gauge("vllm:num_requests_waiting", stats.waiting)
    f.counter("vllm:prefix_cache_queries", stats.prefix_cache_queries)
    f.counter("vllm:prefix_cache_hits", stats.prefix_cache_hits)
    f.counter("vllm:prompt_tokens", stats.prompt_tokens)
    f.counter("vllm:generation_tokens", stats.generation_tokens)
    f.histogram("vllm:request_prefill_time_seconds", stats.prefill_time)
    f.histogram("vllm:request_decode_time_seconds", stats.decode_time)
    f.histogram("vllm:request_prompt_tokens", stats.prompt_tokens_request)
    # Every finished request records one decode-time observation; the simulator's requests all
    # end by reaching their output length, vLLM's finished_reason "length".
    f.counter("vllm:request_success", stats.decode_time.count, {"finished_reason": "length"})
    return f.out


def sglang_families(stats: PodStats, created_unix_s: float | None = None) -> list[Metric]:
    """An SGLang server's token counters and scheduler gauges."""
    f = _Families(SGLANG_LABELS, (stats.served_model_name,), created_unix_s)
    f.counter("sglang:prompt_tokens", stats.prompt_tokens)
    f.counter("sglang:generation_tokens", stats.generation_tokens)
    f.counter("sglang:cached_tokens", stats.prefix_cache_hits)
    f.counter("sglang:num_requests", stats.decode_time.count)
    f.gauge("sglang:num_running_reqs", stats.running)
    f.gauge("sglang:num_queue_reqs", stats.waiting)
    return f.out


def engine_families(stats: PodStats, created_unix_s: float | None = None) -> list[Metric]:
    """The families of whichever engine the pod runs."""
    if stats.engine == "sglang":
        return sglang_families(stats, created_unix_s)
    return vllm_families(stats, created_unix_s)


def dcgm_families(gpus: Iterable[GpuReading]) -> list[Metric]:
    """A node's dcgm-exporter series: graphics engine activity (ratio) and GPU utilization
    (integer percent, as DCGM reports it)."""
    active_name, util_name = "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_DEV_GPU_UTIL"
    active = GaugeMetricFamily(active_name, HELP[active_name], labels=DCGM_LABELS)
    util = GaugeMetricFamily(util_name, HELP[util_name], labels=DCGM_LABELS)
    for g in gpus:
        values = [str(g.index), g.uuid, f"nvidia{g.index}", g.model_name, g.hostname]
        values += [g.container, g.namespace, g.pod]
        ratio = min(1.0, max(0.0, g.busy_ratio))
        active.add_metric(values, ratio)
        util.add_metric(values, float(round(ratio * 100)))
    return [active, util]


class PodCollector:
    """An engine's `/metrics`: `read()` returns the pod's stats and the Unix time its engine
    (re)started, for the counters' `_created` samples."""

    def __init__(self, read: Callable[[], tuple[PodStats, float]]) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        stats, created = self._read()
        return engine_families(stats, created)


class NodeCollector:
    """A node's dcgm-exporter `/metrics`: `read()` returns its GPUs' readings."""

    def __init__(self, read: Callable[[], list[GpuReading]]) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return dcgm_families(self._read())
