"""Reading real request traces: the Azure LLM inference CSVs, BurstGPT and Mooncake JSONL.

Every format becomes a list of `Request` sorted by arrival time, in seconds from the trace's
first request (a trace cut from a longer one starts at 0, not at its offset in the original).
The format is told by the file's content, not only its name (a ``.gz`` suffix is read through
gzip):
- Azure (Splitwise, ISCA'24; DynamoLLM's 2024 week-long releases): a CSV with the columns
  `TIMESTAMP,ContextTokens,GeneratedTokens` (others, such as the multimodal trace's
  `NumImages`, are ignored); wall-clock timestamps `YYYY-MM-DD HH:MM:SS[.fffffff]`, a ``T``
  for the space and a trailing UTC offset (``+00:00``, ``Z``) accepted.
- BurstGPT (HPMLL/BurstGPT): a CSV with `Timestamp` (seconds), `Request tokens` and
  `Response tokens` (`Model`, `Log Type` and the v2 session columns are ignored; a failed
  request's 0 response tokens is read as it is: its prompt still took a prefill).
- Mooncake (FAST'25): one JSON object a line with `timestamp` (ms), `input_length`,
  `output_length` and `hash_ids` (512-token prefix blocks; equal ids are reusable KV blocks).
Token counts must be whole and non-negative, times finite; a bad row is a `TraceError` naming
the file and line.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")


class TraceError(ValueError):
    """A trace file that cannot be read or parsed."""


@dataclass(frozen=True, slots=True)
class Request:
    arrival_s: float
    input_tokens: int
    output_tokens: int
    prefix_blocks: tuple[int, ...] = field(default=())


AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
BURSTGPT_COLUMNS = ("Timestamp", "Request tokens", "Response tokens")

_AZURE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?"
)


def parse_azure_time(text: str) -> datetime:
    """An Azure trace timestamp as an aware UTC datetime (no offset: UTC). Python's %f takes at
    most 6 fractional digits and the traces carry 7: the 7th (100 ns) is dropped."""
    m = _AZURE_TIME.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a timestamp (YYYY-MM-DD HH:MM:SS[.fraction][offset]): {text!r}")
    year, month, day, hour, minute, second, frac, offset = m.groups()
    tz = UTC
    if offset and offset != "Z":
        digits = offset[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        tz = timezone(-delta if offset[0] == "-" else delta)
    t = datetime(
        int(year),
        int(month),
        int(day),
        int(hour),
        int(minute),
        int(second),
        int((frac or "0")[:6].ljust(6, "0")),
        tzinfo=tz,
    )
    return t.astimezone(UTC)


def _tokens(text: str | None, column: str) -> int:
    if text is None or not text.strip():
        raise ValueError(f"no {column}")
    n = int(text)
    if n < 0:
        raise ValueError(f"{column} is negative: {n}")
    return n


def _seconds(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{what} is not a finite number: {value}")
    return value


@contextmanager
def _open_text(path: Path) -> Iterator[IO[str]]:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            yield f
    else:
        with path.open(encoding="utf-8", newline="") as f:
            yield f


def _azure_row(row: dict[str, str]) -> tuple[datetime, int, int]:
    return (
        parse_azure_time(row["TIMESTAMP"] or ""),
        _tokens(row["ContextTokens"], "ContextTokens"),
        _tokens(row["GeneratedTokens"], "GeneratedTokens"),
    )


def _burstgpt_row(row: dict[str, str]) -> Request:
    return Request(
        arrival_s=_seconds(float(row["Timestamp"]), "Timestamp"),
        input_tokens=_tokens(row["Request tokens"], "Request tokens"),
        output_tokens=_tokens(row["Response tokens"], "Response tokens"),
    )


def _rows(path: Path, reader: csv.DictReader[str], parse: Callable[[dict[str, str]], T]) -> list[T]:
    """Every row of `reader` through `parse`, a bad one named by its file and line."""
    out = []
    for line, row in enumerate(reader, start=2):
        try:
            out.append(parse(row))
        except (ValueError, TypeError) as exc:
            raise TraceError(f"{path}:{line}: {exc}") from exc
    return out


def read_csv_trace(path: Path) -> list[Request]:
    """An Azure or BurstGPT trace, told apart by its header row (in file order; Azure's
    arrivals from its earliest timestamp, BurstGPT's as its seconds are)."""
    with _open_text(path) as f:
        reader = csv.DictReader(f)
        reader.fieldnames = [c.strip() for c in reader.fieldnames or ()]
        columns = set(reader.fieldnames)
        if set(AZURE_COLUMNS) <= columns:
            times = _rows(path, reader, _azure_row)
            if not times:
                return []
            start = min(t for t, _, _ in times)
            # Exact offsets (timedelta), not differences of epoch floats.
            return [Request((t - start).total_seconds(), i, o) for t, i, o in times]
        if set(BURSTGPT_COLUMNS) <= columns:
            return _rows(path, reader, _burstgpt_row)
    header = ", ".join(sorted(columns)) or "empty"
    raise TraceError(
        f"{path}: not an Azure LLM trace (columns {', '.join(AZURE_COLUMNS)}) nor a BurstGPT "
        f"one ({', '.join(BURSTGPT_COLUMNS)}); its columns: {header}"
    )


def read_mooncake_jsonl(path: Path) -> list[Request]:
    requests = []
    with _open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                requests.append(
                    Request(
                        arrival_s=_seconds(float(obj["timestamp"]), "timestamp") / 1000.0,
                        input_tokens=_tokens(str(obj["input_length"]), "input_length"),
                        output_tokens=_tokens(str(obj["output_length"]), "output_length"),
                        prefix_blocks=tuple(int(h) for h in obj.get("hash_ids", ())),
                    )
                )
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise TraceError(f"{path}:{line_no}: not a Mooncake trace line ({exc})") from exc
    return requests


def _format_of(path: Path) -> str:
    suffix = path.suffixes[-2] if path.suffix == ".gz" and len(path.suffixes) > 1 else path.suffix
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    raise TraceError(
        f"{path}: unknown trace format (expected .csv: Azure or BurstGPT, .jsonl: Mooncake; "
        "either may be gzipped, .gz)"
    )


def read_trace(path: Path) -> list[Request]:
    """Read a trace (.csv: Azure or BurstGPT by its header; .jsonl: Mooncake; .gz: gzipped),
    sorted by arrival, the first request at 0 s."""
    if not path.is_file():
        raise TraceError(f"trace file not found: {path}")
    fmt = _format_of(path)
    try:
        requests = read_csv_trace(path) if fmt == "csv" else read_mooncake_jsonl(path)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise TraceError(f"{path}: cannot be read ({exc})") from exc
    if not requests:
        raise TraceError(f"{path}: no requests")
    requests.sort(key=lambda r: r.arrival_s)
    first = requests[0].arrival_s
    if first != 0:
        requests = [replace(r, arrival_s=r.arrival_s - first) for r in requests]
    return requests


def demand_series(
    requests: Sequence[Request], bin_s: float = 60.0
) -> tuple[list[float], list[float]]:
    """Input and output tokens per second in consecutive bins of `bin_s` seconds (by arrival)."""
    if not requests:
        return [], []
    bins = max(1, math.ceil((requests[-1].arrival_s + 1e-9) / bin_s))
    inputs = [0.0] * bins
    outputs = [0.0] * bins
    for r in requests:
        i = min(int(r.arrival_s // bin_s), bins - 1)
        inputs[i] += r.input_tokens / bin_s
        outputs[i] += r.output_tokens / bin_s
    return inputs, outputs


def find_shared_data(*parts: str) -> Path | None:
    """A file of the project's shared data folder (../shared/data beside the project root).

    Looks from the working directory and from this package's checkout upwards.
    """
    starts = [Path.cwd(), Path(__file__).resolve()]
    for start in starts:
        for base in (start, *start.parents):
            candidate = base.parent / "shared" / "data" / Path(*parts)
            if candidate.is_file():
                return candidate
    return None
