"""Reading real request traces: the Azure LLM inference CSVs and Mooncake JSONL.

Both become a list of `Request` sorted by arrival time, in seconds from the trace's start.
Formats (see the shared data README):
- Azure (Splitwise, ISCA'24): `TIMESTAMP,ContextTokens,GeneratedTokens`, wall-clock timestamps
  with 7 fractional digits.
- Mooncake (FAST'25): one JSON object a line with `timestamp` (ms), `input_length`,
  `output_length` and `hash_ids` (512-token prefix blocks; equal ids are reusable KV blocks).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


class TraceError(ValueError):
    """A trace file that cannot be read or parsed."""


@dataclass(frozen=True, slots=True)
class Request:
    arrival_s: float
    input_tokens: int
    output_tokens: int
    prefix_blocks: tuple[int, ...] = field(default=())


def _parse_azure_time(text: str) -> datetime:
    # Python's %f takes at most 6 digits; the trace has 7.
    head, _, frac = text.strip().partition(".")
    return datetime.strptime(f"{head}.{frac[:6] or '0'}", "%Y-%m-%d %H:%M:%S.%f")


def read_azure_csv(path: Path) -> list[Request]:
    requests = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise TraceError(f"{path}: not an Azure LLM trace (need columns {sorted(need)})")
        start: datetime | None = None
        for line, row in enumerate(reader, start=2):
            try:
                t = _parse_azure_time(row["TIMESTAMP"])
                start = start or t
                requests.append(
                    Request(
                        arrival_s=(t - start).total_seconds(),
                        input_tokens=int(row["ContextTokens"]),
                        output_tokens=int(row["GeneratedTokens"]),
                    )
                )
            except ValueError as exc:
                raise TraceError(f"{path}:{line}: {exc}") from exc
    requests.sort(key=lambda r: r.arrival_s)
    return requests


def read_mooncake_jsonl(path: Path) -> list[Request]:
    requests = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                requests.append(
                    Request(
                        arrival_s=float(obj["timestamp"]) / 1000.0,
                        input_tokens=int(obj["input_length"]),
                        output_tokens=int(obj["output_length"]),
                        prefix_blocks=tuple(int(h) for h in obj.get("hash_ids", ())),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise TraceError(f"{path}:{line_no}: not a Mooncake trace line ({exc})") from exc
    requests.sort(key=lambda r: r.arrival_s)
    return requests


def read_trace(path: Path) -> list[Request]:
    """Read a trace, choosing the format by extension (.csv Azure, .jsonl Mooncake)."""
    if not path.is_file():
        raise TraceError(f"trace file not found: {path}")
    if path.suffix == ".csv":
        requests = read_azure_csv(path)
    elif path.suffix in (".jsonl", ".json"):
        requests = read_mooncake_jsonl(path)
    else:
        raise TraceError(f"{path}: unknown trace format (expected .csv or .jsonl)")
    if not requests:
        raise TraceError(f"{path}: no requests")
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
