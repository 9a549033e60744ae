"""The product's operator (costoperator.handlers) under Kubernetes API faults, in the emulator.

Prometheus is unreachable on purpose (a closed loopback port): every tick fails, figures are
stale, and the policies' status still lands — which is what these tests watch. Faults: watch
streams closed, reset and expired (410 Gone, history forgotten), and the API server answering
503 to everything for a while. Expected (RELIABILITY 14): no crash, no lost policy, and what
changed during the fault is picked up afterwards without help.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from kube.conftest import Eventually, RunKopf

import costoperator.handlers  # noqa: F401  (registers the product's handlers)
from costoperator.config import OperatorConfig
from costoperator.kube_emulator import (
    ClusterEmulator,
    gpu_node,
    namespace_object,
    workload_objects,
)
from costoperator.promserver import free_port

NS = "inference"
EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "llama70b.yaml"


def policy(name: str) -> dict[str, Any]:
    body = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    body["metadata"]["name"] = name
    body["spec"]["interval"] = "5s"
    return dict(body)


def seed(cluster: ClusterEmulator) -> None:
    objects = [namespace_object(NS), gpu_node("od-1"), gpu_node("spot-1", capacity_type="spot")]
    for name, node in (("llama70b", "od-1"), ("llama70b-spot", "spot-1")):
        objects += workload_objects(
            name, NS, replicas=1, nodes=[node], gpus_per_pod=4, labels={"app": "llama70b"}
        )
    cluster.seed([*objects, policy("llama70b")])


def status(cluster: ClusterEmulator, name: str) -> dict[str, Any]:
    return dict((cluster.get("icp", name, namespace=NS) or {}).get("status") or {})


async def first_status(cluster: ClusterEmulator, eventually: Eventually) -> None:
    await eventually(
        lambda: status(cluster, "llama70b").get("workloads") == 2,
        timeout=20,
        what="the first status",
    )


def memo() -> kopf.Memo:
    config = OperatorConfig(
        prometheus_url=f"http://127.0.0.1:{free_port()}",  # nothing listens: ticks fail
        metrics_port=0,
        default_interval_s=2.0,
        status_min_interval_s=1.0,
        query_timeout_s=1.0,
    )
    return kopf.Memo(config=config)


@pytest.mark.parametrize("mode", ["close", "reset", "expire"])
async def test_dropped_watches_lose_nothing(
    kube_env: ClusterEmulator, run_kopf: RunKopf, eventually: Eventually, mode: str
) -> None:
    seed(kube_env)
    registry = kopf.get_default_registry()
    async with run_kopf(registry, memo=memo()) as operator:
        await first_status(kube_env, eventually)
        assert status(kube_env, "llama70b")["stale"] is True  # Prometheus is unreachable
        assert kube_env.drop_watches(mode) >= 2  # type: ignore[arg-type]
        # Made while the watches are down: a policy and one more workload for the first.
        kube_env.create(policy("llama70b-b"))
        kube_env.seed(
            workload_objects(
                "llama70b-extra", NS, replicas=1, nodes=["od-1"], labels={"app": "llama70b"}
            )
        )
        await eventually(
            lambda: status(kube_env, "llama70b-b").get("workloads") == 3,
            timeout=20,
            what="the policy created during the drop, with the new workload",
        )
        await eventually(lambda: status(kube_env, "llama70b").get("workloads") == 3, timeout=20)
        assert not operator.done()


async def test_minutes_without_the_api_server_are_ridden_out(
    kube_env: ClusterEmulator, run_kopf: RunKopf, eventually: Eventually
) -> None:
    """Two minutes of 503s (the operator's backoffs span ~11 minutes, so a longer outage would
    only take longer; its leader Lease lapses after 10 s and is renewed after): a policy created
    after it is priced and its status written without a restart."""
    seed(kube_env)
    registry = kopf.get_default_registry()
    async with run_kopf(registry, memo=memo()) as operator:
        await first_status(kube_env, eventually)
        with kube_env.outage():
            await asyncio.sleep(120)
            assert not operator.done()
        kube_env.create(policy("after-outage"))
        await eventually(
            lambda: status(kube_env, "after-outage").get("workloads") == 2,
            timeout=100,
            what="a policy created after the outage priced",
        )
        assert status(kube_env, "llama70b").get("workloads") == 2  # not lost
        assert not operator.done()


async def test_status_patch_conflicts_are_retried_not_fatal(
    kube_env: ClusterEmulator, run_kopf: RunKopf, eventually: Eventually
) -> None:
    """409 Conflict on status writes (another writer got there first): the write is retried at
    a later timer run and lands; no crash, no lost policy, other policies unaffected."""
    seed(kube_env)
    registry = kopf.get_default_registry()
    async with run_kopf(registry, memo=memo()) as operator:
        await first_status(kube_env, eventually)
        conflicts = kube_env.fail_requests(
            "PATCH", "icp", subresource="status", status=409, times=6
        )
        kube_env.create(policy("during-conflicts"))
        await eventually(lambda: conflicts() == 6, timeout=60, what="six 409s answered")
        await eventually(
            lambda: status(kube_env, "during-conflicts").get("workloads") == 2,
            timeout=30,
            what="the status written after the conflicts",
        )
        assert status(kube_env, "llama70b").get("workloads") == 2
        assert not operator.done()


async def test_status_writes_stay_within_the_budget_however_many_policies(
    kube_env: ClusterEmulator,
    run_kopf: RunKopf,
    eventually: Eventually,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """20 policies whose figures change at every tick, a budget of 2 status writes per second
    (a token bucket; each policy also waits 20 ÷ 2 = 10 s between writes): 30 s see at most
    2 × 30 writes in all, not one per policy per tick (20 × 6 = 120)."""
    import random
    import time as clock

    import costoperator.handlers as handlers
    from costoperator.figures import WorkloadFigures
    from costoperator.tick import TickReport

    def moving_tick(_client: object, views: list[Any], *_args: object) -> TickReport:
        figures = {}
        for view in views:
            for workload in ("llama70b", "llama70b-spot"):
                figures[(view.namespace, view.name, workload)] = WorkloadFigures(
                    namespace=view.namespace,
                    policy=view.name,
                    workload=workload,
                    model="llama-2-70b",
                    gpu="A100-80GB",
                    engine="vllm",
                    hourly_cost_usd={"on_demand": 8.84},
                    gpus={"on_demand": 4.0},
                    replicas={"on_demand": 1},
                    input_tokens_per_second=random.uniform(100, 1000),
                    output_tokens_per_second=random.uniform(100, 1000),
                    updated_at=clock.time(),
                )
        return TickReport(figures=figures, queries=0)

    monkeypatch.setattr(handlers, "run_tick", moving_tick)
    seed(kube_env)
    kube_env.seed([policy(f"p{i}") for i in range(19)])
    config = OperatorConfig(
        prometheus_url=f"http://127.0.0.1:{free_port()}",
        metrics_port=0,
        default_interval_s=2.0,
        status_min_interval_s=1.0,
        status_writes_per_s=2.0,
    )

    def status_writes() -> int:
        return kube_env.write_counts().get(("PATCH", "inferencecostpolicies", "status"), 0)

    registry = kopf.get_default_registry()
    async with run_kopf(registry, memo=kopf.Memo(config=config)) as operator:
        # First statuses are budgeted too: 20 at 2 a second take 10 s or more, not one burst.
        started = clock.monotonic()
        await eventually(lambda: status_writes() >= 20, timeout=120, what="every first status")
        assert clock.monotonic() - started >= 8
        first = status_writes()
        await asyncio.sleep(30)
        written = status_writes() - first
        assert 0 < written <= 2 * 30 + 2, written  # 2: the bucket's burst
        assert not operator.done()
