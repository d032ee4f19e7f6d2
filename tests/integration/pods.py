"""Pods as the LWS controller and the kubelet would leave them, for a control plane without either:
created with the labels LWS's pod webhook sets (and ours, from the rendered template), readiness set
through the pods' /status subresource as a kubelet reports it.

Their controller is the LeaderWorkerSet itself (really its StatefulSets, which nothing here would
keep from making pods of their own): our PDB selects them, and the disruption controller needs a
controller with a scale subresource, else it re-posts a NoControllers warning every resync. It
knows the LWS kind only after its first discovery rescan (up to 30 s after the control plane
starts); until then it fails, and retries only on the next pod or PDB event, so a test that
counts writes has it count the pods first (pdb_counted)."""
from __future__ import annotations

import itertools

from sglang_operator.api.lws import (LWS_API_VERSION, LWS_GROUP_INDEX_LABEL, LWS_KIND, LWS_NAME_LABEL,
                                     LWS_TEMPLATE_REVISION_LABEL, LWS_WORKER_INDEX_LABEL)
from sglang_operator.render.labels import DEPLOYMENT_LABEL, lws_name

from tests.support.kube import Api, wait_for_api


def create_group(api: Api, name: str, group: int = 0, size: int = 1, *, ready: bool = False,
                 init_containers: tuple[str, ...] = ()) -> list[str]:
    """The pods of group `group` of the SGLangDeployment `name` (LWS's names: leader `<lws>-<g>`,
    workers `<lws>-<g>-<w>`), with the given readiness (and init containers of these names); their names."""
    names, lws = [], api.lws(name)
    owner = {"apiVersion": LWS_API_VERSION, "kind": LWS_KIND, "name": lws["metadata"]["name"],
             "uid": lws["metadata"]["uid"], "controller": True}
    for worker in range(size):
        pod = f"{lws_name(name)}-{group}" + (f"-{worker}" if worker else "")
        labels = {DEPLOYMENT_LABEL: name, LWS_NAME_LABEL: lws_name(name), LWS_GROUP_INDEX_LABEL: str(group),
                  LWS_WORKER_INDEX_LABEL: str(worker), LWS_TEMPLATE_REVISION_LABEL: "test"}
        api.core.create_namespaced_pod(api.ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": pod, "labels": labels, "ownerReferences": [owner]}, "spec": {
            "containers": [{"name": "runtime", "image": "sglang:test"}],
            **({"initContainers": [{"name": c, "image": "sglang:test"} for c in init_containers]} if init_containers else {})}})
        set_ready(api, pod, ready)
        names.append(pod)
    return names


def set_ready(api: Api, pod: str, ready: bool) -> None:
    """What the kubelet writes when the pod's readiness probe starts or stops passing."""
    status = "True" if ready else "False"
    api.core.patch_namespaced_pod_status(pod, api.ns, {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": status}, {"type": "ContainersReady", "status": status}]}})


def set_ip(api: Api, pod: str, ip: str) -> None:
    """The pod IP the kubelet reports once the sandbox is up (the router's worker URL)."""
    api.core.patch_namespaced_pod_status(pod, api.ns, {"status": {"podIP": ip, "podIPs": [{"ip": ip}]}})


def pdb_counted(api: Api, name: str, pods: list[str]) -> None:
    """Wait until the disruption controller has counted `pods` (all Ready) under our PDB, touching
    one (an annotation) each second to make it retry: from then on it writes the PDB's status only
    when a pod's health changes."""
    touches = itertools.count(1)

    def counted() -> bool:
        st = (api.pdb(name) or {}).get("status") or {}
        if st.get("expectedPods") and st.get("currentHealthy") == len(pods):
            return True
        api.core.patch_namespaced_pod(pods[0], api.ns, {"metadata": {"annotations": {"test/touch": str(next(touches))}}})
        return False

    wait_for_api(counted, timeout=60, interval=1, what=f"the disruption controller to count the pods under PDB {name}")
