"""Cost equations, prices, calculators: properties and edge cases."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costengine.breakeven import (
    GPT_4O,
    ApiPrice,
    SelfHostedFleet,
)
from costengine.caching import prefix_cache_savings_usd_per_hour, semantic_cache_roi
from costengine.cost import cost_per_million_tokens, split_input_output, usd_per_million_tokens
from costengine.errors import InvalidInputError, UnknownNameError
from costengine.pricing import (
    CapacityType,
    PriceEntry,
    aws_us_east_1_price_sheet,
    parse_price_sheet_csv,
    price_sheet,
    seed_price_sheet,
)
from costengine.spot import hybrid_spot_cost
from costengine.tenancy import statistical_multiplexing_from_series

prices = st.floats(min_value=0.01, max_value=100, allow_nan=False)
rates = st.floats(min_value=1, max_value=1e6, allow_nan=False)
ratios = st.floats(min_value=0.01, max_value=1.0, allow_nan=False)


@given(prices, rates, ratios, st.integers(min_value=1, max_value=64))
def test_cost_per_million_tokens_is_the_general_equation(
    price: float, tps: float, util: float, gpus: int
) -> None:
    usd = cost_per_million_tokens(price, tps, util, gpus)
    assert usd == pytest.approx(usd_per_million_tokens(price * gpus, tps * util))
    assert cost_per_million_tokens(2 * price, tps, util, gpus) == pytest.approx(2 * usd)
    assert cost_per_million_tokens(price, 2 * tps, util, gpus) == pytest.approx(usd / 2)


@given(prices, rates, rates, st.floats(min_value=0, max_value=1))
def test_input_output_split_conserves_the_hourly_cost(
    usd_per_hour: float, input_tps: float, output_tps: float, prefill_share: float
) -> None:
    split = split_input_output(usd_per_hour, input_tps, output_tps, prefill_share)
    assert split.input_usd_per_million is not None
    assert split.output_usd_per_million is not None
    assert split.all_usd_per_million is not None
    recovered = (
        (split.input_usd_per_million * input_tps + split.output_usd_per_million * output_tps)
        * 3600
        / 1e6
    )
    assert recovered == pytest.approx(usd_per_hour)
    total_tps = input_tps + output_tps
    assert split.all_usd_per_million * total_tps * 3600 / 1e6 == pytest.approx(usd_per_hour)


def test_split_with_no_tokens_of_a_type_is_none_not_a_division_by_zero() -> None:
    split = split_input_output(10.0, 0.0, 100.0, 0.2)
    assert split.input_usd_per_million is None
    assert split.output_usd_per_million is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1.0, 100, 0.7, 1), "gpu_cost_per_hour"),
        ((1.0, 0, 0.7, 1), "tokens_per_second"),
        ((1.0, 100, 0.0, 1), "utilization"),
        ((1.0, 100, 1.5, 1), "utilization"),
        ((1.0, 100, 0.7, 0), "num_gpus"),
        ((float("nan"), 100, 0.7, 1), "gpu_cost_per_hour"),
        ((1.0, float("inf"), 0.7, 1), "tokens_per_second"),
    ],
)
def test_bad_cost_inputs_name_the_problem(
    args: tuple[float, float, float, int], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        cost_per_million_tokens(*args)


def test_aws_sheet_is_the_shared_snapshot_per_gpu_hour(shared_data: Path) -> None:
    shared = shared_data / "prices" / "aws_us_east_1_gpu_instances.csv"
    bundled = Path(__file__).resolve().parents[2] / "costengine" / "data" / shared.name
    assert bundled.read_bytes() == shared.read_bytes(), "bundled price copy drifted"
    rows = list(csv.DictReader(shared.open()))
    sheet = aws_us_east_1_price_sheet()
    for gpu in {r["gpu"] for r in rows}:
        for capacity, column in (
            (CapacityType.ON_DEMAND, "on_demand_usd_per_hour"),
            (CapacityType.SPOT, "spot_usd_per_hour"),
        ):
            cheapest = min(float(r[column]) / int(r["gpu_count"]) for r in rows if r["gpu"] == gpu)
            assert sheet.usd_per_gpu_hour(gpu, capacity) == pytest.approx(cheapest)
    assert sheet.usd_per_gpu_hour("H100-SXM", CapacityType.SPOT) == pytest.approx(20.9934 / 8)


def test_price_sheet_lookups_suggest_and_override() -> None:
    sheet = seed_price_sheet()
    with pytest.raises(UnknownNameError, match="A100-80GB"):
        sheet.usd_per_gpu_hour("A100-80")
    with pytest.raises(UnknownNameError, match="on_demand"):
        sheet.usd_per_gpu_hour("L4", CapacityType.SPOT)
    cheaper = sheet.with_overrides([PriceEntry("L4", CapacityType.SPOT, 0.20)])
    assert cheaper.usd_per_gpu_hour("L4", CapacityType.SPOT) == 0.20
    assert cheaper.usd_per_gpu_hour("L4") == 0.54
    with pytest.raises(UnknownNameError, match="seed"):
        price_sheet("sed")


@pytest.mark.parametrize("bad", ["-1", "abc", "5000", "nan"])
def test_price_sheets_reject_bad_prices_by_line(bad: str) -> None:
    text = f"gpu,capacity_type,usd_per_gpu_hour\nL4,on_demand,0.5\nL4,spot,{bad}\n"
    with pytest.raises(InvalidInputError, match="line 3"):
        parse_price_sheet_csv("custom", text)


def test_live_prefix_savings_price_cached_tokens() -> None:
    # 1,000 cached tokens/s for an hour at $0.50 per 1M prefill tokens.
    assert prefix_cache_savings_usd_per_hour(1000, 0.50) == pytest.approx(1.80)


def test_semantic_cache_net_savings_subtract_the_cache() -> None:
    r = semantic_cache_roi(10_000, 0.2, 500, 200, 1.0, 2.0, cache_usd_per_hour=0.5)
    assert r.gross_usd_saved_per_hour == pytest.approx(2000 * (500 * 1 + 200 * 2) / 1e6)
    assert r.net_usd_saved_per_hour == pytest.approx(r.gross_usd_saved_per_hour - 0.5)


def test_spot_interruptions_cost_on_demand_cover_for_cold_starts() -> None:
    calm = hybrid_spot_cost(4, 4, 2.21, 0.73, 0.6, 6)
    stormy = hybrid_spot_cost(
        4, 4, 2.21, 0.73, 0.6, 6, interruptions_per_spot_gpu_hour=0.1, cold_start_s=600
    )
    gpu_hours = 4 * 730 * 0.6
    assert stormy.monthly_interruption_usd == pytest.approx(gpu_hours * 0.1 * 600 / 3600 * 2.21)
    assert stormy.savings_ratio < calm.savings_ratio


def test_breakeven_is_where_costs_cross() -> None:
    point = SelfHostedFleet(2.21, 4, 2400, 0.7, engineers=1).breakeven_tokens_per_month(GPT_4O)
    assert point is not None
    hosted = SelfHostedFleet(2.21, 4, 2400, 0.7, engineers=1).monthly_cost(point).total_usd
    api = point / 1e6 * GPT_4O.blended_usd_per_million(0.5)
    assert api == pytest.approx(hosted, rel=1e-9)
    free_api = ApiPrice("free", 0.0, 0.0)
    assert SelfHostedFleet(2.21, 4, 2400).breakeven_tokens_per_month(free_api) is None
    cheap_api = ApiPrice("cheap", 0.01, 0.01)  # a replica's tokens cost less than the replica
    assert SelfHostedFleet(2.21, 4, 2400).breakeven_tokens_per_month(cheap_api) is None


def test_multiplexing_from_series_quantile_of_sum_below_sum_of_quantiles() -> None:
    a = [1.0, 9.0, 1.0, 1.0]
    b = [1.0, 1.0, 9.0, 1.0]
    r = statistical_multiplexing_from_series([a, b], quantile=1.0)
    assert r.dedicated_capacity == 18
    assert r.shared_capacity == 10
    assert math.isclose(r.cost_reduction_ratio, 1 - 10 / 18)
    with pytest.raises(InvalidInputError):
        statistical_multiplexing_from_series([a, b[:2]])
