"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Why a Lease and not kopf peering: peering is a dev-mode guard (a laptop operator pauses the in-cluster
one); replicas of one Deployment share a priority, and same-priority peers all pause ("possibly
conflicting operators") instead of electing one. It also needs its own CRDs. A Lease is the Kubernetes
primitive for this: optimistic concurrency (resourceVersion) makes acquisition atomic, standbys do not
run kopf at all (no watches, no writes), and a crashed leader is replaced after leaseDuration.

Expiry is judged by our own clock from when we last saw the record change (not the holder's
renewTime), so clock skew between nodes does not matter.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable

from kubernetes.client.exceptions import ApiException

from .kube.client import Kube
from .kube.conditions import micro_timestamp, now
from .kube.errors import describe

log = logging.getLogger("sglang_operator.leader")


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, name: str, identity: str, *, lease_duration: float = 15,
                 renew_deadline: float = 10, retry_period: float = 2, clock: Callable[[], float] = time.monotonic):
        assert lease_duration > renew_deadline > retry_period > 0
        self.kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.clock = clock
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0
        self.is_leader = False

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    def _spec(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        prev = previous or {}
        mine = prev.get("holderIdentity") == self.identity
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "acquireTime": prev.get("acquireTime") if mine and prev.get("acquireTime") else micro_timestamp(now()),
            "renewTime": micro_timestamp(now()),
            "leaseTransitions": int(prev.get("leaseTransitions") or 0) + (0 if mine or not prev else 1),
        }

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True while we hold the lease."""
        try:
            lease = self.kube.request("GET", self.path)
        except ApiException as e:
            if e.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace}, "spec": self._spec(None)}
            try:
                created = self.kube.request("POST", self.path.rsplit("/", 1)[0], body=body)
            except ApiException as e2:
                if e2.status == 409:  # someone else created it first
                    return False
                raise
            self._observe(created["spec"])
            return True
        spec = lease.get("spec") or {}
        if spec != self._observed:
            self._observe(spec)
        holder = spec.get("holderIdentity")
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self.clock() < self._observed_at + duration:
            return False
        lease["spec"] = self._spec(spec)
        try:  # PUT with the resourceVersion we read: a concurrent winner makes this a 409
            updated = self.kube.request("PUT", self.path, body=lease)
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        self._observe(updated["spec"])
        return True

    def _observe(self, spec: dict[str, Any]) -> None:
        self._observed, self._observed_at = spec, self.clock()

    def acquire(self, stop: threading.Event) -> bool:
        """Block until we lead (True) or `stop` is set (False)."""
        while not stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    self.is_leader = True
                    log.info("acquired lease %s/%s as %s", self.namespace, self.name, self.identity)
                    return True
            except Exception as e:
                log.warning("lease %s/%s: %s", self.namespace, self.name, describe(e))
            stop.wait(self.retry_period * (1 + 0.2 * random.random()))
        return False

    def keep(self, stop: threading.Event) -> bool:
        """Renew every retry_period until `stop` (returns True) or until no renewal succeeded within
        renew_deadline (returns False: leadership lost, the caller must stop acting)."""
        last_ok = self.clock()
        while not stop.wait(self.retry_period):
            try:
                if self.try_acquire_or_renew():
                    last_ok = self.clock()
                    continue
                log.error("lease %s/%s was taken over by %s", self.namespace, self.name,
                          (self._observed or {}).get("holderIdentity"))
                break
            except Exception as e:
                log.warning("renewing lease %s/%s: %s", self.namespace, self.name, describe(e))
            if self.clock() - last_ok > self.renew_deadline:
                log.error("could not renew lease %s/%s within %.0fs", self.namespace, self.name, self.renew_deadline)
                break
        else:
            return True
        self.is_leader = False
        return False

    def release(self) -> None:
        """On a clean shutdown: hand the lease over at once instead of after leaseDuration."""
        if not self.is_leader:
            return
        try:
            lease = self.kube.request("GET", self.path)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"].update(holderIdentity=None, leaseDurationSeconds=1, renewTime=micro_timestamp(now()))
                self.kube.request("PUT", self.path, body=lease)
                log.info("released lease %s/%s", self.namespace, self.name)
        except Exception as e:
            log.warning("releasing lease %s/%s: %s", self.namespace, self.name, describe(e))
        self.is_leader = False
