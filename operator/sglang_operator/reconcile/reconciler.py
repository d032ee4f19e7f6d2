"""One reconcile pass: read the SGLangDeployment, render, apply what differs, read the LWS's pods,
write status, emit events. Every trigger (the object's own events, its children's and pods' events,
the LWS CRD appearing, the resync timer) ends here, so there is one code path to reason about;
retry.py decides what a failed pass leads to. Passes for the same object are serialised."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from kubernetes.client.exceptions import ApiException

from ..api.lws import LWS_CRD, LWS_KIND, LWS_NAME_LABEL, spec_replicas
from ..api.names import API_VERSION, KIND
from ..api.validate import InvalidSpec, parse_spec
from ..kube.client import Kube, lws_ref, sgld_ref
from ..kube.conditions import find, now
from ..kube.errors import ResourceTypeMissing
from ..kube.events import WARNING, Event, Poster
from ..metrics import DURATION, ERRORS, RECONCILES, WRITES
from ..render import endpoint, render_all
from ..render.labels import lws_name
from . import change_events, router
from .apply import ApplyRejected, ChildConflict, apply_children
from .handoff import ReconcilerOwnsReplicas, ReplicaHandoff
from .model_download import MODEL_DOWNLOADING
from .plan import CREATED, Change, desired_children
from .status import DEGRADED, ROUTER_READY, Observed, Problem, changed, compute_status

log = logging.getLogger("sglang_operator.reconcile")

LWS_MISSING = Problem(
    "LeaderWorkerSetMissing",
    f"The LeaderWorkerSet API ({LWS_CRD}) is not installed in this cluster. Install LeaderWorkerSet "
    "(https://lws.sigs.k8s.io/docs/installation/); the operator retries with backoff and creates the "
    "groups once the API is served.",
)


@dataclass
class Outcome:
    problem: Problem | None = None
    changes: list[Change] = field(default_factory=list)
    status_written: bool = False
    skipped: bool = False  # the object is gone or being deleted
    router_workers: list[dict[str, str]] | None = None  # the router's new worker list, when it changed


def invalid_spec(err: InvalidSpec) -> Problem:
    return Problem("InvalidSpec", f"The spec cannot be rendered: {err}. Fix the spec; the running "
                                  "groups were left unchanged.", retry=False)


class Reconciler:
    def __init__(self, kube: Kube, *, handoff: ReplicaHandoff | None = None, post: Poster | None = None,
                 clock: Callable = now):
        self.kube, self.post, self.clock = kube, post, clock
        self.handoff = handoff or ReconcilerOwnsReplicas()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)

    def reconcile(self, namespace: str, name: str, *, trigger: str) -> Outcome:
        t0 = time.monotonic()
        try:
            with self._lock((namespace, name)):
                out = self._reconcile(namespace, name)
        except Exception as e:
            RECONCILES.labels(trigger, "error").inc()
            ERRORS.labels(trigger, type(e).__name__).inc()
            raise
        finally:
            DURATION.labels(trigger).observe(time.monotonic() - t0)
        RECONCILES.labels(trigger, "success" if out.problem is None else "error").inc()
        if out.problem is not None:
            ERRORS.labels(trigger, out.problem.reason).inc()
        return out

    def _reconcile(self, namespace: str, name: str) -> Outcome:
        parent = self.kube.get(sgld_ref(namespace, name))
        if parent is None or parent["metadata"].get("deletionTimestamp"):
            return Outcome(skipped=True)  # garbage collection removes the children
        meta, stored = parent["metadata"], parent.get("status") or {}
        out = Outcome()
        lws: Mapping[str, Any] | None = None
        desired_replicas = url = spec = None
        lws_created = False
        try:
            spec = parse_spec(parent.get("spec") or {})
            rendered = render_all(name, namespace, spec)  # everything is rendered before anything is written
            url = endpoint(name, namespace, spec)
        except InvalidSpec as e:
            out.problem = invalid_spec(e)
        if out.problem is None:
            desired = desired_children(rendered, meta, self.handoff.omit(spec))
            desired_replicas = next((o["spec"].get("replicas") for o in desired if o["kind"] == LWS_KIND), None)
            try:
                self.handoff.before(namespace, name, spec)
                result = apply_children(self.kube, desired, meta["uid"], new="observedGeneration" not in stored)
                out.changes = result.changes
                lws_created = any(c.ref.kind == LWS_KIND and c.action == CREATED for c in result.changes)
                lws = self.handoff.after(spec, result.live.get(LWS_KIND), lws_created)
            except ResourceTypeMissing:
                out.problem = LWS_MISSING
            except ChildConflict as e:
                out.problem = Problem("ChildConflict", str(e))
            except ApplyRejected as e:
                out.problem = Problem("ApplyFailed", f"{e}. Fix the spec or the cluster policy; retrying with backoff.")
            for c in out.changes:
                WRITES.labels(c.ref.kind, c.action).inc()
                log.info("%s %s", c.action, c.ref, extra={"fields": list(c.fields)} if c.fields else None)
        if lws is None and out.problem is not None and out.problem is not LWS_MISSING:
            lws = self._get_lws(namespace, name)  # report the groups that still run
        # status.desiredReplicas, whose only writer is the reconciler: what we send (dp), else what the
        # LWS asks for (the autoscaler's choice: each scale is an LWS event, so it lands here too).
        if desired_replicas is None and lws is not None:
            desired_replicas = spec_replicas(lws)
        # Ready groups are counted from the pods (readiness.py); reads only, like the children's. An
        # LWS created just now has none yet (the pods that come will each be an event).
        pods = self.kube.list_pods(namespace, {LWS_NAME_LABEL: lws_name(name)}) \
            if lws is not None and not lws_created else []
        routed = router.sync(self.kube, namespace, name, meta, stored, spec, pods if lws is not None else None,
                             lws_created=lws_created)
        out.problem, out.router_workers = out.problem or routed.problem, routed.workers
        for c in routed.changes:
            WRITES.labels(c.ref.kind, c.action).inc()
            log.info("%s %s (%d router workers)", c.action, c.ref, len(routed.workers or []))
        for ref in routed.removed:
            WRITES.labels(ref.kind, "deleted").inc()
            log.info("deleted %s (spec.router is off)", ref)
        observed = Observed(name, namespace, meta.get("generation"), desired_replicas, url, lws, out.problem, pods,
                            routed.observed)
        status = compute_status(observed, stored, self.clock())
        if changed(stored, status):
            self.kube.apply({"apiVersion": API_VERSION, "kind": KIND,
                             "metadata": {"name": name, "namespace": namespace}, "status": status},
                            subresource="status")
            WRITES.labels(KIND, "status").inc()
            out.status_written = True
        # The router's objects count as recreated only if the router was there before.
        mine = set(router.router_refs(namespace, name))
        self._emit(parent, change_events.for_changes([c for c in out.changes if c.ref not in mine],
                                                     reconciled_before="observedGeneration" in stored)
                   + change_events.for_changes([c for c in out.changes if c.ref in mine],
                                               reconciled_before=find(stored, ROUTER_READY) is not None)
                   + change_events.for_degraded(find(stored, DEGRADED), find(status, DEGRADED) or {})
                   + change_events.for_model_download(find(stored, MODEL_DOWNLOADING), find(status, MODEL_DOWNLOADING))
                   + change_events.for_router(find(stored, ROUTER_READY), find(status, ROUTER_READY),
                                              out.router_workers, routed.removed))
        return out

    def _get_lws(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            return self.kube.get(lws_ref(namespace, name))
        except (ResourceTypeMissing, ApiException):
            return None

    def _emit(self, parent: Mapping[str, Any], events: list[Event]) -> None:
        for e in events:
            log.log(logging.WARNING if e.type == WARNING else logging.INFO, "event %s: %s", e.reason, e.message)
            if self.post is not None:
                self.post(parent, e)
