"""Ground truth: what the simulated fleet really did, for any window of trace time.

Tests compare what the operator measures (Prometheus `rate()` over engine counters and DCGM
gauges) with what happened. The simulator therefore keeps, per pod, cumulative totals at the
times its work changed shape (a prefill starting or ending, a sequence finishing) and at the
present, and answers a window as the difference of two interpolated points: exact at those
times, linear in between. Busy time is exact everywhere (its slope changes only when work
starts or stops, which are recorded); tokens accrue steadily inside a decode segment of fixed
batch, so linear is their right shape too.

The point at the present is provisional: advancing the fleet again replaces it unless an event
came in between, so a fleet advanced every few milliseconds by `SimServer` keeps one point per
event, not one per tick.

Units: times in trace seconds (the trace's own clock, not the wall clock), tokens as counts,
busy and allocated time in GPU-seconds (a tensor-parallel group of N GPUs busy for 1 s is N).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, fields

from costengine.cost import SECONDS_PER_HOUR, hourly_cost_usd, usd_per_million_tokens
from costoperator.sim.errors import SimError

#: Fields of a timeline point, in order.
_POINT_FIELDS = ("prompt", "generation", "cached", "busy_s", "prefill_busy_s", "finished")


class Timeline:
    """Cumulative totals of one pod at non-decreasing trace times.

    Totals: prompt tokens prefilled, tokens generated, prompt tokens served from the prefix
    cache, busy seconds (any GPU work), busy seconds spent on prefill, requests finished.
    """

    __slots__ = ("_provisional", "_times", "_values")

    def __init__(self) -> None:
        self._times: list[float] = [0.0]
        self._values: list[tuple[float, ...]] = [(0.0,) * len(_POINT_FIELDS)]
        self._provisional = False

    def __len__(self) -> int:
        return len(self._times)

    @property
    def last_s(self) -> float:
        return self._times[-1]

    def record(self, t: float, values: tuple[float, ...], *, provisional: bool = False) -> None:
        """Totals at trace time `t`. A record at the last point's time replaces it, and so does
        a provisional record (the present) after a provisional one (an earlier present)."""
        if provisional and self._provisional:
            self._times[-1] = max(t, self._times[-1])
            self._values[-1] = values
        elif t <= self._times[-1]:
            # The same instant, newer state (a float rounding step backwards is clamped to the
            # last time); the point stays permanent if either record was.
            self._values[-1] = values
            self._provisional = self._provisional and provisional
        else:
            self._times.append(t)
            self._values.append(values)
            self._provisional = provisional

    def at(self, t: float) -> tuple[float, ...]:
        """Totals at trace time `t` (linear between records, constant after the last)."""
        times = self._times
        i = bisect_right(times, t)
        if i == 0:
            return self._values[0]
        if i == len(times) or times[i - 1] == t:
            return self._values[i - 1]
        t0, t1 = times[i - 1], times[i]
        v0, v1 = self._values[i - 1], self._values[i]
        w = (t - t0) / (t1 - t0)
        return tuple(a + (b - a) * w for a, b in zip(v0, v1, strict=True))


class ArrivalLog:
    """Requests dispatched to one pod: arrival time, prompt and output tokens asked for, and
    whether the pod rejected it (prompt longer than the model's context, or a KV cache too
    small for even one such request)."""

    __slots__ = ("_cum", "_times")

    def __init__(self) -> None:
        self._times: list[float] = []
        # Cumulative (requests, prompt tokens, output tokens, rejected requests) after each.
        self._cum: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)]

    def record(self, arrival_s: float, prompt: int, output: int, rejected: bool) -> None:
        n, p, o, r = self._cum[-1]
        self._times.append(arrival_s)
        self._cum.append((n + 1, p + prompt, o + output, r + int(rejected)))

    def before(self, t: float) -> tuple[int, int, int, int]:
        """Cumulative (requests, prompt tokens, output tokens, rejected) arriving before `t`."""
        return self._cum[bisect_left(self._times, t)]


@dataclass(frozen=True, slots=True)
class Truth:
    """What a pod or workload did in the trace-time window [start_s, end_s).

    Served tokens count when the engine produced them (prompt tokens when their prefill ends,
    output tokens at each decode step); requested tokens count at the requests' arrival, so
    served ≤ requested holds over the whole run, not necessarily in every short window.
    """

    start_s: float
    end_s: float
    #: Prompt tokens prefilled, cached ones included (what `prompt_tokens_total` counts).
    prompt_tokens: float
    #: Output tokens generated.
    generation_tokens: float
    #: Prompt tokens whose KV came from the prefix cache instead of prefill compute.
    cached_prompt_tokens: float
    #: GPU-seconds with work on the GPU (prefill or decode), summed over GPUs.
    busy_gpu_s: float
    #: The part of `busy_gpu_s` spent on prefill (the input side of an input/output split).
    prefill_busy_gpu_s: float
    #: GPU-seconds allocated: GPUs held × window length.
    allocated_gpu_s: float
    finished_requests: float
    arrived_requests: int
    rejected_requests: int
    requested_prompt_tokens: int
    requested_generation_tokens: int

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def tokens(self) -> float:
        """Prompt plus generated tokens: the denominator of `token_type=all` $/1M."""
        return self.prompt_tokens + self.generation_tokens

    @property
    def busy_ratio(self) -> float:
        """Busy GPU-seconds over allocated GPU-seconds, 0..1 (0 for an empty window)."""
        return self.busy_gpu_s / self.allocated_gpu_s if self.allocated_gpu_s > 0 else 0.0

    @property
    def cache_hit_ratio(self) -> float:
        """Share of prompt tokens served from the prefix cache, 0..1."""
        return self.cached_prompt_tokens / self.prompt_tokens if self.prompt_tokens > 0 else 0.0

    @property
    def prefill_time_ratio(self) -> float:
        """Share of busy GPU time spent on prefill, 0..1."""
        return self.prefill_busy_gpu_s / self.busy_gpu_s if self.busy_gpu_s > 0 else 0.0

    def tokens_per_second(self) -> float:
        """Tokens per trace second over the window."""
        return self.tokens / self.duration_s if self.duration_s > 0 else 0.0

    def usd_per_million_tokens(self, usd_per_gpu_hour: float) -> float | None:
        """Cost of the allocated GPUs over the window ÷ tokens served, in USD per 1M tokens.

        Allocated, not busy, GPUs are what a cloud bills. None when no token was served (the
        price of nothing is undefined, not infinite).
        """
        if self.tokens <= 0 or self.duration_s <= 0:
            return None
        gpus = self.allocated_gpu_s / self.duration_s
        return usd_per_million_tokens(
            hourly_cost_usd(usd_per_gpu_hour, gpus), self.tokens_per_second()
        )

    def usd(self, usd_per_gpu_hour: float) -> float:
        """Dollars the allocated GPUs cost over the window."""
        return self.allocated_gpu_s / SECONDS_PER_HOUR * usd_per_gpu_hour


def window_truth(
    timeline: Timeline, arrivals: ArrivalLog, gpus: int, start_s: float, end_s: float
) -> Truth:
    """One pod's truth over [start_s, end_s) from its timeline and arrival log."""
    if end_s < start_s:
        raise SimError(f"window ends ({end_s}) before it starts ({start_s})")
    a, b = timeline.at(start_s), timeline.at(end_s)
    d = [y - x for x, y in zip(a, b, strict=True)]
    n0, p0, o0, r0 = arrivals.before(start_s)
    n1, p1, o1, r1 = arrivals.before(end_s)
    return Truth(
        start_s=start_s,
        end_s=end_s,
        prompt_tokens=d[0],
        generation_tokens=d[1],
        cached_prompt_tokens=d[2],
        busy_gpu_s=d[3] * gpus,
        prefill_busy_gpu_s=d[4] * gpus,
        allocated_gpu_s=(end_s - start_s) * gpus,
        finished_requests=d[5],
        arrived_requests=n1 - n0,
        rejected_requests=r1 - r0,
        requested_prompt_tokens=p1 - p0,
        requested_generation_tokens=o1 - o0,
    )


def sum_truths(parts: Iterable[Truth], start_s: float, end_s: float) -> Truth:
    """Totals of several pods' truths over the same window."""
    names = [f.name for f in fields(Truth) if f.name not in ("start_s", "end_s")]
    totals: dict[str, float] = dict.fromkeys(names, 0.0)
    for part in parts:
        for name in names:
            totals[name] += getattr(part, name)
    return Truth(
        start_s=start_s,
        end_s=end_s,
        prompt_tokens=totals["prompt_tokens"],
        generation_tokens=totals["generation_tokens"],
        cached_prompt_tokens=totals["cached_prompt_tokens"],
        busy_gpu_s=totals["busy_gpu_s"],
        prefill_busy_gpu_s=totals["prefill_busy_gpu_s"],
        allocated_gpu_s=totals["allocated_gpu_s"],
        finished_requests=totals["finished_requests"],
        arrived_requests=int(totals["arrived_requests"]),
        rejected_requests=int(totals["rejected_requests"]),
        requested_prompt_tokens=int(totals["requested_prompt_tokens"]),
        requested_generation_tokens=int(totals["requested_generation_tokens"]),
    )
