"""A tiny real exporter: `prometheus_client`'s HTTP server on 127.0.0.1 with one counter.

The counter grows at exactly `rate` per second of wall time since (re)start: its value is
computed when scraped, so thread scheduling cannot make it drift. `restart()` brings the
exporter back on the same port at 0, like a restarted pod (a counter reset).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Self
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from costoperator.promserver import LOOPBACK, free_port


class _LinearCounter(Collector):
    def __init__(self, exporter: RateExporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Metric]:
        labels = dict(self._exporter.labels)
        family = CounterMetricFamily(
            self._exporter.name, "Counter growing at a known rate.", labels=list(labels)
        )
        family.add_metric(list(labels.values()), self._exporter.value())
        yield family


class RateExporter:
    """Serves `<name>_total` = rate × seconds since start on 127.0.0.1:`port`."""

    def __init__(
        self,
        name: str = "llmcost_test_tokens",
        rate: float = 10.0,
        *,
        labels: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.rate = rate
        self.labels = dict(labels or {})
        self.port = port if port is not None else free_port()
        self._started_at = 0.0
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_LinearCounter(self))

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def value(self) -> float:
        return self.rate * (time.time() - self._started_at)

    def start(self) -> Self:
        if self._server is None:
            self._started_at = time.time()
            self._server, self._thread = start_http_server(
                self.port, addr=LOOPBACK, registry=self._registry
            )
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def restart(self) -> None:
        """Stop and start again on the same port with the counter back at 0."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
