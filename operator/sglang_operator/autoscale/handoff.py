"""The autoscaler's side of the LeaderWorkerSet's `spec.replicas` (reconcile/handoff.py's
ReplicaHandoff): the operator's apply owns it while autoscaling is off (dp), the autoscaler's own
field manager while it is on.

Server-side apply removes a field its only owner stops sending, and LWS then defaults replicas to
1: dropping it from the operator's apply before the autoscaler owns it would scale the fleet to
one group. So, while autoscaling is on, the reconciler calls `before` (make the autoscaler co-own
the live value, clamped to the bounds) and only then applies without the field; a LeaderWorkerSet
it has just created gets the initial size (dp within the bounds) in `after`. Turning autoscaling
off needs nothing here: the operator sends dp again and its forced apply takes the field back.
Every write carries the resourceVersion it was computed from, so it cannot undo a newer scale.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..api.lws import LWS_API_VERSION, LWS_KIND, spec_replicas
from ..api.spec import SGLangDeploymentSpec
from ..kube.client import Kube, lws_ref
from ..render.lws import desired_replicas
from .state import STATE_ANNOTATION

AUTOSCALER_MANAGER = "sglang-autoscaler"
REPLICAS = "spec.replicas"


def replicas_owners(lws: Mapping[str, Any]) -> set[str]:
    """Field managers that own spec.replicas (from managedFields)."""
    return {m.get("manager", "") for m in (lws.get("metadata") or {}).get("managedFields") or []
            if "f:replicas" in (((m.get("fieldsV1") or {}).get("f:spec")) or {})}


def autoscaler_apply(lws: Mapping[str, Any], replicas: int, state: str | None) -> dict[str, Any]:
    """The autoscaler's whole applied configuration of the LWS: replicas and its state annotation.
    Both always travel together: a field this manager leaves out is a field it gives up."""
    meta = lws["metadata"]
    body: dict[str, Any] = {
        "apiVersion": LWS_API_VERSION, "kind": LWS_KIND,
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "resourceVersion": meta["resourceVersion"]},
        "spec": {"replicas": replicas},
    }
    if state is not None:
        body["metadata"]["annotations"] = {STATE_ANNOTATION: state}
    return body


def current_state_text(lws: Mapping[str, Any]) -> str | None:
    return ((lws.get("metadata") or {}).get("annotations") or {}).get(STATE_ANNOTATION)


class AutoscalerHandoff:
    """`kube` writes as AUTOSCALER_MANAGER."""

    def __init__(self, kube: Kube):
        self.kube = kube

    @staticmethod
    def omit(spec: SGLangDeploymentSpec) -> dict[str, tuple[str, ...]]:
        return {LWS_KIND: (REPLICAS,)} if spec.autoscaling.enabled else {}

    def _take(self, lws: Mapping[str, Any], replicas: int) -> dict[str, Any]:
        return self.kube.apply(autoscaler_apply(lws, replicas, current_state_text(lws)))

    def before(self, namespace: str, name: str, spec: SGLangDeploymentSpec) -> None:
        """Autoscaling on and the live LWS's replicas not yet ours: co-own them at their value."""
        if not spec.autoscaling.enabled:
            return
        live = self.kube.get(lws_ref(namespace, name))
        if live is not None and AUTOSCALER_MANAGER not in replicas_owners(live):
            self._take(live, desired_replicas(spec, spec_replicas(live)))

    def after(self, spec: SGLangDeploymentSpec, lws: Mapping[str, Any] | None,
              created: bool) -> Mapping[str, Any] | None:
        """A LWS just created without replicas (LWS defaults them to 1) starts at dp within the bounds."""
        if not spec.autoscaling.enabled or lws is None or not created:
            return lws
        return self._take(lws, desired_replicas(spec))
