"""Render the per-point error table of BENCHMARKS.md from calibrate_throughput.py's JSON.

python bench/calibrate_throughput.py > bench/out/calibration.json
python bench/calibration_table.py bench/out/calibration.json
"""

from __future__ import annotations

import json
import sys


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.0f}%"


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        data = json.load(f)
    print("| point | source | measured | model | model error | seed formula | seed error |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for p in data["points_detail"]:
        seed = "—" if p["seed_formula"] is None else f"{p['seed_formula']:,.0f}"
        print(
            f"| {p['point']} | {p['source']} | {p['measured']:,.3g} | {p['model']:,.3g} | "
            f"{pct(p['model_error'])} | {seed} | {pct(p['seed_error'])} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
