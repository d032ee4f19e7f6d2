"""Who owns the LeaderWorkerSet's `spec.replicas`, as the reconciler sees it: an interface the wiring
(handlers.py) fills with the autoscaler's hand-off (autoscale/handoff.py), so the reconciler does
not depend on the autoscaler."""
from __future__ import annotations

from typing import Any, Mapping, Protocol

from ..api.spec import SGLangDeploymentSpec


class ReplicaHandoff(Protocol):
    def omit(self, spec: SGLangDeploymentSpec) -> dict[str, tuple[str, ...]]:
        """Fields the reconciler's apply leaves out for this spec, per kind."""

    def before(self, namespace: str, name: str, spec: SGLangDeploymentSpec) -> None:
        """Called before the children are applied."""

    def after(self, spec: SGLangDeploymentSpec, lws: Mapping[str, Any] | None,
              created: bool) -> Mapping[str, Any] | None:
        """Called with the LeaderWorkerSet after the apply (`created`: by this apply); returns it as
        it is now."""


class ReconcilerOwnsReplicas:
    """No autoscaler: the reconciler always sends spec.parallelism.dp."""

    def omit(self, spec: SGLangDeploymentSpec) -> dict[str, tuple[str, ...]]:
        return {}

    def before(self, namespace: str, name: str, spec: SGLangDeploymentSpec) -> None:
        pass

    def after(self, spec: SGLangDeploymentSpec, lws: Mapping[str, Any] | None,
              created: bool) -> Mapping[str, Any] | None:
        return lws
