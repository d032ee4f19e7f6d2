"""The LeaderWorkerSet: one group per replica, tp*pp/gpusPerPod pods per group."""
from __future__ import annotations

from typing import Any

from ..api.lws import LWS_API_VERSION, LWS_EXCLUSIVE_TOPOLOGY, LWS_KIND
from ..api.spec import SGLangDeploymentSpec
from .labels import common_labels, lws_name
from .pod import LEADER, WORKER, pod_template



def desired_replicas(spec: SGLangDeploymentSpec, current: int | None = None) -> int:
    """Groups to run. With autoscaling on, the autoscaler's `current` choice (or dp at first) within
    [minReplicas, maxReplicas]; otherwise spec.parallelism.dp."""
    a = spec.autoscaling
    if not a.enabled:
        return spec.parallelism.dp
    want = spec.parallelism.dp if current is None else current
    return max(a.min_replicas, min(a.max_replicas or want, want))


def render_lws(name: str, namespace: str, spec: SGLangDeploymentSpec) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": lws_name(name), "namespace": namespace, "labels": common_labels(name, spec.engine)}
    if spec.scheduling.group_topology_key:
        metadata["annotations"] = {LWS_EXCLUSIVE_TOPOLOGY: spec.scheduling.group_topology_key}
    return {
        "apiVersion": LWS_API_VERSION,
        "kind": LWS_KIND,
        "metadata": metadata,
        "spec": {
            "replicas": desired_replicas(spec),
            # Workers start with the leader: it cannot get ready before they join its process group.
            "startupPolicy": "LeaderCreated",
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {
                    "maxSurge": spec.rollout.max_surge,
                    "maxUnavailable": spec.rollout.max_unavailable,
                },
            },
            "leaderWorkerTemplate": {
                "size": spec.parallelism.group_size,
                # A group is one process group: losing any rank means restarting all of them.
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": pod_template(name, spec, LEADER),
                "workerTemplate": pod_template(name, spec, WORKER),
            },
        },
    }
