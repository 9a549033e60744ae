"""One active instance (RELIABILITY 13): a `coordination.k8s.io/v1` Lease, as client-go's
leader election keeps it.

Every instance watches, prices and exports `/metrics`; only the Lease's holder writes: scale
requests, policy status and events. kopf's peering is not enough on its own: it pauses a
standby's kopf handlers, not the operator's tick task, which is where scaling happens.

The rules (client-go's `leaderelection` package, same defaults: 15 s lease, 10 s renew
deadline, 2 s retry period):
- no Lease, or an empty holder, or a holder whose record has not changed for a whole lease
  duration by *this* instance's clock (no comparison of clocks across machines): take it;
- our own Lease: renew it (`renewTime`);
- every write carries the `resourceVersion` read, so of two instances racing for an expired
  Lease the API server lets one through and answers the other 409 Conflict;
- the holder acts only while its last successful renewal is younger than the renew deadline,
  which is shorter than the lease duration: it stops acting before anyone else may start;
- a clean shutdown releases the Lease (empty holder), so a successor takes over at its next
  retry instead of waiting the lease out.

`LeaseElector` is synchronous and clock-injected (tests drive it without sleeping); the handler
runs `attempt()` in a thread every retry period.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("costoperator.leader")

LEASE_DURATION_S = 15.0
RENEW_DEADLINE_S = 10.0
RETRY_PERIOD_S = 2.0


class LeaseConflictError(Exception):
    """The API server refused the write: someone else wrote the Lease first (409)."""


class LeaseStore(Protocol):
    """Lease reads and writes as plain dicts; writes raise `LeaseConflictError` on 409."""

    def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def replace(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]: ...


def default_identity() -> str:
    """The pod's name where the chart sets POD_NAME, else host and pid, plus a random suffix
    so that a restarted process never mistakes its predecessor's Lease for its own."""
    base = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    return f"{base}_{uuid.uuid4().hex[:8]}"


def _micro_time(when: dt.datetime) -> str:
    """metav1.MicroTime: RFC 3339 with microseconds, in UTC."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaseElector:
    store: LeaseStore
    namespace: str
    name: str
    identity: str = field(default_factory=default_identity)
    lease_duration_s: float = LEASE_DURATION_S
    renew_deadline_s: float = RENEW_DEADLINE_S
    retry_period_s: float = RETRY_PERIOD_S
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    _renewed_at: float | None = field(default=None, init=False)
    _observed: tuple[Any, ...] | None = field(default=None, init=False)
    _observed_at: float = field(default=0.0, init=False)
    _holder: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError(
                "need 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_period_s:g} s, {self.renew_deadline_s:g} s, "
                f"{self.lease_duration_s:g} s"
            )

    def is_leader(self) -> bool:
        """Whether this instance may act now: it holds the Lease and renewed it within the
        renew deadline."""
        return self._renewed_at is not None and (
            self.clock() - self._renewed_at < self.renew_deadline_s
        )

    @property
    def holder(self) -> str | None:
        """The holder seen at the last attempt (None: no Lease or an empty holder)."""
        return self._holder

    def attempt(self) -> bool:
        """Acquire or renew the Lease once; whether this instance leads afterwards. API errors
        other than a conflict propagate; leadership then lapses at the renew deadline."""
        lease = self.store.get(self.namespace, self.name)
        now = self.clock()
        if lease is None:
            return self._write(None, now)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (
            holder,
            spec.get("renewTime"),
            spec.get("acquireTime"),
            spec.get("leaseTransitions"),
            spec.get("leaseDurationSeconds"),
        )
        if record != self._observed:
            self._observed, self._observed_at = record, now
        self._holder = holder or None
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration_s)
        if holder and holder != self.identity and now - self._observed_at < duration:
            self._renewed_at = None  # someone else holds a live Lease
            return False
        return self._write(lease, now)

    def release(self) -> None:
        """Give the Lease up (empty holder) if this instance holds it; errors are logged."""
        if self._renewed_at is None:
            return
        self._renewed_at = None
        try:
            lease = self.store.get(self.namespace, self.name)
            spec = (lease or {}).get("spec") or {}
            if lease is None or spec.get("holderIdentity") != self.identity:
                return
            released = dict(lease)
            released["spec"] = {
                **spec,
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": _micro_time(self.wall()),
            }
            self.store.replace(self.namespace, self.name, released)
            log.info("released Lease %s/%s", self.namespace, self.name)
        except Exception as exc:  # shutting down: the Lease expires anyway
            log.warning("could not release Lease %s/%s: %s", self.namespace, self.name, exc)

    def _write(self, lease: Mapping[str, Any] | None, now: float) -> bool:
        stamp = _micro_time(self.wall())
        spec: dict[str, Any] = dict((lease or {}).get("spec") or {})
        ours = spec.get("holderIdentity") == self.identity
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=round(self.lease_duration_s),
            renewTime=stamp,
        )
        if not ours:
            spec["acquireTime"] = stamp
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
                1 if lease is not None else 0
            )
        try:
            if lease is None:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": spec,
                }
                self.store.create(self.namespace, body)
            else:
                body = {**lease, "spec": spec}  # carries metadata.resourceVersion: 409 on a race
                self.store.replace(self.namespace, self.name, body)
        except LeaseConflictError:
            if not ours:
                self._renewed_at = None
            return self.is_leader()
        if not ours:
            log.info("acquired Lease %s/%s as %s", self.namespace, self.name, self.identity)
        self._renewed_at = now
        self._holder = self.identity
        return True


class KubernetesLeaseStore:
    """`LeaseStore` over the `kubernetes` client (raw JSON in and out)."""

    def __init__(self, api: Any | None = None) -> None:
        from kubernetes import client

        from costoperator.kubeapi import api_client

        self._api = client.CoordinationV1Api(api if api is not None else api_client())

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        return dict(json.loads(response.data))

    def _call(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._json(fn(*args, _preload_content=False))
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflictError(str(exc.reason)) from None
            raise

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._call(self._api.read_namespaced_lease, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(self._api.create_namespaced_lease, namespace, dict(body))

    def replace(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(self._api.replace_namespaced_lease, name, namespace, dict(body))


class AlwaysLeader:
    """Leader election off (`--no-leader-election`): this instance always acts."""

    identity = "leader-election-off"
    holder = identity
    retry_period_s = RETRY_PERIOD_S

    def is_leader(self) -> bool:
        return True

    def attempt(self) -> bool:
        return True

    def release(self) -> None:
        return None
