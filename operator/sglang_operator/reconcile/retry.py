"""One failure policy for reconcile passes, whatever started them.

A pass fails when it raises (API server unreachable, 5xx, a write conflict) or ends with a problem
worth retrying (Problem.retry); it is retried after backoff(n) seconds, n counting the failures in a
row, until one succeeds. A problem that needs a spec change (InvalidSpec) is not retried: the change
is an event. Every trigger (the object's own events, its children's and pods', the LWS CRD
appearing, the resync) goes through `Retrier`, which schedules those retries.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

from ..kube.errors import describe
from .reconciler import Outcome

BACKOFF_BASE, BACKOFF_CAP = 1.0, 60.0
log = logging.getLogger("sglang_operator.retry")
Key = tuple[str, str]  # namespace, name


def backoff(failures: int) -> float:
    """Seconds before the retry that follows `failures` earlier failures in a row (0 for the first)."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(failures, 16))


@dataclass(frozen=True)
class Failure:
    message: str
    retry: bool


def run_pass(reconcile: Callable[..., Outcome], namespace: str, name: str, trigger: str) -> Failure | None:
    """One pass; None when it succeeded."""
    try:
        out = reconcile(namespace, name, trigger=trigger)
    except Exception as e:  # noqa: BLE001 - every failure gets the same policy
        return Failure(f"reconcile failed ({describe(e)}); retrying", retry=True)
    if out.problem is None:
        return None
    return Failure(out.problem.message, out.problem.retry)


Timer = Callable[[float, Callable[[], None]], Callable[[], None]]  # (delay, fn) -> cancel


def thread_timer(delay: float, fn: Callable[[], None]) -> Callable[[], None]:
    t = threading.Timer(delay, fn)
    t.daemon = True
    t.start()
    return t.cancel


class Retrier:
    """Runs passes for every trigger and schedules the retries of failed ones (one pending retry
    per object at most).

    Triggers that arrive while a pass for the same object runs are folded into one more pass after
    it: a group coming up is a burst of pod, LWS and Service events, and one pass per event (each
    waiting for the object's lock in a worker thread) kept the workers busy with repeats while other
    objects waited for their first pass. The extra pass is needed, not a formality: it reads what
    the running pass may have read too early."""

    def __init__(self, reconcile: Callable[..., Outcome], *, timer: Timer = thread_timer):
        self.reconcile, self.timer = reconcile, timer
        self._failures: dict[Key, int] = {}
        self._pending: dict[Key, Callable[[], None]] = {}
        self._running: set[Key] = set()
        self._again: dict[Key, str] = {}  # objects with a pass running -> the latest trigger since
        self._guard = threading.Lock()
        self._stopped = False

    def run(self, namespace: str, name: str, trigger: str) -> Failure | None:
        """A pass now, or, when one for the object is running, one more after it (None then: the
        running caller reports the outcome)."""
        key = (namespace, name)
        with self._guard:
            if key in self._running:
                self._again[key] = trigger
                return None
            self._running.add(key)
        try:
            while True:
                failure = self._run_once(key, trigger)
                with self._guard:
                    trigger = self._again.pop(key, None)
                    if trigger is None:
                        self._running.discard(key)
                        return failure
        except BaseException:
            with self._guard:
                self._running.discard(key)
                self._again.pop(key, None)
            raise

    def _run_once(self, key: Key, trigger: str) -> Failure | None:
        namespace, name = key
        failure = run_pass(self.reconcile, namespace, name, trigger)
        with self._guard:
            cancel = self._pending.pop(key, None)
            if cancel is not None:
                cancel()  # this pass is the retry it was waiting for
            if failure is None or not failure.retry:
                self._failures.pop(key, None)
                return failure
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
            delay = backoff(n)
            if not self._stopped:
                self._pending[key] = self.timer(delay, lambda: self.run(namespace, name, trigger))
        log.warning("reconcile of %s/%s (%s) failed: %s; next try in %.0fs", namespace, name, trigger,
                    failure.message, delay)
        return failure

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._failures.pop((namespace, name), None)
            cancel = self._pending.pop((namespace, name), None)
        if cancel is not None:
            cancel()

    def stop(self) -> None:
        with self._guard:
            self._stopped = True
            pending, self._pending = list(self._pending.values()), {}
        for cancel in pending:
            cancel()
