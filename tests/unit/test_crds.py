"""The custom resources: examples, admission (OpenAPI schema + CEL rules) and the models agree.

What the API server does is reproduced from the committed CRD files: the OpenAPI schema with
`jsonschema` (Draft 4 is the dialect of Kubernetes' OpenAPI v3 bounds), the CEL rules with
cel-python after applying the schema's defaults, as the API server does before validating.
The same objects go through the pydantic models, which the operator uses.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import yaml
from celpy import celtypes
from hypothesis import given
from hypothesis import strategies as st

from costengine.gpus import GPUS
from costengine.models import MODELS
from costengine.pricing import CapacityType, seed_price_sheet
from costoperator.crds import (
    CRD_FILES,
    Condition,
    ConditionStatus,
    ConditionType,
    GPUPricingSpec,
    InferenceCostPolicySpec,
    InferenceCostPolicyStatus,
    PolicySpecError,
    SpotMode,
    main,
    parse_gpu_pricing_spec,
    parse_policy_spec,
    parse_policy_status,
    price_sheet_from_gpu_pricing,
    render_crds,
    status_patch,
    to_wire,
)

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "deploy" / "crds"
EXAMPLES = sorted((ROOT / "deploy" / "examples").glob("*.yaml"))


def _crd(kind: str) -> dict[str, Any]:
    for name in CRD_FILES:
        doc: dict[str, Any] = yaml.safe_load((CRD_DIR / name).read_text(encoding="utf-8"))
        if doc["spec"]["names"]["kind"] == kind:
            return doc
    raise AssertionError(f"no CRD for {kind} in {CRD_DIR}")


POLICY_CRD = _crd("InferenceCostPolicy")
PRICING_CRD = _crd("GPUPricing")
SCHEMAS = {
    "InferenceCostPolicy": POLICY_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
    "GPUPricing": PRICING_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
}
_CEL = celpy.Environment()


# --- the API server, reproduced ---------------------------------------------------------------


def schema_errors(obj: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft4Validator(SCHEMAS[obj["kind"]])
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(obj)
    ]


def with_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """The object after the API server's defaulting (defaults of present objects' fields)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties")
        if props is None:
            extra = schema.get("additionalProperties", {})
            return {k: with_defaults(v, extra) for k, v in value.items()}
        out = {k: with_defaults(v, props.get(k, {})) for k, v in value.items()}
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
        return out
    if isinstance(value, list) and schema.get("type") == "array":
        return [with_defaults(v, schema["items"]) for v in value]
    return value


def cel_value(value: Any, schema: dict[str, Any]) -> Any:
    """A JSON value as the CEL type Kubernetes gives it from its schema (number → double)."""
    kind = schema["type"]
    if kind == "object":
        props = schema.get("properties")
        return celtypes.MapType(
            {
                celtypes.StringType(k): cel_value(
                    v, props[k] if props is not None else schema["additionalProperties"]
                )
                for k, v in value.items()
            }
        )
    if kind == "array":
        return celtypes.ListType([cel_value(v, schema["items"]) for v in value])
    converters: dict[str, Callable[[Any], Any]] = {
        "number": lambda v: celtypes.DoubleType(float(v)),
        "integer": celtypes.IntType,
        "boolean": celtypes.BoolType,
        "string": celtypes.StringType,
    }
    return converters[kind](value)


def _rule_nodes(
    value: Any, schema: dict[str, Any], path: str
) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    yield path, value, schema
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in value.items():
            if key in schema["properties"]:
                yield from _rule_nodes(sub, schema["properties"][key], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from _rule_nodes(item, schema["items"], f"{path}[{i}]")


def cel_violations(obj: dict[str, Any]) -> list[str]:
    """Messages of the CEL rules the (defaulted) object breaks; a rule that fails to evaluate
    on a schema-valid object is a bug in the rule and fails the test."""
    schema = SCHEMAS[obj["kind"]]
    broken = []
    for path, value, node in _rule_nodes(with_defaults(obj, schema), schema, ""):
        for rule in node.get("x-kubernetes-validations", []):
            program = _CEL.program(_CEL.compile(rule["rule"]))
            try:
                result = program.evaluate({"self": cel_value(value, node)})
            except celpy.CELEvalError as exc:
                raise AssertionError(f"{path}: rule {rule['rule']!r} failed: {exc}") from exc
            assert isinstance(result, celtypes.BoolType), f"{path}: {rule['rule']!r} → {result!r}"
            if not result:
                broken.append(f"{path}: {rule['message']}")
    return broken


def admission_errors(obj: dict[str, Any]) -> list[str]:
    """What the API server would say: schema errors, else CEL rule messages."""
    return schema_errors(obj) or cel_violations(obj)


# --- objects ---------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


def policy(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "llmcost.io/v1alpha1",
        "kind": "InferenceCostPolicy",
        "metadata": {"name": "p", "namespace": "inference"},
        "spec": spec,
    }


def pricing(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "llmcost.io/v1alpha1",
        "kind": "GPUPricing",
        "metadata": {"name": "sheet"},
        "spec": {"entries": entries},
    }


LLAMA70B = load(ROOT / "deploy" / "examples" / "llama70b.yaml")


def llama70b(**changes: Any) -> dict[str, Any]:
    """The DESIGN example with top-level spec fields replaced (None removes one)."""
    spec = copy.deepcopy(LLAMA70B["spec"])
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return policy(spec)


def llama70b_spot(**changes: Any) -> dict[str, Any]:
    spot = {**LLAMA70B["spec"]["spot"], **changes}
    return llama70b(spot={k: v for k, v in spot.items() if v is not None})


def parse(obj: dict[str, Any]) -> InferenceCostPolicySpec | GPUPricingSpec:
    if obj["kind"] == "GPUPricing":
        return parse_gpu_pricing_spec(obj["spec"])
    return parse_policy_spec(obj["spec"])


# --- examples --------------------------------------------------------------------------------


def test_examples_cover_the_engines_and_the_seed_sheet() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"llama70b.yaml", "sglang-llama8b.yaml", "gpupricing-seed.yaml"} <= names
    engines = {load(p)["spec"].get("engine") for p in EXAMPLES}
    assert {"vllm", "sglang", "tgi", "nim", "trtllm"} <= engines


def test_llama70b_example_is_designs_policy_verbatim() -> None:
    design = ROOT.parent / "shared" / "DESIGN.md"
    assert design.is_file(), f"shared DESIGN.md missing: {design}"
    block = design.read_text(encoding="utf-8").split("```yaml\n", 1)[1].split("```", 1)[0]
    assert (ROOT / "deploy" / "examples" / "llama70b.yaml").read_text(encoding="utf-8") == block


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_admitted_and_parsed(path: Path) -> None:
    obj = load(path)
    assert schema_errors(obj) == []
    assert cel_violations(obj) == []
    parse(obj)  # raises PolicySpecError if the operator would refuse it


def test_design_example_reads_as_written() -> None:
    spec = parse_policy_spec(LLAMA70B["spec"])
    assert spec.selector is not None
    assert spec.selector.match_labels == {"app": "llama70b"}
    assert spec.model == "llama-2-70b"
    assert spec.window_seconds == 300
    assert spec.interval_seconds == 30
    assert spec.effective_drift.baseline_window_seconds == 24 * 3600
    assert spec.effective_spot.mode is SpotMode.RECOMMEND
    assert spec.effective_spot.max_spot_fraction == 0.7
    assert spec.api_comparison is not None
    assert spec.api_comparison[0].output_usd_per_million == 10
    assert spec.pricing is not None
    overrides = {
        e.capacity_type: e.usd_per_gpu_hour for e in spec.pricing.overrides_for("H100-SXM")
    }
    assert overrides == {CapacityType.ON_DEMAND: 2.21, CapacityType.SPOT: 0.73}


def test_defaults_match_between_api_server_and_operator() -> None:
    minimal = policy({"targetRef": {"kind": "Deployment", "name": "llm"}, "spot": {}})
    defaulted = with_defaults(minimal, SCHEMAS["InferenceCostPolicy"])["spec"]
    assert defaulted["engine"] == "auto"
    assert defaulted["window"] == "5m"
    assert defaulted["interval"] == "30s"
    assert defaulted["spot"] == {"mode": "Off", "minReplicas": 0, "onMetricsLoss": "Hold"}
    parsed = to_wire(parse_policy_spec(minimal["spec"]))
    assert parsed == defaulted
    drift = parse_policy_spec(minimal["spec"]).effective_drift
    assert (drift.baseline_window, drift.threshold_ratio, drift.min_tokens) == ("24h", 1.2, 100000)


def test_seed_gpupricing_example_is_the_seed_sheet() -> None:
    spec = parse_gpu_pricing_spec(
        load(ROOT / "deploy" / "examples" / "gpupricing-seed.yaml")["spec"]
    )
    sheet = price_sheet_from_gpu_pricing("seed", spec)
    got = {(e.gpu, e.capacity_type): e.usd_per_gpu_hour for e in sheet}
    want = {(e.gpu, e.capacity_type): e.usd_per_gpu_hour for e in seed_price_sheet()}
    assert got == want
    assert got[("A100-80GB", CapacityType.SPOT)] == 0.73
    assert all(e.source == "GPUPricing/seed" for e in sheet)


# --- good and bad policies: both layers agree ------------------------------------------------

GOOD = {
    "target ref only": policy({"targetRef": {"kind": "StatefulSet", "name": "tgi"}}),
    "spot off needs no target": llama70b_spot(mode="Off", spotTargetRef=None),
    "min equals max": llama70b_spot(minReplicas=3, maxReplicas=3),
    "no max replicas": llama70b_spot(maxReplicas=None),
    "on-demand target": llama70b_spot(
        onDemandTargetRef={"kind": "Deployment", "name": "llama70b"},
        onDemandMinReplicas=2,
        onDemandMaxReplicas=6,
        onDemandBase="Fraction",
    ),
    "trtllm with metrics": llama70b(
        engine="trtllm",
        metrics={"inputTokens": "trt_in_total", "outputTokens": "trt_out_total"},
    ),
    "selector by expression": llama70b(
        selector={"matchExpressions": [{"key": "tier", "operator": "Exists"}]}
    ),
    "window of 1m": llama70b(window="1m", drift=None),
    "window 1h30m, baseline 24h": llama70b(window="1h30m"),
    "integer price": llama70b(pricing={"usdPerGpuHour": {"onDemand": 2}}),
    "price at the bound": llama70b(pricing={"usdPerGpuHour": {"reserved": 1000}}),
}

# name → (object, field the operator names, CEL message the API server gives, or None where the
# OpenAPI schema alone rejects it)
BAD: dict[str, tuple[dict[str, Any], str, str | None]] = {
    "selector and targetRef": (
        llama70b(targetRef={"kind": "Deployment", "name": "llama70b"}),
        "spec",
        "exactly one of selector or targetRef",
    ),
    "neither selector nor targetRef": (llama70b(selector=None), "spec", "exactly one of"),
    "min > max replicas": (
        llama70b_spot(minReplicas=5, maxReplicas=2),
        "spec.spot",
        "minReplicas must not exceed maxReplicas",
    ),
    "Auto without spotTargetRef": (
        llama70b_spot(mode="Auto", spotTargetRef=None),
        "spec.spot",
        "spotTargetRef is required",
    ),
    "Recommend without spotTargetRef": (
        llama70b_spot(spotTargetRef=None),
        "spec.spot",
        "spotTargetRef is required",
    ),
    "on-demand target without its max": (
        llama70b_spot(onDemandTargetRef={"kind": "Deployment", "name": "llama70b"}),
        "spec.spot",
        "onDemandMaxReplicas is required with onDemandTargetRef",
    ),
    "on-demand min > max": (
        llama70b_spot(onDemandMinReplicas=4, onDemandMaxReplicas=3),
        "spec.spot",
        "onDemandMinReplicas must not exceed onDemandMaxReplicas",
    ),
    "on-demand target is the spot target": (
        llama70b_spot(
            onDemandTargetRef={"kind": "Deployment", "name": "llama70b-spot"},
            onDemandMaxReplicas=4,
        ),
        "spec.spot",
        "must be different workloads",
    ),
    "on-demand min 0": (
        llama70b_spot(onDemandMinReplicas=0),
        "spec.spot.onDemandMinReplicas",
        None,
    ),
    "unknown on-demand base": (llama70b_spot(onDemandBase="p50"), "spec.spot.onDemandBase", None),
    "negative price": (
        llama70b(pricing={"usdPerGpuHour": {"onDemand": -2.21}}),
        "spec.pricing.usdPerGpuHour.onDemand",
        "must be > 0 and <= 1000 USD per GPU-hour",
    ),
    "zero price": (
        llama70b(pricing={"usdPerGpuHour": {"spot": 0}}),
        "spec.pricing.usdPerGpuHour.spot",
        "must be > 0",
    ),
    "absurd price": (
        llama70b(pricing={"usdPerGpuHour": {"onDemand": 26280}}),
        "spec.pricing.usdPerGpuHour.onDemand",
        "whole-instance or monthly",
    ),
    "negative API price": (
        llama70b(apiComparison=[{"name": "x", "inputUsdPerMillion": -1, "outputUsdPerMillion": 1}]),
        "spec.apiComparison[0].inputUsdPerMillion",
        "USD per million tokens",
    ),
    "window under four scrape intervals": (llama70b(window="30s"), "spec.window", "at least 1m"),
    "interval under 5s": (llama70b(interval="1s"), "spec.interval", "at least 5s"),
    "baseline shorter than window": (
        llama70b(drift={"baselineWindow": "2m"}),
        "spec",
        "baselineWindow must not be shorter than window",
    ),
    "custom engine without metric names": (llama70b(engine="custom"), "spec", "needs metrics"),
    "trtllm with input metric only": (
        llama70b(engine="trtllm", metrics={"inputTokens": "trt_in_total"}),
        "spec",
        "needs metrics",
    ),
    "empty selector": (llama70b(selector={}), "spec.selector", "matchLabels or matchExpressions"),
    "In without values": (
        llama70b(selector={"matchExpressions": [{"key": "app", "operator": "In"}]}),
        "spec.selector.matchExpressions[0]",
        "values must be non-empty",
    ),
    "window not a duration": (llama70b(window="5 minutes"), "spec.window", None),
    "unknown engine": (llama70b(engine="llamacpp"), "spec.engine", None),
    "unknown model": (llama70b(model="llama2-70b"), "spec.model", None),
    "unknown gpu": (llama70b(gpu="A100"), "spec.gpu", None),
    "unknown spot mode": (llama70b_spot(mode="On"), "spec.spot.mode", None),
    "unquoted Off (a YAML boolean)": (llama70b_spot(mode=False), "spec.spot.mode", None),
    "threshold ratio not above 1": (
        llama70b(drift={"thresholdRatio": 1.0}),
        "spec.drift.thresholdRatio",
        None,
    ),
    "max replicas over the cap": (llama70b_spot(maxReplicas=5000), "spec.spot.maxReplicas", None),
    "negative min replicas": (llama70b_spot(minReplicas=-1), "spec.spot.minReplicas", None),
    "spot fraction over 1": (llama70b_spot(maxSpotFraction=1.5), "spec.spot.maxSpotFraction", None),
    "burst quantile over 1": (llama70b_spot(burstQuantile=1.5), "spec.spot.burstQuantile", None),
    "negative cold start": (llama70b_spot(coldStartSeconds=-1), "spec.spot.coldStartSeconds", None),
    "interruptions over one a minute": (
        llama70b_spot(interruptionsPerReplicaHour=61),
        "spec.spot.interruptionsPerReplicaHour",
        None,
    ),
    "slo-bound not a boolean": (llama70b_spot(sloBound="yes"), "spec.spot.sloBound", None),
    "target utilization 0": (
        llama70b_spot(targetUtilization=0),
        "spec.spot.targetUtilization",
        None,
    ),
    "targetRef of a Pod": (
        llama70b(selector=None, targetRef={"kind": "Pod", "name": "x"}),
        "spec.targetRef.kind",
        None,
    ),
    "bad metric name": (
        llama70b(engine="custom", metrics={"inputTokens": "in-tokens", "outputTokens": "out"}),
        "spec.metrics.inputTokens",
        None,
    ),
    "semantic matchLabels key not a label name": (
        llama70b(
            cache={"semantic": {"tokensServedMetric": "gw_total", "matchLabels": {"a-b": "x"}}}
        ),
        "spec.cache.semantic",
        "Prometheus label names",
    ),
    "semantic cache without its tokens counter": (
        llama70b(cache={"semantic": {"hitsMetric": "gw_hits_total"}}),
        "spec.cache.semantic.tokensServedMetric",
        None,
    ),
}


@pytest.mark.parametrize("obj", GOOD.values(), ids=GOOD.keys())
def test_good_policy_is_admitted_and_parsed(obj: dict[str, Any]) -> None:
    assert admission_errors(obj) == []
    parse(obj)


@pytest.mark.parametrize(("obj", "field", "cel_message"), BAD.values(), ids=BAD.keys())
def test_bad_policy_is_rejected_by_api_server_and_operator(
    obj: dict[str, Any], field: str, cel_message: str | None
) -> None:
    with pytest.raises(PolicySpecError) as caught:
        parse(obj)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    if cel_message is None:
        assert schema_errors(obj), "the OpenAPI schema should reject it"
    else:
        violations = cel_violations(obj)
        assert any(cel_message in v for v in violations), violations


def test_price_bounds_are_in_schema_and_cel_alike() -> None:
    for price in (-1, 0, 1000.01, 1e9):
        obj = llama70b(pricing={"usdPerGpuHour": {"onDemand": price}})
        assert schema_errors(obj)
        assert cel_violations(obj)


def test_operator_names_close_catalog_matches() -> None:
    with pytest.raises(PolicySpecError, match="did you mean 'llama-2-70b'"):
        parse_policy_spec(llama70b(model="llama2-70b")["spec"])
    with pytest.raises(PolicySpecError, match='write "Off"'):
        parse_policy_spec(llama70b_spot(mode=False)["spec"])


def test_duplicate_api_names_rejected() -> None:
    # The API server rejects duplicates of a list-type map key itself (no CEL rule needed).
    prop = SCHEMAS["InferenceCostPolicy"]["properties"]["spec"]["properties"]["apiComparison"]
    assert prop["x-kubernetes-list-type"] == "map"
    assert prop["x-kubernetes-list-map-keys"] == ["name"]
    twice = [{"name": "gpt-4o", "inputUsdPerMillion": 2.5, "outputUsdPerMillion": 10}] * 2
    with pytest.raises(PolicySpecError, match="unique"):
        parse_policy_spec(llama70b(apiComparison=twice)["spec"])


def test_spec_that_is_not_an_object() -> None:
    with pytest.raises(PolicySpecError, match=r"^spec: must be an object"):
        parse_policy_spec("selector: x")  # type: ignore[arg-type]


BAD_PRICING = {
    "negative": ({"gpu": "L4", "capacityType": "spot", "usdPerGpuHour": -0.5}, True),
    "absurd": ({"gpu": "L4", "capacityType": "spot", "usdPerGpuHour": 4000}, True),
    "unknown gpu": ({"gpu": "RTX4090", "capacityType": "spot", "usdPerGpuHour": 0.5}, False),
    "unknown capacity": ({"gpu": "L4", "capacityType": "preemptible", "usdPerGpuHour": 1}, False),
    "no price": ({"gpu": "L4", "capacityType": "spot"}, False),
}


@pytest.mark.parametrize(("entry", "cel_too"), BAD_PRICING.values(), ids=BAD_PRICING.keys())
def test_bad_gpupricing_is_rejected(entry: dict[str, Any], cel_too: bool) -> None:
    obj = pricing([entry])
    assert schema_errors(obj)
    if cel_too:
        assert cel_violations(obj)
    with pytest.raises(PolicySpecError, match=r"^spec\.entries\[0\]"):
        parse(obj)


def test_empty_gpupricing_is_rejected() -> None:
    assert schema_errors(pricing([]))
    with pytest.raises(PolicySpecError, match=r"^spec\.entries"):
        parse(pricing([]))


# --- the CRDs --------------------------------------------------------------------------------

#: Keywords a structural v1 CRD schema may use here; anything else is a generator bug.
ALLOWED = {
    "description", "type", "format", "enum", "default", "minimum", "exclusiveMinimum",
    "maximum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    "required", "properties", "additionalProperties", "items", "nullable",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-validations",
}  # fmt: skip


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{key}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")


@pytest.mark.parametrize("kind", SCHEMAS)
def test_schema_is_structural(kind: str) -> None:
    for path, node in _nodes(SCHEMAS[kind]):
        assert set(node) <= ALLOWED, f"{path}: {set(node) - ALLOWED}"
        assert node.get("type") in {"object", "array", "string", "number", "integer", "boolean"}, (
            path
        )
        assert not ("properties" in node and "additionalProperties" in node), path
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(bound, True), bool), f"{path}: {bound} must be a boolean"
        if node["type"] == "array":
            assert "items" in node, path
        if node.get("x-kubernetes-list-type") == "map":
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in node["items"]["required"], f"{path}: map key {key} not required"
        if "default" in node:  # the API server refuses defaults its own schema rejects
            jsonschema.Draft4Validator(node).validate(node["default"])
    root = SCHEMAS[kind]
    assert root["properties"]["metadata"] == {"type": "object"}
    assert root["required"] == ["spec"]


@pytest.mark.parametrize("kind", SCHEMAS)
def test_every_cel_rule_compiles(kind: str) -> None:
    rules = [
        r for _, node in _nodes(SCHEMAS[kind]) for r in node.get("x-kubernetes-validations", [])
    ]
    assert rules
    for rule in rules:
        _CEL.compile(rule["rule"])
        assert rule["message"]


def test_crd_metadata() -> None:
    for crd, plural, short, scope in (
        (POLICY_CRD, "inferencecostpolicies", "icp", "Namespaced"),
        (PRICING_CRD, "gpupricings", "gpup", "Cluster"),
    ):
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["metadata"]["name"] == f"{plural}.llmcost.io"
        spec = crd["spec"]
        assert spec["group"] == "llmcost.io"
        assert spec["scope"] == scope
        assert spec["names"]["shortNames"] == [short]
        assert spec["names"]["categories"] == ["llmcost"]
        [version] = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert POLICY_CRD["spec"]["versions"][0]["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in POLICY_CRD["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["$/1M"]["jsonPath"] == ".status.usdPerMillionTokens"
    assert columns["Tokens/s"]["jsonPath"] == ".status.tokensPerSecond"
    assert columns["GPU Util"]["jsonPath"] == ".status.gpuUtilization"
    assert columns["Stale"]["jsonPath"] == ".status.stale"
    assert columns["Age"]["jsonPath"] == ".metadata.creationTimestamp"


def test_catalog_names_are_the_schema_enums() -> None:
    spec = SCHEMAS["InferenceCostPolicy"]["properties"]["spec"]["properties"]
    assert spec["model"]["enum"] == list(MODELS)
    assert spec["gpu"]["enum"] == list(GPUS)
    assert spec["engine"]["enum"] == ["auto", "vllm", "sglang", "tgi", "trtllm", "nim", "custom"]


def test_check_passes_on_committed_files() -> None:
    assert main(["--check", "--out-dir", str(CRD_DIR)]) == 0
    run = subprocess.run(
        [sys.executable, "-m", "costoperator.crds", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr


def test_check_fails_on_a_hand_edit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(CRD_FILES)
    edited = tmp_path / CRD_FILES[0]
    edited.write_text(edited.read_text(encoding="utf-8").replace("icp", "ic"), encoding="utf-8")
    capsys.readouterr()
    assert main(["--check", "--out-dir", str(tmp_path)]) == 1
    assert CRD_FILES[0] in capsys.readouterr().err
    (tmp_path / CRD_FILES[1]).unlink()
    assert main(["--check", "--out-dir", str(tmp_path)]) == 1


def test_generation_is_deterministic() -> None:
    assert render_crds() == render_crds()


# --- status ----------------------------------------------------------------------------------

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def full_status() -> InferenceCostPolicyStatus:
    return InferenceCostPolicyStatus(
        usd_per_million_tokens=1.46,
        tokens_per_second=2400.0,
        gpu_utilization=0.7,
        capacity_utilization=0.55,
        cache_savings_usd_per_hour=8.7,
        drift_ratio=1.05,
        recommended_spot_replicas=3,
        workloads=2,
        stale=False,
        conditions=[
            Condition(
                type=ConditionType.READY,
                status=ConditionStatus.TRUE,
                reason="FiguresComputed",
                message="2 workloads",
                last_transition_time=NOW,
                observed_generation=4,
            ),
            Condition(
                type=ConditionType.DRIFTING,
                status=ConditionStatus.FALSE,
                reason="WithinThreshold",
                last_transition_time=NOW,
            ),
        ],
        last_updated=NOW,
    )


def status_schema_errors(wire: dict[str, Any]) -> list[str]:
    obj = llama70b()
    obj["status"] = wire
    return schema_errors(obj)


def test_status_round_trips_and_matches_the_schema() -> None:
    status = full_status()
    wire = to_wire(status)
    assert wire["usdPerMillionTokens"] == 1.46
    assert wire["conditions"][0]["lastTransitionTime"] == "2025-01-02T03:04:05Z"
    assert parse_policy_status(wire) == status
    assert status_schema_errors(wire) == []
    empty = InferenceCostPolicyStatus()
    assert to_wire(empty) == {}
    assert parse_policy_status(to_wire(empty)) == empty


_figure = st.none() | st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
_condition = st.builds(
    lambda **fields: Condition(**fields),  # by field name (the class signature has aliases)
    type=st.sampled_from(ConditionType),
    status=st.sampled_from(ConditionStatus),
    reason=st.from_regex(r"\A[A-Z][A-Za-z0-9]{0,20}\Z"),
    message=st.text(max_size=50),
    last_transition_time=st.datetimes(timezones=st.just(UTC)),
    observed_generation=st.none() | st.integers(min_value=0, max_value=2**53),
)


@given(
    usd=_figure,
    tokens=_figure,
    util=st.none() | st.floats(min_value=0, max_value=1),
    replicas=st.none() | st.integers(min_value=0, max_value=1000),
    stale=st.none() | st.booleans(),
    conditions=st.lists(_condition, max_size=5, unique_by=lambda c: c.type),
)
def test_any_valid_status_round_trips_and_is_admitted(
    usd: float | None,
    tokens: float | None,
    util: float | None,
    replicas: int | None,
    stale: bool | None,
    conditions: list[Condition],
) -> None:
    status = InferenceCostPolicyStatus(
        usd_per_million_tokens=usd,
        tokens_per_second=tokens,
        gpu_utilization=util,
        recommended_spot_replicas=replicas,
        stale=stale,
        conditions=conditions or None,
    )
    wire = to_wire(status)
    assert parse_policy_status(wire) == status
    assert status_schema_errors(wire) == []


def _conditions(**changes: str) -> dict[str, Any]:
    ready = {"type": "Ready", "status": "True", "reason": "Computed"}
    return {"conditions": [{**ready, "lastTransitionTime": "2025-01-01T00:00:00Z", **changes}]}


@pytest.mark.parametrize(
    "wire",
    [
        {"usdPerMillionTokens": -1.0},
        {"gpuUtilization": 1.5},
        _conditions(status="Yes"),
        _conditions(type="Healthy"),
        _conditions(reason="not camel case"),
    ],
)
def test_bad_status_is_refused_by_both(wire: dict[str, Any]) -> None:
    assert status_schema_errors(wire)
    with pytest.raises(PolicySpecError, match=r"^status"):
        parse_policy_status(wire)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies kopf's status patches."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def test_status_patch_replaces_the_stored_status() -> None:
    stored = to_wire(full_status())
    newer = InferenceCostPolicyStatus(
        workloads=2, stale=True, last_updated=NOW, conditions=full_status().conditions
    )
    after = merge_patch(stored, status_patch(newer))
    assert "usdPerMillionTokens" not in after  # no data is not the last value
    assert parse_policy_status(after) == newer
    assert status_schema_errors(after) == []


def test_status_never_carries_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        InferenceCostPolicyStatus(usd_per_million_tokens=float("nan"))


def test_the_summary_patch_leaves_the_actuators_records_be() -> None:
    """`scaling` and `onDemandScaling` are written by the actuator before each scale; the
    periodic summary patch must not null them, or a restart would lose the step period."""
    record = {
        "lastScaleTime": "2026-12-07T00:00:00+00:00",
        "workload": "Deployment/llama70b",
        "fromReplicas": 2,
        "toReplicas": 3,
    }
    stored = {**to_wire(full_status()), "scaling": record, "onDemandScaling": record}
    after = merge_patch(stored, status_patch(InferenceCostPolicyStatus(workloads=1)))
    assert after["scaling"] == after["onDemandScaling"] == record
    assert "usdPerMillionTokens" not in after
