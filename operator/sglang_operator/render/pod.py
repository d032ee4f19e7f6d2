"""Pod templates for the leader and the workers of a group."""
from __future__ import annotations

from typing import Any

from ..api.model import ModelVolume
from ..api.secrets import API_KEY_ENV
from ..api.spec import SGLangDeploymentSpec
from .engines import DIST_INIT_PORT, SERVER_PORT, container_command, engine_of
from .hub import download_container, hub_volumes
from .labels import pod_labels
from .probes import leader_probes, worker_probes

CONTAINER = "server"
LEADER, WORKER = "leader", "worker"


def _sorted(d: dict[str, Any] | None) -> dict[str, Any]:
    return {k: d[k] for k in sorted(d)} if d else {}


def resources(spec: SGLangDeploymentSpec) -> dict[str, Any]:
    """Requests/limits as given; nvidia.com/gpu = gpusPerPod unless the user set it."""
    r = spec.resources
    out = {"limits": _sorted(r.limits_with_extended(spec.parallelism.effective_gpus_per_pod))}
    if r.requests:
        out["requests"] = _sorted(r.requests)
    return out


def _model_volume(v: ModelVolume) -> dict[str, Any]:
    if v.persistent_volume_claim:
        return {"persistentVolumeClaim": {"claimName": v.persistent_volume_claim.claim_name, "readOnly": v.read_only}}
    if v.host_path:
        return {"hostPath": {"path": v.host_path.path, "type": "Directory"}}
    if v.nfs:
        return {"nfs": {"server": v.nfs.server, "path": v.nfs.path, "readOnly": v.read_only}}
    assert v.image is not None  # the API guarantees exactly one source
    return {"image": v.image.to_api()}


def _volumes(spec: SGLangDeploymentSpec) -> tuple[list[dict], list[dict]]:
    volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.resources.shared_memory}}]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]
    own = [("model", spec.model.volume)]
    if spec.speculative is not None and spec.speculative.draft_model is not None:
        own.append(("draft-model", spec.speculative.draft_model.volume))
    for name, v in own:
        if v is not None:
            volumes.append({"name": name, **_model_volume(v)})
            mounts.append({"name": name, "mountPath": v.mount_path, "readOnly": v.read_only})
    hub_vols, hub_mounts = hub_volumes(spec)
    return volumes + hub_vols, mounts + hub_mounts


def _security(spec: SGLangDeploymentSpec) -> tuple[dict, dict]:
    """(pod, container) security contexts: no privilege escalation, no capabilities, non-root where
    the image allows it (upstream SGLang images run as root)."""
    pod: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    uid = engine_of(spec).run_as_user
    if uid is not None:
        pod.update(runAsNonRoot=True, runAsUser=uid, runAsGroup=uid, fsGroup=uid)
    container = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return pod, container


def _container(spec: SGLangDeploymentSpec, role: str, mounts: list[dict], security: dict) -> dict[str, Any]:
    command, args = container_command(spec)
    ports = [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}]
    if role == LEADER and spec.parallelism.group_size > 1:
        ports.append({"name": "dist-init", "containerPort": DIST_INIT_PORT, "protocol": "TCP"})
    c: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or engine_of(spec).default_image,
        "command": command,
        "args": args,
    }
    if spec.image_pull_policy:
        c["imagePullPolicy"] = spec.image_pull_policy
    env = [e.to_api() for e in spec.env]
    if role == LEADER and spec.api_key_secret is not None:
        # Only the leader serves the API. From the Secret at container start: never in argv.
        ref = spec.api_key_secret
        env.append({"name": API_KEY_ENV, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    if env:
        c["env"] = env
    c.update(
        ports=ports,
        resources=resources(spec),
        volumeMounts=mounts,
        **(leader_probes(spec) if role == LEADER else worker_probes(spec)),
        securityContext=security,
    )
    if spec.rollout.drain_seconds > 0:
        # Native sleep action: no shell or `sleep` binary needed in the image.
        c["lifecycle"] = {"preStop": {"sleep": {"seconds": spec.rollout.drain_seconds}}}
    return c


def image_pull_secrets(spec: SGLangDeploymentSpec) -> list[dict[str, str]]:
    return [{"name": r.name} for r in spec.image_pull_secrets or ()]


def pod_template(name: str, spec: SGLangDeploymentSpec, role: str) -> dict[str, Any]:
    volumes, mounts = _volumes(spec)
    pod_security, container_security = _security(spec)
    s = spec.scheduling
    pod_spec: dict[str, Any] = {}
    if (download := download_container(spec, container_security)) is not None:
        pod_spec["initContainers"] = [download]  # every pod: workers load their own shards
    pod_spec |= {
        "containers": [_container(spec, role, mounts, container_security)],
        "volumes": volumes,
        "terminationGracePeriodSeconds": spec.rollout.termination_grace_period_seconds,
        # Service env vars would leak into the runtime (a Service named "sglang" sets SGLANG_PORT).
        "enableServiceLinks": False,
        "securityContext": pod_security,
    }
    if s.node_selector:
        pod_spec["nodeSelector"] = _sorted(s.node_selector)
    if s.tolerations:
        pod_spec["tolerations"] = [t.to_api() for t in s.tolerations]
    if s.affinity:
        pod_spec["affinity"] = s.affinity
    if s.priority_class_name:
        pod_spec["priorityClassName"] = s.priority_class_name
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = image_pull_secrets(spec)
    metadata: dict[str, Any] = {"labels": pod_labels(name, spec.engine, role)}
    if role == LEADER:
        metadata["annotations"] = {
            "prometheus.io/path": "/metrics",
            "prometheus.io/port": str(SERVER_PORT),
            "prometheus.io/scrape": "true",
        }
    return {"metadata": metadata, "spec": pod_spec}
