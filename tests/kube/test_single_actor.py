"""Who acts, and what a kill leaves behind (RELIABILITY 13, issue 6): the product operator as
real processes (`tests/harness/scripted_operator.py`: `llmcost run` with the Prometheus tick
replaced by a file-driven spot recommendation) against the emulator.

- Two instances at once: only the leader Lease's holder sends scale requests and status
  writes; when it stops, the other takes over and goes on.
- An instance SIGKILLed in the middle of a scale step (after writing the scaling record, or
  after the scale itself): its successor waits for the dead holder's Lease to expire, keeps the
  scale-up period the dead one started, and scales on from the real replica count: no lost
  policy, no second step inside the period, no crash loop.

Lease duration 3 s (renew deadline 2 s, retry 0.4 s) keeps the tests short; the logic is the
same as with the default 15 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kube.conftest import Eventually

from costoperator.kube_emulator import (
    ClusterEmulator,
    gpu_node,
    namespace_object,
    workload_objects,
)
from costoperator.promserver import free_port

NS = "inference"
HARNESS = Path(__file__).parents[1] / "harness" / "scripted_operator.py"
LEASE_S = 3.0


def policy(**spot: Any) -> dict[str, Any]:
    return {
        "apiVersion": "llmcost.io/v1alpha1",
        "kind": "InferenceCostPolicy",
        "metadata": {"name": "llama70b", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": "llama70b"}},
            "engine": "vllm",
            "model": "llama-2-70b",
            "pricing": {"usdPerGpuHour": {"onDemand": 2.21, "spot": 0.73}},
            "window": "1m",
            "interval": "5s",
            "spot": {
                "mode": "Auto",
                "spotTargetRef": {"kind": "Deployment", "name": "llama70b-spot"},
                "minReplicas": 0,
                "maxReplicas": 8,
                "maxStep": 1,
                **spot,
            },
        },
    }


def seed(cluster: ClusterEmulator, **spot: Any) -> None:
    objects = [namespace_object(NS), gpu_node("od-1"), gpu_node("spot-1", capacity_type="spot")]
    for name, node in (("llama70b", "od-1"), ("llama70b-spot", "spot-1")):
        objects += workload_objects(
            name, NS, replicas=1, nodes=[node], gpus_per_pod=4, labels={"app": "llama70b"}
        )
    cluster.seed([*objects, policy(**spot)])


class Instance:
    """One `llmcost run` process."""

    def __init__(self, name: str, cluster: ClusterEmulator, workdir: Path, die: str = "") -> None:
        self.name = name
        self.output = workdir / f"{name}.log"
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "POD_NAME": name,
            "SCRIPTED_RECOMMEND": str(workdir / "recommend.json"),
            "SCRIPTED_LOG": str(workdir / "actions.jsonl"),
            "SCRIPTED_DIE": die,
        }
        for variable in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
            env.pop(variable, None)
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(HARNESS),
                    "run",
                    f"--prometheus-url=http://127.0.0.1:{free_port()}",
                    "--all-namespaces",
                    "--metrics-port=0",
                    "--lease-namespace=default",
                    f"--lease-duration={LEASE_S}",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def start(kube_env: ClusterEmulator, workdir: Path) -> Iterator[Callable[..., Instance]]:
    started: list[Instance] = []

    def make(name: str, die: str = "") -> Instance:
        instance = Instance(name, kube_env, workdir, die)
        started.append(instance)
        return instance

    yield make
    for instance in started:
        instance.stop()


def recommend(workdir: Path, replicas: int) -> None:
    (workdir / "recommend.json").write_text(json.dumps({"replicas": replicas}), encoding="utf-8")


def actions(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "actions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def replicas(cluster: ClusterEmulator) -> int:
    body = cluster.get("deployments", "llama70b-spot", namespace=NS) or {}
    return int(body["spec"]["replicas"])


def holder(cluster: ClusterEmulator) -> str:
    lease = cluster.get("leases", "llm-cost-operator", namespace="default") or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def scaling(cluster: ClusterEmulator) -> dict[str, Any]:
    body = cluster.get("icp", "llama70b", namespace=NS) or {}
    return dict((body.get("status") or {}).get("scaling") or {})


async def test_two_instances_only_the_lease_holder_scales(
    kube_env: ClusterEmulator, start: Callable[..., Instance], workdir: Path, eventually: Eventually
) -> None:
    seed(kube_env, scaleUpStabilizationSeconds=6)
    recommend(workdir, 3)
    a = start("op-a")
    await eventually(lambda: holder(kube_env).startswith("op-a_"), timeout=30, what="a leads")
    b = start("op-b")

    def scales() -> list[dict[str, Any]]:
        return [x for x in actions(workdir) if x["what"] == "scale"]

    await eventually(lambda: len(scales()) == 2, timeout=40, what="a scales 1 → 3")
    assert replicas(kube_env) == 3
    steps = scales()
    assert [(x["who"], x["replicas"]) for x in steps] == [("op-a", 2), ("op-a", 3)]
    # One step per period, measured between the scaling records' times (taken at each
    # decision; the log times come after the PATCHes, whose latency varies with the emulator).
    records = [x["at"] for x in actions(workdir) if x["what"] == "record"]
    assert len(records) == 2
    assert records[1] - records[0] >= 6
    assert scaling(kube_env)["holder"].startswith("op-a_")
    assert b.process.poll() is None
    assert "standing by" in b.log()

    a.stop()  # a clean stop releases the Lease: b leads at its next retry
    assert a.process.returncode == 0, a.log()
    await eventually(lambda: holder(kube_env).startswith("op-b_"), timeout=10, what="b leads")
    recommend(workdir, 4)
    await eventually(lambda: len(scales()) == 3, timeout=30, what="b scales 3 → 4")
    assert replicas(kube_env) == 4
    time.sleep(3)  # nothing more: the recommendation is met
    assert [(x["who"], x["replicas"]) for x in scales()] == [
        ("op-a", 2),
        ("op-a", 3),
        ("op-b", 4),
    ]
    assert scaling(kube_env)["holder"].startswith("op-b_")
    assert b.process.poll() is None


@pytest.mark.parametrize("die", ["after-record", "after-scale"])
async def test_killed_mid_scale_the_successor_keeps_the_period(
    kube_env: ClusterEmulator,
    start: Callable[..., Instance],
    workdir: Path,
    eventually: Eventually,
    die: str,
) -> None:
    period = 20
    seed(kube_env, scaleUpStabilizationSeconds=period)
    recommend(workdir, 3)
    a = start("op-a", die=die)
    await eventually(lambda: a.process.poll() is not None, timeout=40, what="a killed mid-scale")
    assert a.process.returncode == -signal.SIGKILL
    killed_at = next(x["t"] for x in actions(workdir) if x["what"] == "killed")
    landed = 2 if die == "after-scale" else 1
    assert replicas(kube_env) == landed
    assert holder(kube_env).startswith("op-a_")  # a dead holder: nobody released the Lease

    b = start("op-b")
    await eventually(lambda: holder(kube_env).startswith("op-b_"), timeout=30, what="b leads")
    took_over = time.time()

    def steps_of_b() -> list[dict[str, Any]]:
        return [x for x in actions(workdir) if x["what"] == "scale" and x["who"] == "op-b"]

    first = (await eventually(steps_of_b, timeout=period + 20, what="b's first step"))[0]
    assert replicas(kube_env) == landed + 1
    # Without the record, b would step at once on taking over (a few seconds after the kill).
    assert first["t"] - killed_at >= period - 1, (first["t"] - killed_at, took_over - killed_at)
    assert first["replicas"] == landed + 1  # from the real count, one step
    assert scaling(kube_env)["holder"].startswith("op-b_")
    assert b.process.poll() is None, b.log()
    assert kube_env.get("icp", "llama70b", namespace=NS) is not None  # nothing lost
