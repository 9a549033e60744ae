"""An in-memory Kubernetes API for tests and `llmcost demo`: kmock's emulator served over HTTP.

`ClusterEmulator` runs kmock's `KubernetesEmulator` (kmock 0.8, by kopf's author) as a real HTTP
server on 127.0.0.1 in a background thread with its own event loop, and writes a kubeconfig that
points at it. kopf, the `kubernetes` client and kubectl-like tools find it through `KUBECONFIG`,
whether they run in the same process (the demo, the tests) or in another one (`llmcost run`).
Its own loop keeps it answering while the caller's loop or thread is busy or blocked.

kmock's emulator is a JSON store with a watch stream; what kopf and the operator rely on beyond
that is added here and each workaround is recorded in `tests/README.md` ("kmock quirks"):

- every write sets `metadata.resourceVersion` (one cluster-wide counter), `uid`,
  `creationTimestamp`, `generation` (bumped on spec changes), and `generateName` works;
- merge patches follow RFC 7386, JSON patches RFC 6902 with a failed `test` answered 422 (kopf's
  optimistic concurrency on finalizers depends on that), `PUT` replaces;
- the `status` subresource separates status writes from the rest, as the API server does;
- the `scale` subresource reads and writes an `autoscaling/v1` `Scale`;
- deletion honours finalizers (`deletionTimestamp`, removal when the last one goes) and
  removes dependents whose owners are all gone (background cascade);
- list and watch honour `labelSelector`, `fieldSelector`, `resourceVersion` (replay from a
  bounded event history, `410 Gone` beyond it), `timeoutSeconds` and `sendInitialEvents`;
- watches can be dropped from the server side (`drop_watches`) and the API taken offline
  (`set_reachable`) to test recovery;
- `/api/v1/namespaces[/name[/status]]` is routed (kmock 0.8 cannot parse those paths).

Not emulated: OpenAPI schema validation and pruning, CEL rules, admission, RBAC, strategic-merge
semantics for lists (treated as merge patches), server-side apply, namespace existence checks,
controllers (nothing turns a Deployment's replicas into Pods: seed them with `workload_objects`).

Exception tree (`ClusterEmulator` raises these; the builders raise `ValueError` on bad input)::

    EmulatorError
     ├── EmulatorNotRunningError   the server is not started or already stopped
     ├── UnknownResourceError      a resource name that is not declared
     └── ApiStatusError            the API answered with an error status (404, 409, 422, ...)
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import concurrent.futures
import contextlib
import copy
import dataclasses
import datetime
import enum
import hashlib
import itertools
import re
import secrets
import shutil
import socket
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

import aiohttp.web
import attrs
import jsonpatch
import kmock
import yaml

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "DEFAULT_RESOURCES",
    "ApiStatusError",
    "AsyncClusterEmulator",
    "CapacityType",
    "ClusterEmulator",
    "DropMode",
    "EmulatorError",
    "EmulatorNotRunningError",
    "ResourceSpec",
    "UnknownResourceError",
    "gpu_node",
    "gpu_pricing",
    "inference_cost_policy",
    "load_yaml",
    "namespace_object",
    "workload_objects",
]

API_GROUP: Final = "llmcost.io"
API_VERSION: Final = "v1alpha1"

Body = dict[str, Any]
T = TypeVar("T")
CapacityType = Literal["on-demand", "spot", "reserved"]
DropMode = Literal["close", "reset", "expire"]
"""How `drop_watches` ends the open watch streams: `close` ends the HTTP response cleanly (an
API server restart or its own timeout), `reset` aborts the TCP connection (a network drop),
`expire` sends a `410 Gone` ERROR event first (etcd compaction) and forgets the event history."""

_STANDARD_VERBS: Final = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)


class EmulatorError(Exception):
    """Base of the errors of this module."""


class EmulatorNotRunningError(EmulatorError):
    """The emulator is not started, or already stopped."""


class UnknownResourceError(EmulatorError):
    """A resource reference that matches no declared resource (or several)."""


class ApiStatusError(EmulatorError):
    """The emulated API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceSpec:
    """One API resource as the discovery endpoints describe it."""

    api_version: str  # "v1", "apps/v1", "llmcost.io/v1alpha1"
    plural: str
    kind: str
    namespaced: bool
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def key(self) -> kmock.resource:
        return kmock.resource(self.group, self.version, self.plural)

    def info(self) -> kmock.ResourceInfo:
        return kmock.ResourceInfo(
            namespaced=self.namespaced,
            kind=self.kind,
            singular=self.singular,
            verbs=set(_STANDARD_VERBS),
            shortnames=set(self.short_names),
            subresources=set(self.subresources),
        )


#: What the operator reads or writes, plus what kopf itself needs (CRDs for its resource
#: scanning, events for posting, namespaces, its peering resources, leases).
DEFAULT_RESOURCES: Final[tuple[ResourceSpec, ...]] = (
    ResourceSpec("v1", "namespaces", "Namespace", False, ("status", "finalize"), ("ns",)),
    ResourceSpec("v1", "nodes", "Node", False, ("status",), ("no",)),
    ResourceSpec("v1", "pods", "Pod", True, ("status",), ("po",)),
    ResourceSpec("v1", "events", "Event", True, (), ("ev",)),
    ResourceSpec("apps/v1", "deployments", "Deployment", True, ("status", "scale"), ("deploy",)),
    ResourceSpec("apps/v1", "replicasets", "ReplicaSet", True, ("status", "scale"), ("rs",)),
    ResourceSpec("apps/v1", "statefulsets", "StatefulSet", True, ("status", "scale"), ("sts",)),
    ResourceSpec(
        "autoscaling/v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        ("status",),
        ("hpa",),
    ),
    ResourceSpec("keda.sh/v1alpha1", "scaledobjects", "ScaledObject", True, ("status",), ("so",)),
    ResourceSpec(
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("status",),
        ("crd", "crds"),
    ),
    ResourceSpec("coordination.k8s.io/v1", "leases", "Lease", True),
    ResourceSpec("kopf.dev/v1", "clusterkopfpeerings", "ClusterKopfPeering", False),
    ResourceSpec("kopf.dev/v1", "kopfpeerings", "KopfPeering", True),
    ResourceSpec(
        f"{API_GROUP}/{API_VERSION}",
        "inferencecostpolicies",
        "InferenceCostPolicy",
        True,
        ("status",),
        ("icp",),
    ),
    ResourceSpec(f"{API_GROUP}/{API_VERSION}", "gpupricings", "GPUPricing", False),
)

#: Groups served by the API server itself; the others get a CustomResourceDefinition object.
_BUILTIN_GROUPS: Final = frozenset(
    {"", "apps", "autoscaling", "apiextensions.k8s.io", "coordination.k8s.io"}
)
#: Namespaces every cluster has.
_INITIAL_NAMESPACES: Final = ("default", "kube-system", "kube-public", "kube-node-lease")
#: kmock 0.8 parses `/api/v1/namespaces/{x}` as "namespace x", so namespace paths are re-routed.
_NAMESPACE_PATH: Final = re.compile(
    r"/api/v1/namespaces(?:/(?P<rest>[^/]+(?:/(?:status|finalize))?))?"
)
_GENERATE_NAME_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"  # as the API server's
_CALL_TIMEOUT_SECONDS: Final = 30.0
_STARTUP_TIMEOUT_SECONDS: Final = 30.0


# --------------------------------------------------------------------------------------------
# Pure helpers: timestamps, patches, selectors.


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _api_error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    # A non-empty `details` keeps kmock from attaching a server-side traceback to the response.
    return kmock.KubernetesError(status=status, reason=reason, message=message, details={})


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: `None` removes a key, mappings merge, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: Body = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _json_patch(target: Body, ops: Any) -> Body:
    """RFC 6902 JSON patch; a failed `test` or a bad path is the API server's 422."""
    if not isinstance(ops, list):
        raise _api_error(400, "BadRequest", "a JSON patch must be a list of operations")
    try:
        result = jsonpatch.apply_patch(target, ops, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise _api_error(422, "Invalid", f"the JSON patch was not applied: {exc}") from exc
    if not isinstance(result, dict):
        raise _api_error(422, "Invalid", "the JSON patch did not produce an object")
    return result


def _apply_patch(target: Body, data: Any, content_type: str) -> Body:
    if content_type.startswith("application/apply-patch"):
        raise _api_error(415, "UnsupportedMediaType", "server-side apply is not emulated")
    if content_type.startswith("application/json-patch") or isinstance(data, list):
        return _json_patch(target, data)
    if not isinstance(data, Mapping):
        raise _api_error(400, "BadRequest", "a merge patch must be a JSON object")
    # Strategic merge patches are applied as JSON merge patches (lists replace, not merge).
    merged = _merge_patch(target, data)
    assert isinstance(merged, dict)
    return merged


_REQUIREMENT = re.compile(
    r"\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9_.-]*)"
    r"|\s(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*"
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Requirement:
    key: str
    op: Literal["exists", "absent", "eq", "ne", "in", "notin"]
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, Any]) -> bool:
        value = labels.get(self.key)
        present = self.key in labels
        match self.op:
            case "exists":
                return present
            case "absent":
                return not present
            case "eq" | "in":
                return present and str(value) in self.values
            case "ne" | "notin":
                return not present or str(value) not in self.values


def _split_requirements(selector: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _parse_selector(selector: str | None) -> tuple[_Requirement, ...]:
    """Kubernetes label-selector syntax: `a=b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`."""
    requirements: list[_Requirement] = []
    for text in _split_requirements(selector or ""):
        found = _REQUIREMENT.fullmatch(text)
        if found is None:
            raise _api_error(400, "BadRequest", f"unable to parse requirement: {text!r}")
        key = found["key"]
        if found["neg"]:
            if found["op"] or found["setop"]:
                raise _api_error(400, "BadRequest", f"unable to parse requirement: {text!r}")
            requirements.append(_Requirement(key, "absent"))
        elif found["setop"]:
            values = frozenset(v.strip() for v in found["values"].split(",") if v.strip())
            requirements.append(
                _Requirement(key, "in" if found["setop"] == "in" else "notin", values)
            )
        elif found["op"]:
            op: Literal["eq", "ne"] = "ne" if found["op"] == "!=" else "eq"
            requirements.append(_Requirement(key, op, frozenset({found["value"]})))
        else:
            requirements.append(_Requirement(key, "exists"))
    return tuple(requirements)


def _field_values(body: Mapping[str, Any]) -> dict[str, str]:
    """Flatten scalar fields to dotted paths, for field selectors such as `spec.nodeName=n1`."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif isinstance(value, str | int | float | bool):
            flat[prefix] = str(value).lower() if isinstance(value, bool) else str(value)

    walk("", body)
    return flat


@dataclasses.dataclass(frozen=True, slots=True)
class _Selectors:
    labels: tuple[_Requirement, ...] = ()
    fields: tuple[_Requirement, ...] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> _Selectors:
        fields = _parse_selector(params.get("fieldSelector"))
        if any(req.op not in ("eq", "ne") for req in fields):
            raise _api_error(400, "BadRequest", "field selectors support only = and !=")
        return cls(_parse_selector(params.get("labelSelector")), fields)

    def matches(self, body: Mapping[str, Any]) -> bool:
        labels = body.get("metadata", {}).get("labels") or {}
        if not all(req.matches(labels) for req in self.labels):
            return False
        if not self.fields:
            return True
        flat = _field_values(body)
        return all(req.matches(flat) for req in self.fields)


def _selector_string(spec: Mapping[str, Any]) -> str:
    """A workload's `spec.selector` as the label-selector string a `Scale` reports."""
    selector = spec.get("selector") or {}
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = str(expr.get("operator", "")).lower()
        values = ",".join(expr.get("values") or [])
        if op in ("in", "notin"):
            parts.append(f"{expr['key']} {op} ({values})")
        elif op == "exists":
            parts.append(str(expr["key"]))
        elif op == "doesnotexist":
            parts.append(f"!{expr['key']}")
    return ",".join(parts)


# --------------------------------------------------------------------------------------------
# The emulator: kmock's KubernetesEmulator with the write path, watches and routing fixed.


class _Signal(enum.Enum):
    CLOSE = "close"
    RESET = "reset"
    EXPIRE = "expire"


@dataclasses.dataclass(frozen=True, slots=True)
class _Event:
    resource_version: int
    resource: kmock.resource
    namespace: str | None
    name: str
    payload: Body  # {"type": ..., "object": ...}


@dataclasses.dataclass(eq=False, slots=True)
class _Watch:
    resource: kmock.resource
    namespace: str | None
    name: str | None
    selectors: _Selectors
    queue: asyncio.Queue[Body | _Signal]
    transport: asyncio.Transport | None

    def wants(self, resource: kmock.resource, namespace: str | None, body: Body) -> bool:
        meta = body.get("metadata", {})
        return (
            resource == self.resource
            and (self.namespace is None or self.namespace == namespace)
            and (self.name is None or self.name == meta.get("name"))
            and self.selectors.matches(body)
        )


_Key = tuple[kmock.resource, str | None, str]


@attrs.define(kw_only=True)
class _Emulator(kmock.KubernetesEmulator):
    """kmock's emulator with API-server semantics on writes and watches (see module docstring).

    Reads go through kmock's store (`objects`, with per-object history), its discovery endpoints
    and its reaction DSL, so tests can still inject faults: `emulator['patch', ...] << 500`.
    All methods run in the emulator's event loop.
    """

    history_limit: int | None = 1000  # object versions kept per object
    request_log_limit: int | None = 10_000  # requests kept for assertions
    event_history: int = 10_000  # watch events kept for resourceVersion replays

    _resource_version: int = attrs.field(default=0, init=False)
    _events: deque[_Event] = attrs.field(factory=deque, init=False)
    _compacted: int = attrs.field(default=0, init=False)  # highest resourceVersion forgotten
    _watches: set[_Watch] = attrs.field(factory=set, init=False)
    _reachable: bool = attrs.field(default=True, init=False)
    _faults: list[_Fault] = attrs.field(factory=list, init=False)
    writes: collections.Counter[tuple[str, str, str]] = attrs.field(
        factory=collections.Counter, init=False
    )  # (method, resource, subresource) of every write request, for rate measurements

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock 0.8 has no reaction for PUT; it would answer "endpoint not found".
        self.fallback[kmock.method.PUT] << self._serve_replace

    # --- HTTP entry points ---------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        found = _NAMESPACE_PATH.fullmatch(raw_request.path)
        if found is not None:
            # kmock 0.8's parser reads `/api/v1/namespaces/x` as "namespace x" and fails on
            # `/api/v1/namespaces`; this alias parses as the cluster-scoped `namespaces` resource.
            rest = found["rest"]
            alias = "/api/v1/namespaces/-/namespaces" + (f"/{rest}" if rest else "")
            query = raw_request.query_string
            raw_request = raw_request.clone(rel_url=alias + (f"?{query}" if query else ""))
        return await super().__call__(raw_request)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        self._trim_request_log()
        if request.method.upper() not in ("GET", "HEAD") and request.resource is not None:
            key = (request.method.upper(), request.resource.plural or "", request.subresource or "")
            self.writes[key] += 1
        if not self._reachable:
            raise _api_error(503, "ServiceUnavailable", "the API server is unreachable")
        for fault in self._faults:
            if fault.left > 0 and fault.matches(request):
                fault.left -= 1
                fault.served += 1
                raise _api_error(fault.status, fault.reason, fault.message)
        # Skip KubernetesEmulator._handle: it changes the stored objects before any reaction
        # runs, without resourceVersions; the fallbacks below do the writes instead.
        return await super(kmock.KubernetesEmulator, self)._handle(request)

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        spec = self._declared(request)
        selectors = _Selectors.from_params(request.params)
        namespace = request.namespace if spec.namespaced else None
        items = [
            copy.deepcopy(body)
            for (resource, ns, _), obj in self.objects.items()
            if resource == spec.key and not obj.deleted
            if namespace is None or ns == namespace
            for body in [obj.raw]
            if selectors.matches(body)
        ]
        items.sort(
            key=lambda body: (body["metadata"].get("namespace", ""), body["metadata"]["name"])
        )
        start = int(request.params.get("continue") or 0)
        limit = int(request.params.get("limit") or 0)
        end = start + limit if limit > 0 else len(items)
        return {
            "apiVersion": spec.api_version,
            "kind": f"{spec.kind}List",
            "metadata": {
                "resourceVersion": str(self._resource_version),
                "continue": str(end) if end < len(items) else "",
            },
            "items": items[start:end],
        }

    async def _serve_fetch(self, request: kmock.Request) -> kmock.Payload:
        spec = self._declared(request)
        key = self._key(spec, request.namespace, request.name)
        current = self._current(key)
        if request.subresource in (None, "status"):
            return current
        if request.subresource == "scale" and "scale" in spec.subresources:
            return _scale_view(current)
        raise kmock.KubernetesEndpointNotFoundError()

    async def _serve_create(self, request: kmock.Request) -> kmock.Payload:
        spec = self._declared(request)
        if request.name is not None or request.subresource is not None:
            raise _api_error(405, "MethodNotAllowed", "POST is served on collections only")
        if not isinstance(request.data, Mapping):
            raise _api_error(400, "BadRequest", "the request body must be a JSON object")
        # 200, not the API server's 201: kmock 0.8 keeps a returned Response's status on the
        # fallback reaction itself; clients accept both.
        return self.create_object(spec, request.data, namespace=request.namespace, as_client=True)

    async def _serve_update(self, request: kmock.Request) -> kmock.Payload:
        spec = self._declared(request)
        content_type = request.headers.get("Content-Type", request.headers.get("content-type", ""))
        return self.write_object(
            spec,
            request.namespace,
            self._required_name(request),
            subresource=request.subresource,
            change=lambda body: _apply_patch(body, request.data, content_type),
        )

    async def _serve_replace(self, request: kmock.Request) -> kmock.Payload:
        spec = self._declared(request)
        name = self._required_name(request)
        data = request.data
        if not isinstance(data, Mapping) or data.get("metadata", {}).get("name") != name:
            raise _api_error(400, "BadRequest", "the body must be an object named as in the URL")
        return self.write_object(
            spec,
            request.namespace,
            name,
            subresource=request.subresource,
            change=lambda _: copy.deepcopy(dict(data)),
        )

    async def _serve_delete(self, request: kmock.Request) -> kmock.Payload:
        spec = self._declared(request)
        options = request.data if isinstance(request.data, Mapping) else {}
        policy = request.params.get("propagationPolicy") or options.get("propagationPolicy")
        return self.delete_object(
            spec,
            request.namespace,
            self._required_name(request),
            orphan_dependents=policy == "Orphan",
        )

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        spec = self._declared(request)
        params = request.params
        raw_request = request._raw_request
        watch = _Watch(
            resource=spec.key,
            namespace=request.namespace if spec.namespaced else None,
            name=request.name,
            selectors=_Selectors.from_params(params),
            queue=asyncio.Queue(),
            transport=raw_request.transport if raw_request is not None else None,
        )
        # Registering and taking the initial events happen with no await in between, so no
        # event can fall into a gap between the replay and the live stream.
        initial = self._initial_events(watch, params)
        self._watches.add(watch)
        loop = asyncio.get_running_loop()
        timeout = float(params.get("timeoutSeconds") or 0)
        deadline = loop.time() + timeout if timeout > 0 else None
        try:
            yield b""  # send the headers now, as an API server does
            for event in initial:
                yield event
                if event["type"] == "ERROR":
                    return
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    item = await asyncio.wait_for(watch.queue.get(), remaining)
                except TimeoutError:
                    return
                if item is _Signal.CLOSE:
                    return
                if item is _Signal.RESET:
                    if watch.transport is not None:
                        watch.transport.abort()
                    return
                if item is _Signal.EXPIRE:
                    yield _gone_event()
                    return
                yield item
        finally:
            self._watches.discard(watch)

    # --- the store: used by the HTTP fallbacks above and by ClusterEmulator's helpers ------

    def spec_of(self, resource: kmock.resource) -> ResourceSpec:
        if resource not in self.resources:
            raise kmock.KubernetesResourceNotFoundError()
        info = self.resources[resource]
        api_version = f"{resource.group}/{resource.version}" if resource.group else "v1"
        return ResourceSpec(
            api_version=api_version,
            plural=str(resource.plural),
            kind=info.kind or str(resource.plural).capitalize(),
            namespaced=bool(info.namespaced),
            subresources=tuple(sorted(info.subresources)),
            short_names=tuple(sorted(info.shortnames)),
        )

    def create_object(
        self,
        spec: ResourceSpec,
        data: Mapping[str, Any],
        *,
        namespace: str | None = None,
        as_client: bool,
    ) -> Body:
        """Store a new object. `as_client`: drop `status` and a given `uid` as the API server
        does; the harness keeps them, to seed objects "as the controllers left them"."""
        body: Body = copy.deepcopy(dict(data))
        meta: Body = body.setdefault("metadata", {})
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise _api_error(422, "Invalid", "metadata.name or generateName is required")
            meta["name"] = prefix + "".join(
                secrets.choice(_GENERATE_NAME_ALPHABET) for _ in range(5)
            )
        if spec.namespaced:
            ns = namespace or meta.get("namespace")
            if not ns:
                raise _api_error(400, "BadRequest", f"{spec.plural} need a namespace")
            if meta.get("namespace", ns) != ns:
                raise _api_error(400, "BadRequest", "the namespace differs from the URL's")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        key = self._key(spec, meta.get("namespace"), meta["name"])
        if key in self.objects and not self.objects[key].deleted:
            raise _api_error(409, "AlreadyExists", f'{spec.plural} "{meta["name"]}" already exists')
        body["apiVersion"] = spec.api_version
        body["kind"] = spec.kind
        if as_client:
            if "status" in spec.subresources:
                body.pop("status", None)
            meta.pop("uid", None)
            meta.pop("creationTimestamp", None)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["generation"] = 1
        meta["resourceVersion"] = self._next_resource_version()
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        if key in self.objects:  # re-created after a deletion: continue the history
            self.objects[key].create(body)
        else:
            self.objects[key] = body
        self._trim_history(key)
        self._emit(spec, "ADDED", body)
        return copy.deepcopy(body)

    def write_object(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        name: str,
        *,
        subresource: str | None,
        change: Callable[[Body], Body],
    ) -> Body:
        """Patch or replace an object or its `status`/`scale` subresource."""
        key = self._key(spec, namespace, name)
        old = self._current(key)
        if subresource == "scale" and "scale" in spec.subresources:
            scale = change(_scale_view(old))
            _check_precondition(old, scale)
            replicas = scale.get("spec", {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise _api_error(422, "Invalid", "spec.replicas must be a non-negative integer")
            new = copy.deepcopy(old)
            new.setdefault("spec", {})["replicas"] = replicas
            return _scale_view(self._commit(spec, key, old, new, subresource=None))
        if subresource not in (None, "status") or (
            subresource == "status" and "status" not in spec.subresources
        ):
            raise kmock.KubernetesEndpointNotFoundError()
        new = change(copy.deepcopy(old))
        _check_precondition(old, new)
        return self._commit(spec, key, old, new, subresource=subresource)

    def delete_object(
        self, spec: ResourceSpec, namespace: str | None, name: str, *, orphan_dependents: bool
    ) -> Body:
        key = self._key(spec, namespace, name)
        old = self._current(key)
        meta = old["metadata"]
        if meta.get("deletionTimestamp"):
            return old  # already being deleted
        if meta.get("finalizers"):
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = _now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            return self._commit(spec, key, old, new, subresource=None, system=True)
        return self._remove(spec, key, old, orphan_dependents=orphan_dependents)

    def get_object(self, spec: ResourceSpec, namespace: str | None, name: str) -> Body | None:
        key = self._key(spec, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def list_objects(
        self, spec: ResourceSpec, namespace: str | None, selectors: _Selectors
    ) -> list[Body]:
        return [
            copy.deepcopy(obj.raw)
            for (resource, ns, _), obj in self.objects.items()
            if resource == spec.key and not obj.deleted
            if namespace is None or not spec.namespaced or ns == namespace
            if selectors.matches(obj.raw)
        ]

    def signal_watches(self, signal: _Signal, resource: kmock.resource | None = None) -> int:
        if signal is _Signal.EXPIRE:  # etcd compaction: no replay from older versions
            self._compacted = self._resource_version
            self._events.clear()
        watches = [w for w in self._watches if resource is None or w.resource == resource]
        for watch in watches:
            watch.queue.put_nowait(signal)
        return len(watches)

    def watch_count(self, resource: kmock.resource | None = None) -> int:
        return sum(1 for w in self._watches if resource is None or w.resource == resource)

    def set_reachable(self, reachable: bool) -> None:
        self._reachable = reachable
        if not reachable:
            self.signal_watches(_Signal.RESET)

    # --- internals -------------------------------------------------------------------------

    def _declared(self, request: kmock.Request) -> ResourceSpec:
        if request.resource is None or request.resource.plural is None:
            raise kmock.KubernetesEndpointNotFoundError()
        return self.spec_of(request.resource)

    @staticmethod
    def _required_name(request: kmock.Request) -> str:
        if request.name is None:
            raise _api_error(405, "MethodNotAllowed", "collection writes are not emulated")
        return request.name

    @staticmethod
    def _key(spec: ResourceSpec, namespace: str | None, name: str | None) -> _Key:
        if name is None:
            raise kmock.KubernetesObjectNotFoundError()
        return (spec.key, namespace if spec.namespaced else None, name)

    def _current(self, key: _Key) -> Body:
        if key not in self.objects or self.objects[key].deleted:
            raise _api_error(404, "NotFound", f'{key[0].plural} "{key[2]}" not found')
        return copy.deepcopy(self.objects[key].raw)

    def _next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _commit(
        self,
        spec: ResourceSpec,
        key: _Key,
        old: Body,
        new: Body,
        *,
        subresource: str | None,
        system: bool = False,
    ) -> Body:
        """Apply the API server's rules to a new version of an object and store it."""
        old_meta: Body = old["metadata"]
        new.setdefault("metadata", {})
        if "status" in spec.subresources:
            if subresource == "status":  # the status endpoint changes the status only
                status = new.get("status")
                new = copy.deepcopy(old)
                if status is None:
                    new.pop("status", None)
                else:
                    new["status"] = status
            elif "status" in old:  # the main endpoint ignores status changes
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        meta: Body = new["metadata"]
        for field in ("name", "namespace", "uid"):
            if field in old_meta and meta.get(field, old_meta[field]) != old_meta[field]:
                raise _api_error(422, "Invalid", f"metadata.{field} is immutable")
        system_fields: tuple[str, ...] = (
            "uid",
            "creationTimestamp",
            "generation",
            "name",
            "namespace",
        )
        if not system:
            system_fields += ("deletionTimestamp", "deletionGracePeriodSeconds")
        for field in system_fields:
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
        if old_meta.get("deletionTimestamp") and added:
            raise _api_error(
                422, "Invalid", "no new finalizers can be added if the object is being deleted"
            )
        if not meta.get("finalizers"):
            meta.pop("finalizers", None)  # an empty list is not stored
        if _spec_part(new, spec) != _spec_part(old, spec):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        meta["resourceVersion"] = self._next_resource_version()
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(spec, key, new, orphan_dependents=False, replace=True)
        self.objects[key].history.append(new)
        self._trim_history(key)
        self._emit(spec, "MODIFIED", new)
        return copy.deepcopy(new)

    def _remove(
        self,
        spec: ResourceSpec,
        key: _Key,
        last: Body,
        *,
        orphan_dependents: bool,
        replace: bool = False,
    ) -> Body:
        final = copy.deepcopy(last)
        if not replace:
            final["metadata"]["resourceVersion"] = self._next_resource_version()
        self.objects[key].delete()
        self._trim_history(key)
        self._emit(spec, "DELETED", final)
        if not orphan_dependents:
            self._collect_garbage(final["metadata"]["uid"])
        return final

    def _collect_garbage(self, owner_uid: str) -> None:
        """Delete the objects whose owners are all gone (the garbage collector, background)."""
        live_uids = {
            obj.raw["metadata"].get("uid") for obj in self.objects.values() if not obj.deleted
        }
        dependents = [
            (key, obj.raw)
            for key, obj in self.objects.items()
            if not obj.deleted
            for refs in [obj.raw["metadata"].get("ownerReferences") or []]
            if any(ref.get("uid") == owner_uid for ref in refs)
            if not any(ref.get("uid") in live_uids for ref in refs)
        ]
        for (resource, namespace, name), _ in dependents:
            with contextlib.suppress(kmock.KubernetesError):
                self.delete_object(self.spec_of(resource), namespace, name, orphan_dependents=False)

    def _emit(self, spec: ResourceSpec, event_type: str, body: Body) -> None:
        meta = body["metadata"]
        event = _Event(
            resource_version=int(meta["resourceVersion"]),
            resource=spec.key,
            namespace=meta.get("namespace"),
            name=meta["name"],
            payload={"type": event_type, "object": copy.deepcopy(body)},
        )
        self._events.append(event)
        while len(self._events) > self.event_history:
            self._compacted = self._events.popleft().resource_version
        for watch in self._watches:
            if watch.wants(spec.key, event.namespace, body):
                watch.queue.put_nowait(event.payload)

    def _initial_events(self, watch: _Watch, params: Mapping[str, str]) -> list[Body]:
        since = params.get("resourceVersion") or ""
        send_initial = params.get("sendInitialEvents") == "true"
        if since in ("", "0") or send_initial:
            events = [
                {"type": "ADDED", "object": copy.deepcopy(obj.raw)}
                for (resource, ns, _), obj in self.objects.items()
                if not obj.deleted and watch.wants(resource, ns, obj.raw)
            ]
            if send_initial:
                bookmark_meta = {
                    "resourceVersion": str(self._resource_version),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                }
                events.append({"type": "BOOKMARK", "object": {"metadata": bookmark_meta}})
            return events
        try:
            since_version = int(since)
        except ValueError as exc:
            raise _api_error(400, "BadRequest", f"invalid resourceVersion: {since!r}") from exc
        if since_version < self._compacted:
            return [_gone_event()]
        return [
            event.payload
            for event in self._events
            if event.resource_version > since_version
            if watch.wants(event.resource, event.namespace, event.payload["object"])
        ]

    def _trim_history(self, key: _Key) -> None:
        history = self.objects[key].history
        if self.history_limit is not None and len(history) > self.history_limit:
            del history[: len(history) - self.history_limit]

    def _trim_request_log(self) -> None:
        # kmock keeps every request in the root and in each reaction that served it.
        limit = self.request_log_limit
        if limit is None or len(self._requests) <= limit:
            return
        del self._requests[: len(self._requests) - limit]
        for payload in self._payloads:
            if len(payload._requests) > limit:
                del payload._requests[: len(payload._requests) - limit]


@attrs.define
class _Fault:
    """Answer `status` to the next `left` requests with this method, resource and subresource."""

    method: str
    plural: str
    subresource: str | None
    status: int
    reason: str
    message: str
    left: int
    served: int = 0

    def matches(self, request: kmock.Request) -> bool:
        resource = request.resource
        return (
            request.method.upper() == self.method
            and resource is not None
            and resource.plural == self.plural
            and request.subresource == self.subresource
        )


def _gone_event() -> Body:
    status = {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "reason": "Expired",
        "message": "too old resource version",
        "code": 410,
    }
    return {"type": "ERROR", "object": status}


def _check_precondition(old: Body, new: Body) -> None:
    wanted = (new.get("metadata") or {}).get("resourceVersion")
    if wanted is not None and str(wanted) != old["metadata"]["resourceVersion"]:
        raise _api_error(
            409,
            "Conflict",
            "the object has been modified; please apply your changes to the latest version",
        )


def _spec_part(body: Body, spec: ResourceSpec) -> Body:
    """What `generation` tracks: everything but metadata (and status, if a subresource)."""
    skipped = {"metadata", "apiVersion", "kind"}
    if "status" in spec.subresources:
        skipped.add("status")
    return {key: value for key, value in body.items() if key not in skipped}


def _scale_view(body: Body) -> Body:
    meta = body["metadata"]
    spec = body.get("spec") or {}
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if key in meta
        },
        "spec": {"replicas": int(spec.get("replicas", 1))},
        "status": {
            "replicas": int((body.get("status") or {}).get("replicas", 0)),
            "selector": _selector_string(spec),
        },
    }


def _crd_object(spec: ResourceSpec) -> Body:
    version: Body = {
        "name": spec.version,
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    }
    if "status" in spec.subresources:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{spec.plural}.{spec.group}"},
        "spec": {
            "group": spec.group,
            "scope": "Namespaced" if spec.namespaced else "Cluster",
            "names": {
                "plural": spec.plural,
                "singular": spec.singular,
                "kind": spec.kind,
                "shortNames": list(spec.short_names),
            },
            "versions": [version],
        },
        "status": {"acceptedNames": {"plural": spec.plural, "kind": spec.kind}},
    }


# --------------------------------------------------------------------------------------------
# The public harness.


class ClusterEmulator:
    """kmock's Kubernetes emulator on a free 127.0.0.1 port, in its own thread and loop.

    Usage::

        with ClusterEmulator() as cluster:
            os.environ["KUBECONFIG"] = str(cluster.kubeconfig)   # or pass cluster.env()
            cluster.seed(workload_objects("llama70b", "inference", replicas=2, nodes=["gpu-1"]))
            ...  # run kopf / the kubernetes client / `llmcost run` against it

    The helper methods are thread-safe and synchronous (microseconds: the state is in memory);
    `cluster.aio` has the same methods as coroutines for code running in an event loop.
    Resources are named as kubectl names them: plural, kind, short name, or `group/v/plural`.
    """

    def __init__(
        self,
        *,
        resources: Iterable[ResourceSpec] = DEFAULT_RESOURCES,
        kubeconfig: Path | None = None,
        history_limit: int | None = 1000,
        request_log_limit: int | None = 10_000,
        event_history: int = 10_000,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._specs: tuple[ResourceSpec, ...] = tuple(resources)
        self._kubeconfig_request = kubeconfig
        self._limits = (history_limit, request_log_limit, event_history)
        self._host = host
        self._port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._emulator: _Emulator | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._bound_port: int | None = None
        self._tempdir: Path | None = None
        self._kubeconfig: Path | None = None
        self.aio = AsyncClusterEmulator(self)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> ClusterEmulator:
        if self._thread is not None:
            raise EmulatorError("the emulator can be started only once")
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(_STARTUP_TIMEOUT_SECONDS):
            raise EmulatorError("the emulator did not start in time")
        if self._startup_error is not None:
            raise EmulatorError(f"the emulator failed to start: {self._startup_error}") from (
                self._startup_error
            )
        self._kubeconfig = self._write_kubeconfig()
        return self

    def stop(self) -> None:
        """Close the watches, stop the server and remove the kubeconfig written by `start`."""
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may have just closed
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(_STARTUP_TIMEOUT_SECONDS)
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> ClusterEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> ClusterEmulator:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # --- where it is -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._bound_port is None:
            raise EmulatorNotRunningError("the emulator is not started")
        return f"http://{self._host}:{self._bound_port}"

    @property
    def kubeconfig(self) -> Path:
        """A kubeconfig whose current context points at the emulator (namespace `default`)."""
        if self._kubeconfig is None:
            raise EmulatorNotRunningError("the emulator is not started")
        return self._kubeconfig

    def env(self) -> dict[str, str]:
        """Environment variables for a process that should talk to this emulator."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    @property
    def handler(self) -> kmock.KubernetesEmulator:
        """The kmock handler, for its request log and reaction DSL (fault injection), e.g.
        `len(cluster.handler[kmock.method.PATCH, kmock.resource("apps/v1/deployments")])`.
        Add reactions before the code under test runs: the handler lives in another thread."""
        return self._require_emulator()

    # --- objects ---------------------------------------------------------------------------

    def resolve(self, ref: str) -> ResourceSpec:
        """A declared resource by plural, kind, singular, short name, `group/version/plural`
        or `plural.group`, as kubectl accepts them."""
        wanted = ref.strip()
        matches = {
            spec
            for spec in self._specs
            if wanted.lower() in {spec.plural, spec.kind.lower(), spec.singular, *spec.short_names}
            or wanted in {f"{spec.api_version}/{spec.plural}", f"{spec.plural}.{spec.group}"}
        }
        if len(matches) != 1:
            known = ", ".join(sorted(spec.plural for spec in self._specs))
            problem = "is ambiguous" if matches else "is not declared"
            raise UnknownResourceError(f"resource {ref!r} {problem}; declared: {known}")
        return matches.pop()

    def create(self, body: Mapping[str, Any]) -> Body:
        """Store an object as given (status, uid and timestamps kept; system fields added)."""
        spec = self._spec_of_body(body)
        return self._call(lambda em: em.create_object(spec, body, as_client=False))

    def seed(self, objects: str | Iterable[Mapping[str, Any]]) -> builtins.list[Body]:
        """Create several objects, given as dicts or as a YAML stream of documents."""
        bodies = load_yaml(objects) if isinstance(objects, str) else list(objects)
        return [self.create(body) for body in bodies]

    def get(self, resource: str, name: str, *, namespace: str | None = None) -> Body | None:
        spec = self.resolve(resource)
        return self._call(lambda em: em.get_object(spec, namespace, name))

    def list(
        self,
        resource: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> builtins.list[Body]:
        spec = self.resolve(resource)
        params = {"labelSelector": label_selector} if label_selector else {}
        return self._call(
            lambda em: em.list_objects(spec, namespace, _Selectors.from_params(params))
        )

    def patch(
        self,
        resource: str,
        name: str,
        patch: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Body:
        """Merge-patch (a mapping) or JSON-patch (a list) an object or its `status`/`scale`.
        Unlike a client's patch of the main endpoint, a mapping's `status` is applied too."""
        spec = self.resolve(resource)
        content_type = "application/merge-patch+json"

        def run(em: _Emulator) -> Body:
            if subresource is None and "status" in spec.subresources and isinstance(patch, Mapping):
                main = {key: value for key, value in patch.items() if key != "status"}
                result = em.write_object(
                    spec,
                    namespace,
                    name,
                    subresource=None,
                    change=lambda body: _apply_patch(body, main, content_type),
                )
                if "status" not in patch:
                    return result
                return em.write_object(
                    spec,
                    namespace,
                    name,
                    subresource="status",
                    change=lambda body: _apply_patch(
                        body, {"status": patch["status"]}, content_type
                    ),
                )
            return em.write_object(
                spec,
                namespace,
                name,
                subresource=subresource,
                change=lambda body: _apply_patch(body, patch, content_type),
            )

        return self._call(run)

    def delete(
        self,
        resource: str,
        name: str,
        *,
        namespace: str | None = None,
        missing_ok: bool = False,
    ) -> Body | None:
        """Delete as a client would: finalizers hold the object with a `deletionTimestamp`."""
        spec = self.resolve(resource)

        def run(em: _Emulator) -> Body | None:
            if missing_ok and em.get_object(spec, namespace, name) is None:
                return None
            return em.delete_object(spec, namespace, name, orphan_dependents=False)

        return self._call(run)

    # --- faults and observation ------------------------------------------------------------

    def drop_watches(self, mode: DropMode = "close", *, resource: str | None = None) -> int:
        """End the open watch streams from the server side; returns how many were open."""
        key = self.resolve(resource).key if resource is not None else None
        signal = _Signal(mode)
        return self._call(lambda em: em.signal_watches(signal, key))

    def watch_count(self, resource: str | None = None) -> int:
        """How many watch streams are open (for a resource, or in total)."""
        key = self.resolve(resource).key if resource is not None else None
        return self._call(lambda em: em.watch_count(key))

    def set_reachable(self, reachable: bool) -> None:
        """While unreachable, every request gets 503 and open watches are reset."""
        self._call(lambda em: em.set_reachable(reachable))

    def fail_requests(
        self,
        method: str,
        resource: str,
        *,
        subresource: str | None = None,
        status: int = 409,
        times: int = 1,
    ) -> Callable[[], int]:
        """Answer the next `times` matching requests with an error status instead of serving
        them: 409 Conflict ("the object has been modified"), 500, ... Returns a function that
        tells how many were answered so far."""
        spec = self.resolve(resource)
        reasons = {409: "Conflict", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError"}
        message = (
            "Operation cannot be fulfilled: the object has been modified; please apply your "
            "changes to the latest version and try again"
            if status == 409
            else f"injected fault {status}"
        )
        fault = _Fault(
            method.upper(),
            spec.plural,
            subresource,
            status,
            reasons.get(status, "InternalError"),
            message,
            times,
        )
        self._call(lambda em: em._faults.append(fault))
        return lambda: fault.served

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """The API server is unreachable inside the block."""
        self.set_reachable(False)
        try:
            yield
        finally:
            self.set_reachable(True)

    def write_counts(self) -> dict[tuple[str, str, str], int]:
        """Write requests served so far by (method, resource, subresource), errors included."""
        return self._call(lambda em: dict(em.writes))

    def server_errors(self) -> builtins.list[str]:
        """Unexpected errors the emulator hit while serving: its own bugs, not the API errors
        it answers on purpose (kmock records both in `errors`)."""

        def run(em: _Emulator) -> builtins.list[str]:
            return [
                repr(error) for error in em.errors if not isinstance(error, kmock.KubernetesError)
            ]

        return self._call(run)

    # --- internals -------------------------------------------------------------------------

    def _spec_of_body(self, body: Mapping[str, Any]) -> ResourceSpec:
        api_version, kind = body.get("apiVersion"), body.get("kind")
        for spec in self._specs:
            if spec.api_version == api_version and spec.kind == kind:
                return spec
        raise UnknownResourceError(
            f"no declared resource for apiVersion={api_version!r} kind={kind!r}"
        )

    def _require_emulator(self) -> _Emulator:
        if self._emulator is None or self._loop is None or self._loop.is_closed():
            raise EmulatorNotRunningError("the emulator is not running")
        return self._emulator

    def _submit(self, fn: Callable[[_Emulator], T]) -> concurrent.futures.Future[T]:
        emulator = self._require_emulator()
        assert self._loop is not None
        if threading.current_thread() is self._thread:
            raise EmulatorError("the blocking helpers cannot be called from the emulator's loop")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(emulator))
            except kmock.KubernetesError as exc:
                error = ApiStatusError(exc.status, exc.reason or "Error", exc.message or "")
                future.set_exception(error)
            except BaseException as exc:
                future.set_exception(exc)

        try:
            self._loop.call_soon_threadsafe(run)
        except RuntimeError as exc:  # closed between the check and the call
            raise EmulatorNotRunningError("the emulator is not running") from exc
        return future

    def _call(self, fn: Callable[[_Emulator], T]) -> T:
        return self._submit(fn).result(_CALL_TIMEOUT_SECONDS)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            if self._ready.is_set():
                raise  # a failure while serving: the thread's excepthook reports it
            self._startup_error = exc
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._ready.set()

    async def _serve(self) -> None:
        history_limit, request_log_limit, event_history = self._limits
        emulator = _Emulator(
            history_limit=history_limit,
            request_log_limit=request_log_limit,
            event_history=event_history,
        )
        for spec in self._specs:
            emulator.resources[spec.key] = spec.info()
        namespaces = self.resolve("namespaces")
        for name in _INITIAL_NAMESPACES:
            emulator.create_object(namespaces, namespace_object(name), as_client=False)
        custom = [spec for spec in self._specs if spec.group not in _BUILTIN_GROUPS]
        if custom:
            crds = self.resolve("customresourcedefinitions")
            for spec in custom:
                emulator.create_object(crds, _crd_object(spec), as_client=False)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((self._host, self._port))
            self._bound_port = int(sock.getsockname()[1])
            async with emulator:
                runner = aiohttp.web.ServerRunner(
                    aiohttp.web.Server(emulator, handler_cancellation=True),
                    shutdown_timeout=1.0,
                    access_log=None,
                )
                await runner.setup()
                try:
                    await aiohttp.web.SockSite(runner, sock).start()
                    self._stopping = asyncio.Event()
                    self._emulator = emulator
                    self._ready.set()
                    await self._stopping.wait()
                finally:
                    self._emulator = None
                    emulator.signal_watches(_Signal.CLOSE)
                    await asyncio.sleep(0)  # let the watch streams end themselves
                    await runner.cleanup()

    def _write_kubeconfig(self) -> Path:
        path = self._kubeconfig_request
        if path is None:
            self._tempdir = Path(tempfile.mkdtemp(prefix="llmcost-emulator-"))
            path = self._tempdir / "kubeconfig"
        name = "llmcost-emulator"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": self.url}}],
            "users": [{"name": name, "user": {}}],
            "contexts": [
                {"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}
            ],
            "current-context": name,
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return path


class AsyncClusterEmulator:
    """`ClusterEmulator`'s helpers as coroutines (for tests and the demo in an event loop)."""

    def __init__(self, cluster: ClusterEmulator) -> None:
        self._cluster = cluster

    async def create(self, body: Mapping[str, Any]) -> Body:
        return await asyncio.to_thread(self._cluster.create, body)

    async def seed(self, objects: str | Iterable[Mapping[str, Any]]) -> builtins.list[Body]:
        return await asyncio.to_thread(self._cluster.seed, objects)

    async def get(self, resource: str, name: str, *, namespace: str | None = None) -> Body | None:
        return await asyncio.to_thread(self._cluster.get, resource, name, namespace=namespace)

    async def list(
        self, resource: str, *, namespace: str | None = None, label_selector: str | None = None
    ) -> builtins.list[Body]:
        return await asyncio.to_thread(
            self._cluster.list, resource, namespace=namespace, label_selector=label_selector
        )

    async def patch(
        self,
        resource: str,
        name: str,
        patch: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Body:
        return await asyncio.to_thread(
            self._cluster.patch, resource, name, patch, namespace=namespace, subresource=subresource
        )

    async def delete(
        self, resource: str, name: str, *, namespace: str | None = None, missing_ok: bool = False
    ) -> Body | None:
        return await asyncio.to_thread(
            self._cluster.delete, resource, name, namespace=namespace, missing_ok=missing_ok
        )

    async def drop_watches(self, mode: DropMode = "close", *, resource: str | None = None) -> int:
        return await asyncio.to_thread(self._cluster.drop_watches, mode, resource=resource)

    async def watch_count(self, resource: str | None = None) -> int:
        return await asyncio.to_thread(self._cluster.watch_count, resource)

    async def set_reachable(self, reachable: bool) -> None:
        await asyncio.to_thread(self._cluster.set_reachable, reachable)


# --------------------------------------------------------------------------------------------
# Builders of realistic objects (pure: no emulator needed).


def load_yaml(text: str) -> list[Body]:
    """The objects of a YAML stream; `kind: List` documents are unpacked."""
    bodies: list[Body] = []
    for document in yaml.safe_load_all(text):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise EmulatorError(f"a YAML document is not an object: {document!r}")
        if document.get("kind") == "List":
            bodies.extend(dict(item) for item in document.get("items") or [])
        else:
            bodies.append(document)
    return bodies


def namespace_object(name: str, *, labels: Mapping[str, str] | None = None) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def gpu_node(
    name: str,
    *,
    gpu_product: str = "NVIDIA-A100-SXM4-80GB",
    gpus: int = 8,
    capacity_type: CapacityType = "on-demand",
    instance_type: str = "p4de.24xlarge",
    zone: str = "us-east-1a",
    labels: Mapping[str, str] | None = None,
) -> Body:
    """A GPU node as NVIDIA's GPU feature discovery and Karpenter label it."""
    resources = {"cpu": "96", "memory": "1152Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid4()),
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": instance_type,
                "topology.kubernetes.io/zone": zone,
                "karpenter.sh/capacity-type": capacity_type,
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": gpu_product,
                "nvidia.com/gpu.count": str(gpus),
                **(labels or {}),
            },
        },
        "spec": {"providerID": f"aws:///{zone}/i-{_short_hash(name, 17)}"},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }


def workload_objects(
    name: str,
    namespace: str,
    *,
    replicas: int,
    nodes: Sequence[str],
    gpus_per_pod: int = 1,
    kind: Literal["Deployment", "StatefulSet"] = "Deployment",
    labels: Mapping[str, str] | None = None,
    image: str = "vllm/vllm-openai:v0.6.3",
) -> builtins.list[Body]:
    """A workload and its running pods with owner references (uids) wired as controllers do:
    Deployment → ReplicaSet → Pods, or StatefulSet → Pods; pods are spread over `nodes`."""
    if replicas > 0 and not nodes:
        raise ValueError("pods need at least one node to run on")
    workload_labels = {"app": name, **(labels or {})}
    selector = {"matchLabels": {"app": name}}
    workload_uid = str(uuid.uuid4())
    image_id = f"{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"
    container: Body = {
        "name": "server",
        "image": image,
        "ports": [{"name": "http", "containerPort": 8000}],
        "resources": {
            "requests": {"nvidia.com/gpu": str(gpus_per_pod)},
            "limits": {"nvidia.com/gpu": str(gpus_per_pod)},
        },
    }
    status = {
        "replicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "updatedReplicas": replicas,
        "observedGeneration": 1,
    }
    workload: Body = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": workload_uid,
            "labels": dict(workload_labels),
        },
        "spec": {
            "replicas": replicas,
            "selector": selector,
            "template": {
                "metadata": {"labels": dict(workload_labels)},
                "spec": {"containers": [container]},
            },
        },
        "status": status,
    }
    objects = [workload]
    owner = _owner_reference(kind, name, workload_uid)
    pod_labels = dict(workload_labels)
    pod_names: list[str]
    if kind == "StatefulSet":
        workload["spec"]["serviceName"] = name
        revision = f"{name}-{_short_hash(name, 10)}"
        pod_names = [f"{name}-{i}" for i in range(replicas)]
        pod_labels["controller-revision-hash"] = revision
    else:
        template_hash = _short_hash(f"{namespace}/{name}", 10)
        replicaset_name = f"{name}-{template_hash}"
        replicaset_uid = str(uuid.uuid4())
        pod_labels["pod-template-hash"] = template_hash
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": replicaset_name,
                    "namespace": namespace,
                    "uid": replicaset_uid,
                    "labels": dict(pod_labels),
                    "ownerReferences": [owner],
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name, "pod-template-hash": template_hash}},
                    "template": {
                        "metadata": {"labels": dict(pod_labels)},
                        "spec": {"containers": [container]},
                    },
                },
                "status": {"replicas": replicas, "readyReplicas": replicas},
            }
        )
        owner = _owner_reference("ReplicaSet", replicaset_name, replicaset_uid)
        pod_names = [f"{replicaset_name}-{_short_hash(f'{name}/{i}', 5)}" for i in range(replicas)]
    for index, (pod_name, node) in enumerate(zip(pod_names, itertools.cycle(nodes), strict=False)):
        labels_of_pod = dict(pod_labels)
        if kind == "StatefulSet":
            labels_of_pod["statefulset.kubernetes.io/pod-name"] = pod_name
            labels_of_pod["apps.kubernetes.io/pod-index"] = str(index)
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": namespace,
                    "uid": str(uuid.uuid4()),
                    "labels": labels_of_pod,
                    "ownerReferences": [owner],
                },
                "spec": {"nodeName": node, "containers": [copy.deepcopy(container)]},
                "status": {
                    "phase": "Running",
                    "podIP": f"10.0.{index // 250}.{index % 250 + 2}",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [
                        {
                            "name": "server",
                            "image": image,
                            "imageID": image_id,
                            "containerID": f"containerd://{_short_hash(pod_name, 20)}",
                            "ready": True,
                            "started": True,
                            "restartCount": 0,
                            "state": {"running": {"startedAt": _now()}},
                        }
                    ],
                },
            }
        )
    return objects


def inference_cost_policy(name: str, namespace: str, spec: Mapping[str, Any]) -> Body:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "InferenceCostPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": copy.deepcopy(dict(spec)),
    }


def gpu_pricing(name: str, entries: Sequence[Mapping[str, Any]]) -> Body:
    """A cluster-scoped price sheet: entries `{gpu, capacityType, usdPerGpuHour, ...}`."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "GPUPricing",
        "metadata": {"name": name},
        "spec": {"entries": [dict(entry) for entry in entries]},
    }


def _owner_reference(kind: str, name: str, uid: str) -> Body:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _short_hash(text: str, length: int) -> str:
    """A stable lowercase suffix, like the ones controllers derive for generated names."""
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(_GENERATE_NAME_ALPHABET[b % len(_GENERATE_NAME_ALPHABET)] for b in digest)[
        :length
    ]
