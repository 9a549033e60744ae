"""`llmcost backtest`: replay a real request trace and a real spot market through five policies.

The simulation and the policies are pure (`costengine.backtest`, whose docstring has the fleet
model); this module does the I/O around them: it reads the request trace (Azure CSV, Mooncake
JSONL) and the spot trace, sizes the load, solves the oracle's program with SciPy's HiGHS, writes
`summary.json` and the PNG plots, and renders the result.

Spot traces (skypilot-org/spot-traces, NSDI'24 "Can't Be Late"): ``{"metadata":
{"gap_seconds": N}, "data": [...]}``, one value per tick for a pool of N instances (N from the
file name, ``4-node``; else the largest value). What a value counts is contested: the
repository's README says "the number of available instances", but the same authors' processing
script stores a column named ``preempted`` as ``data``, and their simulator (``sky_spot``,
``TraceEnv.spot_available``) reads a tick as available when ``not trace[tick]``, i.e. 1 means
preempted. The default follows the code (``--preemption-values preempted``: available = N −
value); ``--preemption-values available`` takes the README's reading. On the default 4-node
us-east-1f file the two readings are mirror images (62% of ticks at 0, 30% at 4).

Time: backtest time ``t`` reads the spot trace at ``offset + speedup × t``. The default speedup 1
replays the market in real time, so an hour of requests sees an hour of it (12 ticks of a 300 s
file, and on the default file from its start no interruption at all, or, read the README's
way, no spot at all); ``--preemption-speedup
24`` puts a day of the market into the hour (a 300 s tick lasts 12.5 s, shorter than a cold
start: a stress test, harsher than reality).

Notice: the spot trace records when instances went, not when they were told. The backtest
assumes each preemption was announced ``--preemption-notice-s`` ahead (default 120 s: the file
is AWS's, and AWS gives a two-minute Spot interruption notice; GCP and Azure give 30 s). With a
notice that with the latency bound spans the cold start, the planner's on-demand base rule
defaults to ``fraction``: no P50 base, only the on-demand replicas the spot fraction requires,
because the cover asked for at the notice serves before the work the preempted replica leaves
has waited past the bound (`costengine.backtest`, the planner's mechanism 5).

Errors: an unreadable trace or spot trace, or an output folder that cannot be written, is a
`BacktestError` (a `TraceError`): the CLI prints one line and exits 2.
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import json
import math
import os
import re
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from costengine.backtest import (
    POLICIES,
    BacktestResult,
    BacktestSettings,
    FleetModel,
    OracleProgram,
    OracleSolution,
    PlannerBase,
    goals,
    run_backtest,
    spot_availability,
    summary,
    sustained_peak_tokens_per_second,
)
from costengine.errors import InvalidInputError
from costengine.pricing import CapacityType, price_sheet
from costengine.spotplan import FALL_SAMPLES, SCALE_DOWN_WINDOW_S
from costengine.throughput import Deployment
from costoperator.cli.render import emit, grid_table, jsonable, key_value_table, money, num, pct
from costoperator.traces import Request, TraceError, find_shared_data, read_trace

DEFAULT_SPOT_TRACE = ("spot", "preemption_4-node_aws-08-03-2023_us-east-1f_v100_1.json")
"""A multi-node V100 preemption trace (AWS us-east-1f, 13 days, 300 s ticks): of the shared
files it is the only preemption trace with partial losses (a pool of 4), so the spot fleet can
lose some replicas and keep others."""

ORACLE_TIME_LIMIT_S = 20.0
"""HiGHS stops the branch and bound after this long and keeps its best plan; the proven bound
says how far from optimal that plan can be. (On the shared traces the plan found in 3 s is
within ~1.5% of the optimum; proving optimality can take minutes.)"""


class BacktestError(TraceError):
    """A backtest input file or output folder that cannot be used."""


class SpotValues(StrEnum):
    preempted = "preempted"
    available = "available"


@dataclass(frozen=True, slots=True)
class SpotTrace:
    path: Path
    values: list[float]
    gap_s: float
    nodes: int


def read_spot_trace(path: Path) -> SpotTrace:
    """A spot preemption or availability trace (format in the module docstring)."""
    if not path.is_file():
        raise BacktestError(f"spot trace file not found: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        gap = float(doc["metadata"]["gap_seconds"])
        values = [float(v) for v in doc["data"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BacktestError(
            f"{path}: not a spot trace ({{'metadata': {{'gap_seconds': N}}, 'data': [...]}}): {exc}"
        ) from exc
    if not values or gap <= 0 or not math.isfinite(gap):
        raise BacktestError(f"{path}: a spot trace needs a positive gap_seconds and some data")
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise BacktestError(f"{path}: spot trace values must be non-negative counts")
    named = re.search(r"(\d+)-node", path.name)
    nodes = max(int(named.group(1)) if named else 1, math.ceil(max(values)), 1)
    return SpotTrace(path, values, gap, nodes)


#: The fleet model's defaults, stated once (costengine.backtest.FleetModel).
_FLEET: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(FleetModel)}

_BASE_RULES: dict[PlannerBase, str] = {
    "p50": "p50: on demand for the P50 of the demand seen, spot for the rest",
    "market": "market: the P50 base scaled by the interruptions seen so far",
    "fraction": "fraction: no P50 base, on demand only as the spot fraction requires (the "
    "cover asked for at a preemption notice guards typical traffic)",
}
"""The text report's line for each planner base rule (`costengine.backtest`, mechanism 5)."""


@dataclass(frozen=True, slots=True)
class BacktestOptions:
    trace: Path
    model: str = "llama-2-70b"
    gpu: str = "A100-80GB"
    tp: int = 4
    quant: str = "fp16"
    engine: str = "vllm"
    prices: str = "seed"
    spot_trace: Path | None = None
    """None: the shared default, if present."""
    spot_always_available: bool = False
    spot_values: SpotValues = SpotValues.preempted
    spot_speedup: float = 1.0
    spot_offset_s: float = 0.0
    spot_pool_replicas: int | None = None
    """None: the on-demand peak fleet."""
    policies: tuple[str, ...] = POLICIES
    step_s: float = _FLEET["step_s"]
    control_period_s: float = _FLEET["control_period_s"]
    latency_bound_s: float = _FLEET["latency_bound_s"]
    cold_start_s: float = _FLEET["cold_start_s"]
    billing_granularity_s: float = _FLEET["billing_granularity_s"]
    billing_minimum_s: float = _FLEET["billing_minimum_s"]
    preemption_notice_s: float = _FLEET["preemption_notice_s"]
    target_utilization: float = _FLEET["target_utilization"]
    max_spot_fraction: float = 0.7
    warmup_s: float = _FLEET["warmup_s"]
    rate_window_s: float = 60.0
    planner_headroom: float = 0.0
    planner_burst_quantile: float | None = 0.9
    """None: the planner sizes for the recent peak (`SpotLimits.burst_quantile`)."""
    planner_base_utilization: float = 1.0
    planner_level: bool = True
    """False: the planner sizes each tick's rate, not the sustained level."""
    planner_queue: bool = True
    """False: the planner's burst term reads the demand rate, not the queue-aware signal."""
    planner_base: PlannerBase | None = None
    """None: ``fraction`` when the preemption notice and the latency bound span the cold start
    (the queue carries the rest of the gap), else ``p50``."""
    oracle_utilization: float | None = None
    """None: the target utilization."""
    peak_replicas: int = 8
    load_scale: float | None = None
    out: Path | None = None
    progress: bool = True
    oracle_time_limit_s: float = ORACLE_TIME_LIMIT_S


@dataclass(slots=True)
class Backtest:
    """A finished run with everything the report needs."""

    options: BacktestOptions
    result: BacktestResult
    requests: int
    duration_s: float
    mean_input_tokens: float
    mean_output_tokens: float
    deployment: Deployment
    fleet: FleetModel
    load_scale: float
    load_scale_source: str
    spot: SpotTrace | None
    spot_available: list[int] | None
    spot_pool_replicas: int
    steps: int
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def _say(options: BacktestOptions, message: str) -> None:
    if options.progress:
        print(f"backtest: {message}", file=sys.stderr, flush=True)


def _demand(requests: list[Request], step_s: float, scale: float) -> list[float]:
    steps = max(1, math.ceil((requests[-1].arrival_s + 1e-9) / step_s))
    out = [0.0] * steps
    for r in requests:
        out[min(int(r.arrival_s // step_s), steps - 1)] += (
            r.input_tokens + r.output_tokens
        ) * scale
    return out


@contextmanager
def _c_stdout_to_stderr() -> Iterator[None]:
    """Send what C code prints on stdout to stderr meanwhile.

    HiGHS (in SciPy) prints "HighsMipSolverData::transformNewIntegerFeasibleSolution
    tmpSolver.run();" on stdout whatever its output options, which would corrupt
    `--output json` (ERGO-Code/HiGHS#2783, jump-dev/HiGHS.jl#312).
    """
    sys.stdout.flush()
    try:
        libc: ctypes.CDLL | None = ctypes.CDLL(None)
    except OSError:  # no C library to flush (not POSIX)
        libc = None
    try:
        saved = os.dup(1)
    except OSError:  # no stdout to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        if libc is not None:
            libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def _solve(
    program: OracleProgram, c: Any, constraints: Any, bounds: Any, time_limit_s: float
) -> tuple[Any, Any]:
    """The LP relaxation (for a bound) and the mixed-integer program."""
    import numpy as np
    from scipy.optimize import milp

    relaxed = milp(c, constraints=constraints, bounds=bounds)
    if relaxed.x is None:
        return relaxed, relaxed
    exact = milp(
        c,
        constraints=constraints,
        bounds=bounds,
        integrality=np.asarray(program.integrality),
        options={"time_limit": time_limit_s, "mip_rel_gap": 1e-4},
    )
    return relaxed, exact


def solve_oracle(
    program: OracleProgram, time_limit_s: float = ORACLE_TIME_LIMIT_S
) -> OracleSolution:
    """Solve the oracle's program with SciPy's HiGHS: the LP relaxation for a bound, then the
    mixed-integer program (or, if that finds no plan in time, the relaxation rounded up)."""
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint
    from scipy.sparse import csr_array

    rows, cols, vals = zip(*program.entries, strict=True)
    a = csr_array((vals, (rows, cols)), shape=(program.rows, program.variables))
    c = np.asarray(program.objective)
    constraints = LinearConstraint(a, np.asarray(program.row_lower), np.asarray(program.row_upper))
    bounds = Bounds(np.asarray(program.lower), np.asarray(program.upper))
    with _c_stdout_to_stderr():
        relaxed, exact = _solve(program, c, constraints, bounds, time_limit_s)
    if relaxed.x is None:
        raise InvalidInputError(
            "the oracle's program has no solution: no plan within the limits serves the demand "
            f"({relaxed.message})"
        )
    bound = float(relaxed.fun)
    if exact.x is not None:
        dual = getattr(exact, "mip_dual_bound", None)
        if dual is not None and math.isfinite(float(dual)):
            bound = max(bound, float(dual))
        fun = float(exact.fun)
        if exact.status == 0:
            state = "optimal"
        else:
            gap = (fun - bound) / fun if fun > 0 else 0.0
            state = f"best plan at the {time_limit_s:g} s limit, within {gap:.1%} of optimal"
        return OracleSolution(
            x=[float(v) for v in exact.x],
            objective_usd=float(exact.fun),
            lower_bound_usd=bound,
            method=f"mixed-integer program (HiGHS), {state}",
        )
    return OracleSolution(
        x=[float(v) for v in relaxed.x],
        objective_usd=float(relaxed.fun),
        lower_bound_usd=bound,
        method="LP relaxation rounded up (the integer program found no plan in time)",
    )


def run(options: BacktestOptions) -> Backtest:
    """Read the inputs, size the load, run every policy and (with `options.out`) write files."""
    requests = read_trace(options.trace)
    _say(options, f"{options.trace.name}: {len(requests):,} requests")
    dep = Deployment.of(options.model, options.gpu, options.tp, options.quant, options.engine)
    if not dep.fits():
        raise InvalidInputError(
            f"{dep.model.name} in {dep.quant.name} does not fit on {options.tp}× {dep.gpu.name} "
            "(try a larger --tp or a smaller --quant)"
        )
    mean_in = statistics.fmean(r.input_tokens for r in requests)
    mean_out = statistics.fmean(r.output_tokens for r in requests)
    shape_in, shape_out = max(1, round(mean_in)), max(1, round(mean_out))
    replica_tps = dep.serving(shape_in, shape_out).total_tokens_per_second
    warnings: list[str] = []
    if mean_in + mean_out > dep.model.max_context:
        warnings.append(
            f"the trace's mean request ({mean_in + mean_out:,.0f} tokens) is longer than "
            f"{dep.model.name}'s {dep.model.max_context:,}-token context; the capacity is the "
            "throughput model's at that shape (try --model llama-3.1-70b)"
        )
    sheet = price_sheet(options.prices)
    fleet = FleetModel(
        replica_tokens_per_second=replica_tps,
        gpus_per_replica=options.tp,
        on_demand_usd_per_gpu_hour=sheet.usd_per_gpu_hour(dep.gpu.name, CapacityType.ON_DEMAND),
        spot_usd_per_gpu_hour=sheet.usd_per_gpu_hour(dep.gpu.name, CapacityType.SPOT),
        step_s=options.step_s,
        control_period_s=options.control_period_s,
        latency_bound_s=options.latency_bound_s,
        cold_start_s=options.cold_start_s,
        billing_granularity_s=options.billing_granularity_s,
        billing_minimum_s=options.billing_minimum_s,
        preemption_notice_s=options.preemption_notice_s,
        target_utilization=options.target_utilization,
        warmup_s=options.warmup_s,
        rate_window_s=options.rate_window_s,
    )
    if options.peak_replicas < 1:
        raise InvalidInputError(f"--peak-replicas must be at least 1, got {options.peak_replicas}")
    raw = _demand(requests, fleet.step_s, 1.0)
    if fleet.warmup_steps >= len(raw):
        raise InvalidInputError(
            f"--warmup-s {options.warmup_s:g} leaves nothing of the {len(raw) * fleet.step_s:g} s "
            "trace to score"
        )
    raw_peak = sustained_peak_tokens_per_second(
        raw[fleet.warmup_steps :], fleet.step_s, fleet.latency_bound_s
    )
    if options.load_scale is not None:
        if not options.load_scale > 0 or not math.isfinite(options.load_scale):
            raise InvalidInputError(f"--load-scale must be positive, got {options.load_scale}")
        scale = options.load_scale
        source = "--load-scale"
    elif raw_peak > 0:
        # The sustained peak then needs exactly `peak_replicas` at the target utilization.
        scale = options.peak_replicas * fleet.usable_tokens_per_second / raw_peak * (1 - 1e-6)
        source = f"auto: the on-demand peak fleet is {options.peak_replicas} replicas"
    else:
        scale, source = 1.0, "the trace has no tokens"
    demand = [d * scale for d in raw]
    peak_replicas = max(1, fleet.replicas_for(raw_peak * scale))
    pool = options.spot_pool_replicas if options.spot_pool_replicas is not None else peak_replicas
    if pool < 0:
        raise InvalidInputError(f"--spot-pool must not be negative, got {pool}")
    spot: SpotTrace | None = None
    available: list[int] | None = None
    if not options.spot_always_available:
        path = options.spot_trace or find_shared_data(*DEFAULT_SPOT_TRACE)
        if path is None:
            warnings.append(
                "no spot trace given and the shared default was not found: spot never fails"
            )
        else:
            spot = read_spot_trace(path)
            available = spot_availability(
                spot.values,
                spot.gap_s,
                spot.nodes,
                pool,
                len(demand),
                fleet.step_s,
                values_are_preempted=options.spot_values is SpotValues.preempted,
                speedup=options.spot_speedup,
                offset_s=options.spot_offset_s,
            )
            covered = options.spot_offset_s + options.spot_speedup * len(demand) * fleet.step_s
            if covered > spot.gap_s * len(spot.values):
                warnings.append(
                    f"the backtest reads {covered / 3600:,.1f} h of a {spot.path.name} that "
                    f"lasts {spot.gap_s * len(spot.values) / 3600:,.1f} h: it wraps around"
                )
    settings = BacktestSettings(
        fleet=fleet,
        max_spot_fraction=options.max_spot_fraction,
        planner_headroom=options.planner_headroom,
        planner_burst_quantile=options.planner_burst_quantile,
        planner_base_utilization=options.planner_base_utilization,
        planner_base=options.planner_base,
        planner_level=options.planner_level,
        planner_queue=options.planner_queue,
        oracle_utilization=options.oracle_utilization,
    )
    _say(
        options,
        f"{len(demand)} steps of {fleet.step_s:g} s, load × {scale:.4g} ({source}), "
        f"a replica serves {replica_tps:,.0f} tokens/s",
    )
    result = run_backtest(
        demand,
        settings,
        available,
        lambda program: solve_oracle(program, options.oracle_time_limit_s),
        options.policies,
        progress=lambda message: _say(options, message),
    )
    bt = Backtest(
        options=options,
        result=result,
        requests=len(requests),
        duration_s=requests[-1].arrival_s,
        mean_input_tokens=mean_in,
        mean_output_tokens=mean_out,
        deployment=dep,
        fleet=fleet,
        load_scale=scale,
        load_scale_source=source,
        spot=spot,
        spot_available=available,
        spot_pool_replicas=pool,
        steps=len(demand),
        warnings=warnings,
    )
    if options.out is not None:
        write_outputs(bt, options.out)
    return bt


def report(bt: Backtest) -> dict[str, Any]:
    """The JSON document (`--output json` and summary.json)."""
    r, o, f = bt.result, bt.options, bt.fleet
    demand_tokens = next(iter(r.policies.values())).demand_tokens if r.policies else 0.0
    avail = bt.spot_available
    market: dict[str, Any] | None = None
    if avail is not None:
        market = {
            "file": str(bt.spot.path) if bt.spot else None,
            "nodes": bt.spot.nodes if bt.spot else None,
            "pool_replicas": bt.spot_pool_replicas,
            "min_available_replicas": min(avail) if avail else None,
            "mean_available_ratio": (
                sum(avail) / len(avail) / bt.spot_pool_replicas
                if avail and bt.spot_pool_replicas
                else None
            ),
            "drops": sum(1 for a, b in itertools.pairwise(avail) if b < a),
        }
    oracle = None
    if r.oracle is not None:
        oracle = {
            "method": r.oracle.method,
            "program_objective_usd": r.oracle.objective_usd,
            "lower_bound_usd": r.oracle.lower_bound_usd,
        }
    return {
        "trace": str(o.trace),
        "requests": bt.requests,
        "duration_s": bt.duration_s,
        "mean_input_tokens": bt.mean_input_tokens,
        "mean_output_tokens": bt.mean_output_tokens,
        "model": bt.deployment.model.name,
        "gpu": bt.deployment.gpu.name,
        "tp": o.tp,
        "quant": bt.deployment.quant.name,
        "engine": bt.deployment.engine.name,
        "replica_tokens_per_second": f.replica_tokens_per_second,
        "prices": {
            "sheet": o.prices,
            "on_demand_usd_per_gpu_hour": f.on_demand_usd_per_gpu_hour,
            "spot_usd_per_gpu_hour": f.spot_usd_per_gpu_hour,
        },
        "load_scale": bt.load_scale,
        "load_scale_source": bt.load_scale_source,
        "demand": {
            "tokens": demand_tokens,
            "mean_tokens_per_second": demand_tokens / ((bt.steps - f.warmup_steps) * f.step_s),
            "median_tokens_per_second": r.median_tokens_per_second,
            "sustained_peak_tokens_per_second": r.sustained_peak_tokens_per_second,
        },
        "fleets": {
            "on_demand_peak_replicas": r.peak_replicas,
            "seed_base_replicas": r.seed_base_replicas,
            "seed_spot_replicas": r.seed_spot_replicas,
            "max_spot_replicas": r.max_spot_replicas,
        },
        "options": {
            "step_s": f.step_s,
            "control_period_s": f.control_period_s,
            "latency_bound_s": f.latency_bound_s,
            "cold_start_s": f.cold_start_s,
            "billing_granularity_s": f.billing_granularity_s,
            "billing_minimum_s": f.billing_minimum_s,
            "preemption_notice_s": f.preemption_notice_s,
            "target_utilization": f.target_utilization,
            "warmup_s": f.warmup_steps * f.step_s,
            "rate_window_s": f.rate_window_s,
            "planner_headroom": r.settings.planner_headroom,
            "planner_burst_quantile": r.settings.planner_burst_quantile,
            "planner_base_utilization": r.settings.planner_base_utilization,
            "planner_base": r.settings.base,
            "planner_level": r.settings.planner_level,
            "planner_queue": r.settings.planner_queue,
            "oracle_utilization": r.settings.oracle_share,
            "oracle_time_limit_s": o.oracle_time_limit_s,
            "max_spot_fraction": r.settings.max_spot_fraction,
            "peak_replicas": o.peak_replicas,
            "load_scale": o.load_scale,
            "preemption_trace": str(bt.spot.path) if bt.spot else None,
            "preemption_values": o.spot_values.value,
            "preemption_speedup": o.spot_speedup,
            "preemption_offset_s": o.spot_offset_s,
            "spot_pool_replicas": bt.spot_pool_replicas,
            "policies": list(o.policies),
        },
        "spot_market": market,
        "policies": summary(r),
        "oracle": oracle,
        "goals": dict(goals(r)),
        "warnings": bt.warnings,
        "files": [str(p) for p in bt.files],
    }


def write_outputs(bt: Backtest, out: Path) -> None:
    """summary.json, capacity.png (demand vs capacity by type, per policy), cumulative_cost.png."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        plots = write_plots(bt, out)
        bt.files = [out / "summary.json", *plots]
        doc = json.dumps(jsonable(report(bt)), indent=2, allow_nan=False)
        (out / "summary.json").write_text(doc + "\n", encoding="utf-8")
    except OSError as exc:
        raise BacktestError(f"cannot write to {out}: {exc.strerror or exc}") from exc
    _say(bt.options, f"wrote {', '.join(p.name for p in bt.files)} to {out}")


def write_plots(bt: Backtest, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = bt.result
    tps = bt.fleet.replica_tokens_per_second
    names = list(r.policies)
    title = f"{bt.options.trace.name}: {bt.deployment.model.name} on {bt.options.tp}× " + (
        f"{bt.deployment.gpu.name}, load × {bt.load_scale:.3g}"
    )
    fig, axes = plt.subplots(len(names), 1, figsize=(11, 2.3 * len(names) + 0.8), sharex=True)
    axes_list = list(axes) if len(names) > 1 else [axes]
    for ax, name in zip(axes_list, names, strict=True):
        s = r.policies[name].series
        minutes = [i * bt.fleet.step_s / 60 for i in range(len(s.demand_tokens_per_second))]
        od = [n * tps for n in s.on_demand_ready]
        sp = [n * tps for n in s.spot_ready]
        ax.stackplot(
            minutes,
            od,
            sp,
            labels=["on-demand capacity", "spot capacity"],
            colors=["#4c72b0", "#55a868"],
            alpha=0.55,
            step="post",
        )
        ax.step(
            minutes, s.demand_tokens_per_second, where="post", color="black", lw=0.7, label="demand"
        )
        warmup_min = bt.fleet.warmup_steps * bt.fleet.step_s / 60
        if warmup_min > 0:
            ax.axvspan(
                0, warmup_min, color="#999999", alpha=0.15, lw=0, label="warm-up (not scored)"
            )
        uses_spot = any(s.spot_ready) or any(s.spot_starting)
        if s.spot_available is not None and uses_spot:
            market = [od_i + a * tps for od_i, a in zip(od, s.spot_available, strict=True)]
            ax.step(
                minutes,
                market,
                where="post",
                color="#c44e52",
                lw=0.8,
                ls=":",
                label="on-demand + spot the market gives",
            )
        short = [m for m, x in zip(minutes, s.shortfall_tokens, strict=True) if x > 0]
        if short:
            ax.plot(short, [0] * len(short), "|", color="#c44e52", ms=10, label="shortfall")
        res = r.policies[name]
        ax.set_title(
            f"{name}: ${res.cost_usd:,.2f}, shortfall {res.shortfall_token_ratio:.2%}, "
            f"{res.scale_actions} scale actions, {res.preemptions} preemptions",
            fontsize=9,
            loc="left",
        )
        ax.set_ylabel("tokens/s")
        ax.grid(alpha=0.3)
    axes_list[0].legend(loc="upper right", fontsize=7, ncol=5)
    axes_list[-1].set_xlabel("minutes into the trace")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    capacity = out / "capacity.png"
    fig.savefig(capacity, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name in names:
        s = r.policies[name].series
        minutes = [i * bt.fleet.step_s / 60 for i in range(len(s.cumulative_usd))]
        ax.plot(minutes, s.cumulative_usd, label=f"{name} (${r.policies[name].cost_usd:,.2f})")
    ax.set_xlabel("minutes into the trace")
    ax.set_ylabel("cumulative cost, USD")
    ax.set_title(f"Cumulative cost per policy: {bt.options.trace.name}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    cost = out / "cumulative_cost.png"
    fig.savefig(cost, dpi=110)
    plt.close(fig)
    return [capacity, cost]


#: The goal against the oracle's proven bound, and its text when the solve did not decide it
#: (`goals`: None with an oracle).
BOUND_GOAL = "planner_within_10pct_of_oracle_bound"
UNDECIDED = "undecided: within 10% of the plan, not of the bound (raise --oracle-time-limit-s)"


def _goal(key: str, value: bool | None, oracle_ran: bool) -> str:
    """A goal's cell: pass, fail, or "—" for a goal whose policies did not run (the bound
    goal's None after an oracle run is UNDECIDED)."""
    if value is None:
        return UNDECIDED if key == BOUND_GOAL and oracle_ran else "—"
    return "pass" if value else "fail"


def render(bt: Backtest, output: str) -> None:
    doc = report(bt)
    r = bt.result

    def tables() -> list[Any]:
        setup = [
            (
                "trace",
                f"{bt.options.trace.name} ({bt.requests:,} requests, "
                f"{bt.duration_s / 60:,.0f} min)",
            ),
            (
                "replica",
                f"{bt.deployment.model.name} on {bt.options.tp}× {bt.deployment.gpu.name} "
                f"({bt.deployment.engine.name}): "
                f"{num(bt.fleet.replica_tokens_per_second)} tokens/s",
            ),
            (
                "prices $/GPU-h",
                f"on demand {money(bt.fleet.on_demand_usd_per_gpu_hour)}, "
                f"spot {money(bt.fleet.spot_usd_per_gpu_hour)}",
            ),
            ("load scale", f"× {bt.load_scale:.4g} ({bt.load_scale_source})"),
            (
                "sustained peak",
                f"{num(r.sustained_peak_tokens_per_second)} tokens/s → "
                f"{r.peak_replicas} replicas at {pct(bt.fleet.target_utilization, 0)}",
            ),
            (
                "P50 demand",
                f"{num(r.median_tokens_per_second)} tokens/s → seed base "
                f"{r.seed_base_replicas} + spot {r.seed_spot_replicas}",
            ),
            ("planner base", _BASE_RULES[r.settings.base]),
            (
                "planner level",
                f"the median rate over the {SCALE_DOWN_WINDOW_S:g} s scale-down window "
                f"(a fall: over the latest {FALL_SAMPLES} rates)"
                if r.settings.planner_level
                else "each tick's rate (--no-planner-level)",
            ),
            (
                "planner bursts",
                "the queue-aware signal: peak 30/60/120 s rates served within the latency "
                "bound, the rate while spot is missing or under notice"
                if r.settings.planner_queue
                else "the rate over the rate window (--no-planner-queue)",
            ),
            ("spot market", bt.spot.path.name if bt.spot else "always available"),
            (
                "time",
                f"step {bt.fleet.step_s:g} s, control {bt.fleet.control_period_s:g} s, "
                f"latency bound {bt.fleet.latency_bound_s:g} s, cold start "
                f"{bt.fleet.cold_start_s:g} s, preemption notice "
                f"{bt.fleet.preemption_notice_s:g} s, billing {bt.fleet.billing_granularity_s:g} s "
                f"(min {bt.fleet.billing_minimum_s:g} s)",
            ),
            (
                "observed, scored",
                f"rate over {bt.fleet.rate_window_s:g} s at each tick; the first "
                f"{bt.fleet.warmup_steps * bt.fleet.step_s:g} s are a warm-up, not scored",
            ),
        ]
        if bt.spot:
            setup.append(
                (
                    "spot replay",
                    f"values = {bt.options.spot_values.value}, × "
                    f"{bt.options.spot_speedup:g} from {bt.options.spot_offset_s:g} s, pool "
                    f"{bt.spot_pool_replicas} replicas",
                )
            )
        out = [key_value_table("Backtest", setup)]
        rows = []
        for name, p in doc["policies"].items():
            rows.append(
                [
                    name,
                    money(p["cost_usd"]),
                    money(p["usd_per_million_tokens"], 3),
                    pct(p["shortfall_token_ratio"], 2),
                    str(p["scale_actions"]),
                    str(p["preemptions"]),
                    pct(p["savings_vs_on_demand_peak_ratio"]),
                ]
            )
        out.append(
            grid_table(
                "Policies (saved: against on_demand_peak)",
                ["policy", "cost", "$/1M", "shortfall", "actions", "preempted", "saved"],
                rows,
            )
        )
        ran = r.oracle is not None
        extra = [(k.replace("_", " "), _goal(k, v, ran)) for k, v in doc["goals"].items()]
        if r.oracle is not None:
            extra.append(("oracle", r.oracle.method))
            extra.append(("oracle lower bound", money(r.oracle.lower_bound_usd)))
        extra += [("warning", w) for w in bt.warnings]
        extra += [("wrote", str(p)) for p in bt.files]
        out.append(key_value_table("Goals and notes", extra))
        return out

    emit(output, doc, tables)


def backtest_command(options: BacktestOptions, output: str) -> None:
    """The `llmcost backtest` command body."""
    render(run(options), output)
