"""Ready groups, counted from the pods of a LeaderWorkerSet (pure).

Why not the LWS's status.readyReplicas: LWS v0.8.0 counts a group ready once its pods exist, not
once they are Ready (its StatefulSet readiness check compares replica counts; upstream lws PR #705
changes that). Our Ready condition says "serving", so it follows the pods themselves.

The rule: group g (pod label leaderworkerset.sigs.k8s.io/group-index) is ready when
- g < the LWS's spec.replicas (a scale-down's leftover groups, still terminating, do not count);
- it has all its pods: worker indices (leaderworkerset.sigs.k8s.io/worker-index) 0 .. size-1, size
  being the LWS's leaderWorkerTemplate.size (default 1);
- none of its pods is terminating (deletionTimestamp) and every one has condition Ready=True.

Template revision (leaderworkerset.sigs.k8s.io/template-revision-hash) is ignored on purpose: during
a rolling update a ready group on the old revision still serves (our Service selects it), so it
counts as ready; a group being replaced has terminating or missing pods and does not. Progressing
(status.py) reports how far the update got from the LWS's updatedReplicas. The one cost of the
simple rule: an old-revision group of another size is judged against the current size (it counts as
not ready when it is smaller) until it is replaced.

Pods whose group or worker index is not a non-negative integer are ignored (v0.8.0 numbers groups
by the leader StatefulSet's ordinals).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..api.lws import LWS_GROUP_INDEX_LABEL, LWS_WORKER_INDEX_LABEL, group_size, spec_replicas
from ..kube.conditions import pod_ready


def _index(labels: Mapping[str, str], key: str) -> int | None:
    value = labels.get(key, "")
    return int(value) if value.isdigit() else None


def ready_groups(lws: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> int:
    """How many of the LWS's wanted groups are ready by the rule above; `pods` are the pods that
    carry the LWS's name label."""
    replicas, size = spec_replicas(lws), group_size(lws)
    workers: dict[int, set[int]] = {}
    broken: set[int] = set()  # groups with a pod that is terminating or not Ready
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        group, worker = _index(labels, LWS_GROUP_INDEX_LABEL), _index(labels, LWS_WORKER_INDEX_LABEL)
        if group is None or worker is None or group >= replicas:
            continue
        workers.setdefault(group, set()).add(worker)
        if not pod_ready(pod):
            broken.add(group)
    return sum(1 for g, have in workers.items() if g not in broken and set(range(size)) <= have)
