"""PodDisruptionBudget: voluntary evictions (node drains) take down at most one pod at a time.

Evicting any pod restarts its whole group, whose pods then count as unavailable, so a second
eviction waits until that group is back. Unhealthy pods may always be evicted, so a group that is
already broken never blocks a drain.
"""
from __future__ import annotations

from typing import Any

from ..api.spec import SGLangDeploymentSpec
from .labels import common_labels, deployment_selector, pdb_name


def render_pdb(name: str, namespace: str, spec: SGLangDeploymentSpec) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": pdb_name(name), "namespace": namespace, "labels": common_labels(name, spec.engine)},
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": deployment_selector(name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
