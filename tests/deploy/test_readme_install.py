"""Every command of README's "Install in a cluster" section, run offline.

No cluster, registry or Docker engine is here, so each command runs against what it would act
on: `helm install/upgrade` renders the chart with the command's own `--set` values through
Helm's engine and validates the result; `kubectl apply -f` validates every document it would
send (Kubernetes' schemas, our CRDs' schemas and the operator's parser); `kubectl patch`
applies the merge patch to the example and admits the result; `kubectl get/describe/annotate`
and `port-forward` must name things that exist; `promtool` and `deploy/generate.py` run for
real (the generator in its --check form). A command this file does not know fails the test, so
the README cannot grow an untested command.
"""

from __future__ import annotations

import copy
import glob
import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
from harness.deploy import CHART, CUSTOM_KINDS, DEPLOY, GENERATE, ROOT, documents, kube_errors

from costoperator.actuator import PAUSE_ANNOTATION
from costoperator.crds import CRD_FILES, parse_gpu_pricing_spec, parse_policy_spec

SECTION = "## Install in a cluster"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n{SECTION}\n")
    end = text.index("\n## ", start + 1)
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text[start:end], flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                commands.append(line.strip())
    return commands


def _crds() -> dict[str, dict[str, Any]]:
    out = {}
    for name in CRD_FILES:
        (crd,) = documents((DEPLOY / "crds" / name).read_text(encoding="utf-8"))
        out[crd["spec"]["names"]["kind"]] = crd
    return out


CRDS = _crds()


def admit(doc: dict[str, Any]) -> None:
    """What the API server and the operator would say about one document."""
    kind = doc["kind"]
    if kind in CRDS:
        schema = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        jsonschema.Draft4Validator(schema).validate(doc)
        parse = parse_policy_spec if kind == "InferenceCostPolicy" else parse_gpu_pricing_spec
        parse(doc["spec"])
    elif kind not in CUSTOM_KINDS:
        assert kube_errors(doc) == []


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass
class Session:
    """What the commands so far have set up, as a cluster would remember it."""

    images: set[str] = field(default_factory=set)
    secrets: set[tuple[str, str, str]] = field(default_factory=set)  # (namespace, name, key)
    config_maps: set[tuple[str, str, str]] = field(default_factory=set)
    applied: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    release_namespace: str | None = None
    ran: list[str] = field(default_factory=list)

    def objects(self, kind: str) -> Iterator[dict[str, Any]]:
        return (o for (k, _, _), o in self.applied.items() if k == kind)


def _flags(args: list[str], *, repeatable: set[str], booleans: set[str]) -> tuple[list[str], dict]:
    """Split argv into positionals and flags (`--x=v`, `--x v`, `-n v`)."""
    positional: list[str] = []
    flags: dict[str, Any] = {name: [] for name in repeatable}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            name, sep, value = arg.partition("=")
            if not sep and name not in booleans:
                i += 1
                value = args[i]
            if name in repeatable:
                flags[name].append(value)
            else:
                flags[name] = value if (sep or name not in booleans) else True
        else:
            positional.append(arg)
        i += 1
    return positional, flags


def run_docker(args: list[str], session: Session) -> None:
    if args[0] == "build":
        positional, flags = _flags(args[1:], repeatable=set(), booleans=set())
        assert positional == ["."]  # the repository root is the context
        assert (ROOT / flags["-f"]).is_file()
        session.images.add(flags["-t"])
    elif args[0] == "push":
        assert args[1] in session.images
    else:
        raise AssertionError(f"docker {args[0]}")


def run_helm(args: list[str], session: Session) -> None:
    verb, rest = args[0], args[1:]
    positional, flags = _flags(
        rest, repeatable={"--set", "-f", "--values"}, booleans={"--create-namespace", "--install"}
    )
    assert verb in {"install", "upgrade", "template"}
    if verb == "upgrade":
        assert flags.get("--install") is True
    release, chart = positional
    assert (ROOT / chart).resolve() == CHART
    helm.validate_release_name(release)
    namespace = flags.get("--namespace") or flags.get("-n") or "default"
    if verb == "upgrade":
        assert namespace == session.release_namespace  # upgrading the release installed above
    session.release_namespace = namespace
    values: dict[str, Any] = {}
    for path in flags["-f"] + flags["--values"]:
        values = merge_patch(values, helm.values_from_yaml((ROOT / path).read_text()))
    for expression in flags["--set"]:
        values = merge_patch(values, helm.parse_set_string(expression))
    with helm.Chart.load(CHART) as loaded:
        loaded.validate_schema(values)
        merged = loaded.merge_values(values)
    docs = [
        d
        for name, text in GENERATE.render_chart(values, name=release, namespace=namespace).items()
        if name != "NOTES.txt"
        for d in documents(text)
    ]
    for doc in docs:
        admit(doc)
    image = f"{merged['image']['repository']}:{merged['image']['tag'] or '0.1.0'}"
    assert image in session.images, f"{image} was not built above"
    prometheus = merged["prometheus"]
    if prometheus["bearerToken"]["secretName"]:
        key = (namespace, prometheus["bearerToken"]["secretName"], prometheus["bearerToken"]["key"])
        assert key in session.secrets, f"secret {key} not created above"
    if prometheus["tls"]["caConfigMapName"]:
        key = (namespace, prometheus["tls"]["caConfigMapName"], prometheus["tls"]["caKey"])
        assert key in session.config_maps, f"configmap {key} not created above"
    for doc in docs:
        session.applied[
            (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])
        ] = doc


def _files(path: str) -> list[Path]:
    target = ROOT / path
    if target.is_dir():  # kubectl apply -f DIR: its .yaml/.yml/.json files, not recursive
        return sorted(p for p in target.iterdir() if p.suffix in {".yaml", ".yml", ".json"})
    assert target.is_file(), path
    return [target]


def _resource(name: str) -> str:
    for kind, crd in CRDS.items():
        names = crd["spec"]["names"]
        if name in {names["plural"], names["singular"], *names.get("shortNames", [])}:
            return kind
    raise AssertionError(f"no resource {name!r}")


def _get_object(session: Session, kind: str, namespace: str, name: str) -> dict[str, Any]:
    found = session.applied.get((kind, namespace, name))
    assert found is not None, f"{kind} {namespace}/{name} was not applied above"
    return found


def run_kubectl(args: list[str], session: Session) -> None:
    positional, flags = _flags(
        args,
        repeatable={"-f", "--from-file"},
        booleans={"--all-namespaces", "-A"},
    )
    namespace = flags.get("-n") or flags.get("--namespace") or "default"
    verb = positional[0]
    if verb == "apply":
        docs = [d for f in flags["-f"] for p in _files(f) for d in documents(p.read_text())]
        assert docs
        for doc in docs:
            admit(doc)
            meta = doc["metadata"]
            session.applied[(doc["kind"], meta.get("namespace", ""), meta["name"])] = doc
    elif verb == "create":
        what, name = positional[1], positional[-1]
        keys = [spec.split("=", 1)[0] for spec in flags["--from-file"]]
        if what == "secret":
            assert positional[2] == "generic"
            session.secrets |= {(namespace, name, k) for k in keys}
        elif what == "configmap":
            session.config_maps |= {(namespace, name, k) for k in keys}
        else:
            raise AssertionError(f"kubectl create {what}")
    elif verb in {"get", "describe"}:
        kind = _resource(positional[1])
        if len(positional) > 2:
            obj = _get_object(session, kind, namespace, positional[2])
            output = flags.get("-o", "")
            if output.startswith("jsonpath="):
                field_path = re.fullmatch(r"jsonpath=\{\.status\.(\w+)\}", output)
                assert field_path, output
                status = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
                assert field_path.group(1) in status["properties"]["status"]["properties"]
                assert obj["spec"]["spot"]["mode"] in {"Recommend", "Auto"}
        else:
            assert flags.get("--all-namespaces") or flags.get("-A")
            assert list(session.objects(kind))
    elif verb == "patch":
        kind = _resource(positional[1])
        obj = _get_object(session, kind, namespace, positional[2])
        assert flags["--type"] == "merge"
        patched = merge_patch(copy.deepcopy(obj), json.loads(flags["-p"]))
        admit(patched)
        session.applied[(kind, namespace, positional[2])] = patched
        spot = parse_policy_spec(patched["spec"]).spot
        assert spot is not None
        assert spot.spot_target_ref is not None
        _get_object(session, "Deployment", namespace, spot.spot_target_ref.name)
    elif verb == "annotate":
        kind = _resource(positional[1])
        _get_object(session, kind, namespace, positional[2])
        key, _, value = positional[3].partition("=")
        assert key == PAUSE_ANNOTATION
        assert value == "true"
    else:
        raise AssertionError(f"kubectl {verb}")


def run_promtool(args: list[str], session: Session) -> None:
    assert args[:2] == ["test", "rules"]
    files = [f for pattern in args[2:] for f in sorted(glob.glob(str(ROOT / pattern)))]
    assert files
    assert {Path(f).name for f in files} == {
        p.name for p in (DEPLOY / "prometheus" / "tests").glob("*.yaml")
    }
    from harness.prometheus import find_binary, not_installed

    promtool = find_binary("promtool") or not_installed("promtool")
    done = subprocess.run(
        [str(promtool), *args[:2], *files], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout + done.stderr


def run_generate(args: list[str], session: Session) -> None:
    assert args == []
    assert GENERATE.check() == []


def test_readme_install_section_commands_all_run() -> None:
    commands = readme_commands()
    assert len(commands) >= 15
    session = Session()
    for command in commands:
        argv = shlex.split(command, comments=True)
        program, args = argv[0], argv[1:]
        runner = {
            "docker": run_docker,
            "helm": run_helm,
            "kubectl": run_kubectl,
            "promtool": run_promtool,
        }.get(program)
        if program == ".venv/bin/python" and args[:1] == ["deploy/generate.py"]:
            runner, args = run_generate, args[1:]
        assert runner is not None, f"no runner for README command: {command}"
        runner(args, session)
        session.ran.append(command)
    assert session.ran == commands
