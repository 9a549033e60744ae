"""Published throughput measurements and what the throughput model predicts for each.

`data/throughput_measurements.csv` holds figures copied from published benchmarks (sources and
methods in `data/throughput_sources.md`). Each row names its method through its metric and its
source; `predict` replays that method on the model:

- static batches (lmdeploy `profile_generation`, TensorRT-LLM `gptSessionBenchmark`): all
  sequences start together, prefill, then decode to the fixed output length;
  output tokens/s = batch × output length ÷ total time (÷ TP for per-GPU figures);
- in-flight batching at full load (`trtllm-bench throughput`): steady continuous batching at the
  largest batch the KV cache holds (TensorRT-LLM's runtime batch limit is 4096);
- first-token latency at batch 1: one prefill.

FP8 engines of TensorRT-LLM also store the KV cache in FP8; the predictions do too.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources

from costengine.errors import InvalidInputError
from costengine.throughput import Deployment, EngineProfile

#: `trtllm-bench`'s maximum runtime batch in the v0.13 performance overview's example output.
TRTLLM_BENCH_MAX_BATCH = 4096

PREDICTABLE_METRICS = (
    "output_tokens_per_second",
    "output_tokens_per_second_per_gpu",
    "first_token_latency_s",
)


@dataclass(frozen=True, slots=True)
class Measurement:
    source_id: str
    engine: str
    model: str
    gpu: str
    tp: int
    quant: str
    batch: int | None
    input_tokens: int | None
    output_tokens: int | None
    metric: str
    value: float
    notes: str

    @property
    def in_flight(self) -> bool:
        """Continuous (in-flight) batching at full load, batch chosen by the engine."""
        return self.batch is None

    @property
    def kv_cache(self) -> str:
        return "fp8" if self.engine == "trtllm" and self.quant == "fp8" else "fp16"

    @property
    def label(self) -> str:
        shape = f"b{self.batch}" if self.batch else "ifb"
        return (
            f"{self.engine} {self.model} {self.tp}x{self.gpu} {self.quant} {shape} "
            f"{self.input_tokens}/{self.output_tokens} {self.metric}"
        )


def _int_or_none(text: str) -> int | None:
    return int(text) if text.strip() else None


def parse_measurements(text: str) -> list[Measurement]:
    rows = []
    for r in csv.DictReader(io.StringIO(text)):
        rows.append(
            Measurement(
                source_id=r["source_id"],
                engine=r["engine"],
                model=r["model"],
                gpu=r["gpu"],
                tp=int(r["tp"]),
                quant=r["quant"],
                batch=_int_or_none(r["batch"]),
                input_tokens=_int_or_none(r["input_tokens"]),
                output_tokens=_int_or_none(r["output_tokens"]),
                metric=r["metric"],
                value=float(r["value"]),
                notes=r["notes"],
            )
        )
    return rows


@cache
def published_measurements() -> tuple[Measurement, ...]:
    text = (
        resources.files("costengine")
        .joinpath("data")
        .joinpath("throughput_measurements.csv")
        .read_text(encoding="utf-8")
    )
    return tuple(parse_measurements(text))


def predictable(m: Measurement) -> bool:
    """Rows whose method the model can replay: fixed lengths and a known metric."""
    if m.metric not in PREDICTABLE_METRICS or m.input_tokens is None or m.output_tokens is None:
        return False
    if m.metric == "first_token_latency_s":
        return m.batch == 1
    return True


def predict(m: Measurement, engine: EngineProfile | None = None) -> float:
    """The model's figure for the measurement's conditions and metric."""
    dep = Deployment.of(m.model, m.gpu, m.tp, m.quant, m.engine, kv_cache=m.kv_cache)
    if engine is not None:
        dep = dep.with_engine(engine)
    assert m.input_tokens is not None
    assert m.output_tokens is not None
    if m.metric == "first_token_latency_s":
        return dep.prefill(1, m.input_tokens).total_s
    if m.in_flight:
        cap = replace(dep.engine, max_num_seqs=TRTLLM_BENCH_MAX_BATCH)
        rate = dep.with_engine(cap).serving(m.input_tokens, m.output_tokens)
        tokens_per_second = rate.output_tokens_per_second
    else:
        assert m.batch is not None
        tokens_per_second = dep.static_batch(
            m.batch, m.input_tokens, m.output_tokens
        ).output_tokens_per_second
    if m.metric == "output_tokens_per_second_per_gpu":
        return tokens_per_second / m.tp
    return tokens_per_second


@dataclass(frozen=True, slots=True)
class PointError:
    measurement: Measurement
    predicted: float

    @property
    def relative_error(self) -> float:
        """(predicted - measured) / measured."""
        return (self.predicted - self.measurement.value) / self.measurement.value

    @property
    def log_error(self) -> float:
        return math.log(max(self.predicted, 1e-12) / self.measurement.value)


def evaluate(
    measurements: Iterable[Measurement], engines: dict[str, EngineProfile] | None = None
) -> list[PointError]:
    out = []
    for m in measurements:
        if not predictable(m):
            continue
        engine = engines.get(m.engine) if engines else None
        try:
            predicted = predict(m, engine)
        except InvalidInputError:  # the model says it does not fit: count it as a full miss
            predicted = 0.0
        out.append(PointError(m, predicted))
    return out


@dataclass(frozen=True, slots=True)
class ErrorSummary:
    points: int
    median_abs_error: float
    mean_abs_error: float
    p90_abs_error: float
    max_abs_error: float
    bias: float
    """Median signed relative error: > 0 means the model predicts too high."""


def summarize(errors: Sequence[PointError]) -> ErrorSummary:
    if not errors:
        return ErrorSummary(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    abs_errors = sorted(abs(e.relative_error) for e in errors)
    p90 = abs_errors[min(len(abs_errors) - 1, math.ceil(0.9 * len(abs_errors)) - 1)]
    return ErrorSummary(
        points=len(errors),
        median_abs_error=statistics.median(abs_errors),
        mean_abs_error=statistics.fmean(abs_errors),
        p90_abs_error=p90,
        max_abs_error=abs_errors[-1],
        bias=statistics.median(e.relative_error for e in errors),
    )


def seed_formula_prediction(m: Measurement) -> float | None:
    """The seed's `decode_throughput` for the same point (weights per GPU ÷ bandwidth × 1.2),
    converted to the row's metric; None for latency rows, which it cannot predict."""
    from costengine.throughput import decode_throughput

    if m.metric == "first_token_latency_s" or not predictable(m):
        return None
    dep = Deployment.of(m.model, m.gpu, m.tp, m.quant, m.engine, kv_cache=m.kv_cache)
    batch = m.batch
    if batch is None:
        assert m.input_tokens is not None
        assert m.output_tokens is not None
        batch = min(
            dep.max_batch(m.input_tokens + m.output_tokens, capped=False), TRTLLM_BENCH_MAX_BATCH
        )
    batch = max(batch, 1)
    tps = decode_throughput(
        dep.weight_bytes / m.tp, dep.gpu.memory_bandwidth_tb_per_s * 1e12, batch
    )
    return tps / m.tp if m.metric == "output_tokens_per_second_per_gpu" else tps
