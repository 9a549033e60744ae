"""The handler's side of an Auto-mode step (`handlers._carry_out`): what it writes, with a
recording scale client in place of the API. The decisions themselves are test_actuator.py's;
the writes through the real API are the end-to-end test's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
import pytest

from costoperator import handlers
from costoperator.actuator import Actuator, RecordedCover, Step, StepKind
from costoperator.figures import PolicyView, SpotView
from costoperator.leader import AlwaysLeader
from costoperator.runtime import Runtime

NS, POLICY, OD = "inference", "llama70b", "llama70b"
KEY = (NS, POLICY)


class RecordingScaler:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.records: list[tuple[dict[str, Any], bool]] = []
        self.scales: list[tuple[str, int]] = []

    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> None:
        self.scales.append((name, replicas))

    def record(
        self, namespace: str, policy: str, record: Mapping[str, Any], on_demand: bool = False
    ) -> None:
        if self.fail:
            raise RuntimeError("the API server is away")
        self.records.append((dict(record), on_demand))


class Follower:
    identity = "standby"

    def is_leader(self) -> bool:
        return False


def view() -> PolicyView:
    spot = SpotView(
        mode="Auto",
        target=("Deployment", "llama70b-spot"),
        max_replicas=8,
        on_demand_target=("Deployment", OD),
        on_demand_min_replicas=1,
        on_demand_max_replicas=6,
    )
    return PolicyView(NS, POLICY, "5m", 300.0, spot=spot)


def hold(current: int, cover: int) -> Step:
    return Step(
        StepKind.HOLD,
        NS,
        POLICY,
        "Deployment",
        OD,
        current,
        current,
        "none",
        "",
        "on-demand",
        cover,
    )


def memo_with(scaler: RecordingScaler, elector: Any = None) -> kopf.Memo:
    memo = kopf.Memo()
    memo["scaler"] = scaler
    memo["elector"] = elector or AlwaysLeader()
    return memo


async def test_a_hold_whose_cover_changed_writes_the_cover_and_nothing_else() -> None:
    runtime, scaler = Runtime(), RecordingScaler()
    runtime.on_demand_covers[KEY] = RecordedCover(f"Deployment/{OD}", 5, 2)
    memo = memo_with(scaler)
    assert await handlers._carry_out(memo, runtime, Actuator(), view(), hold(5, 0))
    assert scaler.records == [({"coverReplicas": 0}, True)]  # status.onDemandScaling, merged
    assert scaler.scales == []
    assert runtime.on_demand_covers[KEY] == RecordedCover(f"Deployment/{OD}", 5, 0)
    assert runtime.take_events(KEY) == []  # a hold is not an action
    # Written once: the next hold with the same cover writes nothing.
    assert await handlers._carry_out(memo, runtime, Actuator(), view(), hold(5, 0))
    assert len(scaler.records) == 1


@pytest.mark.parametrize(
    "record",
    [None, RecordedCover(f"Deployment/{OD}", 4, 2), RecordedCover(f"Deployment/{OD}", 5, 0)],
)
async def test_a_hold_writes_nothing_without_a_record_of_its_count_whose_cover_differs(
    record: RecordedCover | None,
) -> None:
    runtime, scaler = Runtime(), RecordingScaler()
    if record is not None:
        runtime.on_demand_covers[KEY] = record
    assert await handlers._carry_out(memo_with(scaler), runtime, Actuator(), view(), hold(5, 0))
    assert scaler.records == []


async def test_a_failed_cover_write_is_tried_again_at_the_next_hold() -> None:
    runtime, scaler = Runtime(), RecordingScaler(fail=True)
    old = RecordedCover(f"Deployment/{OD}", 5, 2)
    runtime.on_demand_covers[KEY] = old
    memo = memo_with(scaler)
    assert await handlers._carry_out(memo, runtime, Actuator(), view(), hold(5, 0))
    assert runtime.on_demand_covers[KEY] == old  # not believed written
    scaler.fail = False
    assert await handlers._carry_out(memo, runtime, Actuator(), view(), hold(5, 0))
    assert scaler.records == [({"coverReplicas": 0}, True)]


async def test_a_standby_writes_no_cover_and_stops_the_tick() -> None:
    runtime, scaler = Runtime(), RecordingScaler()
    runtime.on_demand_covers[KEY] = RecordedCover(f"Deployment/{OD}", 5, 2)
    memo = memo_with(scaler, Follower())
    assert not await handlers._carry_out(memo, runtime, Actuator(), view(), hold(5, 0))
    assert scaler.records == []
