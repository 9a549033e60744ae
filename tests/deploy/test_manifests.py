"""deploy/: what it ships is what the sources generate (CRDs from the models, the chart's
defaults, the dashboard as code), every manifest is valid Kubernetes, the examples fit the
operator, and the image is slim and non-root.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml
from harness.deploy import CHART, CUSTOM_KINDS, DEPLOY, GENERATE, ROOT, documents, kube_errors

from costengine.pricing import CapacityType
from costoperator.cluster import capacity_type_of, gpu_from_product, selector_matches
from costoperator.crds import CRD_FILES, parse_policy_spec

PLAIN = sorted(
    [*DEPLOY.glob("*.yaml"), *DEPLOY.glob("*/*.yaml"), *DEPLOY.glob("examples/workloads/*.yaml")]
)
PLAIN = [p for p in PLAIN if "prometheus" not in p.parts]  # rule files: test_rules.py


def test_deploy_and_chart_match_their_sources() -> None:
    """deploy/generate.py --check: the CRDs of deploy/crds and of the chart are both what the
    pydantic models generate; deploy/*.yaml are the chart rendered with its default values;
    both dashboard JSON copies are what deploy/grafana/dashboard.py builds."""
    assert GENERATE.check() == []


def test_chart_ships_the_generated_crds_byte_for_byte() -> None:
    with helm.Chart.load(CHART) as chart:
        crds = {Path(c["filename"]).name: c["data"] for c in chart.crds}
    assert set(crds) == set(CRD_FILES)
    for name, text in crds.items():
        assert text == (DEPLOY / "crds" / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("path", PLAIN, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_plain_manifests_are_valid_kubernetes(path: Path) -> None:
    docs = documents(path.read_text(encoding="utf-8"))
    assert docs
    problems = [p for d in docs if d["kind"] not in CUSTOM_KINDS for p in kube_errors(d)]
    assert problems == []


def test_namespace_enforces_the_restricted_profile() -> None:
    (namespace,) = documents((DEPLOY / "namespace.yaml").read_text(encoding="utf-8"))
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for path in ("rbac.yaml", "operator.yaml", "servicemonitor.yaml", "prometheusrule.yaml"):
        for doc in documents((DEPLOY / path).read_text(encoding="utf-8")):
            if doc["kind"] not in {"ClusterRole", "ClusterRoleBinding"}:
                assert doc["metadata"]["namespace"] == namespace["metadata"]["name"]


def _policy(name: str) -> dict[str, Any]:
    for path in sorted((DEPLOY / "examples").glob("*.yaml")):
        for doc in documents(path.read_text(encoding="utf-8")):
            if doc["kind"] == "InferenceCostPolicy" and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(name)


def test_spot_workload_example_is_pinned_to_spot_nodes_and_matches_its_policy() -> None:
    (workload,) = documents(
        (DEPLOY / "examples" / "workloads" / "llama70b-spot.yaml").read_text(encoding="utf-8")
    )
    policy = _policy("llama70b")
    spec = parse_policy_spec(policy["spec"])
    assert spec.spot is not None
    assert spec.spot.spot_target_ref is not None
    assert workload["kind"] == spec.spot.spot_target_ref.kind
    assert workload["metadata"]["name"] == spec.spot.spot_target_ref.name
    assert workload["metadata"]["namespace"] == policy["metadata"]["namespace"]
    assert spec.selector is not None
    assert selector_matches(policy["spec"]["selector"], workload["metadata"]["labels"])
    pod = workload["spec"]["template"]["spec"]
    # A node that satisfies the nodeSelector is a spot node with the policy's GPU, as the
    # operator reads node labels.
    assert capacity_type_of(pod["nodeSelector"]) is CapacityType.SPOT
    assert gpu_from_product(pod["nodeSelector"]["nvidia.com/gpu.product"]) == "A100-80GB"
    tolerated = {(t["key"], t.get("value")) for t in pod["tolerations"]}
    assert ("karpenter.sh/capacity-type", "spot") in tolerated
    assert ("nvidia.com/gpu", None) in tolerated
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"


def test_peering_crds_admit_the_charts_peering_objects() -> None:
    crds = {
        d["spec"]["names"]["kind"]: d
        for d in documents((DEPLOY / "peering" / "kopf-peering-crds.yaml").read_text())
    }
    assert {c["spec"]["group"] for c in crds.values()} == {"kopf.dev"}
    for kind, crd in crds.items():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        jsonschema.Draft4Validator(schema).validate(
            {"apiVersion": "kopf.dev/v1", "kind": kind, "status": {"peer-1": {"priority": 1}}}
        )


def _stages(dockerfile: str) -> list[str]:
    return re.split(r"(?m)^FROM ", dockerfile)[1:]


def test_dockerfile_is_slim_multi_stage_and_non_root() -> None:
    text = (ROOT / "operator" / "Dockerfile").read_text(encoding="utf-8")
    stages = _stages(text)
    assert len(stages) >= 2
    final = stages[-1]
    assert final.startswith("${PYTHON_IMAGE}")
    assert re.search(r"(?m)^ARG PYTHON_IMAGE=python:3\.\d+-slim", text)
    user = re.findall(r"(?m)^USER (\S+)", final)
    assert user
    uid = user[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0  # numeric, so runAsNonRoot can be verified
    assert (
        int(uid)
        == yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]["runAsUser"]
    )
    for tool in ("apt-get install", "gcc", "build-essential", "make ", "pip install"):
        assert tool not in final, tool
    assert "pip uninstall -y pip" in final  # not even pip in the final image
    assert '["llmcost"]' in final
    # What the build copies exists (context: the repository root).
    for source in re.findall(r"(?m)^COPY (?!--from)(.+) \S+$", text):
        for item in source.split():
            assert (ROOT / item).exists(), item
    ignore = (ROOT / "operator" / "Dockerfile.dockerignore").read_text()
    assert "\n*\n" in ignore  # the build context is the repository root, minus everything else
