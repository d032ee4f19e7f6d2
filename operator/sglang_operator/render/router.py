"""The router (SMG) of an SGLangDeployment (pure): its Deployment, its Service `<name>-router`,
and the ConfigMap holding the worker list it reads.

Workers are registered by the operator, not by SMG's own Kubernetes discovery: the ConfigMap holds
SMG's file-discovery manifest (version 1), one record per leader pod that is Ready, its id being the
pod's uid. SMG rereads the file when it changes and on every --discovery-check-interval-secs, and
reconciles its registry to it: a record that disappears is removed, and a restarted group's leader
(a new pod: new uid, usually a new IP) is a new record, so its dead predecessor cannot linger. The
router pod needs no Kubernetes credentials. docs/routing.md gives the evidence for the choice.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from ..api.lws import LWS_GROUP_INDEX_LABEL, LWS_WORKER_INDEX_LABEL
from ..api.router import ROUTER_METRICS_PORT, ROUTER_PORT
from ..api.spec import SGLangDeploymentSpec
from .engines import SERVER_PORT
from .labels import MANAGED_BY
from .pod import image_pull_secrets

ROUTER_LABEL = "sglangfleet.dev/router"  # router pods: not DEPLOYMENT_LABEL, so no group selector matches them
MANIFEST_KEY = "workers.json"
MANIFEST_DIR = "/etc/smg/workers"
DISCOVERY_INTERVAL_S = 5
HEALTH_INTERVAL_S = 5
# SMG binds unprivileged ports and reads one mounted file: it runs as a non-root uid (the published
# image sets no user, so the uid is given here), with no capabilities and a read-only root.
ROUTER_UID = 65532



def router_on(spec: SGLangDeploymentSpec) -> bool:
    """spec.router is set and enabled. It has no default in the CRD on purpose: an operator older
    than the field never sees it in objects that do not ask for a router."""
    return spec.router is not None and spec.router.enabled

def router_name(name: str) -> str:
    return f"{name}-router"


def workers_configmap_name(name: str) -> str:
    return f"{name}-router-workers"


def router_url(name: str, namespace: str, spec: SGLangDeploymentSpec) -> str:
    """In-cluster URL of the router Service."""
    return f"http://{router_name(name)}.{namespace}.svc:{spec.service.port}"


def router_labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/component": "router",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/name": "smg",
        "app.kubernetes.io/part-of": "sglang-fleet",
        ROUTER_LABEL: name,
    }


def router_selector(name: str) -> dict[str, str]:
    return {ROUTER_LABEL: name}


def router_args(spec: SGLangDeploymentSpec) -> list[str]:
    """`smg launch` flags: generated ones, then spec.router.extraArgs (argv items, no shell)."""
    r = spec.router
    assert r is not None  # rendered only when router_on(spec)
    args = [
        "launch", "--host", "0.0.0.0", "--port", str(ROUTER_PORT),
        "--prometheus-host", "0.0.0.0", "--prometheus-port", str(ROUTER_METRICS_PORT),
        "--policy", r.policy,
        "--discovery-provider", "file", "--discovery-file", f"{MANIFEST_DIR}/{MANIFEST_KEY}",
        "--discovery-check-interval-secs", str(DISCOVERY_INTERVAL_S),
        "--health-check-interval-secs", str(HEALTH_INTERVAL_S),
        "--health-check-endpoint", "/health",
    ]
    if r.policy == "cache_aware":
        args += ["--cache-threshold", repr(r.cache_threshold),
                 "--balance-abs-threshold", str(r.balance_abs_threshold),
                 "--balance-rel-threshold", repr(r.balance_rel_threshold)]
    return args + list(r.extra_args)


def render_router_deployment(name: str, namespace: str, spec: SGLangDeploymentSpec) -> dict[str, Any]:
    r = spec.router
    assert r is not None  # rendered only when router_on(spec)
    resources = {k: dict(sorted(v.items())) for k, v in
                 (("requests", r.resources.requests), ("limits", r.resources.limits)) if v}
    probe = {"httpGet": {"path": "/readiness", "port": "http"}, "periodSeconds": 5, "failureThreshold": 2}
    container = {
        "name": "router", "image": r.image, "command": ["smg"], "args": router_args(spec),
        "ports": [{"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": ROUTER_METRICS_PORT, "protocol": "TCP"}],
        # /readiness is 503 until a worker is healthy: a router with no worker takes no traffic.
        "readinessProbe": probe,
        "livenessProbe": {"httpGet": {"path": "/liveness", "port": "http"}, "periodSeconds": 10,
                          "failureThreshold": 3},
        "volumeMounts": [{"name": "workers", "mountPath": MANIFEST_DIR, "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": True},
    }
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # file discovery: no API access needed
        "securityContext": {"runAsNonRoot": True, "runAsUser": ROUTER_UID, "runAsGroup": ROUTER_UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "workers", "configMap": {"name": workers_configmap_name(name)}}],
    }
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = image_pull_secrets(spec)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": router_name(name), "namespace": namespace, "labels": router_labels(name)},
        "spec": {
            "replicas": r.replicas,
            "selector": {"matchLabels": router_selector(name)},
            "template": {
                "metadata": {"labels": router_labels(name),
                             "annotations": {"prometheus.io/scrape": "true",
                                             "prometheus.io/port": str(ROUTER_METRICS_PORT)}},
                "spec": pod_spec,
            },
        },
    }


def render_router_service(name: str, namespace: str, spec: SGLangDeploymentSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": router_name(name), "namespace": namespace, "labels": router_labels(name)},
        "spec": {
            "type": spec.service.type,
            "selector": router_selector(name),
            "ports": [{"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP"},
                      {"name": "metrics", "port": ROUTER_METRICS_PORT, "targetPort": "metrics",
                       "protocol": "TCP"}],
        },
    }


def render_router(name: str, namespace: str, spec: SGLangDeploymentSpec) -> list[dict[str, Any]]:
    """The router's Deployment and Service; none when spec.router.enabled is false."""
    if not router_on(spec):
        return []
    return [render_router_deployment(name, namespace, spec), render_router_service(name, namespace, spec)]


def _ready(pod: Mapping[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def worker_records(pods: Iterable[Mapping[str, Any]], port: int = SERVER_PORT) -> list[dict[str, str]]:
    """SMG manifest records for the leaders that are Ready and have an IP, in group order. A pod
    that is terminating, not Ready or without an IP is left out: SMG then removes it."""
    out = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        labels = meta.get("labels") or {}
        if labels.get(LWS_WORKER_INDEX_LABEL) != "0" or not status.get("podIP") or not _ready(pod):
            continue
        group = labels.get(LWS_GROUP_INDEX_LABEL, "")
        out.append((int(group) if group.isdigit() else 1 << 30, meta.get("name", ""), {
            "id": str(meta.get("uid") or meta.get("name")), "url": f"http://{status['podIP']}:{port}"}))
    return [rec for _, _, rec in sorted(out, key=lambda t: (t[0], t[1]))]


def manifest(records: list[dict[str, str]]) -> str:
    return json.dumps({"version": 1, "workers": records}, indent=1, sort_keys=True) + "\n"


def render_router_workers(name: str, namespace: str, pods: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ConfigMap SMG's file discovery reads (mounted at MANIFEST_DIR)."""
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": workers_configmap_name(name), "namespace": namespace,
                     "labels": router_labels(name)},
        "data": {MANIFEST_KEY: manifest(worker_records(pods))},
    }
