"""Run a real, throwaway Prometheus server on the loopback interface.

Used by the end-to-end tests and by demos that need live metrics: `PrometheusServer` starts the
`prometheus` binary on a free 127.0.0.1 port with its own data directory and a generated
configuration, waits until it is ready, and offers the few HTTP API calls tests need (instant and
range queries, target updates through file-based service discovery, config reload). It never
talks to anything but the process it started.

    with PrometheusServer(scrape_interval=1.0) as prom:
        prom.set_targets(["127.0.0.1:8000"])      # waits until the target is scraped and up
        prom.wait_for_series("up == 1")
        prom.query_value("sum(rate(tokens_total[5s]))")

`backfill_openmetrics` writes historical samples into a data directory with
`promtool tsdb create-blocks-from openmetrics`; start a server on that directory afterwards
(`PrometheusServer(data_dir=...)`) to query exact history.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time as _time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

__all__ = [
    "LOOPBACK",
    "PrometheusError",
    "PrometheusNotInstalledError",
    "PrometheusQueryError",
    "PrometheusServer",
    "ScrapeJob",
    "TargetGroup",
    "backfill_openmetrics",
    "find_binary",
    "format_duration",
    "free_port",
    "openmetrics_series",
]

LOOPBACK = "127.0.0.1"
FILE_SD_JOB = "file_sd"
# Large enough that backfilled history of any age survives: time retention is measured from the
# newest block, not from now, so a short one silently drops old backfilled blocks at startup as
# soon as newer blocks exist.
DEFAULT_RETENTION = "3650d"

Timestamp = float | datetime | str
"""Unix seconds, an aware `datetime`, or an RFC 3339 string (passed through)."""

JSON = dict[str, Any]


class PrometheusError(RuntimeError):
    """Prometheus could not be started, reached, or gave an unusable answer."""


class PrometheusNotInstalledError(PrometheusError):
    """The `prometheus` or `promtool` binary is missing (run scripts/install-prometheus)."""


class PrometheusQueryError(PrometheusError):
    """The HTTP API answered with `status: error` (bad PromQL, timeout, ...)."""

    def __init__(self, message: str, *, error_type: str, http_status: int) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.http_status = http_status


def find_binary(name: str) -> Path | None:
    """`name` on PATH, else /usr/bin/`name` (Debian's location), else None."""
    found = shutil.which(name)
    if found:
        return Path(found)
    fallback = Path("/usr/bin") / name
    return fallback if os.access(fallback, os.X_OK) else None


def _require_binary(name: str) -> Path:
    path = find_binary(name)
    if path is None:
        raise PrometheusNotInstalledError(
            f"{name!r} not found on PATH or in /usr/bin; run scripts/install-prometheus"
        )
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def format_duration(value: float | str) -> str:
    """A Prometheus duration. Floats are seconds; Prometheus rejects "1.5s", so use ms."""
    if isinstance(value, str):
        return value
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"duration must be a positive number of seconds, got {value!r}")
    millis = round(value * 1000)
    if millis == 0:
        raise ValueError(f"duration {value!r}s is below Prometheus' 1ms resolution")
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def _duration_seconds(value: float | str) -> float:
    if not isinstance(value, str):
        return float(value)
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
    total, number = 0.0, ""
    rest = value.strip()
    while rest:
        if rest[0].isdigit():
            number += rest[0]
            rest = rest[1:]
            continue
        unit = "ms" if rest.startswith("ms") else rest[0]
        if unit not in units or not number:
            raise ValueError(f"not a Prometheus duration: {value!r}")
        total += int(number) * units[unit]
        number, rest = "", rest[len(unit) :]
    if number:
        raise ValueError(f"not a Prometheus duration (missing unit): {value!r}")
    return total


def _format_time(value: Timestamp) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: give a timezone-aware datetime or unix seconds")
        return f"{value.timestamp():.3f}"
    if isinstance(value, str):
        return value
    return f"{float(value):.3f}"


@dataclass(frozen=True, slots=True)
class TargetGroup:
    """One file_sd entry: `host:port` targets sharing extra target labels."""

    targets: Sequence[str]
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> JSON:
        return {"targets": list(self.targets), "labels": dict(self.labels)}


@dataclass(frozen=True, slots=True)
class ScrapeJob:
    """A scrape job with static targets (the file_sd job is always there besides these)."""

    name: str
    targets: Sequence[str]
    labels: Mapping[str, str] = field(default_factory=dict)
    honor_labels: bool = False
    metrics_path: str = "/metrics"
    scrape_interval: float | str | None = None

    def to_config(self, default_interval: float | str) -> JSON:
        interval = self.scrape_interval if self.scrape_interval is not None else default_interval
        job: JSON = {
            "job_name": self.name,
            "honor_labels": self.honor_labels,
            "metrics_path": self.metrics_path,
            "scrape_interval": format_duration(interval),
            "scrape_timeout": format_duration(min(_duration_seconds(interval), 10.0)),
            "static_configs": [{"targets": list(self.targets), "labels": dict(self.labels)}],
        }
        return job


try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux/glibc
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def _parent_death_signal(parent: int) -> Callable[[], None]:
    """A pre-exec hook: the child gets SIGTERM when its parent dies (Linux; else no-op)."""

    def hook() -> None:
        if _LIBC is None:
            return
        with contextlib.suppress(Exception):
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


_RUNNING: weakref.WeakSet[PrometheusServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop()


class PrometheusServer:
    """A real Prometheus on 127.0.0.1:<free port>, started by `start()` or `with`.

    Args:
        scrape_interval: global scrape (and rule evaluation) interval; seconds or "15s".
        data_dir: TSDB directory. None: a fresh temporary one, deleted by `stop()`. A given
            directory (e.g. prefilled by `backfill_openmetrics`) is kept.
        targets: initial targets of the file_sd job (see `set_targets`).
        jobs: extra scrape jobs with static targets.
        file_sd_job: name of the job whose targets come from the file_sd file.
        file_sd_honor_labels: `honor_labels` of that job.
        lookback_delta: `--query.lookback-delta` (default: Prometheus' 5m).
        rule_files: Prometheus rule files (recording and alerting rules) to load, evaluated
            every `scrape_interval` (the global evaluation interval).
        retention: `--storage.tsdb.retention.time`; large by default so backfilled history stays.
        extra_args: more command-line flags.
        startup_timeout: seconds to wait for `/-/ready`.
        kill_with_parent: ask Linux to SIGTERM Prometheus if the process that started it dies,
            so nothing is orphaned even when the test run is killed. The signal follows the
            *thread* that started it: start from a long-lived thread.
    """

    def __init__(
        self,
        *,
        scrape_interval: float | str = 1.0,
        data_dir: Path | None = None,
        targets: Sequence[str | TargetGroup] = (),
        jobs: Sequence[ScrapeJob] = (),
        file_sd_job: str = FILE_SD_JOB,
        file_sd_honor_labels: bool = False,
        lookback_delta: float | str | None = None,
        rule_files: Sequence[Path] = (),
        retention: str = DEFAULT_RETENTION,
        extra_args: Sequence[str] = (),
        binary: Path | None = None,
        startup_timeout: float = 30.0,
        kill_with_parent: bool = True,
    ) -> None:
        self.binary = binary if binary is not None else _require_binary("prometheus")
        self.scrape_interval = format_duration(scrape_interval)
        self.jobs = list(jobs)
        self.file_sd_job = file_sd_job
        self.file_sd_honor_labels = file_sd_honor_labels
        self.lookback_delta = None if lookback_delta is None else format_duration(lookback_delta)
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.retention = retention
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.kill_with_parent = kill_with_parent
        names = [job.name for job in self.jobs] + [file_sd_job]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate scrape job names: {names}")

        self.work_dir = Path(tempfile.mkdtemp(prefix="llmcost-prom-"))
        self.data_dir = data_dir if data_dir is not None else self.work_dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.work_dir / "prometheus.yml"
        self.targets_path = self.work_dir / "targets.json"
        self.log_path = self.work_dir / "prometheus.log"
        self._write_targets(targets)
        self._write_config()

        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._cleaned = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:41234 (valid once started)."""
        if not self.port:
            raise PrometheusError("Prometheus is not started")
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start Prometheus and wait until `/-/ready`; retries on a port taken meanwhile."""
        if self.running:
            return self
        if self._cleaned:
            raise PrometheusError("this PrometheusServer was stopped; create a new one")
        try:
            for attempt in range(3):
                self.port = free_port()
                self._spawn()
                _RUNNING.add(self)
                try:
                    self._wait_ready()
                except PrometheusError:
                    self._terminate()
                    if attempt < 2 and "address already in use" in self.log_tail().lower():
                        continue
                    raise
                return self
        except BaseException:
            self.stop()  # the error message carries the log tail; leave nothing behind
            raise
        raise AssertionError("unreachable")

    def _command(self) -> list[str]:
        args = [
            str(self.binary),
            f"--config.file={self.config_path}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--web.enable-lifecycle",
            f"--storage.tsdb.path={self.data_dir}",
            f"--storage.tsdb.retention.time={self.retention}",
            "--log.level=info",
        ]
        if self.lookback_delta is not None:
            args.append(f"--query.lookback-delta={self.lookback_delta}")
        return args + self.extra_args

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"---- start on port {self.port}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                preexec_fn=_parent_death_signal(os.getpid()) if self.kill_with_parent else None,
            )

    def _wait_ready(self) -> None:
        deadline = _time.monotonic() + self.startup_timeout
        while True:
            process = self._process
            assert process is not None
            code = process.poll()
            if code is not None:
                raise PrometheusError(
                    f"prometheus exited with status {code} during startup; log:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if _time.monotonic() > deadline:
                raise PrometheusError(
                    f"prometheus not ready after {self.startup_timeout:.0f}s; "
                    f"log:\n{self.log_tail()}"
                )
            _time.sleep(0.05)

    def _terminate(self, timeout: float = 10.0) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        self._process = None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (SIGKILL after `timeout`), wait for exit, delete temporary files.

        A caller-given `data_dir` is kept. Safe to call more than once.
        """
        try:
            self._terminate(timeout)
        finally:
            _RUNNING.discard(self)
            if not self._cleaned:
                self._cleaned = True
                shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of Prometheus' own log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- configuration -----------------------------------------------------------------------

    def config(self) -> JSON:
        """The generated configuration (written as JSON, which is valid YAML)."""
        interval_s = _duration_seconds(self.scrape_interval)
        file_sd: JSON = {
            "job_name": self.file_sd_job,
            "honor_labels": self.file_sd_honor_labels,
            # fsnotify picks up changes at once; the refresh is a fallback.
            "file_sd_configs": [{"files": [str(self.targets_path)], "refresh_interval": "5s"}],
        }
        config: JSON = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": format_duration(min(interval_s, 10.0)),
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [file_sd]
            + [job.to_config(self.scrape_interval) for job in self.jobs],
        }
        if self.rule_files:
            config["rule_files"] = [str(p) for p in self.rule_files]
        return config

    def _write_config(self) -> None:
        _atomic_write(self.config_path, json.dumps(self.config(), indent=2))

    def _write_targets(self, targets: Sequence[str | TargetGroup]) -> list[TargetGroup]:
        groups = _target_groups(targets)
        _atomic_write(self.targets_path, json.dumps([g.to_json() for g in groups], indent=2))
        return groups

    def reload(self) -> None:
        """Rewrite the config file from the current settings and POST /-/reload."""
        self._write_config()
        self._request("POST", "/-/reload", raw=True)

    def set_targets(
        self,
        targets: Sequence[str | TargetGroup],
        *,
        wait_for: Literal["up", "discovered", "none"] = "up",
        timeout: float = 30.0,
    ) -> None:
        """Replace the file_sd job's targets by rewriting its file (atomically).

        With `wait_for="up"` returns once every target has been scraped successfully and every
        removed target is gone; "discovered" only waits for the target list. Prometheus batches
        discovery updates every 5 seconds, so expect up to ~5-10 s.
        """
        groups = self._write_targets(targets)
        if wait_for == "none":
            return
        wanted = {t for g in groups for t in g.targets}

        def settled() -> bool:
            active = self.active_targets(self.file_sd_job)
            present = {str(t["discoveredLabels"].get("__address__")) for t in active}
            if present != wanted:
                return False
            return wait_for == "discovered" or all(t.get("health") == "up" for t in active)

        self._wait(settled, timeout, lambda: f"targets {sorted(wanted)} not {wait_for}")

    def active_targets(self, job: str | None = None) -> list[JSON]:
        """`/api/v1/targets` active targets, optionally only those of one scrape job."""
        data = self._request("GET", "/api/v1/targets", params={"state": "active"})["data"]
        targets: list[JSON] = data.get("activeTargets", [])
        return [t for t in targets if job is None or t.get("scrapePool") == job]

    # -- queries -----------------------------------------------------------------------------

    def query(self, promql: str, time: Timestamp | None = None) -> JSON:
        """POST /api/v1/query; the parsed response (`status`, `data`, maybe `warnings`)."""
        params = {"query": promql}
        if time is not None:
            params["time"] = _format_time(time)
        return self._request("POST", "/api/v1/query", params=params)

    def query_range(self, promql: str, start: Timestamp, end: Timestamp, step: float | str) -> JSON:
        """POST /api/v1/query_range; the parsed response. `step` in seconds or "1m"."""
        params = {
            "query": promql,
            "start": _format_time(start),
            "end": _format_time(end),
            "step": step if isinstance(step, str) else f"{float(step):g}",
        }
        return self._request("POST", "/api/v1/query_range", params=params)

    def query_value(self, promql: str, time: Timestamp | None = None) -> float | None:
        """The value of a query that yields one sample or scalar; None when the result is empty.

        Several series raise: "one number" must not silently become the first of many.
        """
        data = self.query(promql, time)["data"]
        result = data["result"]
        if data["resultType"] in ("scalar", "string"):
            return float(result[1])
        if data["resultType"] != "vector":
            raise PrometheusError(f"{promql!r} returned a {data['resultType']}, not one number")
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{promql!r} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def wait_for_series(
        self,
        promql: str,
        timeout: float = 30.0,
        *,
        predicate: Callable[[list[JSON]], bool] | None = None,
        interval: float = 0.2,
    ) -> list[JSON]:
        """Poll an instant query until it returns a non-empty result (and `predicate` holds)."""
        last: list[JSON] = []

        def ready() -> bool:
            nonlocal last
            last = self.query(promql)["data"]["result"]
            return bool(last) and (predicate is None or predicate(last))

        self._wait(
            ready, timeout, lambda: f"no series for {promql!r}; last result {last}", interval
        )
        return last

    # -- plumbing ----------------------------------------------------------------------------

    def _wait(
        self,
        condition: Callable[[], bool],
        timeout: float,
        describe: Callable[[], str],
        interval: float = 0.2,
    ) -> None:
        deadline = _time.monotonic() + timeout
        while not condition():
            if not self.running:
                raise PrometheusError(f"prometheus exited; log:\n{self.log_tail()}")
            if _time.monotonic() > deadline:
                raise TimeoutError(f"after {timeout:g}s: {describe()}")
            _time.sleep(interval)

    def _request(
        self,
        method: Literal["GET", "POST"],
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        raw: bool = False,
        timeout: float = 30.0,
    ) -> JSON:
        url = f"{self.url}{path}"
        body: bytes | None = None
        encoded = urllib.parse.urlencode(params or {})
        if method == "GET" and encoded:
            url = f"{url}?{encoded}"
        elif method == "POST":
            body = encoded.encode()
        request = urllib.request.Request(url, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        except (urllib.error.URLError, OSError) as error:
            raise PrometheusError(f"{method} {url}: {error}") from error
        if raw:
            if status >= 400:
                text = payload.decode(errors="replace").strip()
                raise PrometheusError(f"{method} {path}: HTTP {status}: {text}")
            return {}
        try:
            parsed: JSON = json.loads(payload)
        except ValueError as error:
            snippet = payload[:200].decode(errors="replace")
            raise PrometheusError(f"{method} {path}: HTTP {status}, not JSON: {snippet}") from error
        if parsed.get("status") != "success":
            query = (params or {}).get("query")
            raise PrometheusQueryError(
                f"{method} {path}: HTTP {status}: {parsed.get('errorType')}: "
                f"{parsed.get('error')}" + (f" (query: {query})" if query else ""),
                error_type=str(parsed.get("errorType", "")),
                http_status=status,
            )
        return parsed


def _target_groups(targets: Sequence[str | TargetGroup]) -> list[TargetGroup]:
    loose = [t for t in targets if isinstance(t, str)]
    groups = [t for t in targets if isinstance(t, TargetGroup)]
    for target in [*loose, *(t for g in groups for t in g.targets)]:
        host, sep, port = target.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"target must be host:port, got {target!r}")
    return ([TargetGroup(loose)] if loose else []) + groups


def _atomic_write(path: Path, text: str) -> None:
    """Write via rename so Prometheus' file watcher never reads a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- backfill ---------------------------------------------------------------------------------


def openmetrics_series(
    name: str,
    samples: Iterable[tuple[float, float]],
    *,
    labels: Mapping[str, str] | None = None,
    metric_type: Literal["gauge", "counter", "unknown"] = "gauge",
    help_text: str | None = None,
) -> str:
    """One metric family in OpenMetrics text, without the closing `# EOF`.

    `samples` are (unix seconds, value), written in time order (promtool silently drops
    samples older than the one before them); a repeated timestamp is an error. OpenMetrics
    timestamps are *seconds* (the Prometheus text format uses milliseconds). A counter's
    samples are named `<name>_total`.
    """
    ordered = sorted(samples, key=lambda sample: sample[0])
    for (earlier, _), (later, _) in itertools.pairwise(ordered):
        if earlier == later:
            raise ValueError(f"{name}: two samples at timestamp {earlier}")
    family = name.removesuffix("_total") if metric_type == "counter" else name
    sample_name = f"{family}_total" if metric_type == "counter" else family
    label_text = ""
    if labels:
        escaped = (
            f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
            for key, value in sorted(labels.items())
        )
        label_text = "{" + ",".join(escaped) + "}"
    lines = [f"# HELP {family} {help_text or family}", f"# TYPE {family} {metric_type}"]
    for ts, value in ordered:
        lines.append(f"{sample_name}{label_text} {_format_value(value)} {_format_ts(ts)}")
    return "\n".join(lines) + "\n"


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _format_ts(ts: float) -> str:
    return str(int(ts)) if float(ts).is_integer() else f"{ts:.3f}"


def backfill_openmetrics(
    text: str | Iterable[str],
    data_dir: Path,
    *,
    promtool: Path | None = None,
    timeout: float = 120.0,
    max_block_duration: str | None = None,
) -> list[str]:
    """Write OpenMetrics `text` into `data_dir` as TSDB blocks; return the new block ids.

    `text` is one string or an iterable of chunks of whole lines (streamed to promtool's input
    file, so gigabytes of history need not be held in memory at once). Runs `promtool tsdb
    create-blocks-from openmetrics`, with `--max-block-duration` when given (e.g. "24h": a day
    of history in two or three blocks instead of twelve 2 h blocks that Prometheus would then
    compact while it is being measured; promtool uses the largest of its block ranges, 2 h ×
    3^k, not over the maximum, 18 h here, aligned to multiples of it since the epoch). Appends
    the mandatory `# EOF` if missing. Raises if promtool stored fewer samples than `text` has
    (it drops, without an error, a sample older than the one before it in its series; it reads
    the input once per block range, so only where both fall in one block's range).

    Start Prometheus on `data_dir` afterwards: a running server sees new blocks only after up
    to a minute. Backfilled samples must be older than any live sample the server will ingest
    (a block reaching past now makes it drop every scraped sample as out of bounds); history
    ending more than ~3 h ago also stays clear of the in-memory head.
    """
    tool = promtool if promtool is not None else _require_binary("promtool")
    data_dir.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in data_dir.iterdir()}
    with tempfile.TemporaryDirectory(prefix="llmcost-backfill-") as tmp:
        source = Path(tmp) / "input.om"
        given = _write_openmetrics(source, [text] if isinstance(text, str) else text)
        command = [str(tool), "tsdb", "create-blocks-from", "openmetrics"]
        if max_block_duration is not None:
            command.append(f"--max-block-duration={max_block_duration}")
        done = subprocess.run(
            [*command, str(source), str(data_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=tmp,
        )
    if done.returncode != 0:
        raise PrometheusError(
            f"promtool create-blocks-from openmetrics failed ({done.returncode}): "
            f"{(done.stderr or done.stdout).strip()}"
        )
    created = sorted(p.name for p in data_dir.iterdir() if p.name not in before and p.is_dir())
    if not created:
        raise PrometheusError(f"promtool created no blocks: {(done.stdout or done.stderr).strip()}")
    stored = _stored_samples(done.stdout)
    if stored is not None and stored != given:
        raise PrometheusError(
            f"promtool stored {stored} of {given} samples: it drops, without an error, samples "
            "not in time order within their series"
        )
    return created


def _write_openmetrics(path: Path, chunks: Iterable[str]) -> int:
    """Write the chunks, closed by `# EOF` if they are not already; return the sample lines."""
    samples, last = 0, ""
    with path.open("w") as out:
        for chunk in chunks:
            if not chunk:
                continue
            if not chunk.endswith("\n"):
                chunk += "\n"
            out.write(chunk)
            samples += sum(
                1 for line in chunk.splitlines() if line.strip() and not line.startswith("#")
            )
            last = chunk.rstrip().rsplit("\n", 1)[-1] or last
        if last != "# EOF":
            out.write("# EOF\n")
    return samples


def _stored_samples(report: str) -> int | None:
    """Sum of the NUM SAMPLES column of promtool's block table; None if it is not there."""
    total, rows = 0, 0
    for line in report.splitlines():
        fields = line.split()
        # ULID  MIN_TIME  MAX_TIME  DURATION  NUM_SAMPLES  NUM_CHUNKS  NUM_SERIES  SIZE
        if len(fields) == 8 and len(fields[0]) == 26 and fields[4].isdigit():
            total += int(fields[4])
            rows += 1
    return total if rows else None
