"""The router's part of a reconcile pass (spec.router): keep its worker list in step with the
leader pods, observe its Deployment for RouterReady, and delete its objects when it is turned off.

The worker list follows the pods whenever the pods were read, even in a pass that ends with a
problem (a rejected spec, a conflicting child): a group that restarts meanwhile must not stay in
the router as a dead worker. Whether the router is on is the spec's answer, or, when the spec cannot
be read, the stored RouterReady condition's (the router of the last good spec keeps running).

Turning it off deletes the Deployment, Service and ConfigMap: they are owned by the
SGLangDeployment, which lives on, so garbage collection would never remove them. Each is deleted
only while it is still ours (controller reference) and the same object (uid precondition). The
deletion is looked for only when it can be due: the stored status still has RouterReady, or the
spec changed since the last status (observedGeneration) and the groups existed before this pass (the
router is applied after the LeaderWorkerSet, so a pass that had to create the LWS finds no router of
an earlier pass: 3 reads saved on every new object). A router-less pass costs no reads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from kubernetes.client.exceptions import ApiException

from ..kube.client import Kube, Ref
from ..kube.conditions import find
from ..kube.errors import api_error_summary, transient
from ..render import render_router_workers
from ..render.router import router_on, router_name, router_url, worker_records, workers_configmap_name
from .apply import ApplyRejected, ChildConflict, apply_children
from .plan import Change, desired_children
from .status import ROUTER_READY, Problem, RouterKept, RouterLeft, RouterObserved


@dataclass
class RouterPass:
    observed: RouterObserved | RouterLeft | RouterKept | None = None  # None: off and nothing left
    changes: list[Change] = field(default_factory=list)  # the worker ConfigMap's apply
    workers: list[dict[str, str]] | None = None  # the new worker list, when the ConfigMap changed
    removed: list[Ref] = field(default_factory=list)  # objects deleted because the router is off
    problem: Problem | None = None


def router_refs(namespace: str, name: str) -> list[Ref]:
    """The router's objects, in deletion order (traffic stops first, the worker list goes last)."""
    return [Ref("apps/v1", "Deployment", namespace, router_name(name)),
            Ref("v1", "Service", namespace, router_name(name)),
            Ref("v1", "ConfigMap", namespace, workers_configmap_name(name))]


def controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(r.get("controller") and r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])


def sync(kube: Kube, namespace: str, name: str, meta: Mapping[str, Any], stored: Mapping[str, Any],
         spec: Any, pods: Sequence[Mapping[str, Any]] | None, *, lws_created: bool = False) -> RouterPass:
    """`spec`: None when it could not be parsed; `pods`: the LWS's pods, None when not read;
    `lws_created`: this pass created the LeaderWorkerSet."""
    before = find(stored, ROUTER_READY)
    on = router_on(spec) if spec is not None else before is not None
    if on:
        return _keep(kube, namespace, name, meta, spec, pods, before)
    spec_changed = stored.get("observedGeneration") != meta.get("generation")
    if spec is not None and (before is not None or (spec_changed and not lws_created)):
        return _remove(kube, namespace, name, meta["uid"])
    return RouterPass()


def _keep(kube: Kube, namespace: str, name: str, meta: Mapping[str, Any], spec: Any,
          pods: Sequence[Mapping[str, Any]] | None, before: Mapping[str, Any] | None) -> RouterPass:
    if pods is None:
        return RouterPass(RouterKept(before) if before is not None else None)
    out, records = RouterPass(), worker_records(pods)
    try:
        result = apply_children(kube, desired_children([render_router_workers(name, namespace, pods)], meta),
                                meta["uid"])
    except ChildConflict as e:
        out.problem = Problem("ChildConflict", str(e))
    except ApplyRejected as e:
        out.problem = Problem("ApplyFailed", f"{e}. Fix the cluster policy; retrying with backoff.")
    else:
        out.changes = result.changes
        if result.changes:
            out.workers = records
    deployment = kube.get(router_refs(namespace, name)[0])
    if deployment is not None and not controlled_by(deployment, meta["uid"]):
        deployment = None  # someone else's (a ChildConflict): its readiness says nothing of ours
    out.observed = RouterObserved(deployment, len(records),
                                  router_url(name, namespace, spec) if spec is not None else None)
    return out


def _remove(kube: Kube, namespace: str, name: str, uid: str) -> RouterPass:
    out, failed = RouterPass(), []
    for ref in router_refs(namespace, name):
        live = kube.get(ref)
        if live is None or not controlled_by(live, uid) or live["metadata"].get("deletionTimestamp"):
            continue
        try:
            if kube.delete(ref, live["metadata"]["uid"]):
                out.removed.append(ref)
        except ApiException as e:
            if transient(e):
                raise
            failed.append(f"{ref}: {api_error_summary(e)}")
    if failed:
        message = ("spec.router is off but the router could not be deleted (" + "; ".join(failed) + "). Grant "
                   "the operator delete on deployments, services and configmaps (the chart's RBAC does) or "
                   "delete them by hand; retrying with backoff.")
        out.problem, out.observed = Problem("RouterCleanupFailed", message), RouterLeft(message)
    return out
