"""`llmcost run` as its own process, finding the cluster through KUBECONFIG as kubectl does."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from costoperator.kube_emulator import (
    ClusterEmulator,
    gpu_node,
    inference_cost_policy,
    namespace_object,
    workload_objects,
)
from costoperator.promserver import PrometheusServer, free_port
from costoperator.stack import wait_for

LLMCOST = shutil.which("llmcost") or str(Path(sys.executable).with_name("llmcost"))


@pytest.fixture
def cluster() -> Iterator[ClusterEmulator]:
    with ClusterEmulator() as c:
        c.seed(
            [
                namespace_object("inference"),
                gpu_node("gpu-1", gpu_product="NVIDIA-H100-80GB-HBM3", capacity_type="on-demand"),
                *workload_objects(
                    "qwen72b", "inference", replicas=2, nodes=["gpu-1"], gpus_per_pod=4
                ),
                inference_cost_policy(
                    "qwen72b",
                    "inference",
                    {
                        "selector": {"matchLabels": {"app": "qwen72b"}},
                        "engine": "vllm",
                        "model": "qwen2.5-72b",
                        "window": "1m",
                        "interval": "5s",
                    },
                ),
            ]
        )
        yield c


def test_llmcost_run_prices_allocation_and_reports_missing_metrics(
    prometheus_bin: Path, cluster: ClusterEmulator
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env.update(cluster.env())
    with PrometheusServer() as prometheus:
        proc = subprocess.Popen(
            [
                LLMCOST,
                "run",
                "--prometheus-url",
                prometheus.url,
                "--all-namespaces",
                "--metrics-port",
                str(port),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:

            def status() -> dict[str, object]:
                body = cluster.get("icp", "qwen72b", namespace="inference") or {}
                return body.get("status") or {}

            assert wait_for(lambda: status().get("workloads") == 1, 60), status()
            conditions = {c["type"]: c for c in status()["conditions"]}  # type: ignore[union-attr]
            assert conditions["Ready"]["status"] == "True"
            assert conditions["MetricsAvailable"]["status"] == "False"
            assert conditions["Stale"]["status"] == "True"
            assert "usdPerMillionTokens" not in status()  # no tokens: no price, not $0

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            samples = {
                (s.name, s.labels.get("capacity_type", "")): s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.labels.get("workload") == "qwen72b"
            }
            assert samples[("llmcost_hourly_cost_usd", "on_demand")] == pytest.approx(8 * 4.50)
            assert samples[("llmcost_data_stale", "")] == 1
            assert ("llmcost_cost_per_million_tokens_usd", "") not in samples
        finally:
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output[-3000:]
    assert "Traceback" not in output
