"""Fixtures for tests against the in-memory Kubernetes API (kmock's emulator over HTTP).

- `cluster`: a fresh `ClusterEmulator` per test; the test fails if the emulator hit an
  unexpected server-side error (its own bug, not an API error such as 404 or 409).
- `kube_env`: the same cluster, with `KUBECONFIG` pointing at it and the in-cluster service
  account variables removed, so neither kopf nor the `kubernetes` client can reach a real cluster.
- `eventually`: polls a condition until it holds (tests assert what a user would see, later).
- `run_kopf`: runs a kopf operator in the test's event loop and stops it at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import kopf
import pytest

from costoperator.kube_emulator import ClusterEmulator

T = TypeVar("T")

#: How long a condition may take to come true before `eventually` gives up, in seconds.
EVENTUALLY_TIMEOUT_SECONDS = 10.0
#: How long the operator may take to start or to stop, in seconds.
OPERATOR_TIMEOUT_SECONDS = 15.0


@pytest.fixture
def cluster() -> Iterator[ClusterEmulator]:
    with ClusterEmulator() as emulator:
        yield emulator
        assert emulator.server_errors() == []


@pytest.fixture
def kube_env(cluster: ClusterEmulator, monkeypatch: pytest.MonkeyPatch) -> ClusterEmulator:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    return cluster


class Eventually(Protocol):
    async def __call__(
        self,
        probe: Callable[[], T | None] | Callable[[], Awaitable[T | None]],
        *,
        timeout: float = ...,
        what: str = ...,
    ) -> T: ...


async def _eventually(
    probe: Callable[[], Any],
    *,
    timeout: float = EVENTUALLY_TIMEOUT_SECONDS,
    what: str = "the condition",
) -> Any:
    """Poll `probe` until it returns a truthy value, and return that value."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s (last: {result!r})")
        await asyncio.sleep(0.05)


@pytest.fixture
def eventually() -> Eventually:
    return _eventually


class RunKopf(Protocol):
    def __call__(
        self,
        registry: kopf.OperatorRegistry,
        *,
        memo: object = ...,
        namespaces: Sequence[str] = ...,
    ) -> contextlib.AbstractAsyncContextManager[asyncio.Task[None]]: ...


@contextlib.asynccontextmanager
async def _run_kopf(
    registry: kopf.OperatorRegistry, *, memo: object = None, namespaces: Sequence[str] = ()
) -> AsyncIterator[asyncio.Task[None]]:
    """Run `kopf.operator` standalone as a task (cluster-wide unless `namespaces` are given,
    which may be globs as in `llmcost run --namespace`); stop it gracefully on exit.

    Settings belong in the registry's `@kopf.on.startup` handler (as in the product), so
    they are the operator's own, not the test's."""
    stop_flag: asyncio.Event = asyncio.Event()
    ready_flag: asyncio.Event = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            registry=registry,
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            memo=memo,
        )
    )
    ready = asyncio.create_task(ready_flag.wait())
    await asyncio.wait(
        {task, ready}, timeout=OPERATOR_TIMEOUT_SECONDS, return_when="FIRST_COMPLETED"
    )
    ready.cancel()
    if task.done():
        task.result()  # re-raise its startup failure
        raise AssertionError("the operator exited during its startup")
    try:
        yield task
    finally:
        stop_flag.set()
        await asyncio.wait_for(task, OPERATOR_TIMEOUT_SECONDS)


@pytest.fixture
def run_kopf(kube_env: ClusterEmulator) -> RunKopf:
    return _run_kopf
