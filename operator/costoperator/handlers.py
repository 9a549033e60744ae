"""kopf handlers: thin. Bodies become typed models at the edge; everything else lives in
`runtime`, `state`, `tick` and `exporter`. Importing this module registers the handlers.

Dependencies are built once at startup and carried in `memo` (so tests pass their own config);
settings are set there too, never in decorator arguments read at import time. The operator adds
no finalizers or annotations to objects it does not own: pods, nodes and workloads are only
watched (`on.event`); only our own InferenceCostPolicies get kopf's finalizer (for the status
timer), under the llmcost.io prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import kopf
from prometheus_client import start_http_server

from costoperator.actuator import (
    ON_DEMAND_ROLE,
    Actuator,
    KubernetesScaleClient,
    RecordedCover,
    ScaleClient,
    Step,
    StepKind,
    refreshed_cover,
)
from costoperator.config import OperatorConfig
from costoperator.crds import (
    API_GROUP,
    API_VERSION,
    POLICY_PLURAL,
    PolicySpecError,
    ScalingRecord,
    to_wire,
)
from costoperator.exporter import Snapshot, build_registry
from costoperator.figures import PolicyView, WorkloadFigures
from costoperator.kubeapi import PolicyStatusClient
from costoperator.leader import AlwaysLeader, KubernetesLeaseStore, LeaseElector
from costoperator.promclient import PromClient
from costoperator.runtime import Runtime, WriteBudget, invalid_status
from costoperator.state import ClusterState
from costoperator.tick import BaselineCache, PhaseCache, restore_demand_history, run_tick

GROUP, VERSION = API_GROUP, API_VERSION
POLICIES, PRICINGS = POLICY_PLURAL, "gpupricings"
#: How often the status timer looks; `Runtime.status_patch_due` decides whether to write.
STATUS_TIMER_S = 5.0

log = logging.getLogger("costoperator")


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """As kubectl: the pod's service account inside a cluster, else KUBECONFIG (read now, not
    at import time, so the demo and tests can point it at the emulator)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return kopf.login_with_service_account(**kwargs)
    return kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf's production advice: finite watch timeouts, bounded API backoffs, own prefixes.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    # kopf stops the operator when API errors outlast the whole backoff list; ~11 minutes of
    # retries keep a long API server outage from turning into a crash loop (RELIABILITY 14).
    settings.networking.error_backoffs = [1, 2, 5, 10, 20, 30, *([60] * 10)]
    settings.posting.level = logging.WARNING
    config: OperatorConfig = memo["config"]
    memo["runtime"] = Runtime(
        baselines=BaselineCache(config.baseline_refresh_s),
        phases=PhaseCache(config.phase_refresh_s),
    )
    memo["cluster"] = ClusterState(config.notice_taints)
    memo["actuator"] = Actuator(global_cap=config.spot_global_cap)
    memo["snapshot"] = snapshot = Snapshot()
    registry, self_metrics = build_registry(snapshot, config.opencost_compat)
    memo["registry"], memo["self_metrics"] = registry, self_metrics
    memo["prometheus_ok"] = True
    memo["client"] = PromClient(
        config.prometheus_url,
        config.prometheus_auth,
        read_timeout_s=config.query_timeout_s,
        gzip=config.prometheus_gzip,
    )
    if config.metrics_port:
        server, _thread = start_http_server(
            config.metrics_port, addr=config.metrics_address, registry=registry
        )
        memo["metrics_server"] = server
    memo["status_client"] = await asyncio.to_thread(PolicyStatusClient)
    memo["status_budget"] = WriteBudget(config.status_writes_per_s)
    memo["elector"] = await _elector(config)
    await _lead_once(memo)  # a lone instance leads from its first tick
    memo["lease_task"] = asyncio.create_task(lease_loop(memo))
    memo["tick_task"] = asyncio.create_task(tick_loop(memo))


async def _elector(config: OperatorConfig) -> LeaseElector | AlwaysLeader:
    if not config.leader_election:
        return AlwaysLeader()
    store = await asyncio.to_thread(KubernetesLeaseStore)
    return LeaseElector(
        store,
        config.lease_namespace,
        config.lease_name,
        lease_duration_s=config.lease_duration_s,
        renew_deadline_s=config.lease_renew_deadline_s,
        retry_period_s=config.lease_retry_period_s,
    )


def leading(memo: kopf.Memo) -> bool:
    """Whether this instance may write now (RELIABILITY 13; see leader.py)."""
    elector: LeaseElector | AlwaysLeader | None = memo.get("elector")
    return elector is not None and elector.is_leader()


def _try_lead(elector: LeaseElector | AlwaysLeader) -> None:
    try:
        elector.attempt()
    except Exception as exc:  # the API is away: leadership lapses at the renew deadline
        log.warning("leader Lease: %s", exc)


async def _lead_once(memo: kopf.Memo) -> None:
    await asyncio.to_thread(_try_lead, memo["elector"])
    _observe_leadership(memo)


def _observe_leadership(memo: kopf.Memo) -> None:
    elector: LeaseElector | AlwaysLeader = memo["elector"]
    was = memo.get("was_leading")  # None before the first look: say where we stand
    now = elector.is_leader()
    if now != was:
        if now:
            log.info(
                "leading as %s: scaling, status and events are this instance's", elector.identity
            )
        else:
            log.info("standing by: the Lease is held by %s", elector.holder or "nobody")
            if was:
                memo["actuator"].forget()
    memo["was_leading"] = now
    memo["self_metrics"].leader.set(1 if now else 0)


async def lease_loop(memo: kopf.Memo) -> None:
    """Acquire or renew the leader Lease every retry period (client-go's rhythm) in a thread of
    its own, so a busy event loop cannot delay a renewal past the renew deadline; the loop only
    notices changes of leadership."""
    elector: LeaseElector | AlwaysLeader = memo["elector"]
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(elector.retry_period_s):
            _try_lead(elector)

    thread = threading.Thread(target=renew, name="leader-lease", daemon=True)
    thread.start()
    try:
        while True:
            await asyncio.sleep(elector.retry_period_s)
            _observe_leadership(memo)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for name in ("tick_task", "lease_task"):
        task: asyncio.Task[None] | None = memo.get(name)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    elector: LeaseElector | AlwaysLeader | None = memo.get("elector")
    if elector is not None:  # a successor need not wait the Lease out
        await asyncio.to_thread(elector.release)
    server = memo.get("metrics_server")
    if server is not None:
        server.shutdown()
        server.server_close()
    client: PromClient | None = memo.get("client")
    if client is not None:
        client.close()


async def tick_loop(memo: kopf.Memo) -> None:
    """One operator-wide loop: every tick prices every policy with one fixed query set."""
    config: OperatorConfig = memo["config"]
    runtime: Runtime = memo["runtime"]
    snapshot: Snapshot = memo["snapshot"]
    while True:
        views = runtime.views()
        # Not while Prometheus is known to be down: the tick reports that already.
        if views and memo["prometheus_ok"]:
            try:
                await asyncio.to_thread(
                    restore_demand_history,
                    memo["client"],
                    runtime.demand,
                    views,
                    time.time(),
                    config.default_interval_s,
                    runtime.demand_restored,
                )
            except Exception:  # planning goes on from its own ticks
                log.exception("restoring the demand history failed")
        if views:
            try:
                report = await asyncio.to_thread(
                    run_tick,
                    memo["client"],
                    views,
                    memo["cluster"],
                    runtime.default_prices,
                    snapshot.current(),
                    None,
                    runtime.demand,
                    config.spot_global_cap,
                    runtime.baselines,
                    runtime.gpu_source,
                    runtime.phases,
                    runtime.tick_interval_s(config.default_interval_s),
                )
            except Exception:  # a bug must not stop pricing: log, mark stale, go on
                log.exception("tick failed")
                memo["prometheus_ok"] = False
            else:
                snapshot.replace(report.figures)
                try:
                    await actuate(memo, views, report.figures)
                    if leading(memo):  # events are the leader's, like scaling
                        runtime.recommend_events(views, report.figures, time.monotonic())
                except Exception:  # scaling must never stop pricing
                    log.exception("scaling step failed")
                metrics = memo["self_metrics"]
                for outcome, count in report.outcomes.items():
                    metrics.queries.labels(outcome).inc(count)
                metrics.tick_seconds.observe(report.seconds)
                memo["prometheus_ok"] = report.prometheus_ok and not report.partial
                for error in report.errors:
                    log.warning("Prometheus: %s", error)
        else:
            snapshot.replace({})
        interval = runtime.tick_interval_s(config.default_interval_s)
        # No policy yet (e.g. at startup, before the first watch events): look again soon
        # rather than a whole default interval later.
        await asyncio.sleep(interval if views else min(interval, 1.0))


async def actuate(
    memo: kopf.Memo,
    views: list[PolicyView],
    figures: Mapping[tuple[str, str, str], WorkloadFigures],
) -> None:
    """Auto-mode policies: one governed step per workload they scale (actuator.py: the spot
    workload, and `onDemandTargetRef`'s; steps that add replicas go first); a scale goes
    through the workload's `scale` subresource, with an event and a
    `llmcost_scale_actions_total` count. Holds, pauses and conflicts post an event when they
    start, not at every tick. Events go out with the policy's status timer (kopf posts events
    from its handlers' context)."""
    runtime: Runtime = memo["runtime"]
    actuator: Actuator = memo["actuator"]
    if not leading(memo):  # a standby decides nothing and keeps no governor state
        actuator.forget()
        return
    auto = [v for v in views if v.spot is not None and v.spot.mode == "Auto"]
    actuator.forget_except({(v.namespace, v.name) for v in auto})
    for view in auto:
        key = (view.namespace, view.name)
        recorded = runtime.last_scale_up.get(key)
        recorded_od = runtime.last_on_demand_scale_up.get(key)
        steps = actuator.decide_all(
            view,
            figures,
            memo["cluster"],
            annotations=runtime.annotations.get(key),
            data_ok=memo["prometheus_ok"],
            now=time.monotonic(),
            since_scale_up_s=None if recorded is None else time.time() - recorded,
            since_on_demand_scale_up_s=None if recorded_od is None else time.time() - recorded_od,
            on_demand_record=runtime.on_demand_covers.get(key),
        )
        conflicts = [s.reason for s in steps if s.kind is StepKind.CONFLICT]
        if conflicts:
            runtime.conflicts[key] = conflicts[0]
        else:
            runtime.conflicts.pop(key, None)
        # Make before break: the steps that add replicas go first.
        for step in sorted(steps, key=lambda s: s.direction != "up"):
            if not await _carry_out(memo, runtime, actuator, view, step):
                return


async def _carry_out(
    memo: kopf.Memo, runtime: Runtime, actuator: Actuator, view: PolicyView, step: Step
) -> bool:
    """One step of `actuate`; False when this instance stopped leading (stop the tick)."""
    key = (view.namespace, view.name)
    on_demand = step.role == ON_DEMAND_ROLE
    target = f"{step.workload_kind} {step.workload}"
    changed = actuator.changed(step)
    if step.kind is StepKind.SCALE and step.desired is not None:
        if not leading(memo):  # the Lease lapsed during this tick: the next leader decides
            actuator.forget()
            return False
        # The record's time is the decision's (taken before the client may be made).
        stamp = dt.datetime.now(dt.UTC)
        try:
            scaler = await _scaler(memo)
            # Write-ahead: the record lands before the scale, so a process killed between
            # the two still leaves its successor the step period to respect.
            up = step.direction == "up"
            record = ScalingRecord(
                last_scale_time=stamp,
                last_scale_up_time=stamp if up else None,  # unset: the merge keeps the last
                workload=step.workload_ref,
                from_replicas=step.current or 0,
                to_replicas=step.desired,
                holder=memo["elector"].identity,
                cover_replicas=step.cover if on_demand else None,
            )
            if on_demand:
                runtime.on_demand_covers[key] = RecordedCover(
                    record.workload, step.desired, step.cover
                )
            if up:
                ups = runtime.last_on_demand_scale_up if on_demand else runtime.last_scale_up
                ups[key] = stamp.timestamp()
            await asyncio.to_thread(
                scaler.record, view.namespace, view.name, to_wire(record), on_demand
            )
            await asyncio.to_thread(
                scaler.scale, step.workload_kind, view.namespace, step.workload, step.desired
            )
        except Exception as exc:  # the API refused or is away: hold, say so, go on
            log.warning("scaling %s/%s failed: %s", view.namespace, step.workload, exc)
            runtime.post(key, "Warning", "ScaleFailed", f"{target}: {exc}"[:500])
            return True
        memo["self_metrics"].scale_actions.labels(step.direction, "auto").inc()
        runtime.post(
            key,
            "Normal",
            "ScaledUp" if step.direction == "up" else "ScaledDown",
            f"{target}: {step.current} → {step.desired} replicas ({step.reason})",
        )
    elif (refreshed := refreshed_cover(step, runtime.on_demand_covers.get(key))) is not None:
        if not leading(memo):
            actuator.forget()
            return False
        try:
            scaler = await _scaler(memo)
            await asyncio.to_thread(
                scaler.record,
                view.namespace,
                view.name,
                {"coverReplicas": refreshed.cover},
                True,
            )
        except Exception as exc:  # the record stays as it was; the next tick tries again
            log.warning(
                "recording the cover of %s/%s failed: %s", view.namespace, step.workload, exc
            )
            return True
        runtime.on_demand_covers[key] = refreshed
    elif changed and step.kind is not StepKind.HOLD:
        runtime.post(
            key,
            "Warning" if step.kind is StepKind.CONFLICT else "Normal",
            "ScalingConflict" if step.kind is StepKind.CONFLICT else "ScalingPaused",
            f"{target}: {step.reason}",
        )
    return True


async def _scaler(memo: kopf.Memo) -> ScaleClient:
    scaler: ScaleClient | None = memo.get("scaler")
    if scaler is None:
        scaler = memo["scaler"] = await asyncio.to_thread(KubernetesScaleClient)
    return scaler


# --- the cluster picture (watched only: no finalizers, no annotations) -----------------------


def _deleted(event: kopf.RawEvent) -> bool:
    return event.get("type") == "DELETED"


@kopf.on.event("v1", "pods")
def pod_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    cluster: ClusterState = memo["cluster"]
    if _deleted(event):
        cluster.delete_pod(body.metadata.namespace or "", body.metadata.name or "")
    else:
        cluster.upsert_pod(dict(body))


@kopf.on.event("v1", "nodes")
def node_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    cluster: ClusterState = memo["cluster"]
    if _deleted(event):
        cluster.delete_node(body.metadata.name or "")
    else:
        cluster.upsert_node(dict(body))


@kopf.on.event("apps", "v1", "replicasets")
def replicaset_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    cluster: ClusterState = memo["cluster"]
    if _deleted(event):
        cluster.delete_replicaset(body.metadata.namespace or "", body.metadata.name or "")
    else:
        cluster.upsert_replicaset(dict(body))


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers")
def hpa_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _scaler_event("HorizontalPodAutoscaler", event, body, memo)


@kopf.on.event("keda.sh", "v1alpha1", "scaledobjects")
def scaledobject_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _scaler_event("ScaledObject", event, body, memo)


def _scaler_event(kind: str, event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo) -> None:
    cluster: ClusterState = memo["cluster"]
    if _deleted(event):
        cluster.delete_scaler(kind, body.metadata.namespace or "", body.metadata.name or "")
    else:
        cluster.upsert_scaler(kind, dict(body))


@kopf.on.event("apps", "v1", "deployments")
def deployment_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _workload_event("Deployment", event, body, memo)


@kopf.on.event("apps", "v1", "statefulsets")
def statefulset_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _workload_event("StatefulSet", event, body, memo)


def _workload_event(kind: str, event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo) -> None:
    cluster: ClusterState = memo["cluster"]
    if _deleted(event):
        cluster.delete_workload(kind, body.metadata.namespace or "", body.metadata.name or "")
    else:
        cluster.upsert_workload(kind, dict(body))


# --- our resources ---------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, PRICINGS)
def pricing_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    name = body.metadata.name or ""
    if _deleted(event):
        runtime.delete_pricing(name)
        return
    try:
        runtime.upsert_pricing(name, dict(body.get("spec") or {}))
    except PolicySpecError as exc:
        runtime.delete_pricing(name)
        if leading(memo):
            kopf.warn(body, reason="InvalidSpec", message=str(exc))


@kopf.on.event(GROUP, VERSION, POLICIES)
def policy_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    if _deleted(event):
        runtime.delete_policy(namespace, name)
        return
    runtime.remember_object(namespace, name, dict(body))
    previously = runtime.invalid.get((namespace, name))
    try:
        runtime.upsert_policy(
            namespace, name, dict(body.get("spec") or {}), body.metadata.get("generation")
        )
    except PolicySpecError as exc:
        # One event per distinct problem, not per watch event; the leader posts it.
        if previously != str(exc) and leading(memo):
            kopf.warn(body, reason="InvalidSpec", message=str(exc))


@kopf.timer(GROUP, VERSION, POLICIES, interval=STATUS_TIMER_S, initial_delay=1.0)
def policy_status(
    namespace: str | None,
    name: str | None,
    body: kopf.Body,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Write the policy's summary into its status, rate-limited (Runtime.status_patch_due)."""
    if not leading(memo):  # a standby writes nothing
        return
    runtime: Runtime = memo["runtime"]
    config: OperatorConfig = memo["config"]
    key = (namespace or "", name or "")
    now = dt.datetime.now(dt.UTC)
    if key in runtime.invalid:
        status = invalid_status(runtime.invalid[key], body.metadata.get("generation"), now)
    elif key in runtime.policies:
        snapshot: Snapshot = memo["snapshot"]
        figures = snapshot.of_policy(*key)
        status = runtime.status_for(key, figures, memo["prometheus_ok"], now)
    else:
        return
    for event_type, reason, message in runtime.take_events(key):
        kopf.event(body, type=event_type, reason=reason, message=message)
    # However many policies, about `status_writes_per_s` writes per second in all.
    interval = max(config.status_min_interval_s, len(runtime.policies) / config.status_writes_per_s)
    wire = runtime.status_patch_due(key, status, time.time(), interval, memo["status_budget"])
    if wire is None:
        return
    client: PolicyStatusClient = memo["status_client"]
    try:
        client.patch(key[0], key[1], wire)
    except Exception as exc:  # 409, API away: send it again at the next run, never give up
        runtime.status_not_written(key)
        log.warning("status of %s/%s not written, will retry: %s", *key, _brief(exc))


def _brief(exc: Exception) -> str:
    """An API error in one line (the kubernetes client's str() carries headers and body)."""
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    if status is not None:
        return f"{status} {reason or ''}".strip()
    return f"{type(exc).__name__}: {exc}"[:300]
