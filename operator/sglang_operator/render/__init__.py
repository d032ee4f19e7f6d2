"""Pure rendering: SGLangDeployment spec -> plain dicts ready for the Kubernetes API.

Same input, same output (stable ordering, no timestamps), so a reconcile loop never flaps.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..api.spec import NAME_MAX, SGLangDeploymentSpec, valid_name
from ..api.validate import InvalidSpec, parse_spec
from .labels import leader_selector, selector_string
from .lws import desired_replicas, render_lws
from .owner import owner_reference, with_owner
from .pdb import render_pdb
from .router import render_router, render_router_workers
from .service import endpoint, render_service


def render_all(name: str, namespace: str, spec: SGLangDeploymentSpec | Mapping[str, Any]) -> list[dict[str, Any]]:
    """LeaderWorkerSet, Service and PodDisruptionBudget for one SGLangDeployment, plus the router's
    Deployment and Service when spec.router.enabled (its worker ConfigMap follows the pods:
    render_router_workers). With autoscaling on, the LWS's replicas are dp within the bounds (the
    reconciler leaves them out: handoff.py)."""
    if not valid_name(name):
        raise InvalidSpec([f"metadata.name: {name!r} is not a DNS-1035 label of at most {NAME_MAX} characters"])
    s = parse_spec(spec)
    return [render_lws(name, namespace, s), render_service(name, namespace, s), render_pdb(name, namespace, s),
            *render_router(name, namespace, s)]


def status_selector(name: str) -> str:
    """status.selector: the leader pods, as the scale subresource and HPA want it."""
    return selector_string(leader_selector(name))


__all__ = ["render_all", "render_router_workers", "desired_replicas", "endpoint", "status_selector", "owner_reference", "with_owner"]
