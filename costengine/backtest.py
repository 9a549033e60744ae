"""Backtest of spot policies: a real request trace replayed through a capacity-level fleet model.

Pure: no files, no clock, no solver. The caller (`costoperator.backtest`, the `llmcost backtest`
command) reads the traces, passes the oracle's solver in, and draws the plots.

The fleet model ("fluid", one number per step)
----------------------------------------------
- Time runs in fixed steps of ``step_s`` (default 10 s). Demand is the tokens (prompt + generated)
  of the requests arriving in each step.
- A ready replica serves ``replica_tokens_per_second × step_s`` tokens a step: the throughput
  model's continuous-batching rate at the trace's mean request shape
  (`costengine.throughput.Deployment.serving`). Prompt and generated tokens are counted alike; the
  mix is the trace's mean mix, so a step heavier in prompts than the mean is charged as if it had
  the mean mix (prompt tokens are cheaper to serve than generated ones, so such steps are charged
  slightly too much, and steps heavier in generated tokens slightly too little).
- Work is served first come, first served. Work that arrived in step ``s`` may be served in steps
  ``s … s + k − 1`` with ``k = ceil(latency_bound_s ÷ step_s)``; what is still queued after that
  is **shortfall**: dropped and counted, never served. Work still queued when the trace ends is
  within its bound and counts as neither.
- A replica asked for at a step serves ``ceil(cold_start_s ÷ step_s)`` steps later. The default
  cold start, 120 s, is an assumption (pulling a 70B model's weights and loading them onto the
  GPUs takes minutes; the seed calls more than 5 minutes spot-hostile).
- Billing: every replica is billed from the step it is asked for until it is released or
  preempted, cold start included; its billed time is rounded up to ``billing_granularity_s`` and
  is at least ``billing_minimum_s``. The defaults (60 s and 60 s) bill by the started minute; EC2
  bills Linux instances per second with a 60 s minimum (``billing_granularity_s = 1``).
- Capacity types: ``on_demand`` and ``spot``. A policy sets a desired count of each at every
  control tick (``control_period_s``, default 30 s, the operator's default tick); between ticks
  the fleet converges on it each step, as a Deployment with a node autoscaler does: replicas
  beyond the desired count are released (starting ones first, then the newest), missing ones are
  asked for. A change of a desired count is a **scale action**.
- Spot: ``spot_available[t]`` is how many spot replicas the market gives at step ``t``. When it
  drops below the spot replicas that exist (ready or starting), the newest are **preempted**
  (lost at once, billed until then; in-flight work is assumed drained during the notice, so
  none is redone). While it is below the desired count, no spot replica can be started;
  replacements start when it recovers.
- Preemption notice: the market announces a preemption ``preemption_notice_s`` ahead (default
  120 s, AWS's two-minute Spot interruption notice; GCP and Azure give 30 s, 0 for none), and
  the replica serves until it goes. Policies see how many of their spot replicas are under
  notice; a replacement asked for at the notice serves about when the replica goes if the notice
  is at least a cold start.
- Observation: at each control tick a policy sees the arrival rate over the trailing
  ``rate_window_s`` (default 60 s, Prometheus' ``rate(x[1m])``, the shortest window the policy
  CRD allows), the rates of earlier ticks, the queue, its own replicas (desired, ready,
  starting), the preemptions and spot replica-seconds so far and the spot replicas under a
  preemption notice; never the market or the future beyond the notice. Also the queue-aware
  burst signal of each tick (`costengine.spotplan.serviceable_rate` of the peak 30, 60 and
  120 s rates of the windows ending in the last control period, at the step's resolution: what
  the operator's `queries.burst_query` reads at 15 s).
- Start and warm-up: every policy's first decision is made at time 0 from the first step's
  demand (what the fleet was serving just before the trace began) and that fleet is warm: ready
  at once. A recorded trace starts abruptly (the Azure conversation trace ramps from 0.8 to 7
  thousand tokens/s in its first minute; the code trace is silent for its first 2.5 minutes),
  so the first ``warmup_s`` (default 300 s, whole control periods) are simulated (policies
  observe, learn and scale) but not scored: at its end the queue is emptied and billing, demand,
  shortfall, scale actions and preemptions start counting; replicas that exist then are billed
  from then. Static fleets are sized, and the oracle plans, on the scored part only.

The policies
------------
- ``on_demand_peak``: all on demand, a static fleet sized for the trace's sustained peak (the
  least constant capacity that serves the whole trace within the latency bound, found by
  bisection) at the target utilization. Zero shortfall by construction. Sized with hindsight.
- ``seed_hybrid``: the seed's "Spot Instances & Preemptible GPUs" pattern: a static on-demand
  base sized for the P50 of the trace's control-period demand (at the target utilization) and a
  spot fleet of ``peak − base`` replicas (the seed's "spot_fleet = 0..8 … autoscaled", run part
  of the time: its duty model). The spot fleet is switched on whole when the observed demand
  exceeds the base's capacity and off when it has stayed within it for 300 s (the Kubernetes
  HPA's default scale-down stabilization). Sized with hindsight, switched without it.
- ``reactive``: queue-driven scaling without cost awareness, as KEDA scales one on-demand
  Deployment through the HPA: desired = ceil((observed rate + queue ÷ period) ÷ usable replica
  capacity), applied by `costengine.spotplan.govern` with the HPA's defaults (up to 4 replicas
  per 15 s, 300 s scale-down stabilization). On demand only.
- ``planner`` (ours): each tick `costengine.spotplan.plan_spot` on the observed history (the
  arrival rate over the trailing ``rate_window_s`` at each past tick of the last hour, as the
  operator keeps it, never the future) with a
  recent-peak horizon of its reaction time, a tick and a cold start (at least the rate window:
  a rise just after a tick is seen at the next, whose replicas serve a cold start later), and a
  sustained level over the scale-down window (the median of its ticks: the target
  utilization's slack is kept over that level, not over each noisy sample; a rise past the
  slack counts as it is, a fall once the median of the latest three ticks shows it), as the
  operator calls it, with the
  operator's limits (target utilization, the burst margin at its P90 and no extra headroom,
  the spot fraction and a spot cap of the on-demand peak fleet). Its burst term reads the
  queue-aware burst signal within the latency bound (``planner_queue``), except while spot
  replicas are missing or under notice, when it reads the rate (the queue is then the gap's).
  The driver adds five mechanisms around it, all on past data and the market's preemption
  notices:
  1. The on-demand base (rules ``p50`` and ``market``, mechanism 5) is the plan's
     ``recommended_on_demand_base`` (the P50 of that hour) computed with replicas
     counted at ``base_utilization`` of their throughput (default 1: a second `plan_spot` call
     with ``target_utilization = 1``). The base carries typical traffic; the utilization
     margin and the bursts go to spot. The needed fleet, and so the margin, is the same as with
     a base at the target utilization; only its split changes. The seed's own example sizes the
     base below the average need (4 GPUs for an average of 6).
  2. The base is raised until the plan's spot carries the rest of the needed fleet: past the
     spot limits (count and fraction), or when `plan_spot` recommends no spot (refused, or not
     worth its interruptions), asking for spot adds no capacity.
  3. Spot the market does not give (preempted, under a preemption notice, or not obtainable:
     pending replicas) is covered on demand at once and for one cold start after the market
     gives it back, then released; the cover never takes on demand past the needed fleet.
     Make before break: on demand that spot is to replace is released only as spot replicas
     become ready.
  4. Spot is priced with the market as seen so far: preemptions per spot replica-hour and the
     on-demand cover each took (cover for spot that could not be started counts too), decayed
     with a 1-hour half-life, the planner's defaults as a prior; `plan_spot` then recommends no
     spot when covering its interruptions costs more than on demand, until that fades.
  5. The base rule (``planner_base``): ``p50`` is mechanism 1's P50 base; ``market`` scales it
     by the observed interruption rate over the configured prior (at most 1), so a market that
     has run without preemptions lets the base fall towards what the spot fraction requires and
     the first preemption restores it; ``fraction`` drops it: on demand is only what mechanism
     2 requires (the spot fraction, spot's limits, spot not worth its interruptions). The P50
     base guards typical traffic for the gap between a preemption and its cover serving; a
     notice of a cold start or more closes that gap (mechanism 3 asks for the cover at the
     notice), and the queue carries what is left of it up to the latency bound, so
     ``fraction`` is the default when the notice and the latency bound span the cold start
     (`FleetModel.notice_covers_cold_start`) and ``p50`` otherwise. Without such a notice
     ``market`` and ``fraction`` are cheaper in a calm market and short of tokens when a storm
     follows one (BENCHMARKS.md). ``operator`` is the live operator's shape, which scales only
     the spot workload: the on-demand fleet stays at seed_hybrid's base (the P50 of the
     control periods, the on-demand Deployment a user sizes for typical traffic) with none of
     mechanisms 1-4 (no cover, no raise, the configured interruption rate), and spot is the
     plan beside it plus a spot replacement for each noticed replica the plan keeps
     (`costengine.spotplan.notice_replacements`, as `llmcost run` asks for at a notice taint;
     this market is one pool, so a replacement starts only where it has room).
     ``operator-p50`` and ``operator-fraction`` are the live operator with
     ``spec.spot.onDemandTargetRef`` (``onDemandBase`` P50 or Fraction): both halves from
     `costengine.spotplan.plan_fleet` each tick (the base, raised, cover for spot the market
     has not given or is under notice, make before break) with the configured interruption rate,
     each through its governor, spot held at once to the fraction of the on-demand fleet.
  The base and spot counts each go through `costengine.spotplan.govern` (operator defaults: +2
  per 60 s, 300 s stabilization), so a flapping signal changes replicas a few times an hour at
  most (RELIABILITY 9); the spot fraction is re-applied after governing, as a safety bound.
- ``oracle``: perfect foresight. A mixed-integer program (built here, solved by the caller)
  chooses on-demand and spot replicas per control period, serving all demand within the latency
  bound (the queue is modelled per step) with no replica busier than the target utilization,
  at least one on-demand replica, within the planner's limits (spot ≤ ``max_spot_replicas``
  and the ``max_spot_fraction``; set 1 for no bound) and the spot the market gives over each
  period and the cold start before it. A replica added between periods costs its cold start.
  Every other policy is sized at the target utilization, so a plan that runs replicas busier
  is not one the operator would choose; ``oracle_utilization = 1`` gives the bound of a fleet
  run 100% busy instead. Its plan is then replayed through the same fleet model (which serves
  up to 100%), each replica asked for one cold start ahead, so its cost and shortfall are
  measured like the others'. The solver's proven lower bound on the program (no billing
  round-up) is reported as ``lower_bound_usd``: it bounds every policy that serves all demand
  within the same limits and utilization, acting at the same ticks. A policy that drops demand,
  or runs replicas busier than the oracle may, can cost less than the oracle.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from costengine.errors import (
    InvalidInputError,
    require_non_negative,
    require_positive,
    require_ratio,
)
from costengine.spotplan import (
    BURST_WINDOWS_S,
    PLANNER_HISTORY_S,
    GovernorLimits,
    GovernorState,
    ReplicaEconomics,
    SpotLimits,
    SpotPlan,
    govern,
    notice_replacements,
    on_demand_needed,
    plan_fleet,
    plan_spot,
    serviceable_rate,
    spot_fraction_bound,
)
from costengine.tenancy import _quantile

POLICIES = ("on_demand_peak", "seed_hybrid", "reactive", "planner", "oracle")
"""Policy names, in the order they are reported."""

PlannerBase = Literal["p50", "market", "fraction", "operator", "operator-p50", "operator-fraction"]
PLANNER_BASES: tuple[PlannerBase, ...] = (
    "p50",
    "market",
    "fraction",
    "operator",
    "operator-p50",
    "operator-fraction",
)
"""The planner's on-demand base rules (the module, mechanism 5)."""

SECONDS_PER_HOUR = 3600.0
_EPS = 1e-9
_RESIDUE_TOKENS = 1e-6
"""Queued work below this many tokens is float noise, not work."""

HPA_SCALE_DOWN_STABILIZATION_S = 300.0
"""Kubernetes HPA default `behavior.scaleDown.stabilizationWindowSeconds`."""
HPA_SCALE_UP_PODS_PER_PERIOD = 4
HPA_SCALE_UP_PERIOD_S = 15.0
"""Kubernetes HPA default scale-up policy: at most 4 pods (or 100%) per 15 s."""


# --- The fleet model --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetModel:
    """What one replica serves and costs, and the rules of time, latency, start-up and billing."""

    replica_tokens_per_second: float
    """Prompt + generated tokens/s one replica serves when busy."""
    gpus_per_replica: float
    on_demand_usd_per_gpu_hour: float
    spot_usd_per_gpu_hour: float
    step_s: float = 10.0
    control_period_s: float = 30.0
    latency_bound_s: float = 30.0
    cold_start_s: float = 120.0
    billing_granularity_s: float = 60.0
    billing_minimum_s: float = 60.0
    target_utilization: float = 0.7
    """Share of a replica's throughput the sizing rules plan for; the fleet serves up to 100%."""
    warmup_s: float = 300.0
    """Simulated but not scored, rounded up to whole control periods (see the module)."""
    preemption_notice_s: float = 120.0
    """How long before the market takes a spot replica back policies are told: AWS's Spot
    interruption notice is two minutes (GCP and Azure give 30 s); 0: no notice."""
    rate_window_s: float = 60.0
    """Policies observe the arrival rate over this trailing window (Prometheus' `rate(x[w])`;
    the policy CRD's shortest window, four 15 s scrapes)."""

    def __post_init__(self) -> None:
        require_positive("replica_tokens_per_second", self.replica_tokens_per_second)
        require_positive("gpus_per_replica", self.gpus_per_replica)
        require_non_negative("on_demand_usd_per_gpu_hour", self.on_demand_usd_per_gpu_hour)
        require_non_negative("spot_usd_per_gpu_hour", self.spot_usd_per_gpu_hour)
        require_positive("step_s", self.step_s)
        require_positive("control_period_s", self.control_period_s)
        ratio = self.control_period_s / self.step_s
        if abs(ratio - round(ratio)) > 1e-6:
            raise InvalidInputError(
                f"control_period_s ({self.control_period_s:g}) must be a whole number of steps "
                f"of {self.step_s:g} s"
            )
        require_positive("latency_bound_s", self.latency_bound_s)
        require_non_negative("cold_start_s", self.cold_start_s)
        require_positive("billing_granularity_s", self.billing_granularity_s)
        require_non_negative("billing_minimum_s", self.billing_minimum_s)
        require_ratio("target_utilization", self.target_utilization)
        require_non_negative("warmup_s", self.warmup_s)
        require_positive("rate_window_s", self.rate_window_s)
        require_non_negative("preemption_notice_s", self.preemption_notice_s)

    @property
    def steps_per_period(self) -> int:
        return round(self.control_period_s / self.step_s)

    @property
    def warmup_steps(self) -> int:
        """Steps before scoring starts: whole control periods covering ``warmup_s``."""
        periods = math.ceil(self.warmup_s / self.control_period_s - _EPS)
        return max(0, periods) * self.steps_per_period

    @property
    def deadline_steps(self) -> int:
        """k: work arriving in step s may be served in steps s … s + k − 1."""
        return max(1, math.ceil(self.latency_bound_s / self.step_s - _EPS))

    @property
    def cold_start_steps(self) -> int:
        return math.ceil(self.cold_start_s / self.step_s - _EPS)

    @property
    def notice_steps(self) -> int:
        return math.ceil(self.preemption_notice_s / self.step_s - _EPS)

    @property
    def notice_covers_cold_start(self) -> bool:
        """A replica asked for at a preemption notice serves before the work the preempted one
        leaves has waited past the latency bound: the notice and the bound span the cold
        start. The queue carries a gap of up to the bound between the preemption and the cover
        serving; with a longer gap that work is dropped."""
        return self.preemption_notice_s + self.latency_bound_s >= self.cold_start_s

    @property
    def replica_tokens_per_step(self) -> float:
        return self.replica_tokens_per_second * self.step_s

    @property
    def usable_tokens_per_second(self) -> float:
        """A replica's throughput at the target utilization: what sizing rules divide by."""
        return self.replica_tokens_per_second * self.target_utilization

    def usd_per_replica_hour(self, spot: bool) -> float:
        price = self.spot_usd_per_gpu_hour if spot else self.on_demand_usd_per_gpu_hour
        return price * self.gpus_per_replica

    def billed_s(self, lifetime_s: float) -> float:
        """Seconds billed for a replica that existed `lifetime_s` seconds."""
        g = self.billing_granularity_s
        rounded = math.ceil(lifetime_s / g - _EPS) * g
        return max(rounded, self.billing_minimum_s)

    def replicas_for(self, tokens_per_second: float) -> int:
        """Replicas whose usable capacity covers `tokens_per_second` (0 for no demand)."""
        if tokens_per_second <= 0:
            return 0
        return max(1, math.ceil(tokens_per_second / self.usable_tokens_per_second - _EPS))


# --- Demand and availability ------------------------------------------------------------------


def demand_per_step(
    arrivals: Sequence[tuple[float, float]], step_s: float, duration_s: float | None = None
) -> list[float]:
    """Tokens arriving in each step, from (arrival time s, tokens) pairs.

    The steps cover ``duration_s`` (default: up to the last arrival).
    """
    require_positive("step_s", step_s)
    if not arrivals:
        return []
    end = duration_s if duration_s is not None else max(t for t, _ in arrivals) + _EPS
    steps = max(1, math.ceil(end / step_s - _EPS))
    out = [0.0] * steps
    for t, tokens in arrivals:
        require_non_negative("arrival time", t)
        require_non_negative("tokens", tokens)
        out[min(int(t // step_s), steps - 1)] += tokens
    return out


def _drain(queue: deque[list[float]], capacity: float) -> float:
    """Serve up to `capacity` tokens first come, first served; return what was served."""
    served = 0.0
    while queue and capacity > 0:
        head = queue[0]
        take = min(head[1], capacity)
        head[1] -= take
        capacity -= take
        served += take
        if head[1] <= _RESIDUE_TOKENS:
            queue.popleft()
    return served


def _expire(queue: deque[list[float]], step: int, deadline_steps: int) -> float:
    """Drop work that can no longer be served within its bound; return the tokens dropped."""
    dropped = 0.0
    while queue and queue[0][0] <= step - deadline_steps + 1:
        dropped += queue.popleft()[1]
    return dropped


def constant_capacity_shortfall(
    demand_tokens: Sequence[float], tokens_per_step: float, deadline_steps: int
) -> float:
    """Tokens dropped by a constant capacity of `tokens_per_step` (the fluid queue above)."""
    queue: deque[list[float]] = deque()
    dropped = 0.0
    for t, d in enumerate(demand_tokens):
        if d > 0:
            queue.append([float(t), d])
        _drain(queue, tokens_per_step)
        dropped += _expire(queue, t, deadline_steps)
    return dropped


def sustained_peak_tokens_per_second(
    demand_tokens: Sequence[float], step_s: float, latency_bound_s: float
) -> float:
    """The least constant capacity (tokens/s) that serves every step's demand within the bound.

    A burst shorter than the latency bound can be spread over it, so this is below the peak
    step's rate for bursty traces. Bisection on the fluid queue to a relative 1e-9; the result
    is on the feasible side.
    """
    require_positive("step_s", step_s)
    if not demand_tokens or max(demand_tokens) <= 0:
        return 0.0
    k = max(1, math.ceil(latency_bound_s / step_s - _EPS))
    total = sum(demand_tokens)
    lo = total / (len(demand_tokens) + k - 1)  # infeasible or exact: all work in the window
    hi = max(demand_tokens)  # every step's arrivals served within the step
    tolerance = max(total, 1.0) * 1e-12
    while hi - lo > hi * 1e-9:
        mid = (lo + hi) / 2
        if constant_capacity_shortfall(demand_tokens, mid, k) > tolerance:
            lo = mid
        else:
            hi = mid
    return hi / step_s


def spot_availability(
    values: Sequence[float],
    gap_s: float,
    nodes: int,
    pool_replicas: int,
    steps: int,
    step_s: float,
    *,
    values_are_preempted: bool = True,
    speedup: float = 1.0,
    offset_s: float = 0.0,
) -> list[int]:
    """Spot replicas the market gives at each step, from a spot preemption/availability trace.

    `values` are the trace's ticks, `gap_s` apart, for a pool of `nodes` instances. With
    `values_are_preempted` a value counts the instances preempted (unavailable); otherwise the
    ones available. The share available scales to `pool_replicas` (rounded down), so a 1-node
    trace switches the whole pool and a 4-node trace moves it in quarters. Trace time
    ``offset_s + speedup × t`` is used at backtest time ``t``; past the trace's end it wraps.
    """
    require_positive("gap_s", gap_s)
    require_positive("nodes", nodes)
    require_non_negative("pool_replicas", pool_replicas)
    require_positive("speedup", speedup)
    require_non_negative("offset_s", offset_s)
    if not values:
        raise InvalidInputError("the spot trace has no ticks")
    out = []
    for t in range(steps):
        tick = int((offset_s + speedup * t * step_s) // gap_s) % len(values)
        value = min(max(float(values[tick]), 0.0), float(nodes))
        available = nodes - value if values_are_preempted else value
        out.append(math.floor(available / nodes * pool_replicas + _EPS))
    return out


# --- Observations and policies ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetCount:
    desired: int
    ready: int
    starting: int

    @property
    def existing(self) -> int:
        return self.ready + self.starting


@dataclass(frozen=True, slots=True)
class Observation:
    """What a policy sees at a control tick: the past only."""

    now_s: float
    demand_tokens_per_second: float
    """Arrivals over the trailing rate window (at time 0: the first step's rate)."""
    history_tokens_per_second: tuple[float, ...]
    """The rates observed at earlier ticks of the last hour (`PLANNER_HISTORY_S`, as the
    operator keeps), oldest first (not including the current one)."""
    queued_tokens: float
    on_demand: FleetCount
    spot: FleetCount
    preemptions: int
    """Spot replicas lost so far (warm-up included)."""
    spot_replica_s: float
    """Spot replica-seconds so far (ready or starting, warm-up included): the exposure."""
    burst_tokens_per_second: float | None = None
    """The queue-aware burst signal of the last control period (`serviceable_rate` of the
    peak 30/60/120 s rates of windows ending in it, at step resolution; None at time 0)."""
    burst_history: tuple[float, ...] = ()
    """That signal at the same earlier ticks, oldest first."""
    spot_noticed: int = 0
    """Spot replicas under an interruption notice: the market takes them back within
    ``preemption_notice_s`` (they serve until then)."""


class Policy(Protocol):
    name: str

    def decide(self, obs: Observation) -> tuple[int, int]:
        """Desired (on-demand, spot) replicas."""
        ...


@dataclass(slots=True)
class StaticPolicy:
    """A fixed fleet (on_demand_peak)."""

    name: str
    on_demand: int
    spot: int = 0

    def decide(self, obs: Observation) -> tuple[int, int]:
        return self.on_demand, self.spot


@dataclass(slots=True)
class SeedHybridPolicy:
    """Static on-demand base; the whole spot fleet on while demand exceeds the base."""

    base: int
    spot_fleet: int
    base_tokens_per_second: float
    """The base's usable capacity: above it the spot fleet is switched on."""
    off_after_s: float = HPA_SCALE_DOWN_STABILIZATION_S
    name: str = "seed_hybrid"
    _above_at: float | None = None

    def decide(self, obs: Observation) -> tuple[int, int]:
        if obs.demand_tokens_per_second > self.base_tokens_per_second:
            self._above_at = obs.now_s
        on = self._above_at is not None and obs.now_s - self._above_at < self.off_after_s
        return self.base, self.spot_fleet if on else 0


@dataclass(slots=True)
class ReactivePolicy:
    """KEDA/HPA-style: replicas for the observed rate plus the queue, on demand only."""

    fleet: FleetModel
    limits: GovernorLimits
    name: str = "reactive"
    _state: GovernorState = field(default_factory=GovernorState)

    def decide(self, obs: Observation) -> tuple[int, int]:
        metric = obs.demand_tokens_per_second + obs.queued_tokens / self.fleet.control_period_s
        wanted = self.limits.clamp(self.fleet.replicas_for(metric))
        current = obs.on_demand.desired if obs.now_s > 0 else wanted
        d = govern(self._state, current, wanted, obs.now_s, self.limits)
        self._state = d.state
        return d.desired, 0


@dataclass(slots=True)
class PlannerPolicy:
    """Ours: `plan_spot` each tick on the observed history, both counts through `govern`."""

    economics: ReplicaEconomics
    limits: SpotLimits
    on_demand_limits: GovernorLimits
    spot_limits: GovernorLimits
    recent_peak_horizon: int
    level_horizon: int = 0
    """Ticks the sustained level is the median of (`costengine.spotplan.sustained_level`)."""
    base_utilization: float = 1.0
    """Share of a replica's throughput the on-demand base is sized at (see `decide`)."""
    interruption_half_life_s: float = SECONDS_PER_HOUR
    """Past preemptions and exposure weigh half as much after this long."""
    prior_replica_hours: float = 1.0
    """Weight of `economics.interruptions_per_replica_hour` as a prior, in replica-hours."""
    base: PlannerBase = "p50"
    """The on-demand base rule (`_base`)."""
    queue_aware: bool = True
    """The burst term reads the queue-aware burst signal (`Observation.burst_tokens_per_second`)
    while no spot replica is missing or under notice; False: the demand rate always."""
    static_base: int = 1
    """The on-demand fleet of the ``operator`` base rule (seed_hybrid's base)."""
    name: str = "planner"
    _events: float = 0.0
    _exposure_h: float = 0.0
    _seen: tuple[float, int, float] = (0.0, 0, 0.0)
    _cover_s: float = 0.0
    _last_cover: int = 0
    _base_now: int = 0
    _missing: list[tuple[float, int]] = field(default_factory=list)
    _od_state: GovernorState = field(default_factory=GovernorState)
    _spot_state: GovernorState = field(default_factory=GovernorState)
    decisions: list[tuple[int, int]] = field(default_factory=list)
    """(on-demand, spot) desired at each tick, for checking the limits."""

    def __post_init__(self) -> None:
        require_planner_base(self.base)

    def market_economics(self, obs: Observation) -> ReplicaEconomics:
        """The economics with the spot market as observed so far (decayed with a half-life,
        the configured figures as a prior worth `prior_replica_hours`): preemptions per spot
        replica-hour, and the on-demand cover each one took (`lost_work_s_per_interruption`
        is what the cover lasted beyond a cold start)."""
        then, preempted, exposed_s = self._seen
        elapsed = obs.now_s - then
        decay = 0.5 ** (elapsed / self.interruption_half_life_s)
        self._events = self._events * decay + (obs.preemptions - preempted)
        self._exposure_h = (
            self._exposure_h * decay + (obs.spot_replica_s - exposed_s) / SECONDS_PER_HOUR
        )
        self._cover_s = self._cover_s * decay + self._last_cover * elapsed
        self._seen = (obs.now_s, obs.preemptions, obs.spot_replica_s)
        e = self.economics
        prior_events = e.interruptions_per_replica_hour * self.prior_replica_hours
        rate = (self._events + prior_events) / (self._exposure_h + self.prior_replica_hours)
        prior_gap_s = e.cold_start_s + e.lost_work_s_per_interruption
        gap_s = (self._cover_s + prior_events * prior_gap_s) / (self._events + prior_events)
        return replace(
            e,
            interruptions_per_replica_hour=rate,
            lost_work_s_per_interruption=max(
                e.lost_work_s_per_interruption, gap_s - e.cold_start_s
            ),
        )

    def _plan(self, obs: Observation, on_demand: int, economics: ReplicaEconomics) -> SpotPlan:
        queue = self._queue_is_ours(obs)
        return plan_spot(
            obs.history_tokens_per_second,
            obs.demand_tokens_per_second,
            on_demand,
            economics,
            self.limits,
            recent_peak_horizon=self.recent_peak_horizon,
            level_horizon=self.level_horizon,
            burst_history=obs.burst_history if queue else None,
            current_burst=obs.burst_tokens_per_second if queue else None,
        )

    def _queue_is_ours(self, obs: Observation) -> bool:
        """Whether the burst term may read the queue-aware signal: while spot is missing or
        under notice the queue carries that gap until the cover serves, so bursts get the
        demand rate (no queue of their own) then."""
        if not self.queue_aware or obs.burst_tokens_per_second is None:
            return False
        return obs.spot.desired <= obs.spot.existing and obs.spot_noticed == 0

    def _base(self, obs: Observation, economics: ReplicaEconomics) -> int:
        """The on-demand base: plan_spot's ``recommended_on_demand_base`` (the P50 of the
        history) with replicas counted at `base_utilization` of their throughput, raised until
        the plan's spot covers the rest of the needed fleet: past the spot limits (count,
        fraction), or when spot is refused or not worth its interruptions, asking for spot adds
        no capacity, so on demand must carry it.

        The `base` rule says what the P50 base is first made of: ``p50`` keeps it; ``market``
        scales it by the interruption rate seen so far over the configured one (at most 1,
        rounded up): the base guards typical traffic against a market not yet seen; as spot
        runs without preemptions the estimate (and the base) falls towards what the spot
        fraction alone requires, and a preemption raises it back at once; ``fraction`` drops
        it (0), leaving only the raise (for a preemption notice that covers the cold start,
        when the cover serves before the preempted replica goes)."""
        if self.base == "fraction":
            od = 0
        else:
            base_limits = replace(
                self.limits, target_utilization=self.base_utilization, headroom=0.0
            )
            od = plan_spot(
                obs.history_tokens_per_second,
                obs.demand_tokens_per_second,
                self._base_now,
                economics,
                base_limits,
                recent_peak_horizon=self.recent_peak_horizon,
                level_horizon=self.level_horizon,
            ).recommended_on_demand_base
            prior = self.economics.interruptions_per_replica_hour
            if self.base == "market" and prior > 0:
                share = min(1.0, economics.interruptions_per_replica_hour / prior)
                od = math.ceil(od * share - _EPS)
        return on_demand_needed(lambda n: self._plan(obs, n, economics), od)[0]

    def _govern_base(self, obs: Observation, wanted: int, start: bool) -> int:
        """The on-demand base through its governor (from the base it last asked for)."""
        b = govern(
            self._od_state,
            wanted if start else self._base_now,
            wanted,
            obs.now_s,
            self.on_demand_limits,
        )
        self._od_state = b.state
        self._base_now = b.desired
        return b.desired

    def _govern_spot(self, obs: Observation, wanted: int, start: bool, rising: bool) -> int:
        """Spot through its governor (from what it asked for last); `rising` holds a
        scale-down (`SpotPlan.demand_rising`)."""
        sp = govern(
            self._spot_state,
            wanted if start else obs.spot.desired,
            wanted,
            obs.now_s,
            self.spot_limits,
            rising=rising,
        )
        self._spot_state = sp.state
        return sp.desired

    def _within_fraction(self, spot: int, on_demand: int) -> int:
        """The spot fraction is a safety bound: applied at once, like the governor's clamp,
        even when the stabilization window would hold spot up after on demand shrank."""
        bound = spot_fraction_bound(self.limits.max_spot_fraction, on_demand)
        return spot if bound is None else min(spot, bound)

    def _decide_as_the_operator(self, obs: Observation) -> tuple[int, int]:
        """The ``operator`` base rule: the on-demand fleet fixed, spot as `llmcost run` asks
        for it (the plan beside that fleet, a replacement for each noticed replica the plan
        keeps) through the spot governor."""
        start = not self.decisions
        od = self.static_base
        plan = self._plan(obs, od, self.economics)
        extra = notice_replacements(plan.spot_replicas, obs.spot_noticed, self.limits)
        spot = self._govern_spot(
            obs, self.spot_limits.clamp(plan.spot_replicas + extra), start, plan.demand_rising
        )
        self.decisions.append((od, spot))
        return od, spot

    def _decide_as_the_operator_with_its_base(self, obs: Observation) -> tuple[int, int]:
        """``operator-p50`` and ``operator-fraction``: `plan_fleet`, as `llmcost run` plans
        a policy with `onDemandTargetRef`, and Auto mode's two governed steps."""
        start = not self.decisions
        queue = self._queue_is_ours(obs)
        fleet = plan_fleet(
            obs.history_tokens_per_second,
            obs.demand_tokens_per_second,
            self.economics,
            self.limits,
            base_rule=self.base.removeprefix("operator-"),
            on_demand_now=obs.on_demand.existing,
            spot_ready=max(0, obs.spot.ready - obs.spot_noticed),
            # Spot the market has not given (a pod with no node) or under notice: spot
            # starting on its node serves no later than on demand asked for now.
            spot_not_serving=max(0, obs.spot.desired - obs.spot.existing) + obs.spot_noticed,
            recent_peak_horizon=self.recent_peak_horizon,
            level_horizon=self.level_horizon,
            burst_history=obs.burst_history if queue else None,
            current_burst=obs.burst_tokens_per_second if queue else None,
        )
        # The base goes through the governor; the cover is added after it, at once (released
        # as spot serves, not held by the window), as Auto mode does.
        base = self._govern_base(obs, self.on_demand_limits.clamp(fleet.base_replicas), start)
        od = self.on_demand_limits.clamp(base + fleet.cover_replicas)
        spot = self._govern_spot(
            obs, self.spot_limits.clamp(fleet.spot.spot_replicas), start, fleet.spot.demand_rising
        )
        spot = self._within_fraction(spot, od)
        self.decisions.append((od, spot))
        return od, spot

    def decide(self, obs: Observation) -> tuple[int, int]:
        if self.base == "operator":
            return self._decide_as_the_operator(obs)
        if self.base in ("operator-p50", "operator-fraction"):
            return self._decide_as_the_operator_with_its_base(obs)
        start = not self.decisions
        # Spot priced with the market seen so far: plan_spot recommends no spot when covering
        # its interruptions on demand would cost more than running on demand.
        economics = self.market_economics(obs)
        # The on-demand base moves slowly, through its own governor.
        base = self._govern_base(
            obs, self.on_demand_limits.clamp(self._base(obs, economics)), start
        )
        # Spot asked for but not given by the market (preempted, or no capacity to start one)
        # is covered on demand at once, and for one cold start after the market gives it back
        # (while the replacements start), then released: the cover is not held by the
        # stabilization window.
        missing = 0 if start else max(0, obs.spot.desired - obs.spot.existing) + obs.spot_noticed
        self._missing = [
            (t, m) for t, m in self._missing if obs.now_s - t < self.economics.cold_start_s
        ]
        self._missing.append((obs.now_s, missing))
        # Spot is sized beside the base, not beside the cover (the cover replaces spot, it
        # does not make it unnecessary); the cover never takes on demand past the needed fleet.
        plan = self._plan(obs, base, economics)
        cover = min(max(m for _, m in self._missing), max(0, plan.needed_replicas - base))
        # Make before break: on demand that spot is to replace is released only as spot
        # replicas serve, never ahead of them (the part of the needed fleet that ready spot
        # does not carry stays, up to what runs now).
        held = 0 if start else min(obs.on_demand.desired, plan.needed_replicas - obs.spot.ready)
        cover = max(cover, held - base)
        self._last_cover = cover
        od = self.on_demand_limits.clamp(base + cover)
        spot = self._govern_spot(
            obs, self.spot_limits.clamp(plan.spot_replicas), start, plan.demand_rising
        )
        spot = self._within_fraction(spot, od)
        self.decisions.append((od, spot))
        return od, spot


@dataclass(slots=True)
class ScheduledPolicy:
    """Replays a per-period plan, asking for each replica `lookahead` periods ahead."""

    plan: Sequence[tuple[int, int]]
    lookahead: int
    name: str = "oracle"
    _tick: int = 0

    def decide(self, obs: Observation) -> tuple[int, int]:
        window = self.plan[self._tick : self._tick + self.lookahead + 1] or self.plan[-1:]
        self._tick += 1
        return max(o for o, _ in window), max(s for _, s in window)


# --- The simulation ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepSeries:
    """Per-step series of one policy's run."""

    demand_tokens_per_second: list[float]
    served_tokens_per_second: list[float]
    queued_tokens: list[float]
    """Work waiting after the step (within its latency bound)."""
    shortfall_tokens: list[float]
    on_demand_ready: list[int]
    on_demand_starting: list[int]
    spot_ready: list[int]
    spot_starting: list[int]
    spot_available: list[int] | None
    cumulative_usd: list[float]


@dataclass(frozen=True, slots=True)
class PolicyResult:
    name: str
    cost_usd: float
    on_demand_usd: float
    spot_usd: float
    demand_tokens: float
    served_tokens: float
    shortfall_tokens: float
    shortfall_token_ratio: float
    usd_per_million_tokens: float | None
    """Cost ÷ tokens served × 10⁶ (None when nothing was served)."""
    scale_actions: int
    on_demand_scale_actions: int
    spot_scale_actions: int
    preemptions: int
    on_demand_replica_hours: float
    spot_replica_hours: float
    peak_replicas: int
    series: StepSeries


@dataclass(slots=True)
class _Replica:
    requested: int
    ready: int
    billed_from: int


@dataclass(slots=True)
class _Pool:
    spot: bool
    replicas: list[_Replica] = field(default_factory=list)
    desired: int = 0
    usd: float = 0.0
    replica_s: float = 0.0
    actions: int = 0

    def count(self, step: int) -> FleetCount:
        ready = sum(1 for r in self.replicas if r.ready <= step)
        return FleetCount(self.desired, ready, len(self.replicas) - ready)

    def release(
        self, n: int, step: int, fleet: FleetModel, scored_from: int, *, starting_first: bool
    ) -> float:
        """Release `n` replicas (newest first; starting ones first if asked); return the
        billing round-up charged now (nothing before scoring starts)."""
        order = sorted(
            range(len(self.replicas)),
            key=lambda i: (
                starting_first and self.replicas[i].ready <= step,
                -self.replicas[i].requested,
                -i,
            ),
        )
        gone = set(order[:n])
        extra = 0.0
        price = fleet.usd_per_replica_hour(self.spot) / SECONDS_PER_HOUR
        for i in gone:
            if step < scored_from:
                continue
            lived = (step - self.replicas[i].billed_from) * fleet.step_s
            extra += (fleet.billed_s(lived) - lived) * price
        self.replicas = [r for i, r in enumerate(self.replicas) if i not in gone]
        self.usd += extra
        return extra


def _noticed(pool: _Pool, spot_available: Sequence[int] | None, t: int, notice_steps: int) -> int:
    """Spot replicas of `pool` the market takes back within `notice_steps` of step `t` (this
    step's preemptions come after the policy's decision, so they count)."""
    if spot_available is None or notice_steps <= 0:
        return 0
    ahead = spot_available[t : t + notice_steps + 1]
    return max(0, len(pool.replicas) - min(ahead))


def _burst_signal(
    demand_tokens: Sequence[float],
    t: int,
    period: int,
    windows: Sequence[tuple[float, int]],
    fleet: FleetModel,
) -> float:
    """`Observation.burst_tokens_per_second` at step `t`: per window (s, steps), the highest
    rate of the windows ending in the last `period` steps, through `serviceable_rate` with the
    step as the resolution (as the operator's subquery of 30/60/120 s rates at 15 s steps)."""
    peaks: dict[float, float] = {}
    for window_s, steps in windows:
        best = 0.0
        for end in range(max(1, t - period + 1), t + 1):
            best = max(best, sum(demand_tokens[max(0, end - steps) : end]))
        peaks[window_s] = best / (steps * fleet.step_s)
    return serviceable_rate(peaks, fleet.latency_bound_s, fleet.step_s)


def simulate(
    demand_tokens: Sequence[float],
    policy: Policy,
    fleet: FleetModel,
    spot_available: Sequence[int] | None = None,
) -> PolicyResult:
    """Run one policy over the per-step demand; `spot_available` None means unlimited spot."""
    n = len(demand_tokens)
    if n == 0:
        raise InvalidInputError("the demand has no steps")
    for i, d in enumerate(demand_tokens):
        require_non_negative(f"demand_tokens[{i}]", d)
    if spot_available is not None and len(spot_available) < n:
        raise InvalidInputError(
            f"spot availability covers {len(spot_available)} steps, the demand {n}"
        )
    period = fleet.steps_per_period
    k = fleet.deadline_steps
    cold = fleet.cold_start_steps
    w = fleet.warmup_steps
    if w >= n:
        raise InvalidInputError(
            f"the warm-up ({w * fleet.step_s:g} s) leaves nothing of the {n * fleet.step_s:g} s "
            "trace to score"
        )
    rate_steps = max(1, math.ceil(fleet.rate_window_s / fleet.step_s - _EPS))
    notice_steps = fleet.notice_steps
    pools = {False: _Pool(spot=False), True: _Pool(spot=True)}
    queue: deque[list[float]] = deque()
    # The planner reads the last hour of ticks, as the operator keeps (PLANNER_HISTORY_S).
    kept = max(1, math.floor(PLANNER_HISTORY_S / fleet.control_period_s + _EPS))
    history: deque[float] = deque(maxlen=kept)
    bursts: deque[float] = deque(maxlen=kept)
    burst_steps = [(w, max(1, round(w / fleet.step_s))) for w in BURST_WINDOWS_S]
    preemptions = seen_preemptions = 0
    seen_spot_replica_s = 0.0
    cumulative = 0.0
    served_total = dropped_total = 0.0
    peak = 0
    s = StepSeries([], [], [], [], [], [], [], [], [] if spot_available is not None else None, [])

    for t in range(n):
        step_usd = 0.0
        if t == w and w > 0:
            # Scoring starts: work from the warm-up is forgotten, replicas are billed from now.
            queue.clear()
            for pool in pools.values():
                for r in pool.replicas:
                    r.billed_from = w
        if t % period == 0:
            if t == 0:
                rate = demand_tokens[0] / fleet.step_s
            else:
                window = demand_tokens[max(0, t - rate_steps) : t]
                rate = sum(window) / (len(window) * fleet.step_s)
            burst = None if t == 0 else _burst_signal(demand_tokens, t, period, burst_steps, fleet)
            obs = Observation(
                now_s=t * fleet.step_s,
                demand_tokens_per_second=rate,
                history_tokens_per_second=tuple(history),
                burst_tokens_per_second=burst,
                burst_history=tuple(bursts),
                queued_tokens=sum(item[1] for item in queue),
                on_demand=pools[False].count(t),
                spot=pools[True].count(t),
                preemptions=seen_preemptions,
                spot_replica_s=seen_spot_replica_s,
                spot_noticed=_noticed(pools[True], spot_available, t, notice_steps),
            )
            history.append(rate)
            bursts.append(rate if burst is None else burst)
            od, sp = policy.decide(obs)
            for pool, wanted in ((pools[False], od), (pools[True], sp)):
                if wanted < 0:
                    raise InvalidInputError(f"{policy.name} asked for {wanted} replicas")
                if t > 0 and t >= w and wanted != pool.desired:
                    pool.actions += 1
                pool.desired = wanted
        # Replicas beyond the desired count go first (a release decided at this tick is not a
        # preemption); then the market takes spot back (newest first) and limits new spot.
        for pool in pools.values():
            if len(pool.replicas) > pool.desired:
                surplus = len(pool.replicas) - pool.desired
                step_usd += pool.release(surplus, t, fleet, w, starting_first=True)
        limit = spot_available[t] if spot_available is not None else None
        spot_pool = pools[True]
        if limit is not None and len(spot_pool.replicas) > limit:
            lost = len(spot_pool.replicas) - limit
            seen_preemptions += lost
            if t >= w:
                preemptions += lost
            step_usd += spot_pool.release(lost, t, fleet, w, starting_first=False)
        for pool in pools.values():
            have = len(pool.replicas)
            cap = pool.desired if not pool.spot or limit is None else min(pool.desired, limit)
            ready_at = t if t == 0 else t + cold
            for _ in range(max(0, cap - have)):
                pool.replicas.append(_Replica(requested=t, ready=ready_at, billed_from=t))
        # Serve, then drop what has run out of time.
        ready_total = sum(1 for p in pools.values() for r in p.replicas if r.ready <= t)
        if demand_tokens[t] > 0:
            queue.append([float(t), float(demand_tokens[t])])
        served = _drain(queue, ready_total * fleet.replica_tokens_per_step)
        dropped = _expire(queue, t, k)
        od_c, sp_c = pools[False].count(t), pools[True].count(t)
        seen_spot_replica_s += sp_c.existing * fleet.step_s
        if t >= w:
            served_total += served
            dropped_total += dropped
            # Pay for the step.
            for pool in pools.values():
                per_s = fleet.usd_per_replica_hour(pool.spot) / SECONDS_PER_HOUR
                usd = len(pool.replicas) * fleet.step_s * per_s
                pool.usd += usd
                pool.replica_s += len(pool.replicas) * fleet.step_s
                step_usd += usd
            peak = max(peak, od_c.existing + sp_c.existing)
        cumulative += step_usd
        s.demand_tokens_per_second.append(demand_tokens[t] / fleet.step_s)
        s.served_tokens_per_second.append(served / fleet.step_s)
        s.queued_tokens.append(sum(item[1] for item in queue))
        s.shortfall_tokens.append(dropped)
        s.on_demand_ready.append(od_c.ready)
        s.on_demand_starting.append(od_c.starting)
        s.spot_ready.append(sp_c.ready)
        s.spot_starting.append(sp_c.starting)
        if s.spot_available is not None and spot_available is not None:
            s.spot_available.append(spot_available[t])
        s.cumulative_usd.append(cumulative)

    # The trace ends: everything left is released (billed to the end, rounded up).
    for pool in pools.values():
        extra = pool.release(len(pool.replicas), n, fleet, w, starting_first=False)
        cumulative += extra
    if s.cumulative_usd:
        s.cumulative_usd[-1] = cumulative
    demand_total = float(sum(demand_tokens[w:]))
    od_pool, spot_pool = pools[False], pools[True]
    return PolicyResult(
        name=policy.name,
        cost_usd=od_pool.usd + spot_pool.usd,
        on_demand_usd=od_pool.usd,
        spot_usd=spot_pool.usd,
        demand_tokens=demand_total,
        served_tokens=served_total,
        shortfall_tokens=dropped_total,
        shortfall_token_ratio=dropped_total / demand_total if demand_total > 0 else 0.0,
        usd_per_million_tokens=(
            (od_pool.usd + spot_pool.usd) / served_total * 1e6 if served_total > 0 else None
        ),
        scale_actions=od_pool.actions + spot_pool.actions,
        on_demand_scale_actions=od_pool.actions,
        spot_scale_actions=spot_pool.actions,
        preemptions=preemptions,
        on_demand_replica_hours=od_pool.replica_s / SECONDS_PER_HOUR,
        spot_replica_hours=spot_pool.replica_s / SECONDS_PER_HOUR,
        peak_replicas=peak,
        series=s,
    )


# --- The oracle's program ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OracleProgram:
    """A mixed-integer program: minimize ``objective · x`` subject to
    ``row_lower ≤ A x ≤ row_upper``, ``lower ≤ x ≤ upper``, integers where ``integrality`` is 1.

    ``A`` is sparse, as (row, column, value) triplets. Variables: on-demand and spot replicas per
    period (integers), replicas added per period (on demand, spot), tokens served and tokens
    queued per step.
    """

    objective: list[float]
    integrality: list[int]
    lower: list[float]
    upper: list[float]
    entries: list[tuple[int, int, float]]
    row_lower: list[float]
    row_upper: list[float]
    periods: int
    steps: int

    @property
    def variables(self) -> int:
        return len(self.objective)

    @property
    def rows(self) -> int:
        return len(self.row_lower)

    def on_demand_column(self, p: int) -> int:
        return p

    def spot_column(self, p: int) -> int:
        return self.periods + p

    def schedule(self, x: Sequence[float]) -> list[tuple[int, int]]:
        """Integer (on-demand, spot) replicas per period from a solution (rounded up past
        float noise: a relaxed solution rounds up to a plan with at least its capacity)."""
        return [
            (
                math.ceil(x[self.on_demand_column(p)] - 1e-6),
                math.ceil(x[self.spot_column(p)] - 1e-6),
            )
            for p in range(self.periods)
        ]


def oracle_program(
    demand_tokens: Sequence[float],
    fleet: FleetModel,
    spot_available: Sequence[int] | None,
    max_spot_replicas: int,
    max_spot_fraction: float,
    spot_lookback: Sequence[int] = (),
    utilization: float = 1.0,
) -> OracleProgram:
    """The cheapest per-period plan serving all demand within the latency bound (see module).

    `spot_lookback` is the market in the steps just before the first (the warm-up's end): a spot
    replica that serves in an early period must have been obtainable through its cold start.
    `utilization` is the share of a replica's throughput the plan may use (1: 100% busy).
    """
    require_non_negative("max_spot_replicas", max_spot_replicas)
    require_ratio("utilization", utilization)
    require_ratio("max_spot_fraction", max_spot_fraction, allow_zero=True)
    n = len(demand_tokens)
    if n == 0:
        raise InvalidInputError("the demand has no steps")
    per = fleet.steps_per_period
    periods = math.ceil(n / per)
    k = fleet.deadline_steps
    cold_periods = math.ceil(fleet.cold_start_s / fleet.control_period_s - _EPS)
    od_price = fleet.usd_per_replica_hour(False) / SECONDS_PER_HOUR
    sp_price = fleet.usd_per_replica_hour(True) / SECONDS_PER_HOUR
    # Columns: o_p, s_p, uo_p, us_p (P each), serve_t, back_t (n each).
    o, s, uo, us = 0, periods, 2 * periods, 3 * periods
    serve, back = 4 * periods, 4 * periods + n
    size = 4 * periods + 2 * n
    objective = [0.0] * size
    lower = [0.0] * size
    upper = [math.inf] * size
    integrality = [0] * size
    c = fleet.replica_tokens_per_step * utilization  # tokens a replica may serve in a step
    # No plan needs more replicas than serve the busiest step within the step itself.
    most = float(max(1, math.ceil(max(demand_tokens) / c - _EPS)))
    for p in range(periods):
        seconds = min(per, n - p * per) * fleet.step_s
        objective[o + p] = od_price * seconds
        objective[s + p] = sp_price * seconds
        objective[uo + p] = od_price * fleet.cold_start_s
        objective[us + p] = sp_price * fleet.cold_start_s
        integrality[o + p] = integrality[s + p] = 1
        lower[o + p] = 1.0
        upper[o + p] = most
        cap = min(float(max_spot_replicas), most)
        if spot_available is not None:
            market = [*spot_lookback, *spot_available]
            shift = len(spot_lookback)
            first = max(0, shift + (p - cold_periods) * per)
            last = shift + min(n, (p + 1) * per)
            cap = min(cap, float(min(market[first:last])))
        upper[s + p] = cap
        if p == 0:  # the starting fleet is warm: nothing to start
            upper[uo] = upper[us] = 0.0
    for t in range(n):
        upper[back + t] = float(sum(demand_tokens[max(0, t - k + 2) : t + 1])) if k > 1 else 0.0
    entries: list[tuple[int, int, float]] = []
    row_lower: list[float] = []
    row_upper: list[float] = []

    def row(cells: list[tuple[int, float]], lo: float, hi: float) -> None:
        r = len(row_lower)
        entries.extend((r, c, v) for c, v in cells)
        row_lower.append(lo)
        row_upper.append(hi)

    for t in range(n):
        p = t // per
        # Served ≤ the period's capacity.
        row([(serve + t, 1.0), (o + p, -c), (s + p, -c)], -math.inf, 0.0)
        # Queue balance: back_t = back_{t-1} + D_t − serve_t.
        cells = [(back + t, 1.0), (serve + t, 1.0)]
        if t > 0:
            cells.append((back + t - 1, -1.0))
        row(cells, float(demand_tokens[t]), float(demand_tokens[t]))
    for p in range(1, periods):
        row([(o + p, 1.0), (o + p - 1, -1.0), (uo + p, -1.0)], -math.inf, 0.0)
        row([(s + p, 1.0), (s + p - 1, -1.0), (us + p, -1.0)], -math.inf, 0.0)
    if max_spot_fraction < 1:
        ratio = max_spot_fraction / (1 - max_spot_fraction)
        for p in range(periods):
            row([(s + p, 1.0), (o + p, -ratio)], -math.inf, 0.0)
    return OracleProgram(
        objective=objective,
        integrality=integrality,
        lower=lower,
        upper=upper,
        entries=entries,
        row_lower=row_lower,
        row_upper=row_upper,
        periods=periods,
        steps=n,
    )


@dataclass(frozen=True, slots=True)
class OracleSolution:
    """What the caller's solver found."""

    x: list[float]
    objective_usd: float
    lower_bound_usd: float
    """A proven lower bound on the program's optimum (the LP relaxation, or the solver's)."""
    method: str
    """How it was solved, e.g. "milp (HiGHS), optimal"."""


Solver = Callable[[OracleProgram], OracleSolution]
Progress = Callable[[str], None]


# --- The comparison ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BacktestSettings:
    fleet: FleetModel
    max_spot_fraction: float = 0.7
    """The planner's and the oracle's bound on spot ÷ all replicas."""
    max_spot_replicas: int | None = None
    """The planner's and the oracle's spot cap (default: the on-demand peak fleet)."""
    planner_headroom: float = 0.0
    """`SpotLimits.headroom` of the planner (the operator's default)."""
    planner_burst_quantile: float | None = 0.9
    """`SpotLimits.burst_quantile` of the planner (the operator's default; None: the
    recent-peak rule)."""
    planner_base_utilization: float = 1.0
    """Share of a replica's throughput the planner's on-demand base is sized at."""
    planner_level: bool = True
    """The planner sizes its steady term at the sustained level over the scale-down window
    (the operator's default); False: at each tick's rate."""
    planner_base: PlannerBase | None = None
    """The planner's on-demand base rule (`PlannerPolicy._base`); None: ``fraction`` when the
    fleet's preemption notice and latency bound span a cold start, else ``p50``."""
    planner_queue: bool = True
    """The planner's burst term reads the queue-aware burst signal (`PlannerPolicy.queue_aware`,
    the operator's default); False: the demand rate."""
    oracle_utilization: float | None = None
    """Share of a replica's throughput the oracle may plan on (None: the target utilization,
    as every other policy is sized; 1 for the bound of a fleet run 100% busy)."""

    def __post_init__(self) -> None:
        if self.oracle_utilization is not None:
            require_ratio("oracle_utilization", self.oracle_utilization)
        require_non_negative("planner_headroom", self.planner_headroom)
        if self.planner_burst_quantile is not None:
            require_ratio("planner_burst_quantile", self.planner_burst_quantile, allow_zero=True)
        if self.planner_base is not None:
            require_planner_base(self.planner_base)

    @property
    def base(self) -> PlannerBase:
        """`planner_base`, resolved."""
        return resolve_planner_base(self.fleet, self.planner_base)

    @property
    def oracle_share(self) -> float:
        if self.oracle_utilization is None:
            return self.fleet.target_utilization
        return self.oracle_utilization


@dataclass(frozen=True, slots=True)
class BacktestResult:
    settings: BacktestSettings
    sustained_peak_tokens_per_second: float
    peak_replicas: int
    """on_demand_peak's fleet."""
    median_tokens_per_second: float
    """P50 of the control-period demand (seed_hybrid's base)."""
    seed_base_replicas: int
    seed_spot_replicas: int
    max_spot_replicas: int
    policies: dict[str, PolicyResult]
    oracle: OracleSolution | None

    def savings_vs_on_demand_peak_ratio(self, name: str) -> float | None:
        ref = self.policies.get("on_demand_peak")
        if ref is None or ref.cost_usd <= 0 or name not in self.policies:
            return None
        return 1 - self.policies[name].cost_usd / ref.cost_usd


def period_rates(demand_tokens: Sequence[float], fleet: FleetModel) -> list[float]:
    """Demand (tokens/s) per control period."""
    per = fleet.steps_per_period
    return [
        sum(demand_tokens[i : i + per]) / (len(demand_tokens[i : i + per]) * fleet.step_s)
        for i in range(0, len(demand_tokens), per)
    ]


def require_planner_base(base: str) -> None:
    if base not in PLANNER_BASES:
        raise InvalidInputError(f"unknown planner base {base!r}; known: {', '.join(PLANNER_BASES)}")


def resolve_planner_base(fleet: FleetModel, chosen: PlannerBase | None) -> PlannerBase:
    """`chosen`, or by default (None) ``fraction`` when the fleet's preemption notice covers
    the cold start and ``p50`` otherwise (`PlannerPolicy._base`). A chosen rule is checked
    where it is kept: `BacktestSettings` and `PlannerPolicy`."""
    if chosen is not None:
        return chosen
    return "fraction" if fleet.notice_covers_cold_start else "p50"


def make_policy(
    name: str,
    fleet: FleetModel,
    peak_replicas: int,
    seed_base: int,
    max_spot_replicas: int,
    max_spot_fraction: float,
    planner_headroom: float = 0.0,
    planner_base_utilization: float = 1.0,
    planner_base: PlannerBase | None = None,
    planner_burst_quantile: float | None = 0.9,
    planner_level: bool = True,
    planner_queue: bool = True,
) -> Policy:
    """A fresh policy by name (not the oracle, which needs its plan). `planner_base` None:
    ``fraction`` when the fleet's preemption notice and latency bound span a cold start,
    else ``p50``; `planner_level`: the sustained level over the spot scale-down window, else none;
    `planner_queue`: the burst term on the queue-aware burst signal, else on the rate."""
    if name == "on_demand_peak":
        return StaticPolicy("on_demand_peak", peak_replicas)
    if name == "seed_hybrid":
        return SeedHybridPolicy(
            base=seed_base,
            spot_fleet=max(0, peak_replicas - seed_base),
            base_tokens_per_second=seed_base * fleet.usable_tokens_per_second,
        )
    if name == "reactive":
        hpa = GovernorLimits(
            min_replicas=1,
            max_replicas=max(1, 4 * peak_replicas),
            max_step_up=HPA_SCALE_UP_PODS_PER_PERIOD,
            scale_up_period_s=HPA_SCALE_UP_PERIOD_S,
            scale_down_window_s=HPA_SCALE_DOWN_STABILIZATION_S,
        )
        return ReactivePolicy(fleet, hpa)
    if name == "planner":
        economics = ReplicaEconomics(
            tokens_per_second=fleet.replica_tokens_per_second,
            gpus_per_replica=fleet.gpus_per_replica,
            on_demand_usd_per_gpu_hour=fleet.on_demand_usd_per_gpu_hour,
            spot_usd_per_gpu_hour=fleet.spot_usd_per_gpu_hour,
            cold_start_s=fleet.cold_start_s,
        )
        limits = SpotLimits(
            max_replicas=max_spot_replicas,
            max_spot_fraction=max_spot_fraction,
            target_utilization=fleet.target_utilization,
            headroom=planner_headroom,
            burst_quantile=planner_burst_quantile,
        )
        # As the operator does: the lead (the recent-peak horizon) is the reaction time, at
        # least the rate window: a rise just after a tick is seen at the next one, whose
        # replicas serve a cold start later, so a tick's fleet carries demand for a control
        # period and a cold start. The sustained level spans the scale-down window.
        recent_s = max(fleet.cold_start_s + fleet.control_period_s, fleet.rate_window_s)
        horizon = max(1, math.ceil(recent_s / fleet.control_period_s - _EPS))
        spot_limits = GovernorLimits(min_replicas=0, max_replicas=max_spot_replicas)
        return PlannerPolicy(
            economics=economics,
            limits=limits,
            on_demand_limits=GovernorLimits(min_replicas=1, max_replicas=max(1, 4 * peak_replicas)),
            spot_limits=spot_limits,
            recent_peak_horizon=horizon,
            level_horizon=math.ceil(spot_limits.scale_down_window_s / fleet.control_period_s - _EPS)
            if planner_level
            else 0,
            base_utilization=planner_base_utilization,
            base=resolve_planner_base(fleet, planner_base),
            queue_aware=planner_queue,
            static_base=seed_base,
        )
    raise InvalidInputError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")


def run_backtest(
    demand_tokens: Sequence[float],
    settings: BacktestSettings,
    spot_available: Sequence[int] | None,
    solve: Solver | None,
    policies: Sequence[str] = POLICIES,
    progress: Progress | None = None,
) -> BacktestResult:
    """Every named policy over the same demand and spot market (oracle needs `solve`)."""
    say = progress or (lambda _msg: None)
    fleet = settings.fleet
    for name in policies:
        if name not in POLICIES:
            raise InvalidInputError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
    if "oracle" in policies and solve is None:
        raise InvalidInputError("the oracle needs a solver")
    w = fleet.warmup_steps
    if w >= len(demand_tokens):
        raise InvalidInputError(
            f"the warm-up ({w * fleet.step_s:g} s) leaves nothing of the "
            f"{len(demand_tokens) * fleet.step_s:g} s trace to score"
        )
    scored = demand_tokens[w:]
    peak_tps = sustained_peak_tokens_per_second(scored, fleet.step_s, fleet.latency_bound_s)
    peak = max(1, fleet.replicas_for(peak_tps))
    rates = period_rates(scored, fleet)
    median = _quantile(rates, 0.5)
    seed_base = max(1, fleet.replicas_for(median))
    max_spot = settings.max_spot_replicas if settings.max_spot_replicas is not None else peak
    wanted = ["on_demand_peak", *[p for p in POLICIES if p in policies and p != "on_demand_peak"]]
    results: dict[str, PolicyResult] = {}
    solution: OracleSolution | None = None
    for name in wanted:
        if name == "oracle":
            assert solve is not None
            program = oracle_program(
                scored,
                fleet,
                spot_available[w:] if spot_available is not None else None,
                max_spot,
                settings.max_spot_fraction,
                spot_lookback=spot_available[:w] if spot_available is not None else (),
                utilization=settings.oracle_share,
            )
            say(
                f"oracle: solving a program of {program.variables} variables "
                f"({2 * program.periods} integer) and {program.rows} constraints"
            )
            solution = solve(program)
            say(f"oracle: {solution.method}, ${solution.objective_usd:,.2f}")
            lookahead = math.ceil(fleet.cold_start_s / fleet.control_period_s - _EPS)
            plan = program.schedule(solution.x)
            # The warm-up runs the first scored period's fleet (warm from the start, unpaid).
            plan = [plan[0]] * (w // fleet.steps_per_period) + plan
            policy: Policy = ScheduledPolicy(plan, lookahead)
        else:
            policy = make_policy(
                name,
                fleet,
                peak,
                seed_base,
                max_spot,
                settings.max_spot_fraction,
                settings.planner_headroom,
                settings.planner_base_utilization,
                settings.base,
                settings.planner_burst_quantile,
                settings.planner_level,
                settings.planner_queue,
            )
        say(f"{name}: simulating {len(demand_tokens)} steps")
        results[name] = simulate(demand_tokens, policy, fleet, spot_available)
    ordered = {name: results[name] for name in POLICIES if name in results}
    return BacktestResult(
        settings=settings,
        sustained_peak_tokens_per_second=peak_tps,
        peak_replicas=peak,
        median_tokens_per_second=median,
        seed_base_replicas=seed_base,
        seed_spot_replicas=max(0, peak - seed_base),
        max_spot_replicas=max_spot,
        policies=ordered,
        oracle=solution,
    )


def summary(result: BacktestResult) -> dict[str, dict[str, float | int | None]]:
    """The per-policy figures scripts read (`policies.<name>.…`), without the series."""
    out: dict[str, dict[str, float | int | None]] = {}
    for name, r in result.policies.items():
        row: dict[str, float | int | None] = {
            "cost_usd": r.cost_usd,
            "on_demand_usd": r.on_demand_usd,
            "spot_usd": r.spot_usd,
            "usd_per_million_tokens": r.usd_per_million_tokens,
            "shortfall_token_ratio": r.shortfall_token_ratio,
            "shortfall_tokens": r.shortfall_tokens,
            "served_tokens": r.served_tokens,
            "demand_tokens": r.demand_tokens,
            "scale_actions": r.scale_actions,
            "on_demand_scale_actions": r.on_demand_scale_actions,
            "spot_scale_actions": r.spot_scale_actions,
            "preemptions": r.preemptions,
            "on_demand_replica_hours": r.on_demand_replica_hours,
            "spot_replica_hours": r.spot_replica_hours,
            "peak_replicas": r.peak_replicas,
            "savings_vs_on_demand_peak_ratio": result.savings_vs_on_demand_peak_ratio(name),
        }
        if name == "oracle" and result.oracle is not None:
            row["lower_bound_usd"] = result.oracle.lower_bound_usd
            row["program_objective_usd"] = result.oracle.objective_usd
        out[name] = row
    return out


def goals(result: BacktestResult) -> Mapping[str, bool | None]:
    """The issue's goals for the planner (None when a policy needed for one did not run).

    - ``planner_within_10pct_of_oracle``: cost ≤ 1.1 × oracle's, shortfall ≤ 0.5% of tokens;
    - ``planner_within_10pct_of_oracle_bound``: the first goal as far as the solve proved it.
      A time-limited solve's plan may cost more than the optimum, so the first goal can pass
      on a plan the solver did not prove. This one passes only within 10% of the solve's
      proven lower bound, fails where the first fails (the optimum is no dearer than the
      plan), and is None, undecided, in between: where the solver's gap is wider than the
      margin (a longer solve decides it);
    - ``planner_not_dearer_than_seed_hybrid``: cost ≤ seed_hybrid's at equal or lower shortfall.
    """
    p = result.policies.get("planner")
    o = result.policies.get("oracle")
    h = result.policies.get("seed_hybrid")
    within: bool | None = None
    proven: bool | None = None
    cheaper: bool | None = None
    if p is not None and o is not None:
        short_ok = p.shortfall_token_ratio <= 0.005
        within = p.cost_usd <= 1.1 * o.cost_usd and short_ok
        if result.oracle is not None:
            if not within:
                proven = False
            elif p.cost_usd <= 1.1 * result.oracle.lower_bound_usd:
                proven = True
    if p is not None and h is not None:
        cheaper = (
            p.cost_usd <= h.cost_usd and p.shortfall_token_ratio <= h.shortfall_token_ratio + _EPS
        )
    return {
        "planner_within_10pct_of_oracle": within,
        "planner_within_10pct_of_oracle_bound": proven,
        "planner_not_dearer_than_seed_hybrid": cheaper,
    }
