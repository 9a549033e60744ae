"""The tick bench's remote-write loader (bench/remote_write.py) against a real Prometheus: the
hand-encoded protobuf lands in the head with exact labels, values and timestamps."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from harness.prometheus import PrometheusBinaries, PrometheusServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import remote_write


def test_pushed_history_is_read_back_exactly(prometheus_bin: PrometheusBinaries) -> None:
    end = float(int(time.time()) // 15 * 15)
    times = [end - 30, end - 15, end]
    labels = {"namespace": "inference", "pod": 'llama-0 "quoted" ünï', "job": "vllm"}
    series: list[remote_write.Series] = [
        (
            {"__name__": "vllm:prompt_tokens_total", **labels},
            [(t, 1e12 + i * 1500.5) for i, t in enumerate(times)],
        ),
        (
            {"__name__": "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "exported_pod": "p"},
            [(t, 0.25) for t in times],
        ),
    ]
    with PrometheusServer(
        binary=prometheus_bin.prometheus, extra_args=["--web.enable-remote-write-receiver"]
    ) as prom:
        assert remote_write.push(prom.url, series) > 0
        for i, t in enumerate(times):  # every sample at its own timestamp
            assert prom.query_value("vllm:prompt_tokens_total", t) == 1e12 + i * 1500.5
        assert prom.query_value("vllm:prompt_tokens_total", end - 31) is None
        (row,) = prom.query("vllm:prompt_tokens_total", end)["data"]["result"]
        assert row["metric"] == {"__name__": "vllm:prompt_tokens_total", **labels}
        assert prom.query_value('DCGM_FI_PROF_GR_ENGINE_ACTIVE{exported_pod="p"}', end) == 0.25
        # Out of order: Prometheus refuses, and the loader says so instead of going on.
        with pytest.raises(RuntimeError, match="refused"):
            remote_write.push(prom.url, [(series[1][0], [(end - 60, 0.5)])])
