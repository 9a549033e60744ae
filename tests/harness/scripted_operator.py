"""The product operator (`llmcost run`) as its own process, with two seams for tests of who acts
and what survives a kill:

- the Prometheus tick is replaced: every policy with a spot target gets the spot
  recommendation read from the JSON file `$SCRIPTED_RECOMMEND` ({"replicas": N}) at each tick,
  and a missing file is a tick with no data;
- every write of a scale step is logged to `$SCRIPTED_LOG` (one JSON line each, with the
  process' `POD_NAME`), and `$SCRIPTED_DIE` = `after-record` or `after-scale` makes the process
  SIGKILL itself at that point of its first scale: no cleanup, no Lease release, nothing after.

Everything else is the product: kopf, the Lease, the governor, the scale and status writes
through the `kubernetes` client, against whatever `$KUBECONFIG` names (the emulator).

    python tests/harness/scripted_operator.py run --prometheus-url http://127.0.0.1:9 -A ...
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import costoperator.handlers as handlers
from costoperator.actuator import KubernetesScaleClient
from costoperator.cli import main
from costoperator.figures import PolicyView, WorkloadFigures
from costoperator.tick import TickReport


def _log(what: str, **fields: Any) -> None:
    path = os.environ.get("SCRIPTED_LOG")
    if path:
        who = os.environ.get("POD_NAME", "")
        line = json.dumps({"who": who, "what": what, "t": time.time(), **fields})
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def _die_if(point: str) -> None:
    if os.environ.get("SCRIPTED_DIE") == point:
        _log("killed", at=point)
        os.kill(os.getpid(), signal.SIGKILL)


def scripted_tick(_client: Any, views: list[PolicyView], *_args: Any) -> TickReport:
    source = Path(os.environ["SCRIPTED_RECOMMEND"])
    if not source.is_file():
        return TickReport(figures={}, queries=0, errors=["no recommendation file"])
    replicas = int(json.loads(source.read_text(encoding="utf-8"))["replicas"])
    figures = {}
    for view in views:
        if view.spot is None:
            continue
        _kind, name = view.spot.target
        figures[(view.namespace, view.name, name)] = WorkloadFigures(
            namespace=view.namespace,
            policy=view.name,
            workload=name,
            model=view.model or "",
            gpu="A100-80GB",
            engine="vllm",
            hourly_cost_usd={},
            gpus={},
            replicas={},
            spot_recommended_replicas=replicas,
            updated_at=time.time(),
        )
    return TickReport(figures=figures, queries=0)


class ScriptedScaleClient(KubernetesScaleClient):
    def record(
        self, namespace: str, policy: str, record: Mapping[str, Any], on_demand: bool = False
    ) -> None:
        super().record(namespace, policy, record, on_demand)
        if "lastScaleTime" not in record:  # a hold's cover rewrite: no scale to log
            return
        # `at`: the record's own time, taken right after the decision (the log line's `t`
        # comes after the PATCH, whose latency varies).
        at = dt.datetime.fromisoformat(record["lastScaleTime"]).timestamp()
        _log("record", policy=policy, to=record["toReplicas"], at=at)
        _die_if("after-record")

    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> None:
        super().scale(kind, namespace, name, replicas)
        _log("scale", workload=name, replicas=replicas)
        _die_if("after-scale")


if __name__ == "__main__":
    handlers.run_tick = scripted_tick  # type: ignore[assignment]
    handlers.KubernetesScaleClient = ScriptedScaleClient  # type: ignore[misc]
    raise SystemExit(main())
