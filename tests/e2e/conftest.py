"""End-to-end fixtures: a real Prometheus binary, never a mock.

A missing binary skips these tests on a developer machine ("run scripts/install-prometheus") but
fails them in CI (CI=true), where scripts/test has installed it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from harness.exporter import RateExporter
from harness.prometheus import (
    PrometheusBinaries,
    PrometheusServer,
    find_binaries,
    not_installed,
)


@pytest.fixture(scope="session")
def prometheus_bin() -> PrometheusBinaries:
    """The `prometheus` and `promtool` binaries (PATH, else /usr/bin)."""
    found = find_binaries()
    if not isinstance(found, PrometheusBinaries):
        not_installed(" and ".join(found))
    return found


@pytest.fixture
def prometheus(prometheus_bin: PrometheusBinaries) -> Iterator[PrometheusServer]:
    """A started Prometheus scraping every 1s, with no targets yet; stopped afterwards."""
    with PrometheusServer(scrape_interval=1.0, binary=prometheus_bin.prometheus) as server:
        yield server


@pytest.fixture
def rate_exporter() -> Iterator[Callable[..., RateExporter]]:
    """Factory of started `RateExporter`s on 127.0.0.1; all are stopped afterwards."""
    started: list[RateExporter] = []

    def make(*args: Any, **kwargs: Any) -> RateExporter:
        exporter = RateExporter(*args, **kwargs).start()
        started.append(exporter)
        return exporter

    try:
        yield make
    finally:
        for exporter in started:
            exporter.stop()
