"""Pods as the LWS controller and the kubelet leave them, for the tests of ready groups: LWS labels
(set name, group, worker, template revision) and a Ready condition."""
from __future__ import annotations

from typing import Any

from sglang_operator.api.lws import (LWS_GROUP_INDEX_LABEL, LWS_NAME_LABEL, LWS_TEMPLATE_REVISION_LABEL,
                                     LWS_WORKER_INDEX_LABEL)


def pod(group: int | str, worker: int | str, *, ready: bool = True, terminating: bool = False, lws: str = "x",
        revision: str = "rev1") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"{lws}-{group}-{worker}", "labels": {
        LWS_NAME_LABEL: lws, LWS_GROUP_INDEX_LABEL: str(group), LWS_WORKER_INDEX_LABEL: str(worker),
        LWS_TEMPLATE_REVISION_LABEL: revision}}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def group(g: int, size: int = 1, **kw: Any) -> list[dict[str, Any]]:
    """All the pods of group g, leader first."""
    return [pod(g, w, **kw) for w in range(size)]


def ready_pods(groups: int, size: int = 1, **kw: Any) -> list[dict[str, Any]]:
    """Groups 0 .. groups-1, every pod Ready."""
    return [p for g in range(groups) for p in group(g, size, **kw)]
