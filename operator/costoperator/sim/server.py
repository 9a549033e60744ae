"""Serving a simulated fleet over HTTP as real exporters would, against the wall clock.

`SimServer` maps wall time to trace time (`TraceClock`: trace seconds = speedup × wall seconds
since start), advances the fleet on a background thread every `tick_s`, and serves, on
127.0.0.1 ports the OS picks, one `/metrics` per pod (its engine's series) and one per node
(dcgm-exporter's). Every scrape first brings the fleet up to the scrape's instant, so what a
scrape returns is the fleet's state at that wall time.

Units seen from Prometheus: counters are tokens and histograms trace seconds, but sample
timestamps are wall time, so a `rate()` is per wall second: speedup × the trace's rate. Ratios
(DCGM busy fraction, prefill share of time, cache hit ratio) are unaffected. To compare a
Prometheus window with ground truth, map its ends with `clock.trace_s` (or call `truth`).

DCGM's busy fraction is over the last `dcgm_window_s` wall seconds (the exporter reports
what DCGM sampled over its collection interval; set it to the Prometheus scrape interval so
that consecutive samples tile time).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal, TypedDict

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import (
    CONTENT_TYPE_PLAIN_0_0_4,
    MetricsHandler,
    generate_latest,
)

from costoperator.sim.errors import SimError
from costoperator.sim.exposition import GpuReading, NodeCollector, PodCollector
from costoperator.sim.fleet import Fleet
from costoperator.sim.pod import PodStats
from costoperator.sim.truth import Truth

Job = Literal["vllm", "sglang", "dcgm"]


class TargetGroup(TypedDict):
    """One group of a Prometheus `file_sd` file or `static_configs` list."""

    targets: list[str]
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class TraceClock:
    """Wall (Unix seconds) ↔ trace seconds: trace = start_trace_s + speedup × (wall − start)."""

    start_unix_s: float
    start_trace_s: float
    speedup: float

    def trace_s(self, unix_s: float) -> float:
        return self.start_trace_s + (unix_s - self.start_unix_s) * self.speedup

    def unix_s(self, trace_s: float) -> float:
        return self.start_unix_s + (trace_s - self.start_trace_s) / self.speedup


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One scrape target: what it exports (`job`), for which pod or node, on which port."""

    job: Job
    name: str
    host: str
    port: int
    labels: tuple[tuple[str, str], ...]

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"


def _text_handler(registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    """A handler that always answers in the Prometheus text format 0.0.4."""

    class TextMetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Log nothing: scrapes are not news."""

    return TextMetricsHandler


class _Http:
    """A threaded HTTP server answering every GET with one registry's metrics."""

    def __init__(self, host: str, registry: CollectorRegistry, negotiate: bool) -> None:
        handler = MetricsHandler.factory(registry) if negotiate else _text_handler(registry)
        self.httpd = ThreadingHTTPServer((host, 0), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )


#: Exposition reads kept per pod (over 15 minutes of scrapes at 1 s).
READS_KEPT = 1024


@dataclass(frozen=True, slots=True)
class Read:
    """One read of a pod's `/metrics`: the wall-clock instant the fleet was brought up to for
    it and the token counters it showed. A scrape's samples carry the scrape's start time,
    which comes before its read (by milliseconds, or more with the fleet's lock contended)."""

    unix_s: float
    prompt_tokens: int
    generation_tokens: int


class SimServer:
    """A running simulated fleet with real exporter endpoints; a context manager.

    `speedup` is trace seconds per wall second (20 plays an hour in 3 minutes);
    `start_trace_s` is where in the trace the wall clock starts (the fleet is simulated up to
    it before serving; a fleet already further on starts where it is). `dcgm_namespace` and
    the exporter pod names go in the DCGM targets' labels, as a Kubernetes service discovery
    would label the exporter's pods.

    Endpoints answer in the Prometheus text format 0.0.4 whatever the scraper asks, so the
    names Prometheus stores are exactly the exporters' (`vllm:prompt_tokens_total`). With
    `negotiate=True` they negotiate as vLLM and SGLang do (prometheus_client's handler); a
    Prometheus asking for OpenMetrics without `escaping=allow-utf-8` then gets sample names
    with `:` turned into `_` under unchanged HELP/TYPE lines (prometheus/client_python#1177)
    and may store `vllm_prompt_tokens_total`, as it would from a real engine.
    """

    def __init__(
        self,
        fleet: Fleet,
        *,
        speedup: float = 1.0,
        start_trace_s: float = 0.0,
        tick_s: float = 0.05,
        dcgm_window_s: float = 1.0,
        host: str = "127.0.0.1",
        dcgm_namespace: str = "gpu-operator",
        time_source: Callable[[], float] = time.time,
        negotiate: bool = False,
    ) -> None:
        if not speedup > 0:
            raise SimError("speedup must be > 0")
        if not tick_s > 0 or not dcgm_window_s > 0:
            raise SimError("tick_s and dcgm_window_s must be > 0")
        self.fleet = fleet
        self.speedup = speedup
        self.start_trace_s = start_trace_s
        self.tick_s = tick_s
        self.dcgm_window_s = dcgm_window_s
        self.host = host
        self.dcgm_namespace = dcgm_namespace
        self._time = time_source
        self.negotiate = negotiate
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._clock: TraceClock | None = None
        self._thread: threading.Thread | None = None
        self._http: list[_Http] = []
        self._endpoints: list[Endpoint] = []
        self._reads: defaultdict[str, deque[Read]] = defaultdict(lambda: deque(maxlen=READS_KEPT))

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> SimServer:
        """Simulate up to `start_trace_s`, open the endpoints and start the clock."""
        if self._clock is not None:
            raise SimError("server already started")
        with self._lock:
            if self.fleet.now_s < self.start_trace_s:
                self.fleet.advance_to(self.start_trace_s)
            try:
                self._open_endpoints()
            except BaseException:
                self._close_http()
                raise
            self._clock = TraceClock(self._time(), self.fleet.now_s, self.speedup)
        for http in self._http:
            http.thread.start()
        self._thread = threading.Thread(target=self._run, name="sim-fleet", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the clock and the endpoints; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._close_http()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- time and truth ---------------------------------------------------------------------

    @property
    def clock(self) -> TraceClock:
        if self._clock is None:
            raise SimError("server not started")
        return self._clock

    def sync(self) -> float:
        """Advance the fleet to the wall clock's trace time now; returns that trace time."""
        with self._lock:
            t = self.clock.trace_s(self._time())
            if t > self.fleet.now_s:
                self.fleet.advance_to(t)
            return self.fleet.now_s

    @contextmanager
    def locked(self) -> Iterator[Fleet]:
        """The fleet, synced and held still (for several consistent reads)."""
        with self._lock:
            self.sync()
            yield self.fleet

    def truth(self, workload: str, start_unix_s: float, end_unix_s: float) -> Truth:
        """Ground truth of `workload` over a wall-clock window (e.g. a PromQL range)."""
        clock = self.clock
        with self.locked() as fleet:
            return fleet.truth(workload, clock.trace_s(start_unix_s), clock.trace_s(end_unix_s))

    def pod_truth(self, pod: str, start_unix_s: float, end_unix_s: float) -> Truth:
        """Ground truth of pod `pod` over a wall-clock window (e.g. one series' sampled span)."""
        clock = self.clock
        with self.locked() as fleet:
            return fleet.pod_truth(pod, clock.trace_s(start_unix_s), clock.trace_s(end_unix_s))

    def reads(self, pod: str) -> list[Read]:
        """Pod `pod`'s latest reads of `/metrics`, oldest first (up to READS_KEPT): to match
        a sample Prometheus stored to the instant the fleet really was at when it was read."""
        with self._lock:
            return list(self._reads.get(pod, ()))

    def restart(self, pod: str) -> None:
        """Restart pod `pod`'s engine now: its counters start again from zero."""
        with self.locked() as fleet:
            fleet.restart(pod)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.sync()

    # --- endpoints --------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints)

    def endpoint(self, name: str) -> Endpoint:
        """The endpoint of pod or node `name`."""
        for e in self._endpoints:
            if e.name == name:
                return e
        raise SimError(f"no endpoint for {name!r}")

    def scrape_targets(self) -> list[TargetGroup]:
        """Targets in Prometheus `file_sd` / `static_configs` form, one group per endpoint.

        Engine targets carry the pod's `namespace`, `pod`, `container` and `node`; DCGM
        targets carry the exporter pod's own `namespace` and `pod`, so Prometheus keeps the
        GPU's pod labels as `exported_namespace`/`exported_pod` unless `honor_labels` is set,
        as with a real dcgm-exporter DaemonSet.
        """
        return [TargetGroup(targets=[e.target], labels=dict(e.labels)) for e in self._endpoints]

    def _open_endpoints(self) -> None:
        for pod in self.fleet.pods:
            registry = CollectorRegistry()
            registry.register(PodCollector(self._pod_reader(pod.name)))
            http = _Http(self.host, registry, self.negotiate)
            self._http.append(http)
            labels: tuple[tuple[str, str], ...] = (
                ("job", pod.engine),
                ("namespace", pod.namespace),
                ("pod", pod.name),
                ("container", pod.spec.container_name),
                ("node", pod.node),
            )
            self._endpoints.append(Endpoint(pod.engine, pod.name, self.host, http.port, labels))
        for node in self.fleet.nodes:
            registry = CollectorRegistry()
            registry.register(NodeCollector(self._node_reader(node.name)))
            http = _Http(self.host, registry, self.negotiate)
            self._http.append(http)
            labels = (
                ("job", "dcgm"),
                ("namespace", self.dcgm_namespace),
                ("pod", f"nvidia-dcgm-exporter-{node.name}"),
                ("container", "nvidia-dcgm-exporter"),
                ("node", node.name),
            )
            self._endpoints.append(Endpoint("dcgm", node.name, self.host, http.port, labels))

    def _close_http(self) -> None:
        servers, self._http = self._http, []
        for http in servers:
            if http.thread.is_alive():
                # shutdown() waits for serve_forever; signal all first so they stop together.
                threading.Thread(target=http.httpd.shutdown, daemon=True).start()
        for http in servers:
            if http.thread.is_alive():
                http.thread.join()
            http.httpd.server_close()

    def _pod_reader(self, name: str) -> Callable[[], tuple[PodStats, float]]:
        def read() -> tuple[PodStats, float]:
            with self.locked() as fleet:
                stats = fleet.pod(name).stats()
                clock = self.clock
                read = Read(clock.unix_s(fleet.now_s), stats.prompt_tokens, stats.generation_tokens)
                self._reads[name].append(read)
                return stats, clock.unix_s(stats.started_s)

        return read

    def _node_reader(self, name: str) -> Callable[[], list[GpuReading]]:
        def read() -> list[GpuReading]:
            with self.locked() as fleet:
                now = fleet.now_s
                start = max(0.0, now - self.dcgm_window_s * self.speedup)
                readings = []
                for slot in fleet.node_gpus(name):
                    pod = slot.pod
                    readings.append(
                        GpuReading(
                            index=slot.index,
                            uuid=slot.uuid,
                            model_name=slot.model_name,
                            hostname=name,
                            container=pod.spec.container_name if pod else "",
                            namespace=pod.namespace if pod else "",
                            pod=pod.name if pod else "",
                            busy_ratio=pod.busy_ratio(start, now) if pod else 0.0,
                        )
                    )
                return readings

        return read
