"""A simulated inference fleet that exports the real vLLM, SGLang and DCGM metrics.

N pods replay the real request traces of the shared data folder through a continuous-batching
engine model whose step and prefill times come from `costengine.throughput`; their token
counters, scheduler gauges, phase-time histograms and GPU busy fractions are served over HTTP
under the exporters' real names and labels, and every token and busy second is recorded as
ground truth that tests compare with what the operator measures.

Layers, pure first:
- `pod`, `fleet`, `cache`, `truth`, `dcgm`: the model, in trace seconds; no I/O, deterministic.
- `exposition`: the model's state as Prometheus metric families (custom collectors).
- `server`: `SimServer`, the fleet against the wall clock with one HTTP endpoint per pod and
  per node.

Errors: `SimError` (a `ValueError`) for fleets that cannot be built and questions that cannot
be answered; catalog look-ups raise the cost engine's `CostEngineError`s unchanged.
"""

from costoperator.sim.cache import PrefixCache
from costoperator.sim.dcgm import DCGM_MODEL_NAMES, dcgm_model_name, gpu_product_label, gpu_uuid
from costoperator.sim.errors import SimError
from costoperator.sim.exposition import (
    DCGM_LABELS,
    SGLANG_LABELS,
    VLLM_LABELS,
    GpuReading,
    NodeCollector,
    PodCollector,
    dcgm_families,
    engine_families,
    sglang_families,
    vllm_families,
)
from costoperator.sim.fleet import Fleet, GpuSlot, NodeSpec, Traffic, replica_pods
from costoperator.sim.pod import (
    ENGINES,
    PREFIX_BLOCK_TOKENS,
    REQUEST_LATENCY_BUCKETS_S,
    Engine,
    HistogramSnapshot,
    PodSpec,
    PodStats,
    SimPod,
)
from costoperator.sim.server import Endpoint, SimServer, TargetGroup, TraceClock
from costoperator.sim.truth import Truth

__all__ = [
    "DCGM_LABELS",
    "DCGM_MODEL_NAMES",
    "ENGINES",
    "PREFIX_BLOCK_TOKENS",
    "REQUEST_LATENCY_BUCKETS_S",
    "SGLANG_LABELS",
    "VLLM_LABELS",
    "Endpoint",
    "Engine",
    "Fleet",
    "GpuReading",
    "GpuSlot",
    "HistogramSnapshot",
    "NodeCollector",
    "NodeSpec",
    "PodCollector",
    "PodSpec",
    "PodStats",
    "PrefixCache",
    "SimError",
    "SimPod",
    "SimServer",
    "TargetGroup",
    "TraceClock",
    "Traffic",
    "Truth",
    "dcgm_families",
    "dcgm_model_name",
    "engine_families",
    "gpu_product_label",
    "gpu_uuid",
    "replica_pods",
    "sglang_families",
    "vllm_families",
]
