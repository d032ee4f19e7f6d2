"""Object names, labels and selectors: how the Service, the PDB and the autoscaler find pods."""
from __future__ import annotations

from typing import Mapping

from ..api.lws import LWS_WORKER_INDEX_LABEL

DEPLOYMENT_LABEL = "sglangfleet.dev/deployment"
ENGINE_LABEL = "sglangfleet.dev/engine"
ROLE_LABEL = "sglangfleet.dev/role"  # leader | worker
MANAGED_BY = "sglang-operator"


def lws_name(name: str) -> str:
    return name


def service_name(name: str) -> str:
    # LWS already owns a headless Service called after the LWS; ours must differ.
    return f"{name}-api"


def pdb_name(name: str) -> str:
    return name


def common_labels(name: str, engine: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/component": "inference-server",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/name": "sglang",
        "app.kubernetes.io/part-of": "sglang-fleet",
        DEPLOYMENT_LABEL: name,
        ENGINE_LABEL: engine,
    }


def pod_labels(name: str, engine: str, role: str) -> dict[str, str]:
    return {**common_labels(name, engine), ROLE_LABEL: role}


def deployment_selector(name: str) -> dict[str, str]:
    """Every pod of the deployment, leaders and workers."""
    return {DEPLOYMENT_LABEL: name}


def leader_selector(name: str) -> dict[str, str]:
    """Leader pods only: they serve HTTP and /metrics (worker-index 0 is set by LWS itself)."""
    return {DEPLOYMENT_LABEL: name, LWS_WORKER_INDEX_LABEL: "0"}


def selector_string(selector: Mapping[str, str]) -> str:
    """`k=v,k=v` in a stable order, as status.selector and the scale subresource want it."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
