"""The product's kopf operator (costoperator.handlers) in a thread of this process, for benches
that sample this process (RSS) or count what it writes. The caller points `KUBECONFIG` at the
cluster first; `stop()` ends the operator gracefully and waits for it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import kopf

import costoperator.handlers  # noqa: F401  (registers the product's handlers)
from costoperator.config import OperatorConfig


def start_operator(config: OperatorConfig) -> Callable[[], None]:
    stop = threading.Event()

    def operator() -> None:
        async def run() -> None:
            stop_flag: asyncio.Event = asyncio.Event()

            async def watch_stop() -> None:
                while not stop.is_set():
                    await asyncio.sleep(0.5)
                stop_flag.set()

            watcher = asyncio.create_task(watch_stop())
            await kopf.operator(
                standalone=True,
                clusterwide=True,
                stop_flag=stop_flag,
                memo=kopf.Memo(config=config),
            )
            watcher.cancel()

        asyncio.run(run())

    thread = threading.Thread(target=operator, daemon=True)
    thread.start()

    def stop_operator() -> None:
        stop.set()
        thread.join(timeout=60)

    return stop_operator
