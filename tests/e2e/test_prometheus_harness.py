"""The Prometheus harness against the real binary: scraping, rates, resets, backfill, cleanup.

Every wait has a timeout; nothing asserts on how long something took. Adding or changing
targets costs ~5 s each (Prometheus batches discovery updates every 5 s), so tests change
targets as rarely as they can.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from harness.exporter import RateExporter
from harness.prometheus import (
    PrometheusBinaries,
    PrometheusError,
    PrometheusQueryError,
    PrometheusServer,
    ScrapeJob,
    TargetGroup,
    backfill_openmetrics,
    openmetrics_series,
)

RATE = 12.5  # counter increments per second
COUNTER = "llmcost_test_tokens_total"

MakeExporter = Callable[..., RateExporter]


def test_rate_of_scraped_counter_matches_known_rate(
    prometheus: PrometheusServer, rate_exporter: MakeExporter
) -> None:
    exporter = rate_exporter(rate=RATE)
    prometheus.set_targets([exporter.target])

    # A 5s window is at least four 1s scrape intervals; wait until it is full, plus one.
    (ready,) = prometheus.wait_for_series(
        f"count_over_time({COUNTER}[6s]) >= 6", timeout=20, interval=0.5
    )
    measured = prometheus.query_value(f"sum(rate({COUNTER}[5s]))", float(ready["value"][0]))

    assert measured is not None
    assert measured == pytest.approx(RATE, rel=0.03)


def test_targets_added_and_removed_at_runtime(
    prometheus: PrometheusServer, rate_exporter: MakeExporter
) -> None:
    first = rate_exporter(rate=1.0)
    second = rate_exporter(rate=2.0)
    assert prometheus.active_targets() == []

    prometheus.set_targets(
        [first.target, TargetGroup([second.target], labels={"pool": "spot"})], timeout=30
    )
    up = prometheus.wait_for_series('up{job="file_sd"} == 1', predicate=lambda r: len(r) == 2)
    by_instance = {r["metric"]["instance"]: r["metric"] for r in up}
    assert set(by_instance) == {first.target, second.target}
    assert by_instance[second.target]["pool"] == "spot"
    assert "pool" not in by_instance[first.target]

    prometheus.set_targets([second.target], timeout=30)
    active = prometheus.active_targets("file_sd")
    assert [t["labels"]["instance"] for t in active] == [second.target]


def test_static_jobs_and_honor_labels(
    prometheus_bin: PrometheusBinaries, rate_exporter: MakeExporter
) -> None:
    # The exporter's series carries its own `job` label, which collides with the target's.
    honoured = rate_exporter(labels={"job": "from-exporter"})
    overridden = rate_exporter(labels={"job": "from-exporter"})
    jobs = [ScrapeJob("honoured", [honoured.target], honor_labels=True)]
    with PrometheusServer(
        binary=prometheus_bin.prometheus, jobs=jobs, targets=[overridden.target]
    ) as prometheus:
        result = prometheus.wait_for_series(COUNTER, predicate=lambda r: len(r) == 2)

    labels = {r["metric"]["instance"]: r["metric"] for r in result}
    assert labels[honoured.target]["job"] == "from-exporter"
    assert "exported_job" not in labels[honoured.target]
    assert labels[overridden.target]["job"] == "file_sd"
    assert labels[overridden.target]["exported_job"] == "from-exporter"


def test_counter_reset_gives_no_negative_rate(
    prometheus: PrometheusServer, rate_exporter: MakeExporter
) -> None:
    exporter = rate_exporter(rate=RATE)
    prometheus.set_targets([exporter.target])
    # Enough history that the 8s window below is covered by samples from end to end.
    prometheus.wait_for_series(f"count_over_time({COUNTER}[10s]) >= 6", timeout=20, interval=0.5)

    exporter.restart()  # a pod restart: the counter starts again at 0
    # Wait until the reset is inside the last 8s but not the last 3s: the 8s window then
    # holds a few samples from before the restart and a few from after it.
    (ready,) = prometheus.wait_for_series(
        f"resets({COUNTER}[8s]) == 1 and resets({COUNTER}[3s]) == 0", timeout=20, interval=0.5
    )
    at = float(ready["value"][0])  # evaluate everything at that instant
    raw_change = prometheus.query_value(f"delta({COUNTER}[8s])", at)
    measured = prometheus.query_value(f"sum(rate({COUNTER}[8s]))", at)

    assert raw_change is not None
    assert raw_change < 0  # the raw series did go down ...
    assert measured is not None
    # ... but rate() corrects the reset. The increments between the last scrape before the
    # restart and the restart (< 1 s) plus the exporter's downtime (its HTTP server polls for
    # shutdown every 0.5 s) never happened: up to ~1.5 s of the ~7 s between the window's
    # first and last samples, so the rate may read up to ~22% low, never negative or high.
    assert RATE * 0.75 <= measured <= RATE * 1.03


def test_backfilled_history_is_queryable_exactly(
    prometheus_bin: PrometheusBinaries, tmp_path: Path
) -> None:
    # 6 hours of a gauge and a counter at 1-minute steps, ending more than 3 h ago (so older
    # than anything the in-memory head will hold), on minute boundaries.
    end = (int(time.time()) - 4 * 3600) // 60 * 60
    start = end - 6 * 3600
    stamps = list(range(start, end + 1, 60))
    gauge = [(t, 0.25 * (i % 37) + 100.0) for i, t in enumerate(stamps)]  # exact binary floats
    counter = [(t, 60.0 * i) for i, t in enumerate(stamps)]  # 1 per second
    text = openmetrics_series(
        "llmcost_gpu_hourly_usd", gauge, labels={"gpu": "A100-80GB"}
    ) + openmetrics_series("llmcost_test_tokens", counter, metric_type="counter")
    data_dir = tmp_path / "tsdb"
    blocks = backfill_openmetrics(text, data_dir, promtool=prometheus_bin.promtool)
    assert len(blocks) >= 3  # 6 h cut at 2 h boundaries

    with PrometheusServer(binary=prometheus_bin.prometheus, data_dir=data_dir) as prometheus:
        ranged = prometheus.query_range("llmcost_gpu_hourly_usd", start, end, step=60)
        (series,) = ranged["data"]["result"]
        assert series["metric"] == {"__name__": "llmcost_gpu_hourly_usd", "gpu": "A100-80GB"}
        assert [(int(t), float(v)) for t, v in series["values"]] == gauge

        exact_mean = Fraction(sum(Fraction(v) for _, v in gauge), len(gauge))
        # Prometheus 2.x range selectors include both ends: 361 samples in [end-6h, end].
        assert prometheus.query_value("count_over_time(llmcost_gpu_hourly_usd[6h])", end) == 361
        gauge_6h = "llmcost_gpu_hourly_usd[6h]"
        sum_over_count = prometheus.query_value(
            f"sum_over_time({gauge_6h}) / count_over_time({gauge_6h})", end
        )
        assert sum_over_count == float(exact_mean)
        # avg_over_time uses a running mean in 2.42: close, not bit-exact.
        averaged = prometheus.query_value("avg_over_time(llmcost_gpu_hourly_usd[6h])", end)
        assert averaged == pytest.approx(float(exact_mean), rel=1e-12)

        # Samples on both window edges: no extrapolation, so the hourly rate is exact.
        for t in (start + 3600, end - 1800, end):
            assert prometheus.query_value("rate(llmcost_test_tokens_total[1h])", t) == 1.0
        # Before the first and long after the last sample there is no data, not zero.
        assert prometheus.query_value("llmcost_gpu_hourly_usd", start - 60) is None
        assert prometheus.query_value("llmcost_gpu_hourly_usd") is None


def test_backfill_refuses_what_promtool_would_drop_silently(
    prometheus_bin: PrometheusBinaries, tmp_path: Path
) -> None:
    end = int(time.time()) - 4 * 3600
    descending = "# TYPE g gauge\n" + "".join(f"g 1 {end - 60 * i}\n" for i in range(240))
    with pytest.raises(PrometheusError, match=r"stored \d of 240 samples"):
        backfill_openmetrics(descending, tmp_path / "a", promtool=prometheus_bin.promtool)
    # The helper writes samples in time order whatever order it is given.
    text = openmetrics_series("g", [(end - 60 * i, 1.0) for i in range(240)])
    assert backfill_openmetrics(text, tmp_path / "b", promtool=prometheus_bin.promtool)
    with pytest.raises(ValueError, match="two samples"):
        openmetrics_series("g", [(end, 1.0), (end, 2.0)])


def test_query_errors_and_empty_results(prometheus: PrometheusServer) -> None:
    with pytest.raises(PrometheusQueryError, match="parse error") as caught:
        prometheus.query("rate(x[5m]")
    assert caught.value.error_type == "bad_data"
    assert caught.value.http_status == 400
    assert prometheus.query_value("absent_metric_name") is None
    assert prometheus.query_value("vector(2.5)") == 2.5
    with pytest.raises(TimeoutError, match="no series"):
        prometheus.wait_for_series("absent_metric_name", timeout=0.5)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # Still in the table: only acceptable as a zombie awaiting its (other) parent's reaping.
    status = Path(f"/proc/{pid}/status").read_text()
    return "\nState:\tZ" in status


def _port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_stop_leaves_no_process(prometheus_bin: PrometheusBinaries) -> None:
    server = PrometheusServer(binary=prometheus_bin.prometheus).start()
    pid, port, work_dir = server.pid, server.port, server.work_dir
    assert pid is not None
    assert not _gone(pid)

    server.stop()
    server.stop()  # idempotent

    assert _gone(pid)
    assert _port_closed(port)
    assert not work_dir.exists()
    assert not server.running


@pytest.mark.usefixtures("prometheus_bin")
def test_no_orphan_when_the_starting_process_is_killed() -> None:
    # A test process that dies hard (SIGKILL, no finally blocks) must not leave Prometheus.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from costoperator.promserver import PrometheusServer\n"
            "server = PrometheusServer().start()\n"
            "print(server.pid, server.port, server.work_dir, flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, "the child process failed to start Prometheus (see its stderr above)"
        pid_text, port_text, work_dir = line.split()
        pid, port = int(pid_text), int(port_text)
        assert not _gone(pid)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)

    deadline = time.monotonic() + 15
    while not (_gone(pid) and _port_closed(port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(pid), f"prometheus {pid} outlived the process that started it"
    assert _port_closed(port)
    shutil.rmtree(work_dir)  # the killed process could not clean up its temporary files


def test_backfill_streams_chunks_into_long_blocks(
    prometheus_bin: PrometheusBinaries, tmp_path: Path
) -> None:
    """Chunks of text are written as they come (a day of 10,000 pods' history need not sit in
    memory as one string), and `max_block_duration` keeps a day in a few long blocks: promtool
    uses the largest of its block ranges (2 h × 3^k) not over it, 18 h for "24h", aligned to
    multiples of 18 h since the epoch, so a day lands in two or three of them."""
    end = (int(time.time()) - 4 * 3600) // 60 * 60
    stamps = range(end - 24 * 3600 + 60, end + 1, 60)

    def chunks() -> Iterator[str]:
        for gpu in range(3):
            yield openmetrics_series(
                "g", [(t, float(gpu)) for t in stamps], labels={"gpu": f"{gpu}"}
            )

    blocks = backfill_openmetrics(
        chunks(), tmp_path / "tsdb", promtool=prometheus_bin.promtool, max_block_duration="24h"
    )
    block_s = 18 * 3600
    assert len(blocks) == end // block_s - stamps[0] // block_s + 1  # 2 h blocks: 12 or 13
    with PrometheusServer(binary=prometheus_bin.prometheus, data_dir=tmp_path / "tsdb") as prom:
        assert prom.query_value("count(count_over_time(g[24h]))", end) == 3
        assert prom.query_value("sum(count_over_time(g[24h]))", end) == 3 * 1440
    # The samples of every chunk are counted: one dropped by promtool is still caught. (The
    # pair sits mid-way in a 2 h block: promtool reads the input once per block range, so an
    # out-of-order pair either side of a boundary is stored whole. With `end` on an even hour,
    # 1 run in 120, this once raised nothing.)
    mid = end // 7200 * 7200 - 3600
    late = openmetrics_series("h", [(mid, 1.0)]) + f"h 1 {mid - 60}\n"
    with pytest.raises(PrometheusError, match="stored 1 of 2 samples"):
        backfill_openmetrics(iter([late]), tmp_path / "c", promtool=prometheus_bin.promtool)
