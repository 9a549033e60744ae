"""Throughput model: how many tokens per second a model serves on a GPU group.

A decode step of a batch of B sequences holding C tokens each in the KV cache, on a
tensor-parallel group of N GPUs, costs (per GPU, each kernel family at its roofline)::

    GEMMs      max(weight bytes / N ÷ bandwidth,   2 × active params × B / N ÷ FLOP/s)
    attention  max(B × C × KV bytes/token / N ÷ bandwidth,   4 × L × heads × d × C × B / N ÷ FLOP/s)
    all-reduce 2 × L × (latency + 2 (N-1)/N × B × hidden × 2 bytes ÷ link bandwidth)   (N > 1)
    host       a fixed per-step time (scheduler, sampling, launches) of the serving engine

Bandwidth and FLOP/s are the GPU's peaks times the efficiency the serving engine reaches
(`EngineProfile`). Throughput is B / step time: it grows almost linearly with the batch while
weight reads dominate and flattens once KV reads and compute take over, the diminishing returns
the seed describes. Mixture-of-experts models read only the experts their tokens route to
(1 - (1 - k/E)^B of them per layer at batch B). Prefill runs the same GEMMs over all prompt
tokens at once, so it is compute-bound, plus causal attention (quadratic in prompt length).

The batch is limited by the KV cache that fits beside the weights (`max_batch`).

The engine efficiencies and the all-reduce latency are fitted to published measurements by
`bench/calibrate_throughput.py`; `BENCHMARKS.md` gives the fit and the error at every point.

The seed's own `decode_throughput` is kept by name: it reads the weights once per step and
scales linearly with batch, which is what its code computes (its comments claim otherwise;
see docs/seed-errata.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from costengine.errors import InvalidInputError, lookup, require_positive
from costengine.gpus import GPU, GPUS
from costengine.models import MODELS, ModelSpec
from costengine.quant import MathPath, Quantization, quantization

FP16_BYTES = 2.0
KV_CACHE_BYTES = {"fp16": 2.0, "bf16": 2.0, "fp8": 1.0}


def decode_throughput(
    model_size_bytes: float,
    mem_bandwidth: float,
    batch_size: int,
    overhead_factor: float = 1.2,
) -> float:
    """The seed's `decode_throughput`, as written: tokens/s = batch ÷ (weight read time × 1.2)."""
    require_positive("model_size_bytes", model_size_bytes)
    require_positive("mem_bandwidth", mem_bandwidth)
    require_positive("batch_size", batch_size)
    weight_read_time = model_size_bytes / mem_bandwidth
    total_time = weight_read_time * overhead_factor
    tokens_per_step = batch_size
    return tokens_per_step / total_time


@dataclass(frozen=True, slots=True)
class EngineProfile:
    """What a serving engine achieves of the hardware's peaks.

    memory_efficiency: achieved fraction of peak memory bandwidth in decode kernels.
    compute_efficiency: achieved fraction of dense peak FLOP/s in large GEMMs and attention.
    gemm_half_efficiency_tokens: GEMM rows (tokens) at which a GEMM reaches half of that:
        tensor-core tiles are 64-128 rows tall, so a GEMM over few tokens idles most of a tile.
    step_overhead_s: fixed host-side time per forward pass (scheduling, sampling, launches).
    allreduce_latency_s: fixed time of one tensor-parallel all-reduce call.
    max_num_seqs: the engine's default cap on concurrent sequences.
    """

    name: str
    memory_efficiency: float
    compute_efficiency: float
    gemm_half_efficiency_tokens: float
    step_overhead_s: float
    allreduce_latency_s: float
    max_num_seqs: int
    source: str


#: Fraction of device memory the engine may use (vLLM `gpu_memory_utilization` default 0.9).
GPU_MEMORY_UTILIZATION = 0.9
#: Memory kept per GPU for activations, CUDA graphs and workspace (bytes).
ACTIVATION_RESERVE_BYTES = 2e9

_FIT = "fitted by bench/calibrate_throughput.py to published measurements (BENCHMARKS.md)"

#: TurboMind: lmdeploy v0.1 A100-80GB static batches, Llama-2 7B/13B/70B (75 points).
_LMDEPLOY = EngineProfile("lmdeploy", 0.90, 0.657, 100.8, 2.68e-3, 71e-6, 256, _FIT)
#: TensorRT-LLM v0.5-v0.13, static and in-flight batching, A100/H100/H200/L40S (348 points).
_TRTLLM = EngineProfile("trtllm", 0.90, 0.501, 57.5, 4.77e-3, 98.9e-6, 256, _FIT)


def _relative(
    base: EngineProfile, name: str, ratio: float, max_num_seqs: int, source: str
) -> EngineProfile:
    """An engine measured only against another: the other's profile with its kernel
    efficiencies scaled by the measured throughput ratio."""
    return replace(
        base,
        name=name,
        memory_efficiency=base.memory_efficiency * ratio,
        compute_efficiency=base.compute_efficiency * ratio,
        max_num_seqs=max_num_seqs,
        source=source,
    )


# vLLM 0.4.3 reached 0.973x TensorRT-LLM (NIM 1.0) output tokens/s, mean of concurrency 1-64,
# Llama-3-8B on A10G (source llmperf_a10g_llama3_8b). max_num_seqs: vLLM's default 256.
_VLLM = _relative(_TRTLLM, "vllm", 0.973, 256, "0.973x trtllm (llmperf_a10g_llama3_8b)")

ENGINES: dict[str, EngineProfile] = {
    "vllm": _VLLM,
    # SGLang 0.3.0 reached 1.036x vLLM 0.6.0 (A100-80GB, Llama-3.1-8B, ShareGPT; source
    # sglang_v030_vs_vllm_v060). Default concurrency cap taken as vLLM's.
    "sglang": _relative(_VLLM, "sglang", 1.036, 256, "1.036x vllm (sglang_v030_vs_vllm_v060)"),
    "trtllm": _TRTLLM,
    "lmdeploy": _LMDEPLOY,
    # TGI 2.0.4 reached 0.999x vLLM 0.4.3 (mean of concurrency 1-64, same llmperf runs);
    # `--max-concurrent-requests` defaults to 128.
    "tgi": _relative(_VLLM, "tgi", 0.999, 128, "0.999x vllm (llmperf_a10g_llama3_8b)"),
}


def engine_profile(name: str) -> EngineProfile:
    return lookup("serving engine", ENGINES, name.lower())


@dataclass(frozen=True, slots=True)
class Deployment:
    """A model on a tensor-parallel group of identical GPUs, served by one engine."""

    model: ModelSpec
    gpu: GPU
    tp: int
    quant: Quantization
    engine: EngineProfile
    kv_bytes_per_element: float = FP16_BYTES

    def __post_init__(self) -> None:
        if self.tp < 1:
            raise InvalidInputError(f"tensor parallelism must be at least 1, got {self.tp}")
        heads = self.model.num_attention_heads
        if heads % self.tp:
            raise InvalidInputError(
                f"{self.model.name}'s {heads} attention heads do not split {self.tp} ways "
                "(tensor parallelism must divide them)"
            )

    @classmethod
    def of(
        cls,
        model: str,
        gpu: str,
        tp: int = 1,
        quant: str = "fp16",
        engine: str = "vllm",
        kv_cache: str = "fp16",
    ) -> Deployment:
        """Build from catalog names (raises UnknownNameError with suggestions).

        `kv_cache` is the KV cache's element type: fp16 (default) or fp8 (1 byte).
        """
        kv = lookup("KV cache type", KV_CACHE_BYTES, kv_cache.lower())
        return cls(
            model=lookup("model", MODELS, model.lower()),
            gpu=lookup("GPU", GPUS, gpu),
            tp=tp,
            quant=quantization(quant),
            engine=engine_profile(engine),
            kv_bytes_per_element=kv,
        )

    def with_engine(self, engine: EngineProfile) -> Deployment:
        return replace(self, engine=engine)

    # --- bytes -----------------------------------------------------------------------------

    @property
    def embedding_params(self) -> float:
        """Input embedding + LM head parameters (kept in 16 bits by quantized checkpoints)."""
        m = self.model
        return 2.0 * m.vocab_size * m.hidden_size

    @property
    def weight_bytes(self) -> float:
        """Bytes of all weights of the model (whole group)."""
        body = self.model.total_params_b * 1e9 - self.embedding_params
        return body * self.quant.weight_bytes_per_param + self.embedding_params * FP16_BYTES

    @property
    def kv_heads_per_gpu(self) -> int:
        """KV heads each GPU holds: sharded by TP, replicated when TP exceeds the KV heads."""
        return math.ceil(self.model.num_kv_heads / self.tp)

    @property
    def kv_bytes_per_token_per_gpu(self) -> float:
        m = self.model
        return 2.0 * m.num_layers * self.kv_heads_per_gpu * m.head_dim * self.kv_bytes_per_element

    @property
    def kv_bytes_per_token(self) -> float:
        """KV cache bytes one token occupies across the model (K and V, all layers)."""
        m = self.model
        return 2.0 * m.num_layers * m.num_kv_heads * m.head_dim * self.kv_bytes_per_element

    # --- hardware rates -------------------------------------------------------------------

    @property
    def peak_flops_per_gpu(self) -> float:
        g = self.gpu
        if self.quant.math is MathPath.FP8 and g.fp8_dense_tflops:
            return g.fp8_dense_tflops * 1e12
        if self.quant.math is MathPath.INT8 and g.int8_dense_tops:
            return g.int8_dense_tops * 1e12
        return g.fp16_dense_tflops * 1e12

    @property
    def effective_bandwidth(self) -> float:
        return self.gpu.memory_bandwidth_tb_per_s * 1e12 * self.engine.memory_efficiency

    def gemm_flops(self, tokens: float) -> float:
        """Achieved GEMM FLOP/s per GPU for a GEMM over `tokens` rows (per expert for MoE)."""
        ramp = tokens / (tokens + self.engine.gemm_half_efficiency_tokens)
        return self.peak_flops_per_gpu * self.engine.compute_efficiency * ramp

    @property
    def attention_flops(self) -> float:
        """Achieved attention FLOP/s per GPU: attention kernels compute in 16 bits even over
        an FP8 KV cache (FlashAttention, TensorRT-LLM XQA)."""
        return self.gpu.fp16_dense_tflops * 1e12 * self.engine.compute_efficiency

    def gemm_rows(self, tokens: float) -> float:
        """Rows each GEMM sees: all tokens for dense layers, the routed share per MoE expert."""
        m = self.model
        if m.num_experts <= 1:
            return tokens
        return max(1.0, tokens * m.experts_per_token / m.num_experts)

    # --- memory capacity ------------------------------------------------------------------

    def fits(self) -> bool:
        """Whether the weights fit with room for at least one sequence of one token."""
        return self.free_kv_bytes_per_gpu() > self.kv_bytes_per_token_per_gpu

    def free_kv_bytes_per_gpu(
        self, gpu_memory_utilization: float = GPU_MEMORY_UTILIZATION
    ) -> float:
        # Marketed HBM sizes are binary: an "80 GB" A100 shows 81,920 MiB in nvidia-smi.
        budget = self.gpu.memory_gb * 2**30 * gpu_memory_utilization
        return budget - self.weight_bytes / self.tp - ACTIVATION_RESERVE_BYTES

    def max_batch(self, context_tokens: int, *, capped: bool = True) -> int:
        """Most sequences of `context_tokens` each whose KV cache fits (capped by the engine's
        default concurrency limit unless `capped` is False)."""
        require_positive("context_tokens", context_tokens)
        free = self.free_kv_bytes_per_gpu()
        if free <= 0:
            return 0
        fit = int(free // (self.kv_bytes_per_token_per_gpu * context_tokens))
        return max(0, min(fit, self.engine.max_num_seqs) if capped else fit)

    # --- time -----------------------------------------------------------------------------

    def experts_read_ratio(self, tokens: float) -> float:
        """Fraction of the experts of an MoE layer that `tokens` tokens route to (uniform)."""
        m = self.model
        if m.num_experts <= 1:
            return 1.0
        miss_ratio: float = (1.0 - m.experts_per_token / m.num_experts) ** tokens
        return 1.0 - miss_ratio

    def weight_bytes_read(self, tokens: float) -> float:
        """Weight bytes read from memory (whole group) by one forward pass over `tokens` tokens."""
        m = self.model
        if m.num_experts <= 1:
            return self.weight_bytes
        expert_params = (
            (m.total_params_b - m.active_params_b)
            * m.num_experts
            / (m.num_experts - m.experts_per_token)
        )
        shared_params = m.total_params_b - expert_params
        bpp = self.quant.weight_bytes_per_param
        dense = (shared_params * 1e9 - self.embedding_params) * bpp
        dense += self.embedding_params * FP16_BYTES
        return dense + expert_params * 1e9 * bpp * self.experts_read_ratio(tokens)

    def allreduce_s(self, tokens: float) -> float:
        """Two all-reduces per layer of a `tokens × hidden` FP16 activation (ring algorithm)."""
        n = self.tp
        if n == 1:
            return 0.0
        link = self.gpu.interconnect_gb_per_s * 1e9
        payload = tokens * self.model.hidden_size * FP16_BYTES
        per_call = self.engine.allreduce_latency_s + 2 * (n - 1) / n * payload / link
        return 2 * self.model.num_layers * per_call

    def decode_step(self, batch: int, context_tokens: float) -> StepTime:
        """Time of one decode step of `batch` sequences holding `context_tokens` each."""
        require_positive("batch", batch)
        m, n = self.model, self.tp
        bw = self.effective_bandwidth
        gemm = max(
            self.weight_bytes_read(batch) / n / bw,
            2.0 * m.active_params_b * 1e9 * batch / n / self.gemm_flops(self.gemm_rows(batch)),
        )
        kv_read = batch * context_tokens * self.kv_bytes_per_token_per_gpu
        attn_flops = 4.0 * m.num_layers * m.num_attention_heads * m.head_dim * context_tokens
        attention = max(kv_read / bw, attn_flops * batch / n / self.attention_flops)
        return StepTime(
            gemm_s=gemm,
            attention_s=attention,
            allreduce_s=self.allreduce_s(batch),
            host_s=self.engine.step_overhead_s,
        )

    def prefill(self, prompts: int, prompt_tokens: float) -> StepTime:
        """Time to prefill `prompts` prompts of `prompt_tokens` tokens each in one pass."""
        require_positive("prompts", prompts)
        require_positive("prompt_tokens", prompt_tokens)
        m, n = self.model, self.tp
        tokens = prompts * prompt_tokens
        gemm = max(
            self.weight_bytes_read(tokens) / n / self.effective_bandwidth,
            2.0 * m.active_params_b * 1e9 * tokens / n / self.gemm_flops(self.gemm_rows(tokens)),
        )
        # Causal attention: QK^T and AV over on average half the prompt.
        attn_flops = 4.0 * m.num_layers * m.num_attention_heads * m.head_dim * prompt_tokens / 2
        attention = attn_flops * tokens / n / self.attention_flops
        return StepTime(
            gemm_s=gemm,
            attention_s=attention,
            allreduce_s=self.allreduce_s(tokens),
            host_s=self.engine.step_overhead_s,
        )

    # --- throughput -----------------------------------------------------------------------

    def decode_tokens_per_second(self, batch: int, context_tokens: float) -> float:
        """Generated tokens per second of a steady decode batch (no prefill)."""
        return batch / self.decode_step(batch, context_tokens).total_s

    def prefill_tokens_per_second(self, prompts: int, prompt_tokens: float) -> float:
        return prompts * prompt_tokens / self.prefill(prompts, prompt_tokens).total_s

    def static_batch(self, batch: int, input_tokens: int, output_tokens: int) -> BatchRun:
        """A batch that starts together: prefill all prompts, then decode `output_tokens` steps.

        The way offline benchmarks measure (lmdeploy's `profile_generation`): output throughput
        is batch × output tokens over the whole run, first token latency is the prefill.
        """
        require_positive("output_tokens", output_tokens)
        # More sequences than the KV cache holds run in waves, one after another.
        fit = max(1, self.max_batch(input_tokens + output_tokens, capped=False))
        waves = math.ceil(batch / fit)
        per_wave = math.ceil(batch / waves)
        prefill_s = waves * self.prefill(per_wave, input_tokens).total_s
        # KV reads grow linearly with context, so the mean step is the step at the mean context.
        decode_s = (
            waves
            * (output_tokens - 1)
            * self.decode_step(per_wave, input_tokens + output_tokens / 2).total_s
        )
        return BatchRun(
            batch=batch,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            prefill_s=prefill_s,
            decode_s=decode_s,
        )

    def serving(self, input_tokens: int, output_tokens: int, batch: int | None = None) -> BatchRun:
        """Steady continuous batching with every slot busy: prefills interleave with decodes.

        In the time a slot finishes one request (`output_tokens` decode steps) the group also
        prefills one prompt per slot. The batch defaults to the most the KV cache holds.
        """
        require_positive("input_tokens", input_tokens)
        require_positive("output_tokens", output_tokens)
        if batch is None:
            batch = self.max_batch(input_tokens + output_tokens)
        if batch < 1:
            raise InvalidInputError(
                f"{self.model.name} in {self.quant.name} does not fit on {self.tp}× "
                f"{self.gpu.name} with a {input_tokens + output_tokens}-token context"
            )
        # The prefill emits each request's first token; decode steps emit the rest.
        decode_s = (
            max(output_tokens - 1, 0)
            * self.decode_step(batch, input_tokens + output_tokens / 2).total_s
        )
        prefill = self.prefill(batch, input_tokens)
        # Chunked prefill rides on decode steps: its weights are already being read, so it adds
        # its compute and communication, not another weight read or host step.
        m, n = self.model, self.tp
        tokens = batch * input_tokens
        prefill_compute = 2.0 * m.active_params_b * 1e9 * tokens / n
        prefill_s = (
            prefill_compute / self.gemm_flops(self.gemm_rows(tokens))
            + prefill.attention_s
            + prefill.allreduce_s
        )
        return BatchRun(
            batch=batch,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            prefill_s=prefill_s,
            decode_s=decode_s,
        )


@dataclass(frozen=True, slots=True)
class StepTime:
    gemm_s: float
    attention_s: float
    allreduce_s: float
    host_s: float

    @property
    def total_s(self) -> float:
        return self.gemm_s + self.attention_s + self.allreduce_s + self.host_s


@dataclass(frozen=True, slots=True)
class BatchRun:
    """A period in which `batch` sequences each have `input_tokens` prefilled and
    `output_tokens` generated: a static batch from start to end, or one cycle of steady
    continuous batching (every slot finishing one request)."""

    batch: int
    input_tokens: int
    output_tokens: int
    prefill_s: float
    decode_s: float

    @property
    def total_s(self) -> float:
        return self.prefill_s + self.decode_s

    @property
    def output_tokens_per_second(self) -> float:
        return self.batch * self.output_tokens / self.total_s

    @property
    def input_tokens_per_second(self) -> float:
        return self.batch * self.input_tokens / self.total_s

    @property
    def total_tokens_per_second(self) -> float:
        return self.output_tokens_per_second + self.input_tokens_per_second

    @property
    def requests_per_second(self) -> float:
        return self.batch / self.total_s

    @property
    def prefill_time_ratio(self) -> float:
        """Share of GPU time spent on prefill: the input side of an input/output cost split."""
        return self.prefill_s / self.total_s

    @property
    def first_token_latency_s(self) -> float:
        """For a static batch: all prompts prefill before the first token."""
        return self.prefill_s

    @property
    def inter_token_latency_s(self) -> float:
        """Mean time between a sequence's tokens, prefill stalls included."""
        return self.total_s / self.output_tokens


def batch_for_throughput(
    deployment: Deployment, tokens_per_second: float, context_tokens: float
) -> int | None:
    """Smallest decode batch that generates `tokens_per_second`, or None if none can."""
    require_positive("tokens_per_second", tokens_per_second)
    cap = deployment.max_batch(math.ceil(context_tokens))
    lo, hi = 1, cap
    if hi < 1 or deployment.decode_tokens_per_second(hi, context_tokens) < tokens_per_second:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if deployment.decode_tokens_per_second(mid, context_tokens) >= tokens_per_second:
            hi = mid
        else:
            lo = mid + 1
    return lo
