"""kmock 0.8 quirks the harness works around: each pinned on plain kmock, and its fix.

One test per entry of "kmock quirks" in tests/README.md. The first half of each test is the
minimal reproduction on a plain `kmock.KubernetesEmulator`; when a kmock upgrade fixes a quirk,
that half fails and the workaround in `costoperator.kube_emulator` can go. The second half
asserts what `ClusterEmulator` answers instead, as the Kubernetes API server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kmock
import pytest

from costoperator.kube_emulator import ClusterEmulator

PODS = "/api/v1/namespaces/ns/pods"
DEPLOYMENTS = "/apis/apps/v1/namespaces/ns/deployments"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


class Api:
    """A tiny HTTP client for one server: (status, JSON body) per call."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, self.base_url + path, json=body, headers=headers
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None


@pytest.fixture
async def plain() -> AsyncIterator[tuple[kmock.KubernetesEmulator, Api]]:
    """kmock's emulator as its docs run it, with pods and deployments declared."""
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.resources["v1/pods"] = kmock.ResourceInfo(
            namespaced=True, kind="Pod", subresources={"status"}
        )
        emulator.resources["apps/v1/deployments"] = kmock.ResourceInfo(
            namespaced=True, kind="Deployment", subresources={"status", "scale"}
        )
        yield emulator, Api(server.client, str(server.url))


@pytest.fixture
async def api(cluster: ClusterEmulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, cluster.url)


def pod(name: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, **fields}


async def test_system_metadata(plain: tuple[kmock.KubernetesEmulator, Api], api: Api) -> None:
    _, kmock_api = plain
    _, created = await kmock_api.call("POST", PODS, pod("p", spec={"x": 1}))
    _, patched = await kmock_api.call("PATCH", f"{PODS}/p", {"spec": {"x": 2}}, MERGE_PATCH)
    for field in ("resourceVersion", "uid", "creationTimestamp", "generation"):
        assert field not in created["metadata"]
        assert field not in patched["metadata"]

    _, created = await api.call("POST", PODS, pod("p", spec={"x": 1}))
    _, patched = await api.call("PATCH", f"{PODS}/p", {"spec": {"x": 2}}, MERGE_PATCH)
    _, status = await api.call("PATCH", f"{PODS}/p/status", {"status": {"phase": "Running"}})
    assert created["metadata"]["uid"] == patched["metadata"]["uid"]
    assert created["metadata"]["creationTimestamp"]
    versions = [int(b["metadata"]["resourceVersion"]) for b in (created, patched, status)]
    assert versions == sorted(set(versions))
    assert [b["metadata"]["generation"] for b in (created, patched, status)] == [1, 2, 2]


async def test_failed_json_patch_test_is_422(
    plain: tuple[kmock.KubernetesEmulator, Api], api: Api
) -> None:
    # kopf adds and removes finalizers with a JSON patch guarded by this test op, and treats
    # 422 as "changed meanwhile, retry next cycle"; a 500 is a server failure to back off from.
    guard = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["llmcost.io/finalizer"]},
    ]
    _, kmock_api = plain
    await kmock_api.call("POST", PODS, pod("p"))
    status, _ = await kmock_api.call("PATCH", f"{PODS}/p", guard, JSON_PATCH)
    assert status == 500

    await api.call("POST", PODS, pod("p"))
    await api.call("PATCH", f"{PODS}/p", {"metadata": {"labels": {"a": "b"}}}, MERGE_PATCH)
    status, body = await api.call("PATCH", f"{PODS}/p", guard, JSON_PATCH)
    assert (status, body["code"]) == (422, 422)


async def test_generate_name(plain: tuple[kmock.KubernetesEmulator, Api], api: Api) -> None:
    # kopf posts every event as {"metadata": {"generateName": "kopf-event-"}}.
    event = {"metadata": {"generateName": "kopf-event-"}, "involvedObject": {}}
    _, kmock_api = plain
    kmock_api_events = "/api/v1/namespaces/ns/events"
    emulator, _ = plain
    emulator.resources["v1/events"] = kmock.ResourceInfo(namespaced=True, kind="Event")
    assert (await kmock_api.call("POST", kmock_api_events, event))[0] == 200
    assert (await kmock_api.call("POST", kmock_api_events, event))[0] == 409

    first = await api.call("POST", "/api/v1/namespaces/ns/events", event)
    second = await api.call("POST", "/api/v1/namespaces/ns/events", event)
    names = {first[1]["metadata"]["name"], second[1]["metadata"]["name"]}
    assert len(names) == 2
    assert all(name.startswith("kopf-event-") for name in names)


async def test_status_subresource(plain: tuple[kmock.KubernetesEmulator, Api], api: Api) -> None:
    _, kmock_api = plain
    await kmock_api.call("POST", PODS, pod("p", spec={"x": 1}))
    await kmock_api.call("PATCH", f"{PODS}/p", {"status": {"phase": "Main"}}, MERGE_PATCH)
    _, body = await kmock_api.call("PATCH", f"{PODS}/p/status", {"spec": {"x": 2}}, MERGE_PATCH)
    assert body["status"] == {"phase": "Main"}
    assert body["spec"] == {"x": 2}

    await api.call("POST", PODS, pod("p", spec={"x": 1}))
    await api.call("PATCH", f"{PODS}/p", {"status": {"phase": "Main"}}, MERGE_PATCH)
    _, body = await api.call("PATCH", f"{PODS}/p/status", {"spec": {"x": 2}}, MERGE_PATCH)
    assert "status" not in body
    assert body["spec"] == {"x": 1}


async def test_scale_subresource(plain: tuple[kmock.KubernetesEmulator, Api], api: Api) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}}},
    }
    _, kmock_api = plain
    await kmock_api.call("POST", DEPLOYMENTS, deployment)
    _, body = await kmock_api.call("GET", f"{DEPLOYMENTS}/d/scale")
    assert body["kind"] == "Deployment"

    await api.call("POST", DEPLOYMENTS, deployment)
    _, scale = await api.call("PATCH", f"{DEPLOYMENTS}/d/scale", {"spec": {"replicas": 5}})
    assert scale["kind"] == "Scale"
    assert scale["spec"] == {"replicas": 5}
    assert scale["status"]["selector"] == "app=d"
    _, body = await api.call("GET", f"{DEPLOYMENTS}/d")
    assert body["spec"]["replicas"] == 5


async def test_put_replaces(plain: tuple[kmock.KubernetesEmulator, Api], api: Api) -> None:
    _, kmock_api = plain
    await kmock_api.call("POST", PODS, pod("p", spec={"x": 1}))
    status, _ = await kmock_api.call("PUT", f"{PODS}/p", pod("p", spec={"y": 2}))
    assert status == 404

    await api.call("POST", PODS, pod("p", spec={"x": 1}))
    status, body = await api.call("PUT", f"{PODS}/p", pod("p", spec={"y": 2}))
    assert (status, body["spec"]) == (200, {"y": 2})


async def test_merge_patch_replaces_across_types(
    plain: tuple[kmock.KubernetesEmulator, Api], api: Api
) -> None:
    # RFC 7386: a scalar replaces an object and an object replaces a scalar.
    _, kmock_api = plain
    await kmock_api.call("POST", PODS, pod("p", spec={"a": {"b": 1}}))
    status, _ = await kmock_api.call("PATCH", f"{PODS}/p", {"spec": {"a": 5}}, MERGE_PATCH)
    assert status == 500

    await api.call("POST", PODS, pod("p", spec={"a": {"b": 1}}))
    _, body = await api.call("PATCH", f"{PODS}/p", {"spec": {"a": 5}}, MERGE_PATCH)
    assert body["spec"] == {"a": 5}
    _, body = await api.call("PATCH", f"{PODS}/p", {"spec": {"a": {"c": 2}}}, MERGE_PATCH)
    assert body["spec"] == {"a": {"c": 2}}


async def test_namespace_paths(plain: tuple[kmock.KubernetesEmulator, Api], api: Api) -> None:
    emulator, kmock_api = plain
    emulator.resources["v1/namespaces"] = kmock.ResourceInfo(namespaced=False, kind="Namespace")
    emulator.objects["v1/namespaces", None, "default"] = {"metadata": {"name": "default"}}
    assert (await kmock_api.call("GET", "/api/v1/namespaces"))[0] == 500
    assert (await kmock_api.call("GET", "/api/v1/namespaces/default"))[0] == 404

    status, body = await api.call("GET", "/api/v1/namespaces")
    assert status == 200
    assert "default" in {item["metadata"]["name"] for item in body["items"]}
    status, body = await api.call("GET", "/api/v1/namespaces/default")
    assert (status, body["metadata"]["name"]) == (200, "default")


async def read_watch(api: Api, path: str, *, seconds: float) -> tuple[list[str], bool]:
    """The object names a watch streams, and whether the server ended the stream itself."""
    names: list[str] = []
    timeout = aiohttp.ClientTimeout(total=seconds)
    try:
        async with api.session.get(api.base_url + path, timeout=timeout) as response:
            async for line in response.content:
                if line.strip():
                    names.append(json.loads(line)["object"]["metadata"]["name"])
    except TimeoutError:
        return names, False
    return names, True


async def test_watch_parameters(plain: tuple[kmock.KubernetesEmulator, Api], api: Api) -> None:
    labelled = pod("labelled", metadata={"name": "labelled", "labels": {"app": "x"}})
    _, kmock_api = plain
    await kmock_api.call("POST", PODS, pod("old"))
    await kmock_api.call("POST", PODS, labelled)
    _, listed = await kmock_api.call("GET", f"{PODS}?labelSelector=app%3Dx")
    assert len(listed["items"]) == 2  # the selector is ignored
    assert listed["metadata"]["resourceVersion"] == "..."
    since = f"{PODS}?watch=true&resourceVersion=999&timeoutSeconds=1"
    names, ended = await read_watch(kmock_api, since, seconds=1.5)
    assert (sorted(names), ended) == (["labelled", "old"], False)  # replayed, never ends

    await api.call("POST", PODS, pod("old"))
    await api.call("POST", PODS, labelled)
    _, listed = await api.call("GET", f"{PODS}?labelSelector=app%3Dx")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["labelled"]
    since = f"{PODS}?watch=true&resourceVersion={listed['metadata']['resourceVersion']}"
    names, ended = await read_watch(api, f"{since}&timeoutSeconds=1", seconds=3)
    assert (names, ended) == ([], True)


async def test_watch_misses_events_during_its_replay(
    plain: tuple[kmock.KubernetesEmulator, Api], cluster: ClusterEmulator, api: Api
) -> None:
    # kmock takes the replay snapshot, streams it, and only then subscribes to new events: what
    # is written while a large replay is still being sent (the client reads slowly) is lost.
    blob = "x" * 20_000
    bulky = [
        pod(f"p{i}", metadata={"name": f"p{i}", "namespace": "ns"}, spec={"blob": blob})
        for i in range(500)
    ]
    emulator, kmock_api = plain
    for body in bulky:
        emulator.objects["v1/pods", "ns", body["metadata"]["name"]] = body
    cluster.seed(bulky)

    for backend, expected in ((kmock_api, False), (api, True)):
        names: list[str] = []
        async with aiohttp.ClientSession() as watcher:
            response = await watcher.get(f"{backend.base_url}{PODS}?watch=true")
            await asyncio.sleep(0.3)  # the server blocks writing the replay: nobody reads
            await backend.call("POST", PODS, pod("late"))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    async for line in response.content:
                        names.append(json.loads(line)["object"]["metadata"]["name"])
                        if names[-1] == "late":
                            break
            response.release()
        assert len(names) >= len(bulky)
        assert ("late" in names) is expected


async def test_writes_happen_before_reactions(
    plain: tuple[kmock.KubernetesEmulator, Api], cluster: ClusterEmulator, api: Api
) -> None:
    # Fault injection: a reaction answering 500 must mean "the write did not happen".
    emulator, kmock_api = plain
    await kmock_api.call("POST", PODS, pod("p", spec={"x": 1}))
    emulator[kmock.method.PATCH] << 500
    status, _ = await kmock_api.call("PATCH", f"{PODS}/p", {"spec": {"x": 2}}, MERGE_PATCH)
    assert status == 500
    assert emulator.objects["v1/pods", "ns", "p"]["spec"] == {"x": 2}

    await api.call("POST", PODS, pod("p", spec={"x": 1}))
    cluster.handler[kmock.method.PATCH] << 500
    status, _ = await api.call("PATCH", f"{PODS}/p", {"spec": {"x": 2}}, MERGE_PATCH)
    assert status == 500
    assert (cluster.get("pods", "p", namespace="ns") or {})["spec"] == {"x": 1}


async def test_api_errors_are_recorded_as_server_errors(
    plain: tuple[kmock.KubernetesEmulator, Api], cluster: ClusterEmulator, api: Api
) -> None:
    emulator, kmock_api = plain
    assert (await kmock_api.call("GET", f"{PODS}/missing"))[0] == 404
    assert [type(error).__name__ for error in emulator.errors] == ["KubernetesObjectNotFoundError"]

    assert (await api.call("GET", f"{PODS}/missing"))[0] == 404
    assert cluster.server_errors() == []


async def test_memory_is_bounded(plain: tuple[kmock.KubernetesEmulator, Api]) -> None:
    emulator, kmock_api = plain
    await kmock_api.call("POST", PODS, pod("p"))
    for i in range(20):
        await kmock_api.call("PATCH", f"{PODS}/p", {"spec": {"i": i}}, MERGE_PATCH)
    assert len(emulator.objects["v1/pods", "ns", "p"].history) == 21
    assert len(list(emulator)) == 21

    with ClusterEmulator(history_limit=5, request_log_limit=5) as small:
        async with aiohttp.ClientSession() as session:
            small_api = Api(session, small.url)
            await small_api.call("POST", PODS, pod("p"))
            for i in range(20):
                await small_api.call("PATCH", f"{PODS}/p", {"spec": {"i": i}}, MERGE_PATCH)
        key = (small.resolve("pods").key, "ns", "p")
        assert len(small.handler.objects[key].history) == 5
        assert len(list(small.handler)) <= 6


async def test_server_patches_the_resolver_process_wide() -> None:
    # kmock.Server reroutes aiohttp's DNS resolution for the whole process while entered, and
    # must be exited in LIFO order; ClusterEmulator serves with aiohttp's runner instead.
    original = aiohttp.connector.TCPConnector._resolve_host
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator):
        assert aiohttp.connector.TCPConnector._resolve_host is not original
    async with ClusterEmulator():
        assert aiohttp.connector.TCPConnector._resolve_host is original
