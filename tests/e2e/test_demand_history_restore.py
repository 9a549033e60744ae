"""After a restart (or a change of leader) the spot planner's demand history comes back from
the operator's own exported series in a real Prometheus, instead of starting from an empty
hour (the planner's base quantile looks at the last hour)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.prometheus import PrometheusBinaries, PrometheusServer, backfill_end

from costoperator.figures import PolicyView, SpotView
from costoperator.promclient import PromClient
from costoperator.promserver import backfill_openmetrics, openmetrics_series
from costoperator.spot import HISTORY_S, DemandHistory
from costoperator.tick import restore_demand_history

STEP_S = 30.0


def _view(namespace: str, name: str, spot: bool = True) -> PolicyView:
    return PolicyView(
        namespace=namespace,
        name=name,
        window="5m",
        window_s=300,
        spot=SpotView(mode="Recommend", target=("Deployment", f"{name}-spot")) if spot else None,
    )


def _exported(end: int) -> str:
    """llmcost_tokens_per_second as two operator replicas exported it for an hour and a half:
    for inference/chat, input 100 + k and output 50 per workload (two workloads)."""
    times = [end - STEP_S * i for i in range(int(1.5 * HISTORY_S / STEP_S), -1, -1)]
    text = ""
    for instance in ("10.0.0.1:9090", "10.0.0.2:9090"):  # every replica exports the same
        for namespace, policy, scale in (
            ("inference", "chat", 1.0),
            ("inference", "chat.v2", 10.0),
            ("other", "chat", 100.0),
            ("inference", "no-spot", 1000.0),
        ):
            for workload in (policy, f"{policy}-spot"):
                for token_type, base in (("input", 100.0), ("output", 50.0)):
                    labels = {
                        "namespace": namespace,
                        "policy": policy,
                        "workload": workload,
                        "token_type": token_type,
                        "instance": instance,
                        "job": "llmcost-operator",
                    }
                    samples = [
                        (t, scale * (base + (k if token_type == "input" else 0)))
                        for k, t in enumerate(times)
                    ]
                    text += openmetrics_series("llmcost_tokens_per_second", samples, labels=labels)
    return text


def test_demand_history_is_restored_from_the_exported_series(
    prometheus_bin: PrometheusBinaries, tmp_path: Path
) -> None:
    end = backfill_end()  # clear of the head
    backfill_openmetrics(_exported(end), tmp_path, promtool=prometheus_bin.promtool)
    policies = [
        _view("inference", "chat"),
        _view("inference", "chat.v2"),
        _view("inference", "no-spot", spot=False),
        _view("inference", "fresh"),  # created since: nothing exported yet
    ]
    history, tried = DemandHistory(), set[tuple[str, str]]()
    history.add(("inference", "chat.v2"), end, 42.0)  # planning already started: kept as is
    with PrometheusServer(binary=prometheus_bin.prometheus, data_dir=tmp_path) as prom:
        client = PromClient(prom.url)
        seeded = restore_demand_history(client, history, policies, end, STEP_S, tried)
        assert seeded == [("inference", "chat")]
        values = history.values(("inference", "chat"))
        # An hour at the tick interval (both ends included), replicas collapsed, workloads and
        # token types summed: 2 × (100 + k + 50) for the k-th sample of the exported history.
        assert len(values) == HISTORY_S / STEP_S + 1
        assert values[-1] == 2 * (100 + 180 + 50)
        assert values[0] == 2 * (100 + 60 + 50)
        assert history.values(("inference", "chat.v2")) == [42.0]
        assert history.values(("other", "chat")) == []  # another namespace's policy
        assert history.values(("inference", "no-spot")) == []  # not planned: not asked for
        assert tried == {("inference", "chat"), ("inference", "chat.v2"), ("inference", "fresh")}
        # Tried once: a later tick asks nothing more.
        assert restore_demand_history(client, history, policies, end, STEP_S, tried) == []

    # Prometheus unreachable: nothing seeded, nothing marked tried, asked again next tick.
    history, tried = DemandHistory(), set()
    down = PromClient(prom.url, retries=0, connect_timeout_s=0.5)
    assert restore_demand_history(down, history, policies, end, STEP_S, tried) == []
    assert tried == set()


def test_seeding_never_overwrites_history_of_its_own() -> None:
    history = DemandHistory()
    assert history.seed(("ns", "p"), [(2.0, 20.0), (1.0, 10.0)])
    assert history.values(("ns", "p")) == [10.0, 20.0]  # oldest first
    assert not history.seed(("ns", "p"), [(0.0, 99.0)])
    assert history.values(("ns", "p")) == [10.0, 20.0]


@pytest.mark.parametrize("names", [["chat"], ["a.b", "c"]])
def test_the_query_names_only_the_policies_asked_for(names: list[str]) -> None:
    from costoperator.spot import demand_history_query

    query = demand_history_query(names)
    assert "max by (namespace, policy, workload, token_type)" in query
    assert "policy=~`" + "|".join(sorted(n.replace(".", "\\.") for n in names)) + "`" in query
