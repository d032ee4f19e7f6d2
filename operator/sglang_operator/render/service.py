"""The client-facing Service: leaders only, so traffic and scrapes never hit a worker."""
from __future__ import annotations

from typing import Any

from ..api.spec import SGLangDeploymentSpec
from .labels import common_labels, leader_selector, service_name


def render_service(name: str, namespace: str, spec: SGLangDeploymentSpec) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": service_name(name), "namespace": namespace, "labels": common_labels(name, spec.engine)}
    if spec.service.annotations:
        metadata["annotations"] = {k: spec.service.annotations[k] for k in sorted(spec.service.annotations)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": spec.service.type,
            "selector": leader_selector(name),
            "ports": [{"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def endpoint(name: str, namespace: str, spec: SGLangDeploymentSpec) -> str:
    """In-cluster URL of the Service (for status.endpoint)."""
    return f"http://{service_name(name)}.{namespace}.svc:{spec.service.port}"
