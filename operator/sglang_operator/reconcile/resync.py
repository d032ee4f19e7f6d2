"""Periodic resync: reconcile every known SGLangDeployment every `interval` seconds.

A safety net for events missed while the API server was unreachable; in steady state it finds
nothing to do and writes nothing. A plain thread over kopf's live index rather than a kopf timer:
kopf adds a finalizer to every object that has a timer (kopf.on.timer: requires_finalizer=True),
and that finalizer would block deleting an SGLangDeployment (and its namespace) whenever the
operator is not running.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterable


def start(run: Callable[[str, str, str], Any], keys: Callable[[], Iterable[tuple[str, str]]],
          interval: float) -> threading.Event:
    """`run(namespace, name, trigger)` for every key, in a daemon thread; failures are `run`'s to
    handle (Retrier.run). Returns the event that stops it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                todo = list(keys())
            except RuntimeError:  # the index changed while we copied it; next round
                continue
            for namespace, name in todo:
                run(namespace, name, "Resync")

    threading.Thread(target=loop, daemon=True, name="resync").start()
    return stop
