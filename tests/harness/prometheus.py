"""The Prometheus test harness: the product's `PrometheusServer` plus binary discovery.

The reusable part lives in `costoperator.promserver` (demos use it too); tests import from here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from costoperator.promclient import PromClient
from costoperator.promserver import (
    PrometheusError,
    PrometheusNotInstalledError,
    PrometheusQueryError,
    PrometheusServer,
    ScrapeJob,
    TargetGroup,
    backfill_openmetrics,
    find_binary,
    format_duration,
    free_port,
    openmetrics_series,
)

__all__ = [
    "PrometheusBinaries",
    "PrometheusError",
    "PrometheusNotInstalledError",
    "PrometheusQueryError",
    "PrometheusServer",
    "ScrapeJob",
    "TargetGroup",
    "backfill_end",
    "backfill_openmetrics",
    "backfilled_client",
    "backfilled_prometheus",
    "find_binaries",
    "find_binary",
    "format_duration",
    "free_port",
    "not_installed",
    "openmetrics_series",
]


def not_installed(what: str) -> NoReturn:
    """A missing Prometheus binary: a failure in CI (`CI=true`), where scripts/test installs it
    before pytest, so that step must have failed; a skip on a developer machine."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            f"{what} not installed: in CI no test may skip; scripts/test runs "
            "scripts/install-prometheus before pytest, so that step must have failed",
            pytrace=False,
        )
    pytest.skip(f"{what} not installed: run scripts/install-prometheus")


@dataclass(frozen=True, slots=True)
class PrometheusBinaries:
    prometheus: Path
    promtool: Path


def find_binaries() -> PrometheusBinaries | list[str]:
    """Both binaries, or the names of the missing ones."""
    prometheus, promtool = find_binary("prometheus"), find_binary("promtool")
    if prometheus is None or promtool is None:
        return [n for n, p in (("prometheus", prometheus), ("promtool", promtool)) if p is None]
    return PrometheusBinaries(prometheus=prometheus, promtool=promtool)


def backfill_end() -> int:
    """An end for backfilled history: an hour into a 2-hour block, about four hours back, so
    the backfilled blocks are clear of the head that a fresh Prometheus opens at now."""
    return int((time.time() - 4 * 3600) // 7200 * 7200 + 3600)


@contextmanager
def backfilled_prometheus(
    openmetrics: str, data_dir: Path, binaries: PrometheusBinaries
) -> Iterator[PrometheusServer]:
    """A Prometheus over `openmetrics` backfilled into `data_dir` as TSDB blocks (promtool),
    started with no targets; stopped afterwards."""
    backfill_openmetrics(openmetrics, data_dir, promtool=binaries.promtool)
    with PrometheusServer(binary=binaries.prometheus, data_dir=data_dir) as server:
        yield server


@contextmanager
def backfilled_client(
    history: Callable[[int], str], data_dir: Path, binaries: PrometheusBinaries
) -> Iterator[tuple[PromClient, float]]:
    """`backfilled_prometheus` over `history(end)` (OpenMetrics text ending at `end`, from
    `backfill_end`), and a client of it with that end; both closed afterwards."""
    end = backfill_end()
    with backfilled_prometheus(history(end), data_dir, binaries) as server:
        client = PromClient(server.url)
        try:
            yield client, float(end)
        finally:
            client.close()
