"""Group health: a heartbeat beside the collectives, over rank 0's rendezvous TCPStore.

Every rank bumps its counter every `interval`; rank 0 watches the counters and publishes the
group's state ("starting", "ok", "stopping", "broken") under one key that the others read back with
each beat. A rank that stops beating for `timeout` (killed, frozen, its node gone), or one that
fails itself (a collective error, a dead local rank; it says so at once) breaks the group: rank
0's /health turns 503, and every rank exits non-zero after a short grace, so LeaderWorkerSet
recreates the group instead of leaving it hung in a collective. A follower that cannot reach rank
0's store for `timeout` treats the group as broken too.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from datetime import timedelta

import torch.distributed as dist

log = logging.getLogger("radix_runtime.group")
STARTING, OK, STOPPING, BROKEN = "starting", "ok", "stopping", "broken"
EXIT_GRACE_S = 1.0  # long enough for a probe or a client to see the 503
_STATE, _FAILED = "health/state", "health/failed"


def _key(rank: int) -> str:
    return f"health/beat/{rank}"


class GroupHealth:
    def __init__(self, host: str, port: int, rank: int, world: int, timeout: float):
        self.rank, self.world, self.timeout = rank, world, timeout
        self.interval = min(1.0, timeout / 5)
        self.state, self.reason = STARTING, ""
        self.terminating = False  # a follower got SIGTERM: the group going away is expected
        self._addr = (host, port)
        self._store = None
        self._seen: dict[int, tuple[int, float]] = {}  # rank -> (counter, when it last moved)
        self._lock = threading.Lock()

    # -- state ------------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self.state == OK

    def view(self) -> dict:
        return {"state": self.state, "reason": self.reason, "rank": self.rank, "world_size": self.world}

    def set_state(self, state: str) -> None:
        with self._lock:
            if self.state != BROKEN:
                self.state = state
        self._publish()

    def fail(self, reason: str) -> None:
        """Break the group (idempotent): report it, then exit non-zero after a grace. While the
        group is being stopped on purpose, losing it is expected: leave quietly instead."""
        with self._lock:
            if self.state == BROKEN:
                return
            stopping = self.state == STOPPING
            self.state, self.reason = BROKEN, reason
        if stopping:
            self.terminating = True
        else:
            log.error("group broken: %s; exiting in %.0fs", reason, EXIT_GRACE_S)
            self._publish()
            if self.rank and self._store is not None:  # tell rank 0 now rather than by silence
                try:
                    self._store.set(_FAILED, f"rank {self.rank}: {reason}")
                except Exception:
                    pass
        threading.Thread(target=self._exit_soon, daemon=True).start()

    def _exit_soon(self) -> None:
        time.sleep(EXIT_GRACE_S)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0 if self.terminating else 1)

    # -- the beat -----------------------------------------------------------------------------
    def start(self) -> None:
        host, port = self._addr
        self._store = dist.TCPStore(host, port, is_master=False,
                                    timeout=timedelta(seconds=self.timeout))
        if self.rank == 0:
            self._publish()
        threading.Thread(target=self._run, name="group-health", daemon=True).start()

    def _publish(self) -> None:
        if self.rank == 0 and self._store is not None:
            try:
                self._store.set(_STATE, json.dumps([self.state, self.reason]))
            except Exception:  # our own store: only fails while the process dies
                pass

    def _run(self) -> None:
        while True:
            try:
                if self.rank == 0:
                    self._watch()
                else:
                    self._beat()
            except Exception as e:
                self.fail(f"rank 0 unreachable: {type(e).__name__}: {e}")
            time.sleep(self.interval)

    def _beat(self) -> None:
        self._store.add(_key(self.rank), 1)
        state, reason = json.loads(self._store.get(_STATE))
        if state == BROKEN:
            self.fail(f"reported by rank 0: {reason}")
        elif state == STOPPING:
            self.set_state(STOPPING)
        else:
            self.set_state(state)

    def _watch(self) -> None:
        if self.state == STOPPING:  # followers leave now; that is no failure
            return
        if self._store.check([_FAILED]):
            return self.fail(self._store.get(_FAILED).decode())
        now = time.monotonic()
        for r in range(1, self.world):
            n = self._store.add(_key(r), 0)
            count, since = self._seen.get(r, (0, now))
            if n != count:
                self._seen[r] = (n, now)
            elif n and self.state != STOPPING and now - since > self.timeout:
                self.fail(f"rank {r} sent no heartbeat for {now - since:.1f}s")
