"""The Helm chart, rendered and linted by Helm's own engine (helm-python-sdk, in process), its
manifests validated offline against Kubernetes' schemas (kubernetes-validate), and the promises
of RELIABILITY 13, 18-20 checked on what it renders: least-privilege RBAC, Pod Security
Standards "restricted", one acting instance, Prometheus auth from mounted files.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from harness.deploy import (
    CHART,
    CUSTOM_KINDS,
    DEPLOY,
    KUBE_VERSIONS,
    by_kind,
    kube_errors,
    one,
    render,
)
from typer.testing import CliRunner

AUTH_VALUES: dict[str, Any] = {
    "prometheus": {
        "url": "https://mimir-query-frontend.mimir.svc:8080/prometheus",
        "bearerToken": {"secretName": "prometheus-token", "key": "token"},
        "tls": {"caConfigMapName": "prometheus-ca", "caKey": "ca.crt"},
        "tenant": {"header": "X-Scope-OrgID", "id": "inference"},
    }
}
NAMESPACED_PEERING: dict[str, Any] = {
    "operator": {"watchNamespaces": ["inference", "batch"]},
    "peering": {"enabled": True},
    "replicaCount": 2,
    "prometheus": {
        "url": "http://thanos-query.monitoring.svc:9090",
        "basicAuth": {"user": "llmcost", "passwordSecretName": "prometheus-basic-auth"},
        "tls": {"caSecretName": "prometheus-ca"},
        "gzip": True,
    },
}
VARIANTS = {
    "defaults": None,
    "auth": AUTH_VALUES,
    "namespaced-peering": NAMESPACED_PEERING,
    "no-prometheus-operator": {
        "serviceMonitor": {"enabled": False},
        "prometheusRule": {"enabled": False},
        "dashboard": {"enabled": False},
    },
}


def test_chart_lints_clean() -> None:
    for version in KUBE_VERSIONS:
        report = helm.lint(CHART, strict=True, kube_version=f"v{version}")
        assert report["errors"] == []
        # Severity 1 is information ("icon is recommended"); warnings and errors fail.
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values", VARIANTS.values(), ids=VARIANTS.keys())
def test_rendered_manifests_are_valid_kubernetes(values: dict[str, Any] | None) -> None:
    docs = render(values)
    builtin = [d for d in docs if d["kind"] not in CUSTOM_KINDS]
    assert builtin
    problems = [p for d in builtin for p in kube_errors(d)]
    assert problems == []
    for doc in docs:
        namespaced = doc["kind"] not in {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}
        assert bool(doc["metadata"].get("namespace")) == namespaced, doc["metadata"]["name"]


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"replicaCount": -1}, "replicaCount"),
        ({"prometheus": {"url": "prometheus:9090"}}, "prometheus/url"),
        ({"promethues": {"url": "http://p:9090"}}, "promethues"),
        ({"prometheusRule": {"alerts": {"drift": {"thresholdRatio": 0.9}}}}, "thresholdRatio"),
        ({"prometheusRule": {"alerts": {"dataStale": {"for": "ten minutes"}}}}, "for"),
        ({"operator": {"watchNamespaces": ["Inference"]}}, "watchNamespaces"),
        ({"operator": {"spotGlobalCap": -1}}, "spotGlobalCap"),
        ({"operator": {"noticeTaints": ["not a taint!"]}}, "noticeTaints"),
        ({"operator": {"noticeTaints": "karpenter.sh/disrupted"}}, "noticeTaints"),
    ],
)
def test_values_schema_rejects_bad_values(values: dict[str, Any], problem: str) -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(None)  # the defaults pass
        with pytest.raises(helm.HelmValuesError, match=problem):
            chart.validate_schema(values)


def test_two_replicas_without_the_lease_are_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match="leaderElection"):
        render({"replicaCount": 2, "leaderElection": {"enabled": False}})


# --- RBAC (RELIABILITY 18) ---------------------------------------------------------------------

#: (apiGroup, resource) → verbs: the whole grant, cluster-wide mode.
READ = frozenset({"get", "list", "watch"})
EXPECTED_RULES = {
    ("", "nodes"): READ,
    ("", "pods"): READ,
    ("apps", "deployments"): READ,
    ("apps", "statefulsets"): READ,
    ("apps", "replicasets"): READ,
    ("autoscaling", "horizontalpodautoscalers"): READ,
    ("keda.sh", "scaledobjects"): READ,
    ("apiextensions.k8s.io", "customresourcedefinitions"): READ,
    ("llmcost.io", "gpupricings"): READ,
    ("llmcost.io", "inferencecostpolicies"): READ | {"patch"},
    ("llmcost.io", "inferencecostpolicies/status"): frozenset({"get", "patch"}),
    ("apps", "deployments/scale"): frozenset({"patch"}),
    ("apps", "statefulsets/scale"): frozenset({"patch"}),
    ("", "events"): frozenset({"create"}),
}
CLUSTER_SCOPED = {
    ("", "nodes"),
    ("llmcost.io", "gpupricings"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
}


def grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str], frozenset[str]]:
    out: dict[tuple[str, str], frozenset[str]] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}  # no resourceNames tricks
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out[(group, resource)] = out.get((group, resource), frozenset()) | set(
                    rule["verbs"]
                )
    return out


def assert_least_privilege(rules: list[dict[str, Any]]) -> None:
    text = json.dumps(rules)
    assert "*" not in text
    assert "secrets" not in text
    for (group, resource), verbs in grants(rules).items():
        writes = verbs - READ
        if writes:
            assert (group, resource) in {
                ("llmcost.io", "inferencecostpolicies"),
                ("llmcost.io", "inferencecostpolicies/status"),
                ("apps", "deployments/scale"),
                ("apps", "statefulsets/scale"),
                ("", "events"),
                ("kopf.dev", "clusterkopfpeerings"),
                ("kopf.dev", "kopfpeerings"),
                ("coordination.k8s.io", "leases"),
            }, (group, resource, verbs)


def test_rbac_cluster_wide_is_exactly_the_least_privilege_grant() -> None:
    docs = render()
    role = one(docs, "ClusterRole")
    assert grants(role["rules"]) == EXPECTED_RULES
    assert_least_privilege(role["rules"])
    binding = one(docs, "ClusterRoleBinding")
    account = one(docs, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    # The only Role is the leader Lease's, in the release namespace.
    assert [r["metadata"]["name"] for r in by_kind(docs, "Role")] == ["llm-cost-operator-leader"]


def leader_role(doc: dict[str, Any]) -> bool:
    return str(doc["metadata"]["name"]).endswith("-leader")


def test_rbac_namespaced_with_peering_splits_cluster_and_namespace_grants() -> None:
    docs = render(NAMESPACED_PEERING)
    cluster = grants(one(docs, "ClusterRole")["rules"])
    assert set(cluster) == {
        ("", "nodes"),
        ("", "namespaces"),
        ("llmcost.io", "gpupricings"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
    }
    assert all(verbs == READ for verbs in cluster.values())
    roles = [r for r in by_kind(docs, "Role") if not leader_role(r)]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["batch", "inference"]
    for role in roles:
        assert_least_privilege(role["rules"])
        assert grants(role["rules"]) == {
            **{k: v for k, v in EXPECTED_RULES.items() if k not in CLUSTER_SCOPED},
            ("kopf.dev", "kopfpeerings"): READ | {"patch"},
        }
    bindings = [b for b in by_kind(docs, "RoleBinding") if not leader_role(b)]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["batch", "inference"]
    peerings = by_kind(docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["batch", "inference"]


def test_peering_cluster_wide_grants_the_cluster_peering_only() -> None:
    docs = render({"peering": {"enabled": True}, "replicaCount": 2})
    rules = grants(one(docs, "ClusterRole")["rules"])
    assert rules[("kopf.dev", "clusterkopfpeerings")] == READ | {"patch"}
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "llm-cost-operator"


# --- the Deployment (RELIABILITY 13, 19, 20) -----------------------------------------------------


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("values", VARIANTS.values(), ids=VARIANTS.keys())
def test_pod_security_standards_restricted(values: dict[str, Any] | None) -> None:
    """The "restricted" profile's checks (kubernetes.io/docs/concepts/security/
    pod-security-standards), on the rendered pod."""
    spec = pod_spec(render(values))
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key)
    allowed_volumes = {"configMap", "emptyDir", "secret", "projected", "downwardAPI"}
    for volume in spec["volumes"]:
        assert set(volume) - {"name"} <= allowed_volumes
    for container in spec["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert not sc["capabilities"].get("add")
        assert sc.get("privileged") is not True
        assert sc["readOnlyRootFilesystem"] is True
        assert not container.get("ports") or all("hostPort" not in p for p in container["ports"])
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        tmp = next(v for v in spec["volumes"] if v["name"] == mounts["/tmp"])
        assert "emptyDir" in tmp
        resources = container["resources"]
        assert resources["requests"]["cpu"]
        assert resources["requests"]["memory"]
        assert resources["limits"]["memory"]


def test_one_instance_acts() -> None:
    deployment = one(render(), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert "--standalone" in args
    # The leader Lease: in the release's namespace, named by values, the pod as identity.
    assert "--leader-election" in args
    assert "--lease-name=llm-cost-operator" in args
    assert "--lease-duration=15" in args
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}) for e in container["env"]}
    assert env["POD_NAMESPACE"] == {"fieldPath": "metadata.namespace"}
    assert env["POD_NAME"] == {"fieldPath": "metadata.name"}
    two = one(render({"replicaCount": 2}), "Deployment")
    assert two["spec"]["strategy"]["type"] == "RollingUpdate"
    assert two["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_lease_grant_is_the_one_lease_in_the_release_namespace() -> None:
    docs = render()
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-leader")]
    assert len(roles) == 1
    role = roles[0]
    assert "*" not in json.dumps(role)
    assert role["metadata"]["namespace"] == one(docs, "Deployment")["metadata"]["namespace"]
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["llm-cost-operator"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    binding = next(
        d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"].endswith("-leader")
    )
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    off = render({"leaderElection": {"enabled": False}})
    assert not [d for d in off if d["metadata"]["name"].endswith("-leader")]
    args = one(off, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--no-leader-election" in args


def test_kopf_peering_can_be_added() -> None:
    peered = one(render({"peering": {"enabled": True}, "replicaCount": 2}), "Deployment")
    container = peered["spec"]["template"]["spec"]["containers"][0]
    assert "--peering=llm-cost-operator" in container["args"]
    assert "--standalone" not in container["args"]
    assert "--priority" in " ".join(container["command"])  # each pod its own priority


def test_liveness_probe_is_kopfs_endpoint() -> None:
    container = pod_spec(render())["containers"][0]
    liveness = next(a for a in container["args"] if a.startswith("--liveness="))
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    probe = container["livenessProbe"]["httpGet"]
    assert liveness == f"--liveness=http://0.0.0.0:{port[probe['port']]}{probe['path']}"


def test_prometheus_auth_comes_from_mounted_files() -> None:
    spec = pod_spec(render(AUTH_VALUES))
    container = spec["containers"][0]
    args = container["args"]
    assert "--prometheus-url=https://mimir-query-frontend.mimir.svc:8080/prometheus" in args
    assert "--tenant-header=X-Scope-OrgID" in args
    assert "--tenant=inference" in args
    token = next(a for a in args if a.startswith("--bearer-token-file=")).split("=", 1)[1]
    ca = next(a for a in args if a.startswith("--ca-file=")).split("=", 1)[1]
    volumes = {v["name"]: v for v in spec["volumes"]}
    for path, source in ((token, "secret"), (ca, "configMap")):
        mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
        # A whole-volume mount, never subPath: the kubelet updates it in place on rotation.
        assert "subPath" not in mount
        assert mount["readOnly"] is True
        assert source in volumes[mount["name"]]
    assert volumes["prometheus-token"]["secret"]["secretName"] == "prometheus-token"
    assert "--insecure-skip-verify" not in args  # TLS verification stays on
    # No token value anywhere in the manifests: only Secret names.
    assert "token" not in json.dumps(container["env"])


def _run_args(values: dict[str, Any] | None, tmp_path: Path) -> dict[str, Any]:
    """The Deployment's args parsed by the real `llmcost run` (kopf.run captured)."""
    import kopf

    from costoperator.cli import app

    container = pod_spec(render(values))["containers"][0]
    args = [a.replace("/var/run/secrets/llmcost.io", str(tmp_path)) for a in container["args"]]
    for arg in args:
        if arg.startswith(("--bearer-token-file=", "--ca-file=", "--basic-auth-password-file=")):
            path = Path(arg.split("=", 1)[1])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    if "command" in container:  # the peering wrapper adds the priority
        args.append("--priority=1700000000000")
    captured: dict[str, Any] = {}
    monkey = pytest.MonkeyPatch()
    monkey.setattr(kopf, "run", lambda **kw: captured.update(kw))
    monkey.setattr(kopf, "configure", lambda **kw: None)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        monkey.undo()
    assert result.exit_code == 0, result.output
    return captured


@pytest.mark.parametrize("values", VARIANTS.values(), ids=VARIANTS.keys())
def test_deployment_args_are_accepted_by_llmcost_run(
    values: dict[str, Any] | None, tmp_path: Path
) -> None:
    kw = _run_args(values, tmp_path)
    config = kw["memo"]["config"]
    assert config.metrics_port == 9090
    assert kw["liveness_endpoint"] == "http://0.0.0.0:8080/healthz"
    assert config.prometheus_gzip is (values is NAMESPACED_PEERING)
    if values is NAMESPACED_PEERING:
        assert kw["namespaces"] == ["inference", "batch"]
        assert kw["peering_name"] == "llm-cost-operator"
        assert kw["standalone"] is False
    else:
        assert kw["clusterwide"] is True
        assert kw["standalone"] is True


def test_spot_cap_and_notice_taints_reach_the_operator(tmp_path: Path) -> None:
    """`operator.spotGlobalCap` and `operator.noticeTaints` become `llmcost run` flags that
    the real command accepts; by default neither is passed (the defaults are the command's)."""
    from costoperator.cluster import DEFAULT_NOTICE_TAINTS

    default = _run_args(None, tmp_path)["memo"]["config"]
    assert default.spot_global_cap is None
    assert default.notice_taints == DEFAULT_NOTICE_TAINTS
    values = {"operator": {"spotGlobalCap": 6, "noticeTaints": ["example.com/spot-reclaim"]}}
    args = pod_spec(render(values))["containers"][0]["args"]
    assert "--spot-global-cap=6" in args
    assert "--notice-taint=example.com/spot-reclaim" in args
    config = _run_args(values, tmp_path)["memo"]["config"]
    assert config.spot_global_cap == 6
    assert config.notice_taints == (*DEFAULT_NOTICE_TAINTS, "example.com/spot-reclaim")
    only = {
        "operator": {"noticeTaints": ["example.com/spot-reclaim"], "defaultNoticeTaints": False}
    }
    assert _run_args(only, tmp_path)["memo"]["config"].notice_taints == (
        "example.com/spot-reclaim",
    )


# --- Service, ServiceMonitor, PrometheusRule, dashboard ----------------------------------------


def test_servicemonitor_scrapes_the_operators_metrics_port() -> None:
    docs = render()
    service = one(docs, "Service")
    monitor = one(docs, "ServiceMonitor")
    deployment = one(docs, "Deployment")
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # The workload's namespace label must survive the scrape (else: exported_namespace).
    assert endpoint["honorLabels"] is True
    assert endpoint["relabelings"] == [
        {"action": "replace", "targetLabel": "job", "replacement": "llmcost-operator"}
    ]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert f"--metrics-port={ports['metrics']}" in container["args"]


def test_prometheusrule_groups_pass_promtool(promtool: Path, tmp_path: Path) -> None:
    """PrometheusRule is a CRD kubernetes-validate does not know: its groups are checked by
    promtool, with non-default values too."""
    for name, values in {
        "defaults": None,
        "custom": {
            "serviceMonitor": {"job": "llm-cost"},
            "prometheusRule": {
                "interval": "30s",
                "alertLabels": {"team": "ml-platform"},
                "alerts": {"drift": {"thresholdRatio": 1.5, "for": "1h"}},
            },
        },
    }.items():
        rule = one(render(values), "PrometheusRule")
        assert rule["apiVersion"] == "monitoring.coreos.com/v1"
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        done = subprocess.run(
            [str(promtool), "check", "rules", str(path)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        if values:
            text = path.read_text()
            assert 'job="llm-cost"' in text
            assert "> 1.5" in text
            alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
            assert all(a["labels"]["team"] == "ml-platform" for a in alerts)
            assert all(g["interval"] == "30s" for g in rule["spec"]["groups"])


def test_dashboard_configmap_is_labelled_for_the_grafana_sidecar() -> None:
    config_map = one(render(), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = config_map["data"].values()
    shipped = (DEPLOY / "grafana" / "llm-cost-operator.json").read_text(encoding="utf-8")
    assert json.loads(text) == json.loads(shipped)
    elsewhere = render({"dashboard": {"namespace": "grafana"}})
    assert one(elsewhere, "ConfigMap")["metadata"]["namespace"] == "grafana"
