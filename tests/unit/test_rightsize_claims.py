"""The seed's right-sizing claims at the seed's prices, and where they hold (docs/seed-errata.md
E10, E14 and E15 explain the limits)."""

from __future__ import annotations

import pytest

from costengine.pricing import seed_price_sheet
from costengine.rightsize import Candidate, Demand, rightsize
from costengine.throughput import Deployment

pytestmark = pytest.mark.seed

SEED = seed_price_sheet()


def best_by_gpu(model: str, demand: Demand, quants: tuple[str, ...]) -> list[Candidate]:
    best: dict[str, Candidate] = {}
    for c in rightsize(model, demand, SEED, quants=quants):
        held = best.get(c.gpu)
        if (
            held is None
            or c.usd_per_million_tokens_at_capacity < held.usd_per_million_tokens_at_capacity
        ):
            best[c.gpu] = c
    return sorted(best.values(), key=lambda c: c.usd_per_million_tokens_at_capacity)


@pytest.mark.parametrize("model", ["llama-2-70b", "llama-3.1-70b", "qwen2.5-72b"])
@pytest.mark.parametrize("quant", ["fp16", "int8", "int4"])
def test_h100_ahead_for_70b_plus(model: str, quant: str) -> None:
    ranked = best_by_gpu(model, Demand(1000, 512, 256), (quant,))
    assert ranked[0].gpu == "H100-SXM"
    a100 = next(c for c in ranked if c.gpu == "A100-80GB")
    assert (
        ranked[0].usd_per_million_tokens_at_capacity < 0.8 * a100.usd_per_million_tokens_at_capacity
    )


@pytest.mark.parametrize("model", ["llama-2-7b", "llama-2-13b"])
def test_a100_best_for_7_to_13b_at_equal_batch(model: str) -> None:
    """The seed's table compares GPUs at one batch size, where decode is bandwidth-bound and
    the A100's bandwidth per dollar (0.92 TB/s per $/h vs H100's 0.74) wins."""
    a100 = Deployment.of(model, "A100-80GB")
    h100 = Deployment.of(model, "H100-SXM")
    for batch in (1, 8, 32):
        a100_usd_per_token = 2.21 / a100.decode_tokens_per_second(batch, 576)
        h100_usd_per_token = 4.50 / h100.decode_tokens_per_second(batch, 576)
        assert a100_usd_per_token < h100_usd_per_token


@pytest.mark.parametrize("model", ["llama-2-7b", "llama-2-13b"])
def test_a100_best_for_mha_7_to_13b_with_int8(model: str) -> None:
    assert best_by_gpu(model, Demand(1000, 512, 256), ("int8",))[0].gpu == "A100-80GB"


@pytest.mark.parametrize("model", ["llama-2-7b", "mistral-7b", "llama-3.1-8b"])
def test_h100_overtakes_a100_at_full_batch_in_fp16(model: str) -> None:
    """E14: run each GPU at its largest batch within 100 ms per token and the H100's compute
    per dollar (220 vs 141 dense TFLOPS per $/h) wins for 7-8B FP16 too."""
    ranked = best_by_gpu(model, Demand(1000, 512, 256), ("fp16",))
    assert ranked[0].gpu == "H100-SXM"


@pytest.mark.parametrize("model", ["mistral-7b", "llama-3.1-8b", "qwen2.5-7b"])
def test_l4_best_for_small_gqa_models_with_int8_and_short_requests(model: str) -> None:
    """E15: "L4 wins with INT8" holds where the KV cache is small (GQA, short requests), so the
    24 GB card still batches deeply."""
    assert best_by_gpu(model, Demand(1000, 128, 128), ("int8",))[0].gpu == "L4"


def test_l4_does_not_win_for_mha_llama_2_7b() -> None:
    """E15: Llama-2 7B keeps 32 KV heads (0.5 MB per token): the L4's KV room caps its batch."""
    ranked = best_by_gpu("llama-2-7b", Demand(1000, 512, 256), ("int8",))
    assert ranked[0].gpu != "L4"
    l4 = next(c for c in ranked if c.gpu == "L4")
    a100 = next(c for c in ranked if c.gpu == "A100-80GB")
    assert l4.batch < a100.batch


def test_rightsize_drops_what_does_not_fit_and_says_why() -> None:
    everything = rightsize(
        "llama-2-70b", Demand(500), SEED, quants=("fp16",), include_infeasible=True
    )
    t4_single = next(c for c in everything if c.gpu == "T4" and c.tp == 1)
    assert not t4_single.feasible
    assert "GB per GPU" in t4_single.reason
    feasible = [c for c in everything if c.feasible]
    assert feasible
    assert all(c.replicas * c.replica_output_tokens_per_second * 0.7 >= 500 for c in feasible)
    costs = [c.usd_per_million_tokens for c in feasible]
    assert costs == sorted(costs)


def test_rightsize_respects_the_latency_bound() -> None:
    for c in rightsize("llama-3.1-8b", Demand(2000), SEED, max_inter_token_latency_s=0.03):
        assert c.inter_token_latency_s <= 0.03
