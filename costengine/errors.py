"""Errors raised by the cost engine.

The tree::

    CostEngineError
    ├── InvalidInputError   a value outside its domain (negative price, utilization not in (0, 1])
    └── UnknownNameError    a GPU, model, quantization, engine or price entry not in a catalog;
                            carries the close matches so a front end can suggest them

Front ends (the CLI, the operator) catch `CostEngineError` once at their boundary.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


class CostEngineError(Exception):
    """Base of every error the cost engine raises on purpose."""


class InvalidInputError(CostEngineError, ValueError):
    """A numeric input outside its domain."""


class UnknownNameError(CostEngineError, KeyError):
    """A name that is not in a catalog, with close matches for suggestions."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        self.close_matches = close_matches(name, self.known)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        hint = ""
        if self.close_matches:
            hint = f"; did you mean {' or '.join(repr(m) for m in self.close_matches)}?"
        else:
            hint = f"; known: {', '.join(self.known)}"
        return f"unknown {self.kind} {self.name!r}{hint}"

    def __str__(self) -> str:  # KeyError would quote the whole message otherwise
        return self.message


def close_matches(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Known names resembling `name`, compared case-insensitively and ignoring separators."""

    def fold(s: str) -> str:
        return s.lower().replace("-", "").replace("_", "").replace(" ", "").replace(".", "")

    by_fold = {fold(k): k for k in known}
    folded = fold(name)
    if folded in by_fold:
        return [by_fold[folded]]
    hits = difflib.get_close_matches(folded, list(by_fold), n=n, cutoff=0.6)
    return [by_fold[h] for h in hits]


def lookup(kind: str, table: dict[str, T], name: str) -> T:
    """`table[name]`, tolerant of case and separators, else `UnknownNameError` with suggestions."""
    if name in table:
        return table[name]
    matches = close_matches(name, table)
    exact = [m for m in matches if m.lower().replace("-", "") == name.lower().replace("-", "")]
    if len(exact) == 1:
        return table[exact[0]]
    raise UnknownNameError(kind, name, table)


def require_positive(name: str, value: float) -> float:
    if not value > 0 or value != value or value == float("inf"):
        raise InvalidInputError(f"{name} must be a positive finite number, got {value}")
    return value


def require_non_negative(name: str, value: float) -> float:
    if not value >= 0 or value == float("inf"):
        raise InvalidInputError(f"{name} must be a non-negative finite number, got {value}")
    return value


def require_ratio(name: str, value: float, *, allow_zero: bool = False) -> float:
    """A fraction in (0, 1] (or [0, 1] with allow_zero)."""
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise InvalidInputError(f"{name} must be in {interval}, got {value}")
    return value
