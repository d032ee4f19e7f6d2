"""Periodic resync: reconcile every known SGLangDeployment every `interval` seconds.

A safety net for events missed while the API server was unreachable; in steady state it finds
nothing to do and writes nothing. A plain thread over kopf's live index rather than a kopf timer:
kopf adds a finalizer to every object that has a timer, and that finalizer would block deleting an
SGLangDeployment (and its namespace) whenever the operator is not running.
"""
from __future__ import annotations

import contextvars
import logging
import threading
from typing import Any, Callable, Iterable

from .kube import describe

log = logging.getLogger("sglang_operator.resync")


def start(reconcile: Callable[..., Any], keys: Callable[[], Iterable[tuple[str, str]]], interval: float) -> threading.Event:
    """Run in a daemon thread that inherits the caller's context (kopf's event posting needs it).
    Returns the event that stops it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                todo = list(keys())
            except RuntimeError:  # the index changed while we copied it; next round
                continue
            for namespace, name in todo:
                try:
                    reconcile(namespace, name, trigger="Resync")
                except Exception as e:
                    log.warning("periodic resync of %s/%s failed: %s", namespace, name, describe(e))

    threading.Thread(target=contextvars.copy_context().run, args=(loop,), daemon=True, name="resync").start()
    return stop
