"""The operator's run-time configuration (from `llmcost run` flags or the demo)."""

from __future__ import annotations

from dataclasses import dataclass, field

from costoperator.cluster import DEFAULT_NOTICE_TAINTS
from costoperator.promclient import PromAuth


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    prometheus_url: str
    prometheus_auth: PromAuth = field(default_factory=PromAuth)
    metrics_port: int = 9090
    metrics_address: str = "0.0.0.0"
    """All interfaces: the Service and ServiceMonitor scrape the pod IP."""
    opencost_compat: bool = False
    default_interval_s: float = 30.0
    """Tick interval when no policy asks for another."""
    status_min_interval_s: float = 30.0
    """At most one status patch per policy this often, unless a condition flips."""
    status_writes_per_s: float = 10.0
    """Status patches per second across all policies: a token bucket (burst of the same size)
    shared by every policy's status timer, and each policy's interval stretched to policies ÷
    this (1,000 policies: one write each per 100 s at most). A condition that flips is written
    at once regardless."""
    query_timeout_s: float = 10.0
    baseline_refresh_s: float = 300.0
    """Longest a drift baseline is reused before a background refresh (also at most 1% of its
    window): the baseline query reads the whole window, 24 h by default (tick.BaselineCache)."""
    phase_refresh_s: float = 60.0
    """Longest vLLM's phase times (the input/output split) are reused before a background
    refresh (also at most a fifth of the rate window): the costliest query of a tick
    (tick.PhaseCache)."""
    prometheus_gzip: bool = False
    """Ask Prometheus for gzip-compressed answers (for a Prometheus across a WAN)."""
    spot_global_cap: int | None = None
    """Most spot replicas the planner recommends for any one workload (None: the policy's own
    maxReplicas, or the planner's default of 8 when a policy sets none)."""
    notice_taints: tuple[str, ...] = DEFAULT_NOTICE_TAINTS
    """Node taint keys that give notice of a node's end (a spot interruption, a provisioner's
    drain): spot pods there get replacements in the recommendation (`spot.py`)."""
    leader_election: bool = True
    """Act (scale, write status and events) only while holding the Lease below."""
    lease_name: str = "llm-cost-operator"
    lease_namespace: str = "default"
    lease_duration_s: float = 15.0
    lease_renew_deadline_s: float = 10.0
    lease_retry_period_s: float = 2.0
