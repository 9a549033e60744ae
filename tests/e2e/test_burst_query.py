"""The burst query against a real Prometheus: peak 30/60/120 s token rates per pod.

Backfilled 20 minutes of vLLM counters at 15 s, evaluated at the last sample:
- pod `a`: prompt tokens at 100/s and generated at 10/s, with a 30 s burst of prompt tokens at
  1,000/s in the two intervals ending 60 and 45 s before the end;
- pod `b`: prompt tokens at 200/s, no generation counter;
- pod `c`: 100/s with a counter reset (a restart) 30 s before the end: `rate` counts it as
  a reset, not as a negative or huge rate.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.prometheus import PrometheusBinaries, backfilled_client

from costengine.spotplan import serviceable_rate
from costoperator.promclient import PromClient
from costoperator.promserver import openmetrics_series
from costoperator.queries import BURST_STEP_S, burst_query
from costoperator.tick import burst_rows

NS = "inference"
STEP_S, STEPS = 15, 80


def _counter(rates: list[float], reset_at: int | None = None) -> list[float]:
    """Counter values at each sample from per-interval rates (oldest first)."""
    values, total = [], 0.0
    for i, rate in enumerate(rates):
        total = 0.0 if i == reset_at else total + rate * STEP_S
        values.append(total)
    return values


def _history(end: int) -> str:
    times = [end - STEP_S * (STEPS - 1 - i) for i in range(STEPS)]
    burst = {STEPS - 1 - 4, STEPS - 1 - 3}  # the intervals ending 60 and 45 s before the end
    prompt_a = _counter([1000.0 if i in burst else 100.0 for i in range(STEPS)])
    series = {
        ("a", "vllm:prompt_tokens_total"): prompt_a,
        ("a", "vllm:generation_tokens_total"): _counter([10.0] * STEPS),
        ("b", "vllm:prompt_tokens_total"): _counter([200.0] * STEPS),
        ("c", "vllm:prompt_tokens_total"): _counter([100.0] * STEPS, reset_at=STEPS - 1 - 2),
    }
    text = ""
    by_name: dict[str, list[tuple[str, list[float]]]] = {}
    for (pod, name), values in series.items():
        by_name.setdefault(name, []).append((pod, values))
    for name, pods in by_name.items():
        for pod, values in pods:
            text += openmetrics_series(
                name,
                list(zip(times, values, strict=True)),
                labels={"namespace": NS, "pod": pod},
                metric_type="counter",
            )
    return text


@pytest.fixture(scope="module")
def prom(
    prometheus_bin: PrometheusBinaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PromClient, float]]:
    with backfilled_client(_history, tmp_path_factory.mktemp("tsdb"), prometheus_bin) as prom:
        yield prom


def test_the_peaks_of_the_last_two_minutes_show_the_burst_at_its_height(
    prom: tuple[PromClient, float],
) -> None:
    client, end = prom
    rows = burst_rows(client.query(burst_query(120), at=end))
    # a: the 30 s window over the burst, 30,000 tokens + 300 generated; 60 s: 33,000 + 600;
    # 120 s: 30,000 + 6 × 1,500 + 1,200.
    assert rows[(NS, "a")] == {
        30.0: pytest.approx(1010),
        60.0: pytest.approx(560),
        120.0: pytest.approx(335),
    }
    assert rows[(NS, "b")] == {w: pytest.approx(200) for w in (30.0, 60.0, 120.0)}
    assert rows[(NS, "c")] == {w: pytest.approx(100) for w in (30.0, 60.0, 120.0)}
    assert set(rows) == {(NS, "a"), (NS, "b"), (NS, "c")}
    # What the planner makes of pod a with the default 30 s queue at the query's 15 s step:
    # 1,010 × 30 ÷ 45, the 30 s window's (the burst fits the queue's 45 s).
    assert serviceable_rate(rows[(NS, "a")], 30, BURST_STEP_S) == pytest.approx(1010 * 30 / 45)


def test_over_the_last_tick_only_the_windows_still_holding_the_burst_show_it(
    prom: tuple[PromClient, float],
) -> None:
    client, end = prom
    # Windows ending in the last 15 s: the 30 s ones are past the burst; the 60 and 120 s ones
    # still hold it whole.
    rows = burst_rows(client.query(burst_query(15), at=end))
    assert rows[(NS, "a")] == {
        30.0: pytest.approx(110),
        60.0: pytest.approx(560),
        120.0: pytest.approx(335),
    }
    # Over 30 s, the subquery (a range that includes both ends, in Prometheus 2) also has the
    # window ending 30 s before the end, which holds the burst's second interval: 16,500
    # tokens in 30 s, + 10 generated. Consecutive ticks overlap by a sample, never miss one.
    rows = burst_rows(client.query(burst_query(30), at=end))
    assert rows[(NS, "a")][30.0] == pytest.approx(560)


def test_only_the_namespaces_asked_for_answer(prom: tuple[PromClient, float]) -> None:
    client, end = prom
    assert set(burst_rows(client.query(burst_query(120, [NS, "other"]), at=end))) == {
        (NS, "a"),
        (NS, "b"),
        (NS, "c"),
    }
    assert burst_rows(client.query(burst_query(120, ["other"]), at=end)) == {}
