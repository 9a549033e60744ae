"""The GPU-busy query against a real Prometheus: both DCGM families, both label conventions.

Backfilled 20 minutes at 15 s, evaluated at the last sample:
- pod `a`: two GPUs reporting GR_ENGINE_ACTIVE 0.5 and 0.7 and GPU_UTIL 51 and 69, from an
  exporter scraped without honorLabels (`exported_namespace`/`exported_pod`, while
  `namespace`/`pod` name the exporter's own pod, which must not become a row);
- pod `b`: one GPU reporting only GPU_UTIL 30 (dcgm-exporter's default counters), scraped with
  honorLabels (`namespace`/`pod`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.prometheus import PrometheusBinaries, backfilled_client

from costoperator.promclient import PromClient
from costoperator.promserver import openmetrics_series
from costoperator.queries import gpu_busy_query

NS = "inference"
STEP_S, STEPS = 15, 80


def _history(end: int) -> str:
    times = [end - STEP_S * i for i in range(STEPS)]
    exporter = {"namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-x"}
    text = ""
    for gpu, (active, util) in enumerate(((0.5, 51.0), (0.7, 69.0))):
        labels = {**exporter, "exported_namespace": NS, "exported_pod": "a", "gpu": str(gpu)}
        for name, value in (
            ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", active),
            ("DCGM_FI_DEV_GPU_UTIL", util),
        ):
            text += openmetrics_series(name, [(t, value) for t in times], labels=labels)
    text += openmetrics_series(
        "DCGM_FI_DEV_GPU_UTIL", [(t, 30.0) for t in times], labels={"namespace": NS, "pod": "b"}
    )
    return text


@pytest.fixture(scope="module")
def prom(
    prometheus_bin: PrometheusBinaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PromClient, float]]:
    with backfilled_client(_history, tmp_path_factory.mktemp("tsdb"), prometheus_bin) as prom:
        yield prom


def _rows(prom: tuple[PromClient, float], fallback: bool) -> dict[str, tuple[float, str]]:
    client, end = prom
    result = client.query(gpu_busy_query("5m", fallback), at=end)
    rows = {}
    for s in result.samples:
        assert s.labels["namespace"] == NS
        assert s.labels["pod"] not in rows  # one row per pod
        rows[s.labels["pod"]] = (s.value, s.labels["dcgm"])
    return rows


def test_with_the_fallback_every_pod_gets_one_row_labelled_by_its_source(
    prom: tuple[PromClient, float],
) -> None:
    rows = _rows(prom, fallback=True)
    assert rows == {
        "a": (pytest.approx(0.6), "preferred"),  # GR_ENGINE_ACTIVE wins over GPU_UTIL
        "b": (pytest.approx(0.3), "fallback"),
    }


def test_without_the_fallback_only_the_preferred_family_answers(
    prom: tuple[PromClient, float],
) -> None:
    assert _rows(prom, fallback=False) == {"a": (pytest.approx(0.6), "preferred")}
