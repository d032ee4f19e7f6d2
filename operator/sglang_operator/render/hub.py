"""model.hub: the init container that downloads the model, and its volumes (pure).

Every pod of a group runs it, not only the leader: workers load their own shards, and with a
node-local cache (hostPath, emptyDir) a worker on another node has no other way to get the files.
With a shared ReadWriteMany PVC the downloader's lock makes the first pod fetch and the others wait,
then find every file present (a few HEAD requests each).

The download container runs `python -m radix_runtime.fetch_model` from the bundled runtime image
(upstream SGLang images do not carry our module, so engine sglang uses it too). It writes a JSON
termination message ({"reason": ..., "message": ...}) that reconcile/model_download.py reads from the
pod's status.
"""
from __future__ import annotations

import copy
import os
from typing import Any

from ..api.model import HubSource
from ..api.spec import SGLangDeploymentSpec
from .engines import ENGINES, HUB_MODEL_PATH, engine_of, literal

DOWNLOAD_CONTAINER = "model-download"
CACHE_VOLUME, LINK_VOLUME = "model-cache", "model-link"
CACHE_MOUNT = "/var/cache/sglang-fleet"
LINK_DIR = os.path.dirname(HUB_MODEL_PATH)
TERMINATION_LOG = "/dev/termination-log"
FETCH_COMMAND = ("python", "-m", "radix_runtime.fetch_model")


def _cache_volume(hub: HubSource) -> dict[str, Any]:
    c = hub.cache
    if c is None:
        return {"emptyDir": {}}
    if c.persistent_volume_claim:
        return {"persistentVolumeClaim": {"claimName": c.persistent_volume_claim.claim_name}}
    if c.host_path:
        return {"hostPath": {"path": c.host_path.path, "type": "DirectoryOrCreate"}}
    assert c.empty_dir is not None  # the API guarantees exactly one source
    return {"emptyDir": c.empty_dir.to_api()}


def hub_volumes(spec: SGLangDeploymentSpec) -> tuple[list[dict], list[dict]]:
    """(volumes, the server container's mounts): the cache and the per-pod link, both read-only
    for the server."""
    hub = spec.model.hub
    if hub is None:
        return [], []
    volumes = [{"name": CACHE_VOLUME, **_cache_volume(hub)}, {"name": LINK_VOLUME, "emptyDir": {}}]
    mounts = [{"name": CACHE_VOLUME, "mountPath": CACHE_MOUNT, "readOnly": True},
              {"name": LINK_VOLUME, "mountPath": LINK_DIR, "readOnly": True}]
    return volumes, mounts


def _image(spec: SGLangDeploymentSpec, security: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """(image, pull policy, security context). Engine sglang: the bundled image, as root like the
    upstream server itself (which runs as root), so it can write a cache that uid 1000 may not."""
    if spec.engine == "radix":
        return spec.image or engine_of(spec).default_image, spec.image_pull_policy, security
    return ENGINES["radix"].default_image, None, {**security, "runAsUser": 0}


def download_container(spec: SGLangDeploymentSpec, security: dict[str, Any]) -> dict[str, Any] | None:
    hub = spec.model.hub
    if hub is None:
        return None
    image, pull_policy, security = _image(spec, security)
    args = ["--repo-id", literal(hub.id), "--revision", literal(hub.effective_revision),
            "--cache-dir", CACHE_MOUNT, "--link", HUB_MODEL_PATH, "--termination-log", TERMINATION_LOG]
    # The user's env first (proxies, HF_HUB_* knobs), ours last: the kubelet keeps the last of a name.
    env = [e.to_api() for e in spec.env]
    env.append({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    env.append({"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"})
    if hub.endpoint:
        env.append({"name": "HF_ENDPOINT", "value": hub.endpoint})
    if hub.token_secret is not None:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": hub.token_secret.to_api()}})
    c: dict[str, Any] = {"name": DOWNLOAD_CONTAINER, "image": image, "command": list(FETCH_COMMAND), "args": args}
    if pull_policy:
        c["imagePullPolicy"] = pull_policy
    c.update(
        env=env,
        volumeMounts=[{"name": CACHE_VOLUME, "mountPath": CACHE_MOUNT},
                      {"name": LINK_VOLUME, "mountPath": LINK_DIR}],
        terminationMessagePath=TERMINATION_LOG,
        # A crash before the message is written still tells the operator something: the log's tail.
        terminationMessagePolicy="FallbackToLogsOnError",
        securityContext=copy.deepcopy(security),  # the server container has the same dict
    )
    return c
