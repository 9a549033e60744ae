"""The Prometheus test harness: the product's `PrometheusServer` plus binary discovery.

The reusable part lives in `costoperator.promserver` (demos use it too); tests import from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    "openmetrics_series",
]


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
