"""Prometheus remote write (protocol 1.0) from Python: series with history into a live head.

promtool's backfill writes persisted blocks only; the operator's queries at "now" read the head
(the last ~2-3 h, in memory). To measure against the head, the bench pushes the same history to
a Prometheus started with `--web.enable-remote-write-receiver`. The `WriteRequest` protobuf is
encoded by hand (four messages, two wire types) and snappy-compressed with cramjam, so the bench
needs no generated protobuf code.

    message WriteRequest { repeated TimeSeries timeseries = 1; }
    message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    message Label        { string name = 1; string value = 2; }
    message Sample       { double value = 1; int64 timestamp = 2; }  // milliseconds
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

import cramjam
import requests

Series = tuple[Mapping[str, str], Sequence[tuple[float, float]]]
"""(labels including `__name__`, [(unix seconds, value), ...] in time order)."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


_DOUBLE_TAG = _varint(1 << 3 | 1)  # Sample.value: fixed 64-bit
_TS_TAG = _varint(2 << 3 | 0)  # Sample.timestamp: varint


def encode_series(labels: Mapping[str, str], samples: Iterable[tuple[float, float]]) -> bytes:
    """One `TimeSeries`; labels sorted by name, as Prometheus requires."""
    body = bytearray()
    for name, value in sorted(labels.items()):
        body += _field(1, _field(1, name.encode()) + _field(2, value.encode()))
    for ts, value in samples:
        sample = _DOUBLE_TAG + struct.pack("<d", value) + _TS_TAG + _varint(round(ts * 1000))
        body += _field(2, sample)
    return bytes(body)


def write_request(series: Iterable[Series]) -> bytes:
    """A snappy-compressed `WriteRequest` body."""
    raw = b"".join(_field(1, encode_series(labels, samples)) for labels, samples in series)
    return bytes(cramjam.snappy.compress_raw(raw))


def push(url: str, series: Iterable[Series], session: requests.Session | None = None) -> int:
    """POST one batch to `<url>/api/v1/write`; returns its byte size. Raises on a refusal
    (Prometheus answers 400 with the reason, e.g. out-of-order or out-of-bounds samples)."""
    body = write_request(series)
    response = (session or requests).post(
        url.rstrip("/") + "/api/v1/write",
        data=body,
        headers={
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        },
        timeout=120,
    )
    if response.status_code >= 300:
        raise RuntimeError(f"remote write refused ({response.status_code}): {response.text[:300]}")
    return len(body)
