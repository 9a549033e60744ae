"""The leader Lease (costoperator.leader) against an in-memory store with the API server's
optimistic concurrency (a write carrying a stale resourceVersion is a 409), on a fake clock."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest

from costoperator.leader import LeaseConflictError, LeaseElector

NS, NAME = "llmcost", "llm-cost-operator"


class Store:
    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.writes: list[str] = []
        self.down = False

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.down:
            raise ConnectionError("API server unreachable")
        return copy.deepcopy(self.lease)

    def _stamp(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(dict(body))
        stored["metadata"] = {**stored.get("metadata", {}), "resourceVersion": str(self.version)}
        self.lease = stored
        self.writes.append(stored["spec"]["holderIdentity"])
        return copy.deepcopy(stored)

    def create(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if self.down:
            raise ConnectionError("API server unreachable")
        if self.lease is not None:
            raise LeaseConflictError("AlreadyExists")
        return self._stamp(body)

    def replace(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if self.down:
            raise ConnectionError("API server unreachable")
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise LeaseConflictError("Conflict")
        return self._stamp(body)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def elector(store: Store, clock: Clock, identity: str) -> LeaseElector:
    return LeaseElector(
        store,
        NS,
        NAME,
        identity=identity,
        clock=clock,
        wall=lambda: dt.datetime(2026, 11, 24, tzinfo=dt.UTC) + dt.timedelta(seconds=clock.t),
    )


def test_the_first_instance_creates_the_lease_and_leads() -> None:
    store, clock = Store(), Clock()
    a = elector(store, clock, "a")
    assert a.attempt() is True
    assert a.is_leader()
    spec = store.lease["spec"] if store.lease else {}
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["renewTime"].endswith("Z")
    assert "." in spec["renewTime"]


def test_a_second_instance_stands_by_while_the_lease_is_renewed() -> None:
    store, clock = Store(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    assert a.attempt()
    for _ in range(30):  # a minute of renewals every 2 s
        clock.t += 2
        assert a.attempt()
        assert b.attempt() is False
        assert a.is_leader()
        assert not b.is_leader()
    assert b.holder == "a"
    assert "b" not in store.writes


def test_a_lapsed_holder_is_replaced_after_a_whole_lease_by_the_standbys_clock() -> None:
    store, clock = Store(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    assert a.attempt()
    assert b.attempt() is False  # b sees a's record now
    clock.t += 14.9
    assert b.attempt() is False  # a's record unchanged, but not yet for a whole lease
    assert not a.is_leader()  # a stopped acting at its renew deadline (10 s), before b may start
    clock.t += 0.2
    assert b.attempt() is True
    assert store.lease is not None
    assert store.lease["spec"]["leaseTransitions"] == 1
    # a comes back: it sees b's live Lease and stands by without writing.
    clock.t += 1
    assert a.attempt() is False
    assert store.writes == ["a", "b"]


def test_of_two_racing_for_an_expired_lease_only_one_wins() -> None:
    store, clock = Store(), Clock()
    a, b, c = (elector(store, clock, x) for x in "abc")
    assert a.attempt()
    assert b.attempt() is False
    assert c.attempt() is False
    clock.t += 16  # a died
    # b and c both read the expired Lease; b writes first, c's write carries a stale version.
    lease_seen_by_c = store.get(NS, NAME)
    assert b.attempt() is True
    original_get = store.get
    store.get = lambda namespace, name: copy.deepcopy(lease_seen_by_c)  # type: ignore[method-assign]
    c._observed_at -= 100  # c also judges it expired
    assert c.attempt() is False  # 409
    store.get = original_get  # type: ignore[method-assign]
    assert b.is_leader()
    assert not c.is_leader()
    assert store.lease is not None
    assert store.lease["spec"]["holderIdentity"] == "b"


def test_an_api_outage_ends_leadership_at_the_renew_deadline() -> None:
    store, clock = Store(), Clock()
    a = elector(store, clock, "a")
    assert a.attempt()
    store.down = True
    for _ in range(4):
        clock.t += 2
        with pytest.raises(ConnectionError):
            a.attempt()
    assert a.is_leader()  # 8 s since the last renewal
    clock.t += 2
    assert not a.is_leader()  # 10 s: stop acting before anyone could take over (15 s)
    store.down = False
    assert a.attempt() is True  # its own Lease: renewed
    assert a.is_leader()


def test_release_hands_over_at_the_standbys_next_attempt() -> None:
    store, clock = Store(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    assert a.attempt()
    assert b.attempt() is False
    a.release()
    assert not a.is_leader()
    assert store.lease is not None
    assert store.lease["spec"]["holderIdentity"] == ""
    clock.t += 2
    assert b.attempt() is True


def test_a_restarted_process_does_not_take_its_predecessors_lease_for_its_own() -> None:
    store, clock = Store(), Clock()
    first = LeaseElector(store, NS, NAME, clock=clock)
    second = LeaseElector(store, NS, NAME, clock=clock)
    assert first.identity != second.identity  # random suffix
    assert first.attempt()
    assert second.attempt() is False


def test_timings_must_nest() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        LeaseElector(Store(), NS, NAME, lease_duration_s=10, renew_deadline_s=10)
