"""A small, strict Prometheus HTTP API client for the operator's tick.

Errors::

    PromError
    ├── PromUnavailableError     cannot connect, timed out, or 5xx after bounded retries
    ├── PromQueryError      Prometheus refused the query (4xx, status "error")
    └── PromInvalidResultError   a result of the wrong type (not an instant vector)

Invalid samples (NaN, ±Inf, non-numeric, duplicated series) are dropped one by one and listed
in `QueryResult.rejected`, so one bad pod does not blank the others.

Every request has a connect and a read timeout and at most `retries` retries with backoff.
Authentication: a bearer token read from a file at request time (so a rotated, re-mounted token
is picked up without a restart), or basic auth; TLS verification on by default, optionally
against a custom CA bundle. An optional tenant header serves Thanos/Mimir/Cortex. Secrets never
appear in exception messages or logs.

Why not `PrometheusConnect.custom_query`: it returns only `data.result` and drops the response's
`warnings`, and a response with warnings is partial data that must not drive scaling
(RELIABILITY 4). The session is still handed to prometheus-api-client's `PrometheusConnect` for
its connection check, so both share one configuration.
"""

from __future__ import annotations

import functools
import math
import operator
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import requests
from prometheus_api_client import PrometheusConnect
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


class PromError(Exception):
    """Base of the Prometheus client's errors."""


class PromUnavailableError(PromError):
    """Prometheus could not be reached or answered 5xx after retries."""


class PromQueryError(PromError):
    """Prometheus refused the query."""


class PromInvalidResultError(PromError):
    """A result of a type the operator cannot use."""


@dataclass(frozen=True, slots=True)
class PromAuth:
    bearer_token_file: Path | None = None
    basic_username: str | None = None
    basic_password_file: Path | None = None
    ca_file: Path | None = None
    insecure_skip_verify: bool = False
    tenant_header: str | None = None
    """e.g. "X-Scope-OrgID" for Mimir/Cortex, "THANOS-TENANT" for Thanos."""
    tenant: str | None = None


class _FileBearerAuth(requests.auth.AuthBase):
    """Reads the token file on each request (cached by modification time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._token = ""

    def _current(self) -> str:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError as exc:
            raise PromUnavailableError(f"bearer token file unreadable: {self.path}") from exc
        if mtime != self._mtime:
            self._token = self.path.read_text(encoding="utf-8").strip()
            self._mtime = mtime
        return self._token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._current()}"
        return r


class _FileBasicAuth(requests.auth.AuthBase):
    def __init__(self, username: str, password_file: Path) -> None:
        self.username = username
        self.password_file = password_file

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        password = self.password_file.read_text(encoding="utf-8").strip()
        signed: requests.PreparedRequest = requests.auth.HTTPBasicAuth(self.username, password)(r)
        return signed


class Sample(NamedTuple):
    """One series of an instant vector (a tuple: a tick makes ~100,000 of them)."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class QueryResult:
    samples: tuple[Sample, ...]
    warnings: tuple[str, ...] = field(default=())
    rejected: tuple[str, ...] = field(default=())
    """Samples dropped as invalid (NaN, ±Inf, non-numeric, duplicated)."""

    @property
    def partial(self) -> bool:
        return bool(self.warnings)


@dataclass
class PromClient:
    url: str
    auth: PromAuth = field(default_factory=PromAuth)
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.3
    gzip: bool = False
    """Ask for gzip-compressed answers. Off by default: a tick's answers are ~10 MB at 10,000
    pods, and compressing them costs Prometheus ~30 ms of CPU per query (bench/tick_scale.py)
    to save bandwidth an in-cluster network does not need; turn it on across a WAN."""
    _session: requests.Session = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        session = requests.Session()
        retry = Retry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            backoff_factor=self.backoff_s,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET", "POST"}),
            raise_on_status=False,
        )
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        a = self.auth
        if a.bearer_token_file is not None:
            session.auth = _FileBearerAuth(a.bearer_token_file)
        elif a.basic_username is not None and a.basic_password_file is not None:
            session.auth = _FileBasicAuth(a.basic_username, a.basic_password_file)
        session.verify = (
            False if a.insecure_skip_verify else (str(a.ca_file) if a.ca_file else True)
        )
        # requests asks for gzip by default; Prometheus then compresses every answer.
        session.headers["Accept-Encoding"] = "gzip" if self.gzip else "identity"
        if a.tenant_header and a.tenant:
            session.headers[a.tenant_header] = a.tenant
        self._session = session

    def close(self) -> None:
        self._session.close()

    def connection(self) -> PrometheusConnect:
        """prometheus-api-client's view of the same connection (same session, same auth)."""
        return PrometheusConnect(url=self.url, session=self._session)

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        """An instant query; a vector result becomes samples, anything else is invalid."""
        params: dict[str, str] = {"query": promql, "timeout": f"{self.read_timeout_s:g}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        response = self._send("/api/v1/query", params)
        if response.status_code == 200 and (fast := _fast_vector(response.content)) is not None:
            return fast
        body = self._body(response)
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise PromInvalidResultError(f"expected a vector, got {data.get('resultType')!r}")
        samples, rejected = parse_vector(data.get("result") or [])
        return QueryResult(
            samples=samples,
            warnings=tuple(str(w) for w in body.get("warnings") or ()),
            rejected=rejected,
        )

    def query_range(
        self, promql: str, start: float, end: float, step_s: float
    ) -> list[tuple[Mapping[str, str], list[tuple[float, float]]]]:
        """A range query: per series, its labels and (time, value) points, oldest first.
        NaN, ±Inf and non-numeric points are left out; a series with none left is dropped."""
        params = {
            "query": promql,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": f"{step_s:g}",
            "timeout": f"{self.read_timeout_s:g}s",
        }
        data = self._post("/api/v1/query_range", params).get("data") or {}
        if data.get("resultType") != "matrix":
            raise PromInvalidResultError(f"expected a matrix, got {data.get('resultType')!r}")
        series = []
        for item in data.get("result") or []:
            points = []
            for point in item.get("values") or []:
                try:
                    at, value = float(point[0]), float(point[1])
                except (IndexError, TypeError, ValueError):
                    continue
                if math.isfinite(value):
                    points.append((at, value))
            if points:
                series.append((item.get("metric") or {}, points))
        return series

    def _post(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        return self._body(self._send(path, params))

    def _send(self, path: str, params: Mapping[str, str]) -> requests.Response:
        try:
            response = self._session.post(
                self.url + path,
                data=params,
                timeout=(self.connect_timeout_s, self.read_timeout_s),
            )
        except requests.exceptions.RequestException as exc:
            # The message names the failure class only: request details may carry credentials.
            raise PromUnavailableError(
                f"Prometheus at {self.url} unreachable: {type(exc).__name__}"
            ) from None
        if response.status_code >= 500:
            raise PromUnavailableError(f"Prometheus at {self.url} answered {response.status_code}")
        return response

    @staticmethod
    def _body(response: requests.Response) -> dict[str, Any]:
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            raise PromQueryError(
                f"Prometheus answered {response.status_code} without JSON"
            ) from None
        if response.status_code >= 400 or body.get("status") != "success":
            raise PromQueryError(
                f"query refused ({response.status_code}): {body.get('errorType', '')} "
                f"{str(body.get('error', ''))[:300]}"
            )
        return body


class _Row(msgspec.Struct, kw_only=True):
    metric: dict[str, str] = {}
    value: tuple[float, float]


class _Vector(msgspec.Struct):
    resultType: str  # noqa: N815 (Prometheus' name)
    result: list[_Row]


class _Answer(msgspec.Struct):
    status: str
    data: _Vector
    warnings: list[str] = []


# Lax: Prometheus writes sample values as JSON strings ("1.5"), which become floats here.
_decode_answer = msgspec.json.Decoder(_Answer, strict=False)


def _fast_vector(content: bytes) -> QueryResult | None:
    """A successful instant-vector answer decoded straight into rows by msgspec (C), when every
    row is regular: labels an object of strings, a finite numeric value, no label set twice.
    That is nearly every answer, and it costs half of `json` decoding plus `parse_vector`
    (a tick's 80,000 rows at 1,000 policies: 0.095 s against 0.19 s, BENCHMARKS.md). None for
    anything else, which then takes the checked path (`PromClient._body`, `parse_vector`)."""
    try:
        answer = _decode_answer.decode(content)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if answer.status != "success" or answer.data.resultType != "vector":
        return None
    rows = answer.data.result
    samples = _regular_samples(
        list(map(_row_metric, rows)), list(map(_second, map(_row_value, rows)))
    )
    if samples is None:
        return None
    return QueryResult(samples=samples, warnings=tuple(answer.warnings))


def _regular_samples(
    labels: list[dict[str, str]], values: list[float]
) -> tuple[Sample, ...] | None:
    """The rows as samples when every value is finite and no label set repeats, else None.
    Rows whose label values all differ are distinct series (Prometheus writes a series' labels
    in one sorted order); a repeat of values leaves the exact check by label items to
    `_parse_rows`."""
    if not all(map(math.isfinite, values)) or len(set(map(tuple, map(dict.values, labels)))) != len(
        labels
    ):
        return None
    return tuple(map(_new_sample, zip(labels, values, strict=True)))


_row_metric = operator.attrgetter("metric")
_row_value = operator.attrgetter("value")


def parse_vector(result: list[dict[str, Any]]) -> tuple[tuple[Sample, ...], tuple[str, ...]]:
    """Samples of an instant vector, and what was rejected: NaN, ±Inf and non-numeric values,
    and every series of a label set that appears more than once (RELIABILITY 2). One bad pod
    does not blank the others.

    A tick parses about 80,000 rows at 10,000 pods, nearly always all valid, so the common case
    runs in C-level `map`s (`_regular_samples`): the decoded label dicts are kept as they are
    (JSON label names and values are strings already) and rows become `Sample`s through
    `tuple.__new__`. Anything irregular is parsed again row by row (`_parse_rows`)."""
    try:
        samples = _regular_samples(
            list(map(_metric, result)), list(map(float, map(_second, map(_value, result))))
        )
    except (KeyError, IndexError, TypeError, ValueError):
        return _parse_rows(result)
    return (samples, ()) if samples is not None else _parse_rows(result)


def _parse_rows(result: list[dict[str, Any]]) -> tuple[tuple[Sample, ...], tuple[str, ...]]:
    """`parse_vector` row by row, keeping what is valid and saying what is not."""
    rows: list[tuple[Mapping[str, str], float]] = []
    rejected: list[str] = []
    for item in result:
        labels = item.get("metric") or {} if isinstance(item, dict) else {}
        try:
            raw = item["value"][1]
            value = float(raw)
        except (KeyError, IndexError, TypeError, ValueError):
            rejected.append(f"non-numeric value for {labels}")
            continue
        if not math.isfinite(value):
            rejected.append(f"{raw} for {labels}")
            continue
        if not isinstance(labels, dict):
            rejected.append(f"labels that are not an object: {labels!r}"[:300])
            continue
        rows.append((labels, value))
    keys = [tuple(labels.items()) for labels, _ in rows]
    if len(set(keys)) != len(keys):
        count: dict[tuple[tuple[str, str], ...], int] = {}
        for key in keys:
            count[key] = count.get(key, 0) + 1
        rows = [row for row, key in zip(rows, keys, strict=True) if count[key] == 1]
        rejected.extend(f"{n} series for {dict(key)}" for key, n in count.items() if n > 1)
    return tuple(map(_new_sample, rows)), tuple(rejected)


_metric = operator.itemgetter("metric")
_value = operator.itemgetter("value")
_second = operator.itemgetter(1)
_new_sample = functools.partial(tuple.__new__, Sample)
