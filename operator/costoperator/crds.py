"""The custom resources `InferenceCostPolicy` and `GPUPricing`, from one source of truth.

The pydantic models below are the contract. Everything else is derived from them:

- the operator turns a raw `spec` into a model with `parse_policy_spec` / `parse_gpu_pricing_spec`
  and writes `status` from `InferenceCostPolicyStatus` (so a status patch cannot disagree with
  the schema the API server enforces: RELIABILITY item 16);
- `python -m costoperator.crds` writes the CustomResourceDefinitions in `deploy/crds/` from the
  models' JSON schemas, made structural for Kubernetes, plus CEL rules
  (`x-kubernetes-validations`) that reject what bounds alone cannot (RELIABILITY item 21);
  `--check` fails when the files on disk differ from what the models generate.

Each CEL rule has a twin validator on its model, so the API server and the operator reject the
same policies; the unit tests run both on the same good and bad objects.

Errors (a spec that does not validate)::

    ValueError
    └── PolicySpecError   one line naming the field, e.g. "spec.spot.maxReplicas: ..."

Run from the repository root: ``python -m costoperator.crds [--check]``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from costengine.errors import UnknownNameError
from costengine.gpus import GPUS
from costengine.models import MODELS
from costengine.pricing import MAX_USD_PER_GPU_HOUR, CapacityType, PriceEntry, PriceSheet

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "CRD_FILES",
    "POLICY_PLURAL",
    "ApiPrice",
    "CacheSpec",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "DriftSpec",
    "Engine",
    "GPUPriceEntry",
    "GPUPricingSpec",
    "GpuPrices",
    "InferenceCostPolicySpec",
    "InferenceCostPolicyStatus",
    "LabelSelector",
    "LabelSelectorOperator",
    "LabelSelectorRequirement",
    "MetricNames",
    "MetricsLossAction",
    "PolicySpecError",
    "PricingSpec",
    "ScalingRecord",
    "SemanticCacheSpec",
    "SpotMode",
    "SpotSpec",
    "WorkloadKind",
    "WorkloadRef",
    "crd_documents",
    "duration_seconds",
    "gpu_pricing_crd",
    "inference_cost_policy_crd",
    "kube_schema",
    "main",
    "parse_gpu_pricing_spec",
    "parse_policy_spec",
    "parse_policy_status",
    "parse_scaling_record",
    "price_entries",
    "price_sheet_from_gpu_pricing",
    "render_crds",
    "status_patch",
    "to_wire",
]

API_GROUP = "llmcost.io"
API_VERSION = "v1alpha1"
POLICY_PLURAL = "inferencecostpolicies"

#: File name (under deploy/crds/) → generated CRD; see `render_crds`.
CRD_FILES = (
    "inferencecostpolicies.llmcost.io.yaml",
    "gpupricings.llmcost.io.yaml",
)

#: Above this a $/1M-token API price is taken for a typo (a per-1K price, say); the dearest
#: list prices of hosted models are a few hundred dollars per million output tokens.
MAX_USD_PER_MILLION_TOKENS = 1000.0
#: Largest replica count a policy may ask for: a guard against typos, not a capacity claim.
MAX_REPLICAS = 1000
#: HPA's upper bound on a stabilization window (autoscaling/v2 `stabilizationWindowSeconds`).
MAX_STABILIZATION_SECONDS = 3600
#: `status.spotNote` is cut to this many characters.
MAX_SPOT_NOTE = 1000
#: A cold start longer than this is a typo, not a model load (the planner refuses over 300 s).
MAX_COLD_START_SECONDS = 86400
#: Preemptions per spot replica-hour past one a minute are no market to plan on.
MAX_INTERRUPTIONS_PER_REPLICA_HOUR = 60
#: A burst queued longer than this is an outage, not a latency bound.
MAX_BURST_QUEUE_SECONDS = 600

#: Durations as Go's time.ParseDuration (and so CEL's `duration()`) reads them, restricted to
#: positive decimal numbers with units ms, s, m, h: "30s", "5m", "1h30m", "1.5h".
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_SECONDS_PER_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

DEFAULT_WINDOW = "5m"
DEFAULT_INTERVAL = "30s"
DEFAULT_BASELINE_WINDOW = "24h"
#: RELIABILITY item 5: a rate window spans at least four scrape intervals; with Prometheus'
#: common 15 s scrape interval that is 1m.
MIN_WINDOW = "1m"
MIN_INTERVAL = "5s"

_METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class PolicySpecError(ValueError):
    """A custom resource spec that does not validate; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def duration_seconds(text: str) -> float:
    """Seconds in a duration string such as "5m", "30s" or "1h30m" (see DURATION_PATTERN)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h30m")
    return sum(
        float(number) * _SECONDS_PER_UNIT[unit] for number, unit in _DURATION_PART.findall(text)
    )


def _at_least(minimum: str) -> AfterValidator:
    def check(text: str) -> str:
        if duration_seconds(text) < duration_seconds(minimum):
            raise ValueError(f"must be a duration of at least {minimum}, got {text!r}")
        return text

    return AfterValidator(check)


def _duration_rule(minimum: str, message: str) -> dict[str, Any]:
    return {
        "x-kubernetes-validations": [
            {"rule": f"duration(self) >= duration('{minimum}')", "message": message}
        ]
    }


def _catalog_name(kind: str, catalog: Mapping[str, object]) -> AfterValidator:
    """Exact catalog names only (the CRD's enum is exact), with close matches as a hint."""

    def check(name: str) -> str:
        if name not in catalog:
            raise ValueError(UnknownNameError(kind, name, catalog).message)
        return name

    return AfterValidator(check)


def _price_rule(maximum: float) -> dict[str, Any]:
    return {
        "x-kubernetes-validations": [
            {
                "rule": f"self > 0.0 && self <= {maximum!r}",
                "message": f"must be > 0 and <= {maximum:g} USD per GPU-hour "
                "(is it a whole-instance or monthly price?)",
            }
        ]
    }


_WINDOW_RULE = f"must be a duration of at least {MIN_WINDOW} (four scrape intervals of 15s)"
_INTERVAL_RULE = f"must be a duration of at least {MIN_INTERVAL}"
#: A rate window (or a longer window): a duration of at least MIN_WINDOW.
WindowDuration = Annotated[
    str,
    Field(
        max_length=32,
        pattern=DURATION_PATTERN,
        json_schema_extra=_duration_rule(MIN_WINDOW, _WINDOW_RULE),
    ),
    _at_least(MIN_WINDOW),
]
#: A tick interval: a duration of at least MIN_INTERVAL.
IntervalDuration = Annotated[
    str,
    Field(
        max_length=32,
        pattern=DURATION_PATTERN,
        json_schema_extra=_duration_rule(MIN_INTERVAL, _INTERVAL_RULE),
    ),
    _at_least(MIN_INTERVAL),
]
MetricName = Annotated[str, Field(min_length=1, max_length=200, pattern=_METRIC_NAME)]
ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN)]
UsdPerGpuHour = Annotated[
    float,
    Field(
        gt=0,
        le=MAX_USD_PER_GPU_HOUR,
        description="USD per GPU-hour (per GPU, not per instance).",
        json_schema_extra=_price_rule(MAX_USD_PER_GPU_HOUR),
    ),
]
UsdPerMillionTokens = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_USD_PER_MILLION_TOKENS,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"self >= 0.0 && self <= {MAX_USD_PER_MILLION_TOKENS!r}",
                    "message": f"must be >= 0 and <= {MAX_USD_PER_MILLION_TOKENS:g} "
                    "USD per million tokens (is it a per-thousand price?)",
                }
            ]
        },
    ),
]
GpuName = Annotated[
    str,
    Field(max_length=64, json_schema_extra={"enum": list(GPUS)}),
    _catalog_name("GPU", GPUS),
]
ModelName = Annotated[
    str,
    Field(max_length=64, json_schema_extra={"enum": list(MODELS)}),
    _catalog_name("model", MODELS),
]


class _Wire(BaseModel):
    """Base: camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        allow_inf_nan=False,
        frozen=True,
    )


# --- spec pieces -----------------------------------------------------------------------------


class LabelSelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(_Wire):
    """A label selector requirement (as in Kubernetes' LabelSelector)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.operator in ['In', 'NotIn'] "
                    "? (has(self.values) && size(self.values) > 0) "
                    ": (!has(self.values) || size(self.values) == 0)",
                    "message": "values must be non-empty for In and NotIn "
                    "and empty for Exists and DoesNotExist",
                }
            ]
        }
    )

    key: str = Field(min_length=1, max_length=317, description="The label key.")
    operator: LabelSelectorOperator = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[Annotated[str, Field(max_length=63)]] | None = Field(
        default=None,
        max_length=64,
        description="Label values; non-empty for In and NotIn, empty otherwise.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )

    @model_validator(mode="after")
    def _values_match_operator(self) -> Self:
        wants_values = self.operator in (LabelSelectorOperator.IN, LabelSelectorOperator.NOT_IN)
        if wants_values != bool(self.values):
            raise ValueError(
                "values must be non-empty for In and NotIn and empty for Exists and DoesNotExist"
            )
        return self


class LabelSelector(_Wire):
    """Selects Deployments and StatefulSets in the policy's namespace by label."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.matchLabels) && size(self.matchLabels) > 0) || "
                    "(has(self.matchExpressions) && size(self.matchExpressions) > 0)",
                    "message": "selector must have matchLabels or matchExpressions "
                    "(an empty selector would match every workload in the namespace)",
                }
            ]
        }
    )

    match_labels: dict[str, Annotated[str, Field(max_length=63)]] | None = Field(
        default=None, description="Labels a workload must carry, all of them."
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None,
        max_length=32,
        description="Requirements a workload's labels must meet, all of them.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.match_labels and not self.match_expressions:
            raise ValueError(
                "selector must have matchLabels or matchExpressions "
                "(an empty selector would match every workload in the namespace)"
            )
        return self


class WorkloadKind(StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFUL_SET = "StatefulSet"


class WorkloadRef(_Wire):
    """A Deployment or StatefulSet in the policy's namespace."""

    kind: WorkloadKind = Field(description="Deployment or StatefulSet.")
    name: ObjectName = Field(description="The workload's name.")


class Engine(StrEnum):
    """The serving engine, which fixes the metric names of token counters."""

    AUTO = "auto"
    VLLM = "vllm"
    SGLANG = "sglang"
    TGI = "tgi"
    TRTLLM = "trtllm"
    NIM = "nim"
    CUSTOM = "custom"


#: Engines whose token counters have no fixed names: `spec.metrics` must name them.
ENGINES_NEEDING_METRICS = (Engine.TRTLLM, Engine.CUSTOM)


class MetricNames(_Wire):
    """Prometheus counter names that override the engine's defaults (needed for custom and
    trtllm: inputTokens and outputTokens)."""

    input_tokens: MetricName | None = Field(default=None, description="Prompt tokens counter.")
    output_tokens: MetricName | None = Field(default=None, description="Generated tokens counter.")
    prefix_cache_hits: MetricName | None = Field(
        default=None, description="Prefix-cache hit tokens counter."
    )
    prefix_cache_queries: MetricName | None = Field(
        default=None, description="Prefix-cache queried tokens counter."
    )
    cached_tokens: MetricName | None = Field(
        default=None, description="Tokens served from the prefix cache counter."
    )


class GpuPrices(_Wire):
    """Per-capacity-type prices in USD per GPU-hour; each overrides the price sheet."""

    on_demand: UsdPerGpuHour | None = None
    spot: UsdPerGpuHour | None = None
    reserved: UsdPerGpuHour | None = None

    def by_capacity_type(self) -> dict[CapacityType, float]:
        prices = {
            CapacityType.ON_DEMAND: self.on_demand,
            CapacityType.SPOT: self.spot,
            CapacityType.RESERVED: self.reserved,
        }
        return {capacity: usd for capacity, usd in prices.items() if usd is not None}


class PricingSpec(_Wire):
    """Where GPU prices come from: a GPUPricing sheet and/or per-capacity-type overrides."""

    catalog_ref: ObjectName | None = Field(
        default=None, description="Name of a GPUPricing resource (cluster-scoped)."
    )
    usd_per_gpu_hour: GpuPrices | None = Field(
        default=None, description="Overrides of the sheet's prices, USD per GPU-hour."
    )

    def overrides_for(self, gpu: str, source: str = "") -> list[PriceEntry]:
        """The `usdPerGpuHour` overrides as price entries for `gpu` (a catalog name)."""
        if self.usd_per_gpu_hour is None:
            return []
        return [
            PriceEntry(gpu=gpu, capacity_type=capacity, usd_per_gpu_hour=usd, source=source)
            for capacity, usd in self.usd_per_gpu_hour.by_capacity_type().items()
        ]


class SemanticCacheSpec(_Wire):
    """Counters of a gateway's semantic cache, whose hits never reach the GPUs."""

    hits_metric: MetricName | None = Field(
        default=None, description="Counter of semantic-cache hits (requests)."
    )
    tokens_served_metric: MetricName = Field(
        description="Counter of tokens answered from the semantic cache."
    )
    match_labels: dict[str, Annotated[str, Field(max_length=256)]] | None = Field(
        default=None,
        description="Labels the gateway's series for this policy carry (e.g. model: llama70b); "
        "unset: the series in the policy's namespace.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(k, k.matches('^[a-zA-Z_][a-zA-Z0-9_]*$'))",
                    "message": "matchLabels keys must be Prometheus label names",
                },
                {"rule": "size(self) <= 8", "message": "at most 8 matchLabels"},
            ]
        },
    )

    @model_validator(mode="after")
    def _label_names(self) -> Self:
        if len(self.match_labels or {}) > 8:
            raise ValueError("at most 8 matchLabels")
        for key in self.match_labels or {}:
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", key):
                raise ValueError(f"matchLabels key {key!r} is not a Prometheus label name")
        return self


class CacheSpec(_Wire):
    """Caches in front of the engine whose savings are priced."""

    semantic: SemanticCacheSpec | None = None


class DriftSpec(_Wire):
    """When the live $/1M tokens counts as drifting from its baseline."""

    baseline_window: WindowDuration = Field(
        default=DEFAULT_BASELINE_WINDOW,
        description="Window of the baseline $/1M tokens, e.g. 24h; not shorter than window.",
    )
    threshold_ratio: float = Field(
        default=1.2,
        gt=1,
        le=100,
        description="Drifting when current ÷ baseline $/1M reaches this ratio (> 1).",
    )
    min_tokens: int = Field(
        default=100000,
        ge=0,
        description="Tokens the window must hold before drift is judged.",
    )

    @property
    def baseline_window_seconds(self) -> float:
        return duration_seconds(self.baseline_window)


class SpotMode(StrEnum):
    """Off: no spot planning. Recommend: publish a replica count. Auto: also scale."""

    OFF = "Off"
    RECOMMEND = "Recommend"
    AUTO = "Auto"


class MetricsLossAction(StrEnum):
    HOLD = "Hold"


class OnDemandBase(StrEnum):
    """The on-demand base rule of `onDemandTargetRef` (`costengine.spotplan.plan_fleet`)."""

    P50 = "P50"
    FRACTION = "Fraction"


class SpotSpec(_Wire):
    """Spot burst scaling of a second, spot-scheduled workload."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.mode) || self.mode == 'Off' || has(self.spotTargetRef)",
                    "message": "spotTargetRef is required when mode is Recommend or Auto",
                },
                {
                    "rule": "!has(self.maxReplicas) || "
                    "(has(self.minReplicas) ? self.minReplicas : 0) <= self.maxReplicas",
                    "message": "minReplicas must not exceed maxReplicas",
                },
                {
                    "rule": "!has(self.onDemandTargetRef) || has(self.onDemandMaxReplicas)",
                    "message": "onDemandMaxReplicas is required with onDemandTargetRef",
                },
                {
                    "rule": "!has(self.onDemandMaxReplicas) || "
                    "(has(self.onDemandMinReplicas) ? self.onDemandMinReplicas : 1) "
                    "<= self.onDemandMaxReplicas",
                    "message": "onDemandMinReplicas must not exceed onDemandMaxReplicas",
                },
                {
                    "rule": "!has(self.onDemandTargetRef) || !has(self.spotTargetRef) || "
                    "self.onDemandTargetRef != self.spotTargetRef",
                    "message": "onDemandTargetRef and spotTargetRef must be different workloads",
                },
            ]
        }
    )

    mode: SpotMode = Field(
        default=SpotMode.OFF,
        description='Off, Recommend or Auto. Quote "Off" in YAML: unquoted it is a boolean.',
    )
    spot_target_ref: WorkloadRef | None = Field(
        default=None, description="The spot workload to size; required unless mode is Off."
    )
    min_replicas: int = Field(default=0, ge=0, le=MAX_REPLICAS, description="Fewest spot replicas.")
    max_replicas: int | None = Field(
        default=None,
        ge=0,
        le=MAX_REPLICAS,
        description="Most spot replicas (unset: the operator's global cap).",
    )
    max_spot_fraction: float | None = Field(
        default=None, ge=0, le=1, description="Largest share of replicas on spot, 0..1."
    )
    target_utilization: float | None = Field(
        default=None, gt=0, le=1, description="Utilization the planner sizes for, (0, 1]."
    )
    burst_quantile: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="The planner's burst margin covers this quantile of the demand rises seen "
        "within a tick and a cold start (its reaction time), 0..1 (unset: 0.9), and a rise "
        "past targetUtilization's slack no larger than that quantile of them is a burst, not a "
        "new steady level. Raise it for rarer bursts; 0 keeps no margin beyond "
        "targetUtilization's slack.",
    )
    cold_start_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_COLD_START_SECONDS,
        description="From asking for a spot replica to its serving (node start, image pull, "
        "model load), s (unset: the spot pods' median from creation to Ready, else the "
        "on-demand pods' when longer than 120, else 120). The burst margin looks this far "
        "ahead; over 300 s the planner refuses spot (the seed's spot-hostile cold start).",
    )
    interruptions_per_replica_hour: float | None = Field(
        default=None,
        ge=0,
        le=MAX_INTERRUPTIONS_PER_REPLICA_HOUR,
        description="Preemptions per spot replica-hour, from your provider's interruption data "
        "(unset: 0.05, illustrative). Each is priced as on-demand cover for a cold start plus "
        "30 s of redone work; spot that is not cheaper then is not recommended.",
    )
    burst_queue_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_BURST_QUEUE_SECONDS,
        description="How long a burst's requests may wait while the replicas it asks for "
        "start, s (unset: 30). The planner sizes bursts from their peak 30, 60 and 120 s "
        "token rates as the least throughput that serves them within this bound, so bursts "
        "queue up to it instead of holding replicas for their full height; 0 sizes every "
        "burst at its peak 30 s rate. Lower it for latency-tight services.",
    )
    slo_bound: bool | None = Field(
        default=None,
        strict=True,
        description="The workload serves under an SLO (unset: false): spot is refused while "
        "the on-demand fleet is below the P50 of demand (spot would carry typical traffic, "
        "not bursts).",
    )
    multi_turn_state: bool | None = Field(
        default=None,
        strict=True,
        description="Requests keep long multi-turn state that a preemption loses (unset: "
        "false): the plan warns when it recommends spot.",
    )
    tight_p99: bool | None = Field(
        default=None,
        strict=True,
        description="The workload needs a consistent P99 latency (unset: false): the plan warns "
        "when it recommends spot.",
    )
    scale_up_stabilization_seconds: int | None = Field(
        default=None, ge=0, le=MAX_STABILIZATION_SECONDS, description="Scale-up window, s."
    )
    scale_down_stabilization_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_STABILIZATION_SECONDS,
        description="Scale-down window (highest recommendation in it wins; the planner sizes "
        "steady serving for the median demand over it; spot scales down only at a tick whose "
        "demand does not rise past the target utilization's slack), s.",
    )
    max_step: int | None = Field(
        default=None, ge=1, le=MAX_REPLICAS, description="Most replicas added per scale-up."
    )
    on_metrics_loss: MetricsLossAction = Field(
        default=MetricsLossAction.HOLD,
        description="What to do when metrics are missing: Hold keeps the replica count.",
    )
    on_demand_target_ref: WorkloadRef | None = Field(
        default=None,
        description="The on-demand workload to size too (unset: the on-demand fleet is yours "
        "and the planner only plans spot beside it). Set, the planner sizes both halves as "
        "the backtest's planner does: an on-demand base (onDemandBase), raised until spot "
        "carries the rest within maxSpotFraction, plus on-demand cover for spot replicas "
        "that may not serve (no node after 1.5 times the longest wait for a node the spot "
        "pods took, at most a cold start; not serving two cold starts after creation; or on "
        "a node under a preemption notice), released only as spot serves; "
        "status.recommendedOnDemandReplicas has its count, and Auto mode scales it as it "
        "scales the spot workload.",
    )
    on_demand_min_replicas: int | None = Field(
        default=None,
        ge=1,
        le=MAX_REPLICAS,
        description="Fewest on-demand replicas (unset: 1; never 0).",
    )
    on_demand_max_replicas: int | None = Field(
        default=None,
        ge=1,
        le=MAX_REPLICAS,
        description="Most on-demand replicas; required with onDemandTargetRef.",
    )
    on_demand_base: OnDemandBase | None = Field(
        default=None,
        description="Unset or P50: the on-demand base covers the P50 of demand (the seed's "
        "hybrid); Fraction: none beyond what maxSpotFraction requires (cheaper; the cover at a "
        "preemption notice guards typical traffic, so use it where spot nodes get notice "
        "taints and the notice plus burstQueueSeconds spans the cold start, README).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.mode is not SpotMode.OFF and self.spot_target_ref is None:
            raise ValueError("spotTargetRef is required when mode is Recommend or Auto")
        if self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) must not exceed "
                f"maxReplicas ({self.max_replicas})"
            )
        if self.on_demand_target_ref is not None:
            if self.on_demand_max_replicas is None:
                raise ValueError("onDemandMaxReplicas is required with onDemandTargetRef")
            if self.on_demand_target_ref == self.spot_target_ref:
                raise ValueError("onDemandTargetRef and spotTargetRef must be different workloads")
        least = self.on_demand_min_replicas or 1
        if self.on_demand_max_replicas is not None and least > self.on_demand_max_replicas:
            raise ValueError(
                f"onDemandMinReplicas ({least}) must not exceed "
                f"onDemandMaxReplicas ({self.on_demand_max_replicas})"
            )
        return self


class ApiPrice(_Wire):
    """A hosted API's list prices, to price the same tokens for comparison."""

    name: str = Field(min_length=1, max_length=64, description="The API's name, e.g. gpt-4o.")
    input_usd_per_million: UsdPerMillionTokens = Field(description="USD per 1M input tokens.")
    output_usd_per_million: UsdPerMillionTokens = Field(description="USD per 1M output tokens.")


_POLICY_RULES: list[JsonValue] = [
    {
        "rule": "has(self.selector) != has(self.targetRef)",
        "message": "exactly one of selector or targetRef must be set",
    },
    {
        "rule": "!has(self.engine) || !(self.engine in "
        f"{[e.value for e in ENGINES_NEEDING_METRICS]!r}) || "
        "(has(self.metrics) && has(self.metrics.inputTokens) && has(self.metrics.outputTokens))",
        "message": "engine trtllm or custom needs metrics.inputTokens and metrics.outputTokens",
    },
    {
        "rule": "!has(self.drift) || !has(self.drift.baselineWindow) || "
        "duration(self.drift.baselineWindow) >= "
        f"duration(has(self.window) ? self.window : '{DEFAULT_WINDOW}')",
        "message": "drift.baselineWindow must not be shorter than window",
    },
]


class InferenceCostPolicySpec(_Wire):
    """What to watch and how to price it."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _POLICY_RULES})

    selector: LabelSelector | None = Field(
        default=None,
        description="Workloads (Deployments, StatefulSets) in the namespace; or use targetRef.",
    )
    target_ref: WorkloadRef | None = Field(
        default=None, description="One workload in the namespace; or use selector."
    )
    engine: Engine = Field(
        default=Engine.AUTO, description="auto, vllm, sglang, tgi, trtllm, nim or custom."
    )
    metrics: MetricNames | None = None
    model: ModelName | None = Field(
        default=None, description="Catalog model name; enables capacity and right-sizing."
    )
    gpu: GpuName | None = Field(
        default=None,
        description="GPU product override (else the node label nvidia.com/gpu.product).",
    )
    pricing: PricingSpec | None = None
    window: WindowDuration = Field(
        default=DEFAULT_WINDOW,
        description=f"Rate window, e.g. 5m; at least {MIN_WINDOW} (four 15s scrape intervals).",
    )
    interval: IntervalDuration = Field(
        default=DEFAULT_INTERVAL,
        description=f"How often figures are recomputed, e.g. 30s; at least {MIN_INTERVAL}.",
    )
    cache: CacheSpec | None = None
    drift: DriftSpec | None = None
    spot: SpotSpec | None = None
    api_comparison: list[ApiPrice] | None = Field(
        default=None,
        max_length=32,
        description="Hosted APIs to price the same tokens at.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.selector is None) == (self.target_ref is None):
            raise ValueError("exactly one of selector or targetRef must be set")
        if self.engine in ENGINES_NEEDING_METRICS and (
            self.metrics is None
            or self.metrics.input_tokens is None
            or self.metrics.output_tokens is None
        ):
            raise ValueError(
                f"engine {self.engine} needs metrics.inputTokens and metrics.outputTokens"
            )
        if self.drift is not None and self.drift.baseline_window_seconds < self.window_seconds:
            raise ValueError("drift.baselineWindow must not be shorter than window")
        names = [api.name for api in self.api_comparison or ()]
        if len(names) != len(set(names)):
            raise ValueError("apiComparison names must be unique")
        return self

    @property
    def window_seconds(self) -> float:
        return duration_seconds(self.window)

    @property
    def interval_seconds(self) -> float:
        return duration_seconds(self.interval)

    @property
    def effective_drift(self) -> DriftSpec:
        """`drift` with its defaults where the policy leaves it out."""
        return self.drift or DriftSpec()

    @property
    def effective_spot(self) -> SpotSpec:
        """`spot` with its defaults (mode Off) where the policy leaves it out."""
        return self.spot or SpotSpec()


# --- status ----------------------------------------------------------------------------------


class ConditionType(StrEnum):
    READY = "Ready"
    METRICS_AVAILABLE = "MetricsAvailable"
    STALE = "Stale"
    DRIFTING = "Drifting"
    CONFLICT = "Conflict"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_Wire):
    """A standard Kubernetes condition (metav1.Condition's shape)."""

    type: ConditionType = Field(description="Ready, MetricsAvailable, Stale, Drifting, Conflict.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=_CONDITION_REASON,
        description="CamelCase reason for the last transition.",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details.")
    last_transition_time: AwareDatetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the condition was set from."
    )


class ScalingRecord(_Wire):
    """The actuator's last scale action, written before the scale request is sent, so that an
    operator restarted (or a new leader) keeps the step period across the restart."""

    last_scale_time: AwareDatetime = Field(description="When the last scale was requested.")
    last_scale_up_time: AwareDatetime | None = Field(
        default=None, description="When the last scale-up was requested."
    )
    workload: str = Field(max_length=253, description="The scaled workload, Kind/name.")
    from_replicas: int = Field(ge=0, description="Replicas before the scale.")
    to_replicas: int = Field(ge=0, description="Replicas requested.")
    holder: str | None = Field(
        default=None, max_length=253, description="The operator instance that asked."
    )
    cover_replicas: int | None = Field(
        default=None,
        ge=0,
        description="Of toReplicas, the on-demand cover for spot that does not serve "
        "(status.onDemandScaling only): while the workload still runs toReplicas, a restarted "
        "operator or a new leader counts them as cover (released as spot serves), not as "
        "base held by the scale-down window. A hold that changes the cover's share "
        "rewrites it.",
    )


class InferenceCostPolicyStatus(_Wire):
    """The live figures of the policy's workloads, summed over them."""

    usd_per_million_tokens: float | None = Field(
        default=None, ge=0, description="Live USD per 1M tokens (input and output)."
    )
    tokens_per_second: float | None = Field(
        default=None, ge=0, description="Measured tokens per second (input and output)."
    )
    gpu_utilization: float | None = Field(
        default=None, ge=0, le=1, description="DCGM busy fraction of the GPUs, 0..1."
    )
    capacity_utilization: float | None = Field(
        default=None, ge=0, description="Measured ÷ modeled maximum tokens per second."
    )
    cache_savings_usd_per_hour: float | None = Field(
        default=None, ge=0, description="USD per hour saved by caches."
    )
    drift_ratio: float | None = Field(
        default=None, ge=0, description="Current ÷ baseline USD per 1M tokens."
    )
    recommended_spot_replicas: int | None = Field(
        default=None, ge=0, description="The spot planner's replica count."
    )
    recommended_on_demand_replicas: int | None = Field(
        default=None,
        ge=0,
        description="The planner's count for spec.spot.onDemandTargetRef (unset without one).",
    )
    spot_note: str | None = Field(
        default=None,
        max_length=MAX_SPOT_NOTE,
        description="Why the spot planner recommends what it does: its refusals and warnings "
        "(the seed's spot-hostile patterns, limits that leave the fleet short), or why it has "
        "no recommendation.",
    )
    workloads: int | None = Field(default=None, ge=0, description="Workloads matched.")
    stale: bool | None = Field(default=None, description="True when inputs are missing or old.")
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    last_updated: AwareDatetime | None = Field(
        default=None, description="When the figures were last computed."
    )
    scaling: ScalingRecord | None = Field(
        default=None, description="Auto mode's last scale action (the actuator writes it)."
    )
    on_demand_scaling: ScalingRecord | None = Field(
        default=None,
        description="Auto mode's last scale action of spec.spot.onDemandTargetRef.",
    )

    @model_validator(mode="after")
    def _one_condition_per_type(self) -> Self:
        types = [c.type for c in self.conditions or ()]
        if len(types) != len(set(types)):
            raise ValueError("conditions must have one entry per type")
        return self


# --- GPUPricing ------------------------------------------------------------------------------


class GPUPriceEntry(_Wire):
    """The price of one GPU for one capacity type."""

    gpu: GpuName = Field(description="Catalog GPU name, e.g. A100-80GB.")
    capacity_type: CapacityType = Field(description="on_demand, spot or reserved.")
    usd_per_gpu_hour: UsdPerGpuHour
    provider: str | None = Field(default=None, max_length=64, description="e.g. aws.")
    region: str | None = Field(default=None, max_length=64, description="e.g. us-east-1.")


class GPUPricingSpec(_Wire):
    """A price sheet: USD per GPU-hour by GPU and capacity type."""

    entries: list[GPUPriceEntry] = Field(
        min_length=1,
        max_length=1000,
        description="Prices; where several match, the cheapest wins.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


def price_entries(spec: GPUPricingSpec, source: str = "") -> list[PriceEntry]:
    """The sheet's entries as cost-engine price entries (source e.g. "GPUPricing/seed")."""
    return [
        PriceEntry(
            gpu=e.gpu,
            capacity_type=e.capacity_type,
            usd_per_gpu_hour=e.usd_per_gpu_hour,
            provider=e.provider or "",
            region=e.region or "",
            source=source,
        )
        for e in spec.entries
    ]


def price_sheet_from_gpu_pricing(name: str, spec: GPUPricingSpec) -> PriceSheet:
    """A cost-engine price sheet named after the GPUPricing resource."""
    return PriceSheet(name, price_entries(spec, source=f"GPUPricing/{name}"))


# --- parsing at the edge ---------------------------------------------------------------------


_M = TypeVar("_M", bound=BaseModel)


def _field_path(prefix: str, loc: Iterable[int | str]) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _problem(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    value = error.get("input")
    if kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == (
        DURATION_PATTERN
    ):
        return f"must be a duration like 30s, 5m or 1h30m, got {value!r}"
    if kind == "enum" and value is False and "'Off'" in str(error["msg"]):
        return 'unquoted Off is a boolean in YAML: write "Off"'
    msg = str(error["msg"])
    msg = msg.removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    if kind != "value_error" and isinstance(value, str | int | float | bool):
        msg += f", got {value!r}"
    return msg


def _spec_error(exc: ValidationError, prefix: str) -> PolicySpecError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    problem = _problem(first)
    if len(errors) > 1:
        problem += f" (and {len(errors) - 1} more)"
    return PolicySpecError(_field_path(prefix, first["loc"]), problem)


def _parse(model: type[_M], raw: Mapping[str, Any] | None, prefix: str) -> _M:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise PolicySpecError(prefix, f"must be an object, got {type(raw).__name__}")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise _spec_error(exc, prefix) from exc


def parse_policy_spec(spec: Mapping[str, Any] | None) -> InferenceCostPolicySpec:
    """An InferenceCostPolicy's `spec` (kopf's `spec` or a plain dict) as a model."""
    return _parse(InferenceCostPolicySpec, spec, "spec")


def parse_policy_status(status: Mapping[str, Any] | None) -> InferenceCostPolicyStatus:
    """An InferenceCostPolicy's `status` as a model (fields the model does not know fail)."""
    return _parse(InferenceCostPolicyStatus, status, "status")


def parse_scaling_record(record: Mapping[str, Any] | None) -> ScalingRecord:
    """A policy's `status.scaling` as a model."""
    return _parse(ScalingRecord, record, "status.scaling")


def parse_gpu_pricing_spec(spec: Mapping[str, Any] | None) -> GPUPricingSpec:
    """A GPUPricing's `spec` as a model."""
    return _parse(GPUPricingSpec, spec, "spec")


def to_wire(model: BaseModel) -> dict[str, Any]:
    """The model as the API server stores it: camelCase, JSON types, unset fields left out."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def status_patch(status: InferenceCostPolicyStatus) -> dict[str, Any]:
    """A JSON merge patch that makes the stored status equal `status`: its fields, and null for
    each field it leaves unset, so a figure that went missing is removed rather than left stale
    (RELIABILITY item 1: no data is not the last value)."""
    patch: dict[str, Any] = {
        field.alias or name: None
        for name, field in type(status).model_fields.items()
        if name not in _WRITTEN_BY_ACTUATOR
    }
    patch.update(to_wire(status))
    return patch


#: Status fields the actuator writes itself (before a scale); the summary patch leaves them be.
_WRITTEN_BY_ACTUATOR = frozenset({"scaling", "on_demand_scaling"})


# --- CRD generation --------------------------------------------------------------------------

#: OpenAPI v3 keywords a CRD schema may use, in the order they are written out.
_KEY_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
)


class SchemaGenerationError(RuntimeError):
    """A model whose JSON schema has no structural OpenAPI equivalent (a bug in this module)."""


def _structural(node: Mapping[str, Any], defs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """One pydantic JSON-schema node as a Kubernetes structural-schema node."""
    out = dict(node)
    # Inline $ref: the referenced schema first, the referring node's keys (description,
    # default) over it.
    while "$ref" in out:
        name = str(out.pop("$ref")).rsplit("/", 1)[-1]
        out = {**defs[name], **out}
    # Optional[X] is anyOf [X, null]: X, left out of `required`; Kubernetes prunes nulls.
    if "anyOf" in out:
        branches = [b for b in out.pop("anyOf") if b != {"type": "null"}]
        if len(branches) != 1:
            raise SchemaGenerationError(
                f"{where}: unions other than Optional[X] are not structural"
            )
        if out.get("default", ...) is None:
            del out["default"]
        return _structural({**branches[0], **out}, defs, where)
    out.pop("title", None)
    if "description" in out:  # docstrings wrap lines; kubectl explain re-wraps
        out["description"] = " ".join(str(out["description"]).split())
    if "x-kubernetes-validations" in out:  # pydantic sorts keys; rule first reads better
        out["x-kubernetes-validations"] = [
            {"rule": r["rule"], "message": r["message"]} for r in out["x-kubernetes-validations"]
        ]
    if "const" in out:
        out["enum"] = [out.pop("const")]
    # OpenAPI 3.0 (and so Kubernetes) has boolean exclusive bounds beside minimum/maximum.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = out.get(exclusive)
        if value is not None and not isinstance(value, bool):
            out[bound] = value
            out[exclusive] = True
    if out.get("additionalProperties") is False:
        del out["additionalProperties"]  # v1 CRDs forbid it; unknown fields are pruned instead
    if "properties" in out:
        out["properties"] = {
            key: _structural(value, defs, f"{where}.{key}")
            for key, value in out["properties"].items()
        }
    if isinstance(out.get("additionalProperties"), Mapping):
        out["additionalProperties"] = _structural(out["additionalProperties"], defs, where)
    if "items" in out:
        out["items"] = _structural(out["items"], defs, f"{where}[]")
    unknown = set(out) - set(_KEY_ORDER)
    if unknown:
        raise SchemaGenerationError(f"{where}: keywords {sorted(unknown)} are not for CRDs")
    if "type" not in out:
        raise SchemaGenerationError(f"{where}: no type")
    return {key: out[key] for key in _KEY_ORDER if key in out}


def kube_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema as a Kubernetes structural OpenAPI v3 schema: $refs inlined,
    Optional collapsed, titles dropped; types, enums, bounds, defaults, descriptions and CEL
    rules kept."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(raw, defs, model.__name__)


def _root_schema(
    description: str, spec: type[BaseModel], status: type[BaseModel] | None
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": kube_schema(spec),
    }
    if status is not None:
        properties["status"] = kube_schema(status)
    return {
        "description": description,
        "type": "object",
        "required": ["spec"],
        "properties": properties,
    }


def _crd(
    *,
    kind: str,
    plural: str,
    short_name: str,
    scope: str,
    schema: dict[str, Any],
    status: bool,
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    version: dict[str, Any] = {"name": API_VERSION, "served": True, "storage": True}
    if status:
        version["subresources"] = {"status": {}}
    version["additionalPrinterColumns"] = columns
    version["schema"] = {"openAPIV3Schema": schema}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{API_GROUP}",
            "labels": {"app.kubernetes.io/part-of": "llm-cost-operator"},
        },
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
                "categories": ["llmcost"],
            },
            "scope": scope,
            "versions": [version],
        },
    }


_AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def inference_cost_policy_crd() -> dict[str, Any]:
    return _crd(
        kind="InferenceCostPolicy",
        plural=POLICY_PLURAL,
        short_name="icp",
        scope="Namespaced",
        schema=_root_schema(
            "InferenceCostPolicy: live USD per 1M tokens, cache savings and spot burst "
            "scaling for LLM inference workloads.",
            InferenceCostPolicySpec,
            InferenceCostPolicyStatus,
        ),
        status=True,
        columns=[
            {
                "name": "$/1M",
                "type": "number",
                "description": "Live USD per 1M tokens",
                "jsonPath": ".status.usdPerMillionTokens",
            },
            {
                "name": "Tokens/s",
                "type": "number",
                "description": "Measured tokens per second",
                "jsonPath": ".status.tokensPerSecond",
            },
            {
                "name": "GPU Util",
                "type": "number",
                "description": "GPU busy fraction, 0..1",
                "jsonPath": ".status.gpuUtilization",
            },
            {
                "name": "Stale",
                "type": "boolean",
                "description": "Inputs missing or old",
                "jsonPath": ".status.stale",
            },
            {
                "name": "Workloads",
                "type": "integer",
                "priority": 1,
                "jsonPath": ".status.workloads",
            },
            {
                "name": "Drift",
                "type": "number",
                "priority": 1,
                "description": "Current ÷ baseline USD per 1M tokens",
                "jsonPath": ".status.driftRatio",
            },
            _AGE_COLUMN,
        ],
    )


def gpu_pricing_crd() -> dict[str, Any]:
    return _crd(
        kind="GPUPricing",
        plural="gpupricings",
        short_name="gpup",
        scope="Cluster",
        schema=_root_schema(
            "GPUPricing: a price sheet of USD per GPU-hour by GPU and capacity type, "
            "referenced by InferenceCostPolicy spec.pricing.catalogRef.",
            GPUPricingSpec,
            None,
        ),
        status=False,
        columns=[_AGE_COLUMN],
    )


def crd_documents() -> dict[str, dict[str, Any]]:
    """File name → CRD document."""
    return {
        CRD_FILES[0]: inference_cost_policy_crd(),
        CRD_FILES[1]: gpu_pricing_crd(),
    }


class _NoAliasDumper(yaml.SafeDumper):
    """Writes shared sub-schemas out in full: CRD YAML has no anchors a reader must chase."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_HEADER = (
    "# Generated by `python -m costoperator.crds` from operator/costoperator/crds.py.\n"
    "# Do not edit: change the models and regenerate (CI runs it with --check).\n"
)


def render_crds() -> dict[str, str]:
    """File name → YAML text of each generated CRD."""
    return {
        name: _HEADER
        + yaml.dump(doc, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, width=100)
        for name, doc in crd_documents().items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m costoperator.crds",
        description="Write the CustomResourceDefinitions generated from the pydantic models.",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("deploy/crds"),
        help="where the CRD files go (default: deploy/crds, from the repository root)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a file is missing or differs from the models",
    )
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir
    rendered = render_crds()
    if args.check:
        stale = [
            name
            for name, text in rendered.items()
            if not (out_dir / name).is_file()
            or (out_dir / name).read_text(encoding="utf-8") != text
        ]
        for name in stale:
            print(f"{out_dir / name}: differs from the models", file=sys.stderr)
        if stale:
            print("regenerate with: python -m costoperator.crds", file=sys.stderr)
            return 1
        return 0
    if not out_dir.is_dir():
        print(f"{out_dir}: no such directory (run from the repository root)", file=sys.stderr)
        return 2
    for name, text in rendered.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        print(out_dir / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
