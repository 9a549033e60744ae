"""Spot burst planning and scale safety: how many spot replicas to run beside an on-demand
base, and how fast a replica count may move toward a recommendation.

From the seed's section "Spot Instances & Preemptible GPUs" ("maintain a base fleet on
reserved/on-demand instances (sized for P50 traffic) and scale out with spot instances for peak
demand") and RELIABILITY.md "Scaling safety", items 8-9. Both pieces are pure: no clock, no
I/O; the caller passes the time and keeps the governor's state.

The planner, `plan_spot`
------------------------
1. A replica's usable capacity is ``tokens_per_second × target_utilization``.
2. Sizing, by default the burst rule (``burst_quantile`` set): a replica ordered now serves
   only a lead time later (``recent_peak_horizon`` samples, which a caller should make span
   its reaction time: a tick and a cold start, as a rise just after a tick is seen at the
   next one), so the fleet must carry, until then, whatever demand rises to. The
   history says how far it rises: for each past sample at or above the current sample, the
   highest of its next ``lead`` samples less it (0 when demand fell) is one observed rise,
   and the burst margin is the ``burst_quantile`` of those rises (`burst_margin`; rises from
   lower levels are left out, or the top of a burst would carry a second one on top). Needed
   replicas cover both ``level × (1 + headroom)`` at the target utilization (steady
   serving) and ``current + margin`` at full throughput (a burst may run replicas 100%
   busy for one lead time, while the replicas it triggers start; latency grows, no work is
   lost). A flat history asks for no margin beyond the target utilization's slack; a history
   of bursts from silence keeps spare replicas for the next one.
   The ``level`` is the current sample, or with ``level_horizon`` set the **sustained
   level** (`sustained_level`): the median of the last ``level_horizon`` samples and the
   current one, unless the current sample is above what that median's fleet serves at full
   throughput (median ÷ target utilization): such a rise is a new level and counts as it is,
   unless the history has seen it before (with ``burst_quantile``: no higher than the
   median plus the ``burst_quantile`` of the rises within ``lead`` from the median or above,
   as `burst_margin` counts them): a rise of the size bursts take is a burst, which the burst
   term carries at full throughput, not a level to keep the slack over for a window.
   A fall counts as soon as the median of the latest three samples (``FALL_SAMPLES``) shows
   it: below the long median, the level is the lower of the two. The scale-down window holds
   a fall for its length anyway; its maximum of medians over the window would hold one for a
   window and a half.
   The target utilization's slack is then kept over the level, not over each noisy sample:
   noise within the slack runs replicas busier for a while (the burst term still carries the
   current sample and its margin at full throughput); a rise past the slack is sized as
   without a level. A caller should make the horizon span the scale-down window, whose
   maximum would otherwise hold the slack over the window's noisiest sample.
   The burst term reads, when the caller gives it, the **queue-aware burst signal**
   (``burst_history`` and ``current_burst``, per sample) instead of the demand rate: a rate
   over a window longer than a burst shows the burst at a fraction of its height, and a fleet
   that may leave work waiting ``latency`` s needs less than the burst's height. Per sample,
   `serviceable_rate` turns the peak short-window rates of the sample's interval (the most
   tokens/s any 30, 60 and 120 s stretch carried, `BURST_WINDOWS_S`) into the least constant
   throughput that would have served them within the latency bound; the planner holds each
   such sample for its lead (the rolling maximum over ``recent_peak_horizon`` samples: bursts
   come in clusters, so the burst term carries the busiest stretch of the last cold start,
   as the recent-peak rule carried its peak), and the burst margin is the quantile of the
   held signal's rises. Carried at full throughput as before, so the only
   difference from the rate is what the signal sees: short bursts at their height, and the
   queue the latency bound allows. The caller decides when the queue is the fleet's to spend
   (the backtest's and the operator's planners use the rate while spot replicas are missing
   or under notice: the queue then carries the gap until the cover serves).
   With ``burst_quantile = None``, the recent-peak rule: sizing demand ``max(current, peak of
   the last recent_peak_horizon samples) × (1 + headroom)`` at the target utilization (the
   seed's "size for the peak"). ``recent_peak_horizon = None`` makes the whole history recent
   (the lead: all later samples).
3. Needed replicas: the above rounded up; 0 when the level, the current demand and the margin
   are 0.
4. On demand first, spot for the rest: unclamped spot = ``max(0, needed − on_demand)``.
5. Limits, in this order: ``[min_replicas, max_replicas]``, then the global cap, then the spot
   fraction ``spot ≤ f × (on_demand + spot)``, i.e. ``spot ≤ floor(f ÷ (1 − f) × on_demand)``
   (``f = 1``: no bound; ``f = 0``: no spot). The cap and the fraction are safety bounds: when
   either is below ``min_replicas`` it wins and a reason says so.
6. The recommended on-demand base covers ``base_quantile`` (the seed's P50) of the whole
   history plus the current sample, without headroom, and is at least 1 when there is demand.
7. Refusals (``refused``, no spot, one reason each), the seed's spot-hostile patterns:
   - a cold start over 5 minutes (always: it is a property of the model, not of the moment);
   - spot as the primary fleet: no on-demand replica runs while there is demand or spot would
     run;
   - a single-replica deployment on spot: at most one replica in all, and it would be spot;
   - an SLO-bound workload whose on-demand fleet is below the base of step 6: spot would carry
     typical traffic, not just bursts. (Without ``slo_bound`` the same gap is a warning.)
   A refusal overrides ``min_replicas``: the workload should not run on spot at all.
8. Warnings (the plan stands): multi-turn state and a tight P99, the seed's other hostile
   patterns, when spot is recommended; limits that leave the fleet short of the needed
   replicas. One economic rule also recommends no spot without refusing: spot that is not
   cheaper than on demand once interruptions are priced is never recommended.
9. Interruptions: each spot replica is preempted ``interruptions_per_replica_hour`` times an
   hour; the gap until its replacement serves (``cold_start_s``) and the redone in-flight work
   (``lost_work_s_per_interruption``) are covered on demand, so an hour of one spot replica
   costs ``interruptions × (cold_start_s + lost_work_s) ÷ 3600 × gpus × on-demand price`` on
   top of its spot price. This is `costengine.spot.hybrid_spot_cost` for a steady hour.

The governor, `govern` and `hold`
---------------------------------
Turns a recommendation into a replica count to set, HPA-style:

- The recommendation is clamped to ``[min_replicas, min(max_replicas, global_cap)]`` (a cap
  below ``min_replicas`` wins). A current count outside those bounds is moved into them at
  once, whatever the other rules say: clamping is a safety rule.
- Scale-up adds at most ``max_step_up`` replicas and happens at most once per
  ``scale_up_period_s``; a scale-up asked for sooner holds the current count. Moving up into
  the bounds counts as a scale-up for the period.
- Scale-down goes only to the highest recommendation of the last ``scale_down_window_s``
  (Kubernetes HPA's stabilization window: the current one and those after ``now − window``).
  A fresh state starts the window with the current count, as the HPA does, so an operator
  restart never scales down before a full window.
- Nor on a tick whose demand rises past the target utilization's slack over the tick before
  (``rising``, from `SpotPlan.demand_rising`): such a tick sees a burst begin, and a replica
  released then is a cold start away when the burst needs it. The recommendation still enters
  the window, so the scale-down comes at the next tick that does not rise. (Code's trace with
  16 replicas at the peak: a spot replica released as a burst began left 0.72% of the tokens
  short; held, 0.05%.)
- The state keeps only recommendations inside the window, and of those only the ones that can
  still be the window's maximum (a newer, higher one makes an older one irrelevant), so it
  holds at most ``max_replicas + 1`` entries however often it is called.
- Time must not go backwards: a ``now`` before the last tick is an `InvalidInputError`, since
  silently accepting it would stretch or shrink the windows. Pass a monotonic clock
  (``time.monotonic()``); the state belongs to one process.
- `hold` is the no-data tick (metrics missing): it never follows a recommendation and keeps
  the current count, except that it too moves an out-of-bounds count into bounds.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from costengine.cost import HOURS_PER_MONTH, SECONDS_PER_HOUR
from costengine.errors import (
    InvalidInputError,
    require_non_negative,
    require_positive,
    require_ratio,
)
from costengine.tenancy import _quantile

SPOT_MAX_COLD_START_S = 300.0
"""Seed, spot-hostile patterns: "Models with >5 min cold-start time"."""

DEFAULT_COLD_START_S = 120.0
"""A replica's cold start when nothing better is known (`ReplicaEconomics.cold_start_s`)."""

PLANNER_HISTORY_S = 3600.0
"""The demand history a planner reads: the last hour of ticks. The operator keeps this much per
policy (`costoperator.spot.DemandHistory`) and the backtest's planner observes the same, so a
trace longer than an hour replays what the operator would have planned (and a tick's work
stays constant however long the trace)."""

SCALE_DOWN_WINDOW_S = 300.0
"""The governor's default scale-down stabilization window, Kubernetes HPA's default."""

BURST_WINDOWS_S = (30.0, 60.0, 120.0)
"""The windows whose peak rates make the queue-aware burst signal (`serviceable_rate`): the
shortest two scrapes at the usual 15 s, the policy CRD's shortest rate window, the default
cold start."""

FALL_SAMPLES = 3
"""A fall of the sustained level counts once the median of this many latest samples shows it
(`sustained_level`): the smallest median that one odd sample does not move."""

_EPS = 1e-9
"""Slack for float noise in replica arithmetic (0.7 × 3 ÷ 0.3 is 6.999…, not 7)."""


# --- The planner ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicaEconomics:
    """What one replica serves and costs.

    The interruption defaults are illustrative, not measured: set them from the provider's
    interruption data and the model's measured cold start.
    """

    tokens_per_second: float
    """Total tokens/s one replica serves at 100% busy."""
    gpus_per_replica: float
    on_demand_usd_per_gpu_hour: float
    spot_usd_per_gpu_hour: float
    cold_start_s: float = DEFAULT_COLD_START_S
    """Seconds from asking for a spot replica until it serves."""
    interruptions_per_replica_hour: float = 0.05
    lost_work_s_per_interruption: float = 30.0
    """In-flight work redone after a preemption, s."""

    def __post_init__(self) -> None:
        require_positive("tokens_per_second", self.tokens_per_second)
        require_positive("gpus_per_replica", self.gpus_per_replica)
        require_non_negative("on_demand_usd_per_gpu_hour", self.on_demand_usd_per_gpu_hour)
        require_non_negative("spot_usd_per_gpu_hour", self.spot_usd_per_gpu_hour)
        require_non_negative("cold_start_s", self.cold_start_s)
        require_non_negative("interruptions_per_replica_hour", self.interruptions_per_replica_hour)
        require_non_negative("lost_work_s_per_interruption", self.lost_work_s_per_interruption)

    @property
    def on_demand_usd_per_replica_hour(self) -> float:
        return self.gpus_per_replica * self.on_demand_usd_per_gpu_hour

    @property
    def spot_usd_per_replica_hour(self) -> float:
        return self.gpus_per_replica * self.spot_usd_per_gpu_hour

    @property
    def interruption_usd_per_spot_replica_hour(self) -> float:
        """On-demand cover for the cold-start gap and the redone work, per spot replica-hour."""
        gap_s = self.cold_start_s + self.lost_work_s_per_interruption
        return (
            self.interruptions_per_replica_hour
            * gap_s
            / SECONDS_PER_HOUR
            * self.on_demand_usd_per_replica_hour
        )


@dataclass(frozen=True, slots=True)
class SpotLimits:
    """Bounds on the spot replicas of one workload and how the planner sizes them."""

    min_replicas: int = 0
    max_replicas: int = 8
    max_spot_fraction: float = 0.7
    """spot ÷ (on-demand + spot), in [0, 1]."""
    target_utilization: float = 0.7
    """Size so replicas run at most this busy, (0, 1]."""
    base_quantile: float = 0.5
    """The on-demand base covers this quantile of demand (the seed: P50), [0, 1]."""
    headroom: float = 0.0
    """Extra margin over the sizing demand at the target utilization, ≥ 0 (module, step 2)."""
    burst_quantile: float | None = 0.9
    """The burst margin covers this quantile of the rises seen within one lead time, [0, 1];
    None: the recent-peak rule (module, step 2)."""
    global_cap: int | None = None
    """Operator-wide cap on the spot replicas of one workload."""

    def __post_init__(self) -> None:
        require_non_negative("min_replicas", self.min_replicas)
        require_non_negative("max_replicas", self.max_replicas)
        if self.min_replicas > self.max_replicas:
            raise InvalidInputError(
                f"min_replicas ({self.min_replicas}) must not exceed "
                f"max_replicas ({self.max_replicas})"
            )
        require_ratio("max_spot_fraction", self.max_spot_fraction, allow_zero=True)
        require_ratio("target_utilization", self.target_utilization)
        require_ratio("base_quantile", self.base_quantile, allow_zero=True)
        require_non_negative("headroom", self.headroom)
        if self.burst_quantile is not None:
            require_ratio("burst_quantile", self.burst_quantile, allow_zero=True)
        if self.global_cap is not None:
            require_non_negative("global_cap", self.global_cap)

    @property
    def upper(self) -> int:
        """min(max_replicas, global_cap): the most spot replicas the counts allow."""
        if self.global_cap is None:
            return self.max_replicas
        return min(self.max_replicas, self.global_cap)


@dataclass(frozen=True, slots=True)
class WorkloadTraits:
    """The seed's spot-hostile patterns, as the user declares them."""

    slo_bound: bool = False
    multi_turn_state: bool = False
    tight_p99: bool = False


@dataclass(frozen=True, slots=True)
class SpotPlan:
    demand_tokens_per_second: float
    """The demand the plan is sized for at the target utilization, after headroom (with the
    burst rule: the sustained level, by default the current demand, or the burst at full
    throughput if that needs more)."""
    needed_replicas: int
    """Replicas (on demand + spot) the sizing needs (module, steps 2-3)."""
    on_demand_replicas: int
    """On-demand replicas running now (the input, echoed)."""
    recommended_on_demand_base: int
    """On-demand base sized for `SpotLimits.base_quantile` of the history."""
    spot_replicas: int
    """Recommended spot replicas now, within the limits; 0 when refused."""
    unclamped_spot_replicas: int
    """Spot replicas before limits and refusals."""
    expected_usd_per_hour: float
    """On demand + spot + interruption cover."""
    interruption_usd_per_hour: float
    all_on_demand_usd_per_hour: float
    """The same replica count, all on demand."""
    savings_usd_per_hour: float
    savings_usd_per_month: float
    refused: bool
    reasons: tuple[str, ...]
    """Refusals and warnings, one sentence each."""
    demand_rising: bool = False
    """The current sample rose past the target utilization's slack over the previous one
    (`demand_rising`): pass it to `govern`, which then holds a scale-down."""


def _replicas_for(demand_tokens_per_second: float, usable_tokens_per_second: float) -> int:
    if demand_tokens_per_second <= 0:
        return 0
    return max(1, math.ceil(demand_tokens_per_second / usable_tokens_per_second - _EPS))


def demand_rising(previous: float | None, current: float, target_utilization: float) -> bool:
    """Whether `current` rose past the target utilization's slack over `previous` (the sample
    before it; None: no history): ``current × target_utilization > previous``, the rise
    `sustained_level` counts as more than noise. Such a tick sees a burst begin, so the
    governor holds a scale-down on it (`govern`)."""
    require_non_negative("current", current)
    require_ratio("target_utilization", target_utilization)
    if previous is None:
        return False
    require_non_negative("previous", previous)
    return current * target_utilization > previous + _EPS


def spot_fraction_bound(max_spot_fraction: float, on_demand_replicas: int) -> int | None:
    """Most spot replicas with spot ÷ (on-demand + spot) ≤ `max_spot_fraction`; None: no bound."""
    require_ratio("max_spot_fraction", max_spot_fraction, allow_zero=True)
    require_non_negative("on_demand_replicas", on_demand_replicas)
    if max_spot_fraction >= 1:
        return None
    bound = max_spot_fraction * on_demand_replicas / (1 - max_spot_fraction)
    return math.floor(bound + _EPS)


def on_demand_for_spot(needed: int, on_demand_replicas: int, limits: SpotLimits) -> int | None:
    """The fewest on-demand replicas, at least `on_demand_replicas`, beside which the spot the
    limits allow (count, global cap, spot fraction) makes up `needed` replicas in all; None when
    no on-demand count below `needed` does (spot's count limits leave it short whatever runs on
    demand, or spot may not run at all)."""
    require_non_negative("needed", needed)
    require_non_negative("on_demand_replicas", on_demand_replicas)
    for od in range(on_demand_replicas, needed):
        bound = spot_fraction_bound(limits.max_spot_fraction, od)
        if od + (limits.upper if bound is None else min(limits.upper, bound)) >= needed:
            return od
    return None


def on_demand_needed(plan_at: Callable[[int], SpotPlan], start: int) -> tuple[int, SpotPlan]:
    """The fewest on-demand replicas, from `start` up, beside which the plan's spot makes up
    the plan's needed fleet (`plan_at(n)`: the plan beside n on-demand replicas), with that
    plan: past the spot limits (count, fraction), or when spot is refused or not worth its
    interruptions, asking for spot adds no capacity, so on demand must carry the rest. Ends:
    beside as many on-demand replicas as the fleet needs, any plan's spot suffices."""
    require_non_negative("start", start)
    od = start
    while True:
        plan = plan_at(od)
        if od + plan.spot_replicas >= plan.needed_replicas:
            return od, plan
        od += 1


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """Both halves of the fleet (`plan_fleet`)."""

    on_demand_replicas: int
    """On-demand replicas to run now: the base, and the cover."""
    base_replicas: int
    """The on-demand base beside which `spot` is planned."""
    cover_replicas: int
    """On demand for spot that does not serve (starting, under notice), or that on demand
    still carries until spot serves (make before break)."""
    spot: SpotPlan
    """The spot plan beside the base."""


def plan_fleet(
    demand_history: Sequence[float],
    current_demand: float,
    economics: ReplicaEconomics,
    limits: SpotLimits = SpotLimits(),
    traits: WorkloadTraits = WorkloadTraits(),
    *,
    base_rule: str = "p50",
    on_demand_now: int,
    spot_ready: int,
    spot_not_serving: int,
    recent_peak_horizon: int | None = None,
    level_horizon: int | None = 0,
    burst_history: Sequence[float] | None = None,
    current_burst: float | None = None,
) -> FleetPlan:
    """On-demand and spot replicas together, as the backtest's planner sizes them (its
    mechanisms 1-3 and the base rules ``p50`` and ``fraction``; without its market estimate):

    1. The base: ``p50``, the plan's ``recommended_on_demand_base`` (the P50 of the history
       and the current sample at the target utilization: the seed's base, and the base the
       plan's SLO refusal and below-base warning measure against); ``fraction``, none. (The
       backtest's planner counts its P50 base at full throughput, ``base_utilization``.)
    2. Raised until the plan's spot carries the rest of the needed fleet
       (`on_demand_needed`; spot beside no on-demand replica is refused, so there is at
       least one while there is demand).
    3. Cover: spot that does not serve and may not (`spot_not_serving`: not given by the market
       yet, or under a preemption notice) is carried on demand meanwhile, never past the needed
       fleet. Spot the market gave, starting on its node, is not counted there: it serves no
       later than an on-demand replica asked for now would. And on demand that
       spot is to replace is released only as spot serves (make before break: at least
       ``min(on_demand_now, needed − spot_ready)``).

    Spot is planned beside the base, not beside the cover: the cover replaces spot, it does
    not make it unnecessary."""
    require_non_negative("on_demand_now", on_demand_now)
    require_non_negative("spot_ready", spot_ready)
    require_non_negative("spot_not_serving", spot_not_serving)
    if base_rule not in ("p50", "fraction"):
        raise InvalidInputError(f"unknown base rule {base_rule!r}; known: p50, fraction")

    def plan_at(on_demand: int) -> SpotPlan:
        return plan_spot(
            demand_history,
            current_demand,
            on_demand,
            economics,
            limits,
            traits,
            recent_peak_horizon=recent_peak_horizon,
            level_horizon=level_horizon,
            burst_history=burst_history,
            current_burst=current_burst,
        )

    start = plan_at(on_demand_now).recommended_on_demand_base if base_rule == "p50" else 0
    base, plan = on_demand_needed(plan_at, start)
    cover = min(spot_not_serving, max(0, plan.needed_replicas - base))
    held = min(on_demand_now, plan.needed_replicas - spot_ready)
    cover = max(cover, held - base)
    return FleetPlan(base + cover, base, cover, plan)


def notice_replacements(planned: int, noticed: int, limits: SpotLimits) -> int:
    """Spot replicas to ask for now beside a plan of `planned`, for `noticed` of the running
    ones under a preemption notice: each one the plan keeps gets a replacement that starts
    now, a cold start ahead of the preemption instead of after it. At most `planned` (a
    replica the plan lets go needs none) and at most what `max_replicas` and the global cap
    leave above `planned`. The spot fraction does not bound them: the noticed replicas are
    leaving, and the plan's fraction holds for the ones that stay."""
    require_non_negative("planned", planned)
    require_non_negative("noticed", noticed)
    return max(0, min(noticed, planned, limits.upper - planned))


def burst_margin(
    history: Sequence[float], current: float, lead: int | None, quantile: float
) -> float:
    """How far demand may rise from `current` within `lead` samples: the `quantile` of the
    rises seen from the samples of `history` (oldest first) at or above `current`, each the
    highest of its next `lead` samples (`current` last) less it, 0 when demand fell (`lead`
    None: all later samples). 0 when no sample is at or above `current` (a new high: the
    target utilization's slack is the margin) or ``lead = 0``.

    Rises from the current level or above, not from any level: at the top of a burst the
    rises seen from silence say nothing about what comes next, and counting them would stack
    a second burst on the first."""
    require_ratio("quantile", quantile, allow_zero=True)
    require_non_negative("current", current)
    if lead is not None:
        require_non_negative("lead", lead)
    samples = [*history, current]
    n = len(samples)
    if n < 2 or lead == 0:
        return 0.0
    span = n if lead is None else lead
    rises: list[float] = []
    window: deque[int] = deque()  # later samples in reach, highest first (a monotone deque)
    for i in range(n - 2, -1, -1):
        j = i + 1
        while window and samples[window[-1]] <= samples[j]:
            window.pop()
        window.append(j)
        while window[0] > i + span:
            window.popleft()
        if samples[i] >= current:
            rises.append(max(0.0, samples[window[0]] - samples[i]))
    return _quantile(rises, quantile) if rises else 0.0


def serviceable_rate(peaks: Mapping[float, float], latency_s: float, resolution_s: float) -> float:
    """The least constant tokens/s that serves, within `latency_s`, the busiest stretches
    `peaks` shows: `peaks` maps a window (s) to the highest rate any stretch of that length
    carried (tokens/s); a stretch of w s at p tokens/s holds p × w tokens, which a throughput
    C serves within the bound when C × (w + latency) ≥ p × w. The signal places work only to
    within `resolution_s` (its sampling step: work counted in a sample may have waited that
    long already), so the bound counts ``latency − resolution``, never below 0: the result is
    then the highest peak itself. 0 for no peaks.

    A steady rate r gives r × w ÷ (w + latency − resolution) at the longest window: below r,
    the queue the bound allows over that window. A burst shorter than the window shows in the
    shorter windows at its height."""
    require_non_negative("latency_s", latency_s)
    require_non_negative("resolution_s", resolution_s)
    wait = max(0.0, latency_s - resolution_s)
    best = 0.0
    for window, peak in peaks.items():
        require_positive("window", window)
        require_non_negative(f"peak over {window:g} s", peak)
        best = max(best, peak * window / (window + wait))
    return best


def _held(samples: Sequence[float], horizon: int | None) -> list[float]:
    """Each sample raised to the highest of it and the ``horizon − 1`` before it (None: all
    before it; 0 or 1: the samples as they are)."""
    out: list[float] = []
    window: deque[int] = deque()  # indices in reach, highest first (a monotone deque)
    for i, value in enumerate(samples):
        while window and samples[window[-1]] <= value:
            window.pop()
        window.append(i)
        if horizon is not None:
            while window[0] <= i - max(1, horizon):
                window.popleft()
        out.append(samples[window[0]])
    return out


def _trailing(samples: Sequence[float], horizon: int | None) -> list[float]:
    """The last `horizon` of `samples` (None: all of them, 0: none)."""
    if horizon is None:
        return list(samples)
    return list(samples)[-horizon:] if horizon else []


def sustained_level(
    history: Sequence[float],
    current: float,
    horizon: int | None,
    target_utilization: float,
    lead: int | None = None,
    burst_quantile: float | None = None,
) -> float:
    """The demand the planner's steady term sizes at the target utilization (module, step 2):
    the median of the last `horizon` samples of `history` (oldest first; None: all of them)
    and `current`, except:

    - a rise: `current` when it is above ``median ÷ target_utilization`` (more than the
      median's fleet serves at full throughput: not noise the slack absorbs, a new level),
      but with `burst_quantile` set not when it is a rise the history has seen: no higher
      than the median plus ``burst_margin(history, median, lead, burst_quantile)``. Such a
      rise is a burst, and the burst term carries bursts; counted as a level it would keep
      the slack over every burst for a scale-down window (periodic bursts: twice the fleet
      they need, or a scale-up and a scale-down at each);
    - a fall: when `current` is below the median, the median of the last `FALL_SAMPLES`
      samples (`current` and the ones just before it) if that is lower. The scale-down window
      already holds a fall for its length; a median over the window alone would hold it half
      as long again before the window even starts.

    ``horizon = 0``: `current`."""
    require_non_negative("current", current)
    require_ratio("target_utilization", target_utilization)
    if horizon is not None:
        require_non_negative("horizon", horizon)
    level = _quantile([*_trailing(history, horizon), current], 0.5)
    if current * target_utilization > level + _EPS:
        if burst_quantile is None:
            return current
        seen = burst_margin(history, level, lead, burst_quantile)
        return level if current <= level + seen + _EPS else current
    if current < level:
        latest = _quantile([*_trailing(history, FALL_SAMPLES - 1), current], 0.5)
        return min(level, latest)
    return level


def _percentile_name(q: float) -> str:
    return f"P{q * 100:.3g}"


def plan_spot(
    demand_history: Sequence[float],
    current_demand: float,
    on_demand_replicas: int,
    economics: ReplicaEconomics,
    limits: SpotLimits = SpotLimits(),
    traits: WorkloadTraits = WorkloadTraits(),
    recent_peak_horizon: int | None = None,
    level_horizon: int | None = 0,
    burst_history: Sequence[float] | None = None,
    current_burst: float | None = None,
) -> SpotPlan:
    """Spot replicas to run now beside `on_demand_replicas`, and what the hour costs.

    `demand_history` holds recent total tokens/s samples, oldest first (may be empty);
    `recent_peak_horizon` is how many trailing samples count for the burst peak (None: all,
    0: only `current_demand`); `level_horizon` how many trailing samples the sustained level
    is the median of (None: all, 0: the level is `current_demand`; the burst rule only).
    `current_burst` (with `burst_history`, the earlier samples, oldest first; may be shorter
    than `demand_history`): the queue-aware burst signal (`serviceable_rate`) for the burst
    term instead of the demand; None: the demand. The mechanism is in the module docstring.
    """
    for i, sample in enumerate(demand_history):
        require_non_negative(f"demand_history[{i}]", sample)
    require_non_negative("current_demand", current_demand)
    require_non_negative("on_demand_replicas", on_demand_replicas)
    if recent_peak_horizon is not None:
        require_non_negative("recent_peak_horizon", recent_peak_horizon)
    if level_horizon is not None:
        require_non_negative("level_horizon", level_horizon)
    if current_burst is not None:
        require_non_negative("current_burst", current_burst)
        for i, sample in enumerate(burst_history or ()):
            require_non_negative(f"burst_history[{i}]", sample)

    usable = economics.tokens_per_second * limits.target_utilization
    if limits.burst_quantile is None:
        recent = _trailing(demand_history, recent_peak_horizon)
        sizing = float(max([current_demand, *recent])) * (1 + limits.headroom)
        needed = _replicas_for(sizing, usable)
    else:
        level = sustained_level(
            demand_history,
            current_demand,
            level_horizon,
            limits.target_utilization,
            recent_peak_horizon,
            limits.burst_quantile,
        )
        steady = level * (1 + limits.headroom)
        if current_burst is None:
            signal, now = list(demand_history), current_demand
        else:
            *signal, now = _held([*(burst_history or ()), current_burst], recent_peak_horizon)
        margin = burst_margin(signal, now, recent_peak_horizon, limits.burst_quantile)
        burst = now + margin
        needed = max(
            _replicas_for(steady, usable), _replicas_for(burst, economics.tokens_per_second)
        )
        sizing = max(steady, burst * limits.target_utilization)
    base = _replicas_for(_quantile([*demand_history, current_demand], limits.base_quantile), usable)
    if sizing > 0:
        base = max(base, 1)
    unclamped = max(0, needed - on_demand_replicas)

    warnings: list[str] = []
    spot = min(max(unclamped, limits.min_replicas), limits.max_replicas)
    short_of: list[str] = []
    if spot < unclamped:
        short_of.append(f"max_replicas {limits.max_replicas}")
    cap = limits.global_cap
    if cap is not None and spot > cap:
        if cap < limits.min_replicas:
            warnings.append(
                f"warning: the global cap ({cap}) is below min_replicas ({limits.min_replicas});"
                " the cap wins."
            )
        if cap < unclamped:
            short_of.append(f"global cap {cap}")
        spot = cap
    fraction_bound = spot_fraction_bound(limits.max_spot_fraction, on_demand_replicas)
    if fraction_bound is not None and spot > fraction_bound:
        if fraction_bound < limits.min_replicas:
            warnings.append(
                f"warning: max_spot_fraction {limits.max_spot_fraction:g} allows "
                f"{fraction_bound} spot replicas beside {on_demand_replicas} on demand, below "
                f"min_replicas ({limits.min_replicas}); the fraction wins."
            )
        if fraction_bound < unclamped:
            short_of.append(f"max_spot_fraction {limits.max_spot_fraction:g}")
        spot = fraction_bound

    refusals: list[str] = []
    if economics.cold_start_s > SPOT_MAX_COLD_START_S:
        refusals.append(
            f"refused: the cold start ({economics.cold_start_s:g} s) exceeds the seed's "
            f"{SPOT_MAX_COLD_START_S:g} s limit for spot, so a preempted replica is replaced "
            "too late to help."
        )
    if on_demand_replicas == 0 and (needed > 0 or spot > 0):
        refusals.append(
            "refused: no on-demand replica is running, so spot would be the primary fleet; "
            f"run an on-demand base of at least {max(base, 1)} first."
        )
    if spot > 0 and on_demand_replicas + spot <= 1:
        refusals.append(
            "refused: the deployment would be a single replica on spot, which one preemption "
            "takes down."
        )
    below_base = on_demand_replicas < base
    if traits.slo_bound and spot > 0 and below_base:
        refusals.append(
            f"refused: the workload is SLO-bound and its on-demand fleet ({on_demand_replicas}) "
            f"is below the {_percentile_name(limits.base_quantile)} base ({base}), so spot would "
            "carry primary traffic; grow the on-demand base first."
        )

    spot_total = (
        economics.spot_usd_per_replica_hour + economics.interruption_usd_per_spot_replica_hour
    )
    if refusals:
        spot = 0
        reasons = tuple(refusals)
    else:
        if spot > 0 and spot_total >= economics.on_demand_usd_per_replica_hour:
            warnings.append(
                f"warning: a spot replica costs ${spot_total:.2f}/h once interruptions are "
                f"priced, not less than ${economics.on_demand_usd_per_replica_hour:.2f}/h on "
                "demand, so no spot is recommended."
            )
            spot = 0
            short_of = []
        if short_of:
            remedy = ""
            base_for_spot = on_demand_for_spot(needed, on_demand_replicas, limits)
            if fraction_bound is not None and spot == fraction_bound and base_for_spot:
                remedy = (
                    f" {base_for_spot} on-demand replicas would let spot carry the rest "
                    "within the limits."
                )
            warnings.append(
                f"warning: demand needs {unclamped} spot replicas but "
                f"{' and '.join(short_of)} allow {spot}; the fleet is {unclamped - spot} "
                f"replicas short at the target utilization.{remedy}"
            )
        if spot > 0:
            if below_base:
                warnings.append(
                    f"warning: the on-demand fleet ({on_demand_replicas}) is below the "
                    f"{_percentile_name(limits.base_quantile)} base ({base}), so spot carries "
                    "typical traffic, not only bursts."
                )
            if traits.multi_turn_state:
                warnings.append(
                    "warning: multi-turn conversation state on a preempted spot replica is "
                    "lost; keep stateful sessions on on-demand replicas."
                )
            if traits.tight_p99:
                warnings.append(
                    "warning: spot preemptions and cold starts show in P99 latency, and this "
                    "workload needs a consistent P99."
                )
        reasons = tuple(warnings)

    interruption = spot * economics.interruption_usd_per_spot_replica_hour
    expected = (
        on_demand_replicas * economics.on_demand_usd_per_replica_hour
        + spot * economics.spot_usd_per_replica_hour
        + interruption
    )
    all_on_demand = (on_demand_replicas + spot) * economics.on_demand_usd_per_replica_hour
    savings = all_on_demand - expected
    return SpotPlan(
        demand_tokens_per_second=sizing,
        needed_replicas=needed,
        on_demand_replicas=on_demand_replicas,
        recommended_on_demand_base=base,
        spot_replicas=spot,
        unclamped_spot_replicas=unclamped,
        expected_usd_per_hour=expected,
        interruption_usd_per_hour=interruption,
        all_on_demand_usd_per_hour=all_on_demand,
        savings_usd_per_hour=savings,
        savings_usd_per_month=savings * HOURS_PER_MONTH,
        refused=bool(refusals),
        reasons=reasons,
        demand_rising=demand_rising(
            demand_history[-1] if demand_history else None,
            current_demand,
            limits.target_utilization,
        ),
    )


# --- The governor -----------------------------------------------------------------------------

Direction = Literal["up", "down", "none"]


@dataclass(frozen=True, slots=True)
class GovernorLimits:
    min_replicas: int
    max_replicas: int
    global_cap: int | None = None
    max_step_up: int = 2
    """Replicas added per scale-up at most, ≥ 1."""
    scale_up_period_s: float = 60.0
    """At most one scale-up per this many seconds."""
    scale_down_window_s: float = SCALE_DOWN_WINDOW_S
    """Scale down only to the highest recommendation in this window, s."""

    def __post_init__(self) -> None:
        require_non_negative("min_replicas", self.min_replicas)
        require_non_negative("max_replicas", self.max_replicas)
        if self.min_replicas > self.max_replicas:
            raise InvalidInputError(
                f"min_replicas ({self.min_replicas}) must not exceed "
                f"max_replicas ({self.max_replicas})"
            )
        if self.global_cap is not None:
            require_non_negative("global_cap", self.global_cap)
        require_positive("max_step_up", self.max_step_up)
        require_non_negative("scale_up_period_s", self.scale_up_period_s)
        require_non_negative("scale_down_window_s", self.scale_down_window_s)

    @property
    def upper(self) -> int:
        """min(max_replicas, global_cap)."""
        if self.global_cap is None:
            return self.max_replicas
        return min(self.max_replicas, self.global_cap)

    @property
    def lower(self) -> int:
        """min_replicas, unless the global cap is lower: the cap wins."""
        return min(self.min_replicas, self.upper)

    def clamp(self, replicas: int) -> int:
        return min(max(replicas, self.lower), self.upper)

    def _upper_name(self) -> str:
        if self.global_cap is not None and self.global_cap < self.max_replicas:
            return f"global cap {self.upper}"
        return f"max {self.upper}"


@dataclass(frozen=True, slots=True)
class GovernorState:
    """What the governor remembers between ticks; start with `GovernorState()`."""

    recommendations: tuple[tuple[float, int], ...] = ()
    """(time, clamped recommendation) in the scale-down window, oldest first; only entries
    that can still be the window's maximum (their recommendations strictly decrease)."""
    last_scale_up_at: float | None = None
    last_tick_at: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int
    """Replicas to set; equal to the current count means no action."""
    direction: Direction
    reason: str
    state: GovernorState
    """The state to pass to the next tick."""


def _check_tick(state: GovernorState, current: int, now: float) -> None:
    require_non_negative("current", current)
    if not math.isfinite(now):
        raise InvalidInputError(f"now must be a finite time in seconds, got {now}")
    if state.last_tick_at is not None and now < state.last_tick_at:
        raise InvalidInputError(
            f"now ({now:g}) is earlier than the governor's last tick ({state.last_tick_at:g}); "
            "pass a monotonic clock such as time.monotonic()"
        )


def _window(
    state: GovernorState, current: int, now: float, limits: GovernorLimits
) -> list[tuple[float, int]]:
    """The recommendations still in the window at `now`, seeded with the current count when
    the state is fresh (as the HPA does)."""
    if state.last_tick_at is None:
        return [(now, limits.clamp(current))]
    start = now - limits.scale_down_window_s
    return [(t, r) for t, r in state.recommendations if t > start]


def _record(window: list[tuple[float, int]], now: float, recommended: int) -> None:
    """Append (now, recommended), dropping older entries it makes irrelevant to the maximum."""
    while window and window[-1][1] <= recommended:
        window.pop()
    window.append((now, recommended))


def _into_bounds(
    state: GovernorState, current: int, now: float, limits: GovernorLimits
) -> Decision | None:
    """The safety move when `current` is outside the bounds, else None."""
    if current > limits.upper:
        return Decision(limits.upper, "down", f"clamped to {limits._upper_name()}", state)
    if current < limits.lower:
        moved = replace(state, last_scale_up_at=now)
        return Decision(limits.lower, "up", f"clamped to min {limits.lower}", moved)
    return None


def govern(
    state: GovernorState,
    current: int,
    recommended: int,
    now: float,
    limits: GovernorLimits,
    *,
    rising: bool = False,
) -> Decision:
    """The replica count to set at time `now` (s, monotonic) given a recommendation.
    `rising` (`SpotPlan.demand_rising`): demand rose past the slack at this tick, so a
    scale-down the window allows waits for a tick that does not (the recommendation still
    enters the window)."""
    _check_tick(state, current, now)
    require_non_negative("recommended", recommended)
    target = limits.clamp(recommended)
    window = _window(state, current, now, limits)
    _record(window, now, target)
    highest = window[0][1]
    ticked = replace(state, recommendations=tuple(window), last_tick_at=now)
    w = limits.scale_down_window_s

    clamped = _into_bounds(ticked, current, now, limits)
    if clamped is not None:
        return clamped
    if target > current:
        last_up = state.last_scale_up_at
        if last_up is not None and now - last_up < limits.scale_up_period_s:
            return Decision(
                current,
                "none",
                f"scale-up to {target} held: last scale-up {now - last_up:g}s ago, "
                f"period {limits.scale_up_period_s:g}s",
                ticked,
            )
        desired = min(target, current + limits.max_step_up)
        reason = (
            f"step-limited from {target} to {desired} "
            f"(+{limits.max_step_up} per {limits.scale_up_period_s:g}s)"
            if desired < target
            else f"scaled up to {desired}"
        )
        return Decision(desired, "up", reason, replace(ticked, last_scale_up_at=now))
    if highest < current and rising:
        return Decision(
            current,
            "none",
            f"scale-down to {highest} held: demand is rising past the target utilization's slack",
            ticked,
        )
    if highest < current:
        return Decision(
            highest,
            "down",
            f"scaled down to {highest} (highest recommendation in last {w:g}s)",
            ticked,
        )
    if target < current:
        reason = f"held by stabilization window (max {highest} in last {w:g}s)"
    else:
        reason = f"at recommendation {target}"
    return Decision(current, "none", reason, ticked)


def hold(
    state: GovernorState, current: int, now: float, reason: str, limits: GovernorLimits
) -> Decision:
    """A tick without data (metrics missing): keep `current`, only moving it into bounds."""
    _check_tick(state, current, now)
    window = _window(state, current, now, limits)
    ticked = replace(state, recommendations=tuple(window), last_tick_at=now)
    clamped = _into_bounds(ticked, current, now, limits)
    if clamped is not None:
        return replace(clamped, reason=f"{reason}; {clamped.reason}")
    return Decision(current, "none", f"holding at {current}: {reason}", ticked)
