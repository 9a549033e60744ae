"""The Prometheus test harness: the product's `PrometheusServer` plus binary discovery.

The reusable part lives in `costoperator.promserver` (demos use it too); tests import from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

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
    "backfill_openmetrics",
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
