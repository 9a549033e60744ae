"""Price sheets: USD per GPU-hour by GPU and capacity type.

Prices are data, not code: the default sheet is the seed's table (`data/seed_prices.csv`) and a
second sheet is AWS us-east-1 on-demand and spot prices (`data/aws_us_east_1_gpu_instances.csv`,
an unmodified copy of the project's shared price snapshot, whole-instance prices divided by the
instance's GPU count). In a cluster, a `GPUPricing` resource overrides either.

Reading the bundled files is the only file access in the engine; it touches package data only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources

from costengine.errors import InvalidInputError, UnknownNameError, lookup, require_non_negative


class CapacityType(StrEnum):
    ON_DEMAND = "on_demand"
    SPOT = "spot"
    RESERVED = "reserved"


#: Above this a per-GPU-hour price is taken for a typo (the dearest GPU here lists under $13/h).
MAX_USD_PER_GPU_HOUR = 1000.0


@dataclass(frozen=True, slots=True)
class PriceEntry:
    gpu: str
    capacity_type: CapacityType
    usd_per_gpu_hour: float
    provider: str = ""
    region: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        require_non_negative("usd_per_gpu_hour", self.usd_per_gpu_hour)
        if self.usd_per_gpu_hour > MAX_USD_PER_GPU_HOUR:
            raise InvalidInputError(
                f"usd_per_gpu_hour {self.usd_per_gpu_hour} for {self.gpu} is above "
                f"{MAX_USD_PER_GPU_HOUR}: is it a whole-instance or monthly price?"
            )


class PriceSheet:
    """Prices by (GPU, capacity type). Where several entries match, the cheapest wins."""

    def __init__(self, name: str, entries: Iterable[PriceEntry]) -> None:
        self.name = name
        self.entries = tuple(entries)
        self._best: dict[tuple[str, CapacityType], PriceEntry] = {}
        for e in self.entries:
            key = (e.gpu, e.capacity_type)
            if key not in self._best or e.usd_per_gpu_hour < self._best[key].usd_per_gpu_hour:
                self._best[key] = e

    def __iter__(self) -> Iterator[PriceEntry]:
        return iter(self._best.values())

    def gpus(self) -> list[str]:
        return sorted({gpu for gpu, _ in self._best})

    def has(self, gpu: str, capacity_type: CapacityType) -> bool:
        return (gpu, capacity_type) in self._best

    def entry(self, gpu: str, capacity_type: CapacityType = CapacityType.ON_DEMAND) -> PriceEntry:
        by_gpu = {g: g for g in self.gpus()}
        canonical = lookup(f"GPU in price sheet {self.name!r}", by_gpu, gpu)
        key = (canonical, capacity_type)
        if key not in self._best:
            have = [c.value for g, c in self._best if g == canonical]
            raise UnknownNameError(
                f"capacity type for {canonical} in price sheet {self.name!r}",
                capacity_type.value,
                have,
            )
        return self._best[key]

    def usd_per_gpu_hour(
        self, gpu: str, capacity_type: CapacityType = CapacityType.ON_DEMAND
    ) -> float:
        return self.entry(gpu, capacity_type).usd_per_gpu_hour

    def with_overrides(
        self, overrides: Iterable[PriceEntry], name: str | None = None
    ) -> PriceSheet:
        """A new sheet where each override replaces the entries of its (GPU, capacity type)."""
        over = list(overrides)
        keys = {(o.gpu, o.capacity_type) for o in over}
        kept = [e for e in self.entries if (e.gpu, e.capacity_type) not in keys]
        return PriceSheet(name or self.name, [*kept, *over])


def parse_price_sheet_csv(name: str, text: str) -> PriceSheet:
    """A sheet from CSV: gpu, capacity_type, usd_per_gpu_hour[, provider, region, source]."""
    entries = []
    for i, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            entries.append(
                PriceEntry(
                    gpu=row["gpu"],
                    capacity_type=CapacityType(row["capacity_type"]),
                    usd_per_gpu_hour=float(row["usd_per_gpu_hour"]),
                    provider=row.get("provider") or "",
                    region=row.get("region") or "",
                    source=row.get("source") or "",
                )
            )
        except (KeyError, ValueError) as exc:
            raise InvalidInputError(f"price sheet {name!r} line {i}: {exc}") from exc
    return PriceSheet(name, entries)


def parse_instance_price_csv(name: str, text: str) -> PriceSheet:
    """A sheet from whole-instance prices (the shared AWS snapshot's columns), per GPU-hour."""
    entries = []
    for i, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            gpus = int(row["gpu_count"])
            if gpus < 1:
                raise ValueError(f"gpu_count {gpus} < 1")
            for capacity, column in (
                (CapacityType.ON_DEMAND, "on_demand_usd_per_hour"),
                (CapacityType.SPOT, "spot_usd_per_hour"),
            ):
                if row.get(column):
                    entries.append(
                        PriceEntry(
                            gpu=row["gpu"],
                            capacity_type=capacity,
                            usd_per_gpu_hour=float(row[column]) / gpus,
                            provider="aws",
                            region=row.get("availability_zone", ""),
                            source=f"{row['instance_type']} {column} / {gpus} GPUs",
                        )
                    )
        except (KeyError, ValueError) as exc:
            raise InvalidInputError(f"price sheet {name!r} line {i}: {exc}") from exc
    return PriceSheet(name, entries)


def _data(filename: str) -> str:
    return (
        resources.files("costengine")
        .joinpath("data")
        .joinpath(filename)
        .read_text(encoding="utf-8")
    )


@cache
def seed_price_sheet() -> PriceSheet:
    """The seed's GPU table prices (the default sheet)."""
    return parse_price_sheet_csv("seed", _data("seed_prices.csv"))


@cache
def aws_us_east_1_price_sheet() -> PriceSheet:
    """AWS us-east-1 on-demand and spot, cheapest instance per GPU, per GPU-hour (one snapshot)."""
    return parse_instance_price_csv("aws-us-east-1", _data("aws_us_east_1_gpu_instances.csv"))


PRICE_SHEETS = {"seed": seed_price_sheet, "aws-us-east-1": aws_us_east_1_price_sheet}


def price_sheet(name: str = "seed") -> PriceSheet:
    return lookup("price sheet", PRICE_SHEETS, name)()
