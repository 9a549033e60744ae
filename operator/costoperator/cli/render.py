"""Rendering results: rich tables for people, JSON for scripts.

Every command builds one JSON-able dict and one table from it; `--output` picks which is shown.
JSON never carries NaN or Infinity: non-finite numbers become null.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

OUTPUT_FORMATS = ("table", "json")

#: Table width when the output is not a terminal (a pipe, a file, a CI log) and COLUMNS is
#: unset: rich would otherwise assume 80 columns and cut the wider tables' cells to "…".
PIPED_WIDTH = 200


def make_console(*, stderr: bool = False) -> Console:
    """A rich console: the terminal's width, or `PIPED_WIDTH` when piped (COLUMNS wins)."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPED_WIDTH)


def jsonable(value: Any) -> Any:
    """Dataclasses, enums, mappings and sequences as plain JSON values (non-finite → None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def money(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"${value:,.{digits}f}"


def num(value: float | None, digits: int = 0) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:,.{digits}f}"


def pct(value: float | None, digits: int = 1) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value * 100:.{digits}f}%"


def key_value_table(title: str, rows: Iterable[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for k, v in rows:
        table.add_row(k, v)
    return table


def grid_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def emit(output: str, result: Mapping[str, Any], tables: Callable[[], Iterable[Table]]) -> None:
    """Print `result` as JSON or its tables, per `--output`."""
    if output == "json":
        sys.stdout.write(json.dumps(jsonable(result), indent=2, allow_nan=False) + "\n")
        return
    console = make_console()
    for table in tables():
        console.print(table)
