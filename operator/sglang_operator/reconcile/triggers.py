"""Which watch events of SGLangDeployments, their children and pods are worth a reconcile pass
(pure, plus one memory).

An SGLangDeployment's event is news when its spec, labels, annotations or deletion changed, or
when it is new to this process (every object gets a pass at operator start); the status writes of
every pass are not.

A group coming up is a stream of events that change nothing a pass reads: the kubelet's and kwok's
status updates of a pod before it turns Ready, the disruption controller's PodDisruptionBudget
status, a Service's endpoints bookkeeping. Each used to cost a full pass (reads of the object, its
children and its pods). An event is news when the part of the object a pass reads changed since
the last event of the same object (by uid), or when the object is new or gone:
- a pod: its uid, labels (group and worker index), deletion, Ready condition and IP (readiness.py
  and the router's worker list read nothing else), and the state of its model-download init
  container (model_download.py);
- the LeaderWorkerSet and the router's Deployment: everything but resourceVersion and managedFields
  (their status feeds ours);
- Services, PodDisruptionBudgets, the worker ConfigMap: the same without status, which no pass reads
  (a drifted spec, label or owner reference is still news: that is the drift repair).
The objects our own applies return are noted as seen (`note`): the watch event of a child we just
created or repaired says what the pass that wrote it already knows (a first pass used to be followed
by one pass each for its LeaderWorkerSet's, Service's and PodDisruptionBudget's ADDED events).
Only the reconciler's writes are noted: an autoscaler's scale must still reach the status.
Skipped events cost no pass; the resync still visits every object (resync.py)."""
from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, Mapping

from ..api.names import KIND
from ..kube.conditions import pod_ready
from .model_download import download_view

STATUS_READ = frozenset({"LeaderWorkerSet", "Deployment"})


def pod_view(pod: Mapping[str, Any]) -> Any:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    return [meta.get("uid"), meta.get("labels"), meta.get("deletionTimestamp"), pod_ready(pod), status.get("podIP"),
            download_view(pod)]


def deployment_view(obj: Mapping[str, Any]) -> Any:
    """An SGLangDeployment: what a user changes (spec, labels, annotations) and its deletion; its
    status is ours and the autoscaler's to write, so status writes are no news."""
    meta = obj.get("metadata") or {}
    return [meta.get("generation"), meta.get("labels"), meta.get("annotations"), meta.get("deletionTimestamp"),
            obj.get("spec")]


def child_view(obj: Mapping[str, Any]) -> Any:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")}
    keep = {k: v for k, v in obj.items() if k != "metadata" and (k != "status" or obj.get("kind") in STATUS_READ)}
    return [meta, keep]


def digest(view: Any) -> bytes:
    return hashlib.blake2b(json.dumps(view, sort_keys=True, default=str).encode(), digest_size=16).digest()


class Seen:
    """The last view of each watched object, by uid (16 bytes each)."""

    def __init__(self) -> None:
        self._last: dict[str, bytes] = {}
        self._guard = threading.Lock()

    def news(self, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        uid = (obj.get("metadata") or {}).get("uid")
        if not uid:
            return True
        if event_type == "DELETED":
            with self._guard:
                self._last.pop(uid, None)
            return True
        d = _view_digest(obj)
        with self._guard:
            if self._last.get(uid) == d:
                return False
            self._last[uid] = d
            return True

    def note(self, obj: Mapping[str, Any]) -> None:
        """`obj` (a write's response) is known: its watch event, if unchanged by then, is no news."""
        uid = (obj.get("metadata") or {}).get("uid")
        if uid:
            d = _view_digest(obj)
            with self._guard:
                self._last[uid] = d


def _view_digest(obj: Mapping[str, Any]) -> bytes:
    view = {"Pod": pod_view, KIND: deployment_view}.get(obj.get("kind"), child_view)
    return digest(view(obj))
