"""Helpers for the deploy/ and Helm chart tests: the chart rendered by Helm's own engine
(helm-python-sdk, in process: no helm binary, no cluster, no network), the generator of the
derived files (deploy/generate.py), and offline validation of manifests.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "llm-cost-operator"
DEPLOY = ROOT / "deploy"
#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion >= 1.25) that the
#: installed kubernetes-validate still ships schemas for is checked, and the newest.
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
#: Kinds of the CRDs the chart relies on: validated by other means (their own schemas, promtool).
CUSTOM_KINDS = {
    "ServiceMonitor",
    "PrometheusRule",
    "ClusterKopfPeering",
    "KopfPeering",
    "InferenceCostPolicy",
    "GPUPricing",
}


def _load_generate() -> ModuleType:
    path = DEPLOY / "generate.py"
    spec = importlib.util.spec_from_file_location("llmcost_deploy_generate", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE = _load_generate()


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def render(values: dict[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
    """Every manifest the chart renders with `values`, as dicts."""
    rendered: dict[str, str] = GENERATE.render_chart(values, **kw)
    return [
        d for name, text in sorted(rendered.items()) if name != "NOTES.txt" for d in documents(text)
    ]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"{len(found)} {kind} documents"
    return found[0]


def kube_errors(doc: dict[str, Any]) -> list[str]:
    """Problems kubernetes-validate finds in a built-in kind (strict: unknown fields too),
    against every Kubernetes version of KUBE_VERSIONS."""
    problems = []
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            problems.append(
                f"{doc['kind']}/{doc['metadata'].get('name')} @{version} {where}: {exc.message}"
            )
    return problems
