"""The LeaderWorkerSet API (sigs.k8s.io/lws, v1) as this operator uses it: where it is served, the
labels its pod webhook sets, and what its spec.replicas and group size default to."""
from __future__ import annotations

from typing import Any, Mapping

LWS_GROUP, LWS_VERSION, LWS_PLURAL = "leaderworkerset.x-k8s.io", "v1", "leaderworkersets"
LWS_API_VERSION = f"{LWS_GROUP}/{LWS_VERSION}"
LWS_KIND = "LeaderWorkerSet"
LWS_CRD = f"{LWS_PLURAL}.{LWS_GROUP}"

# Set by the LWS pod webhook on every pod of a set.
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"  # 0 is the leader
LWS_GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"  # 0 .. replicas-1
LWS_TEMPLATE_REVISION_LABEL = "leaderworkerset.sigs.k8s.io/template-revision-hash"  # changes on a rolling update
LWS_EXCLUSIVE_TOPOLOGY = "leaderworkerset.sigs.k8s.io/exclusive-topology"  # an annotation we set


def spec_replicas(lws: Mapping[str, Any]) -> int:
    """The groups a live LeaderWorkerSet asks for (the API defaults an absent spec.replicas to 1)."""
    return int((lws.get("spec") or {}).get("replicas", 1))


def group_size(lws: Mapping[str, Any]) -> int:
    """Pods per group (leaderWorkerTemplate.size; the API defaults it to 1)."""
    return int(((lws.get("spec") or {}).get("leaderWorkerTemplate") or {}).get("size", 1))
