"""The throughput model's physics and its accuracy on published measurements."""

from __future__ import annotations

import itertools

import pytest

from costengine.calibration import (
    evaluate,
    predictable,
    published_measurements,
    seed_formula_prediction,
    summarize,
)
from costengine.errors import InvalidInputError, UnknownNameError
from costengine.throughput import ENGINES, Deployment, batch_for_throughput


def test_accuracy_on_published_measurements_meets_the_15_percent_goal() -> None:
    errors = evaluate(published_measurements())
    summary = summarize(errors)
    assert summary.points >= 400
    assert summary.median_abs_error <= 0.15
    assert abs(summary.bias) < 0.05


def test_model_beats_the_seed_formula_on_every_source() -> None:
    rows = [m for m in published_measurements() if seed_formula_prediction(m) is not None]
    model = {id(e.measurement): abs(e.relative_error) for e in evaluate(rows)}
    wins = 0
    for m in rows:
        seed = seed_formula_prediction(m)
        assert seed is not None
        wins += model[id(m)] < abs(seed - m.value) / m.value
    assert wins / len(rows) > 0.9


def test_every_predictable_row_names_catalog_entries() -> None:
    rows = [m for m in published_measurements() if predictable(m)]
    assert {m.engine for m in rows} <= set(ENGINES)
    for m in rows:
        Deployment.of(m.model, m.gpu, m.tp, m.quant, m.engine)


def test_throughput_grows_with_batch_with_diminishing_returns() -> None:
    dep = Deployment.of("llama-2-7b", "A100-80GB")
    rates = [dep.decode_tokens_per_second(b, 1024) for b in (1, 2, 4, 8, 16, 32, 64, 128)]
    assert rates == sorted(rates)
    gains = [b / a for a, b in itertools.pairwise(rates)]
    assert gains[0] > 1.8  # nearly linear while weight reads dominate
    assert gains[-1] < 1.5  # KV reads and compute take over


def test_decode_step_is_bounded_below_by_reading_the_weights() -> None:
    dep = Deployment.of("llama-2-70b", "H100-SXM", tp=4)
    step = dep.decode_step(1, 128)
    weight_read_s = dep.weight_bytes / 4 / (dep.gpu.memory_bandwidth_tb_per_s * 1e12)
    assert step.total_s > weight_read_s
    assert step.allreduce_s > 0
    assert Deployment.of("llama-2-7b", "H100-SXM").decode_step(1, 128).allreduce_s == 0


def test_tensor_parallel_shards_weights_and_kv_heads() -> None:
    one = Deployment.of("llama-2-70b", "H100-SXM", tp=1)
    eight = Deployment.of("llama-2-70b", "H100-SXM", tp=8)
    assert not one.fits()
    assert eight.fits()
    assert eight.kv_heads_per_gpu == 1
    sixteen_way_heads = Deployment.of("llama-2-70b", "H100-SXM", tp=16)
    assert sixteen_way_heads.kv_heads_per_gpu == 1  # replicated past the 8 KV heads


def test_quantization_shrinks_weights_but_keeps_embeddings_16_bit() -> None:
    fp16 = Deployment.of("llama-3.1-8b", "L4", quant="fp16")
    int4 = Deployment.of("llama-3.1-8b", "L4", quant="int4")
    assert fp16.weight_bytes == pytest.approx(8.03e9 * 2)
    assert 0.25 < int4.weight_bytes / fp16.weight_bytes < 0.45
    assert int4.weight_bytes > 2 * 128256 * 4096 * 2  # embeddings alone, 16-bit


def test_mixture_of_experts_reads_more_experts_as_batch_grows() -> None:
    dep = Deployment.of("mixtral-8x7b", "H100-SXM", tp=2)
    assert dep.experts_read_ratio(1) == pytest.approx(0.25)
    assert dep.experts_read_ratio(64) > 0.99
    assert dep.weight_bytes_read(1) < 0.4 * dep.weight_bytes
    assert dep.weight_bytes_read(256) == pytest.approx(dep.weight_bytes, rel=1e-6)


def test_max_batch_is_the_kv_cache_that_fits() -> None:
    dep = Deployment.of("llama-2-7b", "A100-80GB")
    batch = dep.max_batch(4096, capped=False)
    kv = dep.kv_bytes_per_token_per_gpu * 4096
    assert batch * kv <= dep.free_kv_bytes_per_gpu() < (batch + 1) * kv
    assert dep.max_batch(4096) == min(batch, ENGINES["vllm"].max_num_seqs)
    fp8_kv = Deployment.of("llama-2-7b", "A100-80GB", kv_cache="fp8")
    assert fp8_kv.max_batch(4096, capped=False) >= 2 * batch


def test_static_batch_runs_in_waves_past_the_kv_cache() -> None:
    dep = Deployment.of("llama-2-13b", "A100-80GB")
    fit = dep.max_batch(4096, capped=False)
    one_wave = dep.static_batch(fit, 2048, 2048)
    two_waves = dep.static_batch(2 * fit, 2048, 2048)
    assert two_waves.total_s == pytest.approx(2 * one_wave.total_s, rel=0.01)


def test_serving_splits_gpu_time_between_prefill_and_decode() -> None:
    dep = Deployment.of("llama-3.1-8b", "H100-SXM")
    chat = dep.serving(512, 256)
    rag = dep.serving(4096, 128)
    assert 0 < chat.prefill_time_ratio < rag.prefill_time_ratio < 1
    assert chat.output_tokens_per_second > rag.output_tokens_per_second


def test_batch_for_throughput_is_the_smallest_sufficient_batch() -> None:
    dep = Deployment.of("llama-3.1-8b", "L4")
    target = 0.5 * dep.decode_tokens_per_second(dep.max_batch(1024), 1024)
    batch = batch_for_throughput(dep, target, 1024)
    assert batch is not None
    assert dep.decode_tokens_per_second(batch, 1024) >= target
    assert batch == 1 or dep.decode_tokens_per_second(batch - 1, 1024) < target
    assert batch_for_throughput(dep, 1e9, 1024) is None


def test_bad_names_and_values_are_rejected_with_suggestions() -> None:
    with pytest.raises(UnknownNameError, match="H100-SXM"):
        Deployment.of("llama-2-7b", "H100SXM5")
    with pytest.raises(UnknownNameError, match="llama-2-70b"):
        Deployment.of("lama-2-70b", "H100-SXM")
    assert Deployment.of("llama2-70b", "H100-SXM").model.name == "llama-2-70b"  # separators
    with pytest.raises(InvalidInputError):
        Deployment.of("llama-2-7b", "H100-SXM", tp=0)
    with pytest.raises(InvalidInputError, match="64 attention heads do not split 3 ways"):
        Deployment.of("llama-2-70b", "H100-SXM", tp=3)
    assert Deployment.of("LLAMA-2-7B", "h100-sxm").gpu.name == "H100-SXM"
