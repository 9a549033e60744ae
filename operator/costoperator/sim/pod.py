"""One simulated inference pod: a continuous-batching engine in trace time.

The loop is the one vLLM and SGLang run, at the granularity the cost model needs:

- Requests queue first come, first served. At a step boundary the engine admits waiting
  requests while the batch's KV cache still fits: n sequences of the batch's mean final context
  (prompt + output, reserved whole, so nothing is ever preempted) fit when
  n ≤ `Deployment.max_batch(mean context)`, which also applies the engine's `max_num_seqs`.
- Admitted prompts are prefilled in one pass (`Deployment.prefill`; GEMMs over all new tokens
  at once, causal attention per prompt). Prompt tokens found in the prefix cache skip prefill
  compute; their KV is still attended to by the new tokens. The pass emits each request's first
  token. Decoding pauses meanwhile (prefill is not chunked into decode steps).
- Each decode step emits one token per running sequence and costs
  `Deployment.decode_step(batch, mean context).total_s`.

Cheap by construction: between two events (a sequence finishing, a request arriving) the batch
does not change, and the step time is affine in the mean context (weights and all-reduce per
step are fixed; KV reads and attention FLOPs grow linearly with context), which grows by one
token per step. So n steps take n·(α + β·c̄) + β·n(n-1)/2 seconds, and the number of steps to
the next event is the root of a quadratic: one event per arrival, admission round and finish,
never a Python loop per token.

All times are trace seconds. Counters are tokens. See `truth.py` for the ground truth record.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from costengine.throughput import Deployment
from costoperator.sim.cache import PrefixCache
from costoperator.sim.errors import SimError
from costoperator.sim.truth import ArrivalLog, Timeline, Truth, window_truth
from costoperator.traces import Request

Engine = Literal["vllm", "sglang"]
ENGINES: tuple[Engine, ...] = ("vllm", "sglang")

#: Tokens per prefix-cache block: the Mooncake trace hashes prompts in 512-token blocks.
PREFIX_BLOCK_TOKENS = 512

#: vLLM v1's `request_latency_buckets` (vllm/v1/metrics/loggers.py), used by
#: `vllm:request_prefill_time_seconds` and `vllm:request_decode_time_seconds`. Seconds.
REQUEST_LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
    40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip


def one_two_five_buckets(max_value: int) -> tuple[float, ...]:
    """vLLM's `build_1_2_5_buckets` (vllm/v1/metrics/loggers.py): 1, 2, 5, 10, 20, 50, … up to
    `max_value`, the bounds of `vllm:request_prompt_tokens` (`max_value` = max_model_len)."""
    out: list[float] = []
    scale = 1
    while True:
        for mantissa in (1, 2, 5):
            if mantissa * scale > max_value:
                return tuple(out)
            out.append(float(mantissa * scale))
        scale *= 10


#: Context at which the decode step's slope in context is read off (any positive value works:
#: the step time is affine in context).
_SLOPE_CONTEXT_TOKENS = 4096.0


@dataclass(frozen=True, slots=True)
class PodSpec:
    """What Kubernetes knows about a pod and what it serves.

    `gpus` is the tensor-parallel degree: one engine process spans all of the pod's GPUs.
    `served_model_name` is the engine's `model_name` label (vLLM defaults it to the model path).
    `container` names the engine container, the `container` label DCGM puts on its GPUs.
    """

    namespace: str
    name: str
    workload: str
    node: str
    engine: Engine
    deployment: Deployment
    served_model_name: str
    container: str = ""

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise SimError(f"pod {self.name}: engine {self.engine!r} not one of {ENGINES}")
        for label, value in (("namespace", self.namespace), ("name", self.name)):
            if not value:
                raise SimError(f"pod {self.name!r}: empty {label}")
        if not self.deployment.fits():
            raise SimError(
                f"pod {self.name}: {self.deployment.model.name} does not fit on "
                f"{self.deployment.tp}× {self.deployment.gpu.name}"
            )

    @property
    def gpus(self) -> int:
        return self.deployment.tp

    @property
    def container_name(self) -> str:
        return self.container or self.engine


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A Prometheus histogram's state: per-bucket counts (not cumulative; the last entry is
    the +Inf overflow), sum of observations in seconds, and count."""

    bounds_s: tuple[float, ...]
    counts: tuple[int, ...]
    sum_s: float
    count: int

    def cumulative(self) -> list[tuple[str, float]]:
        """Buckets as Prometheus exposes them: `le` string → observations ≤ bound."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds_s, self.counts, strict=False):
            running += n
            out.append((repr(float(bound)), float(running)))
        out.append(("+Inf", float(self.count)))
        return out


class _Histogram:
    __slots__ = ("bounds", "counts", "n", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        i = 0
        bounds = self.bounds
        while i < len(bounds) and value > bounds[i]:
            i += 1
        self.counts[i] += 1
        self.total += value
        self.n += 1

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self.counts), self.total, self.n)


@dataclass(frozen=True, slots=True)
class PodStats:
    """What the pod's engine would show on `/metrics` right now (counters since its last
    start, in tokens; gauges in requests; histograms in trace seconds)."""

    engine: Engine
    served_model_name: str
    started_s: float
    prompt_tokens: int
    generation_tokens: int
    prefix_cache_queries: int
    prefix_cache_hits: int
    running: int
    waiting: int
    prefill_time: HistogramSnapshot
    decode_time: HistogramSnapshot
    prompt_tokens_request: HistogramSnapshot
    """`vllm:request_prompt_tokens`: each finished request's prompt length (tokens, not
    seconds, in the snapshot's `bounds_s`/`sum_s`)."""


@dataclass(slots=True)
class _Pending:
    arrival_s: float
    prompt: int
    output: int
    blocks: tuple[int, ...]

    @property
    def final_context(self) -> int:
        return self.prompt + self.output


@dataclass(slots=True, eq=False)
class _Seq:
    prompt: int
    output: int
    cached: int
    first_token_s: float = 0.0
    prefill_s: float = 0.0

    @property
    def final_context(self) -> int:
        return self.prompt + self.output


@dataclass(slots=True)
class _Totals:
    """Cumulative since the pod was created (never reset)."""

    prompt: int = 0
    generation: int = 0
    cached: int = 0
    busy_s: float = 0.0
    prefill_busy_s: float = 0.0
    finished: int = 0
    # Counted when a request finishes (SGLang's tokenizer manager counts then).
    finished_prompt: int = 0
    finished_generation: int = 0
    finished_cached: int = 0


@dataclass(slots=True)
class _Epoch:
    """The engine process since its last (re)start: the totals at its start, which exported
    counters subtract, and its own histograms."""

    prompt: int = 0
    generation: int = 0
    cached: int = 0
    finished_prompt: int = 0
    finished_generation: int = 0
    finished_cached: int = 0
    started_s: float = 0.0
    hist_prefill: _Histogram = field(default_factory=lambda: _Histogram(REQUEST_LATENCY_BUCKETS_S))
    hist_decode: _Histogram = field(default_factory=lambda: _Histogram(REQUEST_LATENCY_BUCKETS_S))
    hist_prompt: _Histogram = field(default_factory=lambda: _Histogram(()))


class SimPod:
    """A pod's engine state in simulated (trace) time; pure, no I/O, deterministic.

    Driven by a `Fleet`: `enqueue` at a request's arrival, `advance_to` a later trace time.
    """

    def __init__(self, spec: PodSpec, gpu_indices: tuple[int, ...] = ()) -> None:
        self.spec = spec
        self.gpu_indices = gpu_indices or tuple(range(spec.gpus))
        dep = spec.deployment
        self._dep = dep
        self._max_context = dep.model.max_context
        self._prompt_buckets = one_two_five_buckets(self._max_context)
        kv_tokens = dep.free_kv_bytes_per_gpu() / dep.kv_bytes_per_token_per_gpu
        #: Tokens the KV cache holds (the prefix cache's capacity, in 512-token blocks).
        self.kv_cache_tokens = int(kv_tokens)
        self._cache = PrefixCache(int(kv_tokens // PREFIX_BLOCK_TOKENS))
        self._step_coef: dict[int, tuple[float, float]] = {}
        self._max_batch: dict[int, int] = {}
        # Scheduler state.
        self._clock = 0.0  # the engine's position: a step boundary, or a prefill's start
        self._now = 0.0  # the trace time the pod was last advanced to (>= clock)
        self._incoming: deque[_Pending] = deque()  # dispatched, arrival after the clock
        self._waiting: deque[_Pending] = deque()  # arrived, not admitted
        self._prefilling: list[_Seq] = []
        self._prefill_end = 0.0
        self._running: list[tuple[int, int, _Seq]] = []  # heap of (finish step, id, seq)
        self._seq_id = 0
        self._steps = 0  # decode steps run since creation
        self._sum_context = 0  # tokens in the KV cache of running sequences
        self._reserved = 0  # final context of admitted sequences (prefilling and running)
        # Accounting.
        self._totals = _Totals()
        self._epoch = _Epoch(hist_prompt=_Histogram(self._prompt_buckets))
        self._aborted = 0
        self._timeline = Timeline()
        self._arrivals = ArrivalLog()

    # --- identity ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def namespace(self) -> str:
        return self.spec.namespace

    @property
    def workload(self) -> str:
        return self.spec.workload

    @property
    def node(self) -> str:
        return self.spec.node

    @property
    def engine(self) -> Engine:
        return self.spec.engine

    @property
    def deployment(self) -> Deployment:
        return self._dep

    @property
    def gpus(self) -> int:
        return self.spec.gpus

    # --- state ------------------------------------------------------------------------------

    @property
    def now_s(self) -> float:
        return self._now

    @property
    def running(self) -> int:
        """Requests in the batch (prefilling or decoding)."""
        return len(self._running) + len(self._prefilling)

    @property
    def waiting(self) -> int:
        """Requests received and not yet admitted."""
        return len(self._waiting) + len(self._incoming)

    @property
    def load(self) -> int:
        """Requests in flight: what a least-outstanding-requests balancer compares."""
        return self.running + self.waiting

    @property
    def aborted_requests(self) -> int:
        """Requests lost to restarts (in flight when the engine restarted)."""
        return self._aborted

    @property
    def truth_points(self) -> int:
        """Points in the ground-truth timeline (its memory grows with this)."""
        return len(self._timeline)

    @property
    def _working(self) -> bool:
        return bool(self._prefilling or self._running)

    # --- driving ----------------------------------------------------------------------------

    def enqueue(self, request: Request, arrival_s: float) -> bool:
        """Receive `request` at trace time `arrival_s`; False if the engine rejects it.

        An engine refuses an empty prompt and one as long as the model's context (vLLM's
        `max_model_len` check), and truncates the output to what the context leaves; a request
        whose KV cache cannot fit even alone is refused too.
        """
        if arrival_s < self._now:
            raise SimError(f"pod {self.name}: request at {arrival_s} s is before {self._now} s")
        self.advance_to(arrival_s)
        prompt = request.input_tokens
        output = min(request.output_tokens, max(0, self._max_context - prompt))
        rejected = (
            prompt < 1 or prompt >= self._max_context or self._batch_limit(prompt + output) < 1
        )
        self._arrivals.record(arrival_s, prompt, request.output_tokens, rejected)
        if not rejected:
            self._incoming.append(_Pending(arrival_s, prompt, output, request.prefix_blocks))
        return not rejected

    def advance_to(self, t: float) -> None:
        """Run the engine up to trace time `t` (events after `t` stay pending)."""
        if t < self._now:
            raise SimError(f"pod {self.name}: cannot go back from {self._now} s to {t} s")
        self._now = t
        while True:
            if self._prefilling:
                if self._prefill_end > t:
                    return
                self._finish_prefill()
                continue
            incoming = self._incoming
            while incoming and incoming[0].arrival_s <= self._clock:
                self._waiting.append(incoming.popleft())
            if self._waiting and self._start_prefill():
                continue
            if self._running:
                if not self._decode(t):
                    return
                continue
            if incoming and incoming[0].arrival_s <= t:
                self._clock = incoming[0].arrival_s  # idle until the next request arrives
                continue
            self._clock = t
            return

    def checkpoint(self) -> None:
        """Record the totals at the pod's present into its ground-truth timeline (provisional:
        the next checkpoint replaces it unless an event was recorded in between)."""
        self._record(self._now, provisional=True)

    def restart(self) -> None:
        """Restart the engine at the pod's present: counters and histograms start again from
        zero, the prefix cache is empty, and requests in flight are lost (a restarted process
        drops its connections). Ground truth keeps counting through the restart."""
        self._account_partial_busy(self._now)
        self._aborted += self.load
        self._incoming.clear()
        self._waiting.clear()
        self._prefilling = []
        self._running = []
        self._sum_context = 0
        self._reserved = 0
        self._clock = self._now
        self._cache.clear()
        t = self._totals
        self._epoch = _Epoch(
            prompt=t.prompt,
            generation=t.generation,
            cached=t.cached,
            finished_prompt=t.finished_prompt,
            finished_generation=t.finished_generation,
            finished_cached=t.finished_cached,
            started_s=self._now,
            hist_prompt=_Histogram(self._prompt_buckets),
        )
        self._record(self._now)

    # --- reading ----------------------------------------------------------------------------

    def stats(self) -> PodStats:
        """The engine's metrics now, with each engine's counting rule: vLLM counts prompt
        tokens when their prefill ends and output tokens as they are generated; SGLang's
        tokenizer manager adds a request's prompt, output and cached tokens when it finishes."""
        t, b = self._totals, self._epoch
        if self.engine == "sglang":
            prompt = t.finished_prompt - b.finished_prompt
            generation = t.finished_generation - b.finished_generation
            cached = t.finished_cached - b.finished_cached
        else:
            prompt = t.prompt - b.prompt
            generation = t.generation - b.generation
            cached = t.cached - b.cached
        return PodStats(
            engine=self.engine,
            served_model_name=self.spec.served_model_name,
            started_s=b.started_s,
            prompt_tokens=prompt,
            generation_tokens=generation,
            prefix_cache_queries=prompt,
            prefix_cache_hits=cached,
            running=self.running,
            waiting=self.waiting,
            prefill_time=b.hist_prefill.snapshot(),
            decode_time=b.hist_decode.snapshot(),
            prompt_tokens_request=b.hist_prompt.snapshot(),
        )

    def truth(self, start_s: float, end_s: float) -> Truth:
        """Ground truth over the trace-time window [start_s, end_s) (end_s ≤ the present)."""
        if end_s > self._timeline.last_s + 1e-9:
            raise SimError(
                f"pod {self.name}: window ends at {end_s} s, simulated only to "
                f"{self._timeline.last_s} s"
            )
        return window_truth(self._timeline, self._arrivals, self.gpus, start_s, end_s)

    def busy_ratio(self, start_s: float, end_s: float) -> float:
        """Share of [start_s, end_s) the pod's GPUs were busy, 0..1 (what DCGM reports)."""
        if end_s <= start_s:
            return 0.0
        a, b = self._timeline.at(max(0.0, start_s)), self._timeline.at(end_s)
        return min(1.0, max(0.0, (b[3] - a[3]) / (end_s - start_s)))

    # --- internals --------------------------------------------------------------------------

    def _record(self, t: float, *, provisional: bool = False) -> None:
        tot = self._totals
        busy, prefill_busy = tot.busy_s, tot.prefill_busy_s
        if self._working and t > self._clock:
            # Work in progress since the clock: a step or a prefill not yet finished.
            busy += t - self._clock
            if self._prefilling:
                prefill_busy += t - self._clock
        self._timeline.record(
            t,
            (
                float(tot.prompt),
                float(tot.generation),
                float(tot.cached),
                busy,
                prefill_busy,
                float(tot.finished),
            ),
            provisional=provisional,
        )

    def _account_partial_busy(self, t: float) -> None:
        """Charge the busy time of work cut short at `t` (a restart)."""
        if self._working and t > self._clock:
            self._totals.busy_s += t - self._clock
            if self._prefilling:
                self._totals.prefill_busy_s += t - self._clock

    def _batch_limit(self, context: int) -> int:
        """`Deployment.max_batch(context)`, memoized (it is asked at every admission)."""
        limit = self._max_batch.get(context)
        if limit is None:
            limit = self._dep.max_batch(max(1, context))
            self._max_batch[context] = limit
        return limit

    def _fits(self, pending: _Pending, batch: int) -> bool:
        n = batch + 1
        mean_context = math.ceil((self._reserved + pending.final_context) / n)
        return n <= self._batch_limit(mean_context)

    def _start_prefill(self) -> bool:
        """Admit waiting requests first come, first served while they fit; False if none."""
        admitted: list[_Seq] = []
        waiting = self._waiting
        batch = len(self._running)
        while waiting and self._fits(waiting[0], batch + len(admitted)):
            p = waiting.popleft()
            cached = 0
            if p.blocks:
                hits = self._cache.lookup_and_insert(p.blocks)
                # Only whole blocks are reused, and the last prompt token is always computed
                # (its logits give the first output token).
                reusable = (p.prompt - 1) // PREFIX_BLOCK_TOKENS
                cached = min(hits, reusable) * PREFIX_BLOCK_TOKENS
            admitted.append(_Seq(p.prompt, p.output, cached))
            self._reserved += p.final_context
        if not admitted:
            return False
        self._record(self._clock)
        self._prefilling = admitted
        self._prefill_end = self._clock + self._prefill_s(admitted)
        return True

    def _prefill_s(self, seqs: list[_Seq]) -> float:
        """One prefill pass: GEMMs and all-reduce over all new tokens together, attention
        per prompt (causal, each new token over its cached prefix and the new tokens before
        it: A(prompt) − A(cached) with A the full-prompt attention time)."""
        dep = self._dep
        new_tokens = sum(s.prompt - s.cached for s in seqs)
        together = dep.prefill(len(seqs), new_tokens / len(seqs))
        attention = 0.0
        for s in seqs:
            attention += dep.prefill(1, s.prompt).attention_s
            if s.cached:
                attention -= dep.prefill(1, s.cached).attention_s
        return together.total_s - together.attention_s + attention

    def _finish_prefill(self) -> None:
        start, end = self._clock, self._prefill_end
        duration = end - start
        self._clock = end
        tot = self._totals
        tot.busy_s += duration
        tot.prefill_busy_s += duration
        for seq in self._prefilling:
            first = 1 if seq.output > 0 else 0
            tot.prompt += seq.prompt
            tot.cached += seq.cached
            tot.generation += first
            seq.first_token_s = end
            seq.prefill_s = duration
            self._sum_context += seq.prompt + first
            self._seq_id += 1
            finish_step = self._steps + max(0, seq.output - 1)
            heapq.heappush(self._running, (finish_step, self._seq_id, seq))
        self._prefilling = []
        self._pop_finished()
        self._record(end)

    def _coef(self, batch: int) -> tuple[float, float]:
        """(α, β): a decode step of `batch` sequences at mean context c takes α + β·c s."""
        coef = self._step_coef.get(batch)
        if coef is None:
            alpha = self._dep.decode_step(batch, 0.0).total_s
            at = self._dep.decode_step(batch, _SLOPE_CONTEXT_TOKENS).total_s
            coef = (alpha, (at - alpha) / _SLOPE_CONTEXT_TOKENS)
            self._step_coef[batch] = coef
        return coef

    @staticmethod
    def _steps_time(n: int, a: float, beta: float) -> float:
        """Seconds of n steps whose first costs `a` and each next one `beta` more."""
        return n * a + beta * n * (n - 1) / 2.0

    @classmethod
    def _steps_within(cls, budget_s: float, a: float, beta: float) -> int:
        """Most steps that finish within `budget_s` seconds."""
        if budget_s <= 0:
            return 0
        if beta <= 0:
            n = int(budget_s / a)
        else:
            b = a - beta / 2.0
            n = int((-b + math.sqrt(b * b + 2.0 * beta * budget_s)) / beta)
        # The closed form is exact in reals; step once either way for float rounding.
        while cls._steps_time(n + 1, a, beta) <= budget_s:
            n += 1
        while n > 0 and cls._steps_time(n, a, beta) > budget_s:
            n -= 1
        return n

    def _decode(self, t: float) -> bool:
        """Run decode steps until the next event or `t`; True if an event was reached."""
        batch = len(self._running)
        alpha, beta = self._coef(batch)
        a = alpha + beta * self._sum_context / batch
        n = self._running[0][0] - self._steps  # steps until the first sequence finishes
        if self._incoming:
            # A request arriving mid-step joins at the first step boundary after it.
            wait = self._incoming[0].arrival_s - self._clock
            reach = self._steps_within(wait, a, beta)
            if self._steps_time(reach, a, beta) < wait:
                reach += 1
            n = min(n, max(1, reach))
        duration = self._steps_time(n, a, beta)
        if self._clock + duration > t:
            k = min(n - 1, self._steps_within(t - self._clock, a, beta))
            if k > 0:
                self._run_steps(k, batch, self._steps_time(k, a, beta))
            return False
        self._run_steps(n, batch, duration)
        self._pop_finished()
        self._record(self._clock)
        return True

    def _run_steps(self, n: int, batch: int, duration: float) -> None:
        self._clock += duration
        self._totals.busy_s += duration
        self._totals.generation += batch * n
        self._steps += n
        self._sum_context += batch * n

    def _pop_finished(self) -> None:
        running, tot, epoch = self._running, self._totals, self._epoch
        while running and running[0][0] <= self._steps:
            seq = heapq.heappop(running)[2]
            self._sum_context -= seq.final_context
            self._reserved -= seq.final_context
            tot.finished += 1
            tot.finished_prompt += seq.prompt
            tot.finished_generation += seq.output
            tot.finished_cached += seq.cached
            epoch.hist_prefill.observe(seq.prefill_s)
            epoch.hist_decode.observe(self._clock - seq.first_token_s)
            epoch.hist_prompt.observe(seq.prompt)
