"""Caching ROI: prefix (KV reuse), semantic (whole responses) and prompt-template caches.

From the seed's section "Caching ROI: Prefix, Semantic, and Prompt Caching". Savings are in
tokens first (what the GPU no longer computes) and in dollars second (tokens × the price of
computing them), so the same functions serve the calculator and the live operator, which
measures cached tokens and prices them at the workload's own prefill cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from costengine.cost import TOKENS_PER_MILLION
from costengine.errors import InvalidInputError, require_non_negative, require_ratio


@dataclass(frozen=True, slots=True)
class PrefixCacheROI:
    total_prefill_tokens_per_hour: float
    cached_prefill_tokens_per_hour: float
    """Tokens still computed for cache hits (only their non-shared part)."""
    uncached_prefill_tokens_per_hour: float
    """Tokens computed for cache misses (the whole prompt)."""
    prefill_tokens_with_cache_per_hour: float
    prefill_reduction_ratio: float
    usd_saved_per_hour: float


def prefix_cache_roi(
    shared_prefix_tokens: float,
    unique_tokens: float,
    requests_per_hour: float,
    cache_hit_ratio: float,
    usd_per_million_prefill_tokens: float,
) -> PrefixCacheROI:
    """The seed's prefix caching calculation.

    A hit computes only the request's own `unique_tokens`; a miss computes the whole prompt.
    Seed example: 2048 shared + 256 unique tokens, 10,000 requests/h, 85% hits, $0.50 per 1M
    prefill tokens → 75.6% less prefill, $8.70/h saved.
    """
    require_non_negative("shared_prefix_tokens", shared_prefix_tokens)
    require_non_negative("unique_tokens", unique_tokens)
    require_non_negative("requests_per_hour", requests_per_hour)
    require_ratio("cache_hit_ratio", cache_hit_ratio, allow_zero=True)
    require_non_negative("usd_per_million_prefill_tokens", usd_per_million_prefill_tokens)
    prompt = shared_prefix_tokens + unique_tokens
    if prompt <= 0:
        raise InvalidInputError("a prompt needs at least one token")
    total = prompt * requests_per_hour
    cached = unique_tokens * requests_per_hour * cache_hit_ratio
    uncached = prompt * requests_per_hour * (1 - cache_hit_ratio)
    with_cache = cached + uncached
    reduction = 1 - with_cache / total if total > 0 else 0.0
    saved_usd = (total - with_cache) / TOKENS_PER_MILLION * usd_per_million_prefill_tokens
    return PrefixCacheROI(
        total_prefill_tokens_per_hour=total,
        cached_prefill_tokens_per_hour=cached,
        uncached_prefill_tokens_per_hour=uncached,
        prefill_tokens_with_cache_per_hour=with_cache,
        prefill_reduction_ratio=reduction,
        usd_saved_per_hour=saved_usd,
    )


def prefix_cache_savings_usd_per_hour(
    cached_tokens_per_second: float, usd_per_million_prefill_tokens: float
) -> float:
    """Live form: prompt tokens served from the prefix cache × what computing them would cost."""
    require_non_negative("cached_tokens_per_second", cached_tokens_per_second)
    require_non_negative("usd_per_million_prefill_tokens", usd_per_million_prefill_tokens)
    return cached_tokens_per_second * 3600 / TOKENS_PER_MILLION * usd_per_million_prefill_tokens


@dataclass(frozen=True, slots=True)
class SemanticCacheROI:
    requests_served_from_cache_per_hour: float
    input_tokens_avoided_per_hour: float
    output_tokens_avoided_per_hour: float
    gross_usd_saved_per_hour: float
    cache_usd_per_hour: float
    net_usd_saved_per_hour: float


def semantic_cache_roi(
    requests_per_hour: float,
    hit_ratio: float,
    input_tokens: float,
    output_tokens: float,
    usd_per_million_input_tokens: float,
    usd_per_million_output_tokens: float,
    cache_usd_per_hour: float = 0.0,
) -> SemanticCacheROI:
    """A semantic cache answers a hit with a stored response: both prefill and decode are saved.

    The seed quotes 10-30% hit ratios for FAQ-style traffic. `cache_usd_per_hour` is what the
    vector store and embedding calls cost; the net saving subtracts it.
    """
    for name, value in (
        ("requests_per_hour", requests_per_hour),
        ("input_tokens", input_tokens),
        ("output_tokens", output_tokens),
        ("usd_per_million_input_tokens", usd_per_million_input_tokens),
        ("usd_per_million_output_tokens", usd_per_million_output_tokens),
        ("cache_usd_per_hour", cache_usd_per_hour),
    ):
        require_non_negative(name, value)
    require_ratio("hit_ratio", hit_ratio, allow_zero=True)
    hits = requests_per_hour * hit_ratio
    gross = (
        hits
        * (
            input_tokens * usd_per_million_input_tokens
            + output_tokens * usd_per_million_output_tokens
        )
        / TOKENS_PER_MILLION
    )
    return SemanticCacheROI(
        requests_served_from_cache_per_hour=hits,
        input_tokens_avoided_per_hour=hits * input_tokens,
        output_tokens_avoided_per_hour=hits * output_tokens,
        gross_usd_saved_per_hour=gross,
        cache_usd_per_hour=cache_usd_per_hour,
        net_usd_saved_per_hour=gross - cache_usd_per_hour,
    )


def semantic_cache_savings_usd_per_hour(
    hit_input_tokens_per_second: float,
    hit_output_tokens_per_second: float,
    usd_per_million_input_tokens: float,
    usd_per_million_output_tokens: float,
) -> float:
    """Live form: tokens a semantic cache answered, priced at the workload's own $/1M by type."""
    return (
        (
            hit_input_tokens_per_second * usd_per_million_input_tokens
            + hit_output_tokens_per_second * usd_per_million_output_tokens
        )
        * 3600
        / TOKENS_PER_MILLION
    )


def template_cache_roi(
    template_tokens: float,
    dynamic_tokens: float,
    requests_per_hour: float,
    usd_per_million_prefill_tokens: float,
) -> PrefixCacheROI:
    """Prompt-template compilation: the fixed template's KV state is precomputed for everyone.

    Every request reuses it (a hit ratio of 1); only the dynamic part is computed.
    """
    return prefix_cache_roi(
        template_tokens, dynamic_tokens, requests_per_hour, 1.0, usd_per_million_prefill_tokens
    )


@dataclass(frozen=True, slots=True)
class CombinedCaching:
    baseline_usd_per_hour: float
    with_caches_usd_per_hour: float
    reduction_ratio: float


def combined_caching(
    prefill_usd_per_hour: float,
    decode_usd_per_hour: float,
    prefix_prefill_reduction_ratio: float,
    semantic_hit_ratio: float,
    cache_infra_usd_per_hour: float = 0.0,
) -> CombinedCaching:
    """Semantic hits remove whole requests; the prefix cache trims the prefill of the rest.

    The seed's claim (prefix + semantic together cut 40-60% of RAG inference cost, with cache
    infrastructure under 5% of GPU cost) is checked against this composition in the tests.
    """
    require_non_negative("prefill_usd_per_hour", prefill_usd_per_hour)
    require_non_negative("decode_usd_per_hour", decode_usd_per_hour)
    require_ratio("prefix_prefill_reduction_ratio", prefix_prefill_reduction_ratio, allow_zero=True)
    require_ratio("semantic_hit_ratio", semantic_hit_ratio, allow_zero=True)
    require_non_negative("cache_infra_usd_per_hour", cache_infra_usd_per_hour)
    baseline = prefill_usd_per_hour + decode_usd_per_hour
    remaining = 1 - semantic_hit_ratio
    cached = remaining * (
        prefill_usd_per_hour * (1 - prefix_prefill_reduction_ratio) + decode_usd_per_hour
    )
    total = cached + cache_infra_usd_per_hour
    return CombinedCaching(
        baseline_usd_per_hour=baseline,
        with_caches_usd_per_hour=total,
        reduction_ratio=1 - total / baseline if baseline > 0 else 0.0,
    )
