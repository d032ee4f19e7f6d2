"""The GPU-shaped examples, scheduled for real: the scheduler and the LWS controller place tp=16
(two 8-GPU pods per group, one rack per group) and pp=2 x dp=2 on kwok nodes with 8 GPUs each, and
the pods carry the env and labels the runtime's launcher reads."""
from __future__ import annotations

import collections

import yaml
from kubernetes import client

from tests.cluster.controlplane import REPO
from tests.cluster.node import KWOK_TAINT
from tests.support.waiting import wait_for

GROUP, VERSION, PLURAL = "sglangfleet.dev", "v1alpha1", "sglangdeployments"
LWS_LABEL = "leaderworkerset.sigs.k8s.io"
RACK = "topology.kubernetes.io/rack"


def example_on_kwok(name: str) -> dict:
    """An example as written, plus the toleration for the kwok nodes' taint."""
    doc = yaml.safe_load((REPO / "examples" / name).read_text())
    sched = doc["spec"].setdefault("scheduling", {})
    sched.setdefault("tolerations", []).append({"key": KWOK_TAINT["key"], "operator": "Exists",
                                                "effect": "NoSchedule"})
    return doc


def label_kwok_nodes(core: client.CoreV1Api) -> list[str]:
    """GPU product and rack labels, as a GPU cluster has them: two nodes per rack."""
    names = sorted(n.metadata.name for n in core.list_node(label_selector="type=kwok").items)
    for i, name in enumerate(names):
        core.patch_node(name, {"metadata": {"labels": {
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", RACK: f"rack-{i // 2}"}}})
    return names


def pvc_bound_to_a_volume(core: client.CoreV1Api, ns: str, name: str) -> None:
    """The tp16 example mounts a PersistentVolumeClaim; a pre-bound PV lets the scheduler place it."""
    pv = f"{ns}-{name}"
    core.create_persistent_volume({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
                                   "spec": {"capacity": {"storage": "1Ti"}, "accessModes": ["ReadOnlyMany"],
                                            "storageClassName": "", "hostPath": {"path": "/models"},
                                            "claimRef": {"namespace": ns, "name": name}}})
    core.create_namespaced_persistent_volume_claim(ns, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": pv,
                 "resources": {"requests": {"storage": "1Ti"}}}})


def running_pods(core, ns: str, name: str, count: int) -> list:
    def check():
        pods = core.list_namespaced_pod(ns, label_selector=f"{LWS_LABEL}/name={name}").items
        return len(pods) == count and all(p.status.phase == "Running" for p in pods) and pods
    try:
        return wait_for(check, timeout=120, interval=0.5, what=f"{count} Running pods of {name}")
    except AssertionError as e:  # say why: each pod's phase and conditions, the namespace's warnings
        raise AssertionError(f"{e}\n{pods_and_warnings(core, ns)}") from None


def pods_and_warnings(core, ns: str) -> str:
    lines = []
    for p in core.list_namespaced_pod(ns).items:
        conds = "; ".join(f"{c.type}={c.status} {c.reason or ''} {c.message or ''}".strip()
                          for c in p.status.conditions or [])
        lines.append(f"pod {p.metadata.name}: {p.status.phase} on {p.spec.node_name}: {conds}")
    for ev in core.list_namespaced_event(ns).items:
        if ev.type == "Warning":
            lines.append(f"event {ev.involved_object.kind}/{ev.involved_object.name}: {ev.reason}: {ev.message}")
    return "\n".join(lines) or "no pods, no warnings"


def env_of(pod) -> dict[str, str]:
    return {e.name: e.value for e in pod.spec.containers[0].env or [] if e.value is not None}


def test_gpu_shaped_examples_are_scheduled_on_gpu_nodes(node, node_api, node_ns, operator_on_host):
    core = client.CoreV1Api(node_api)
    nodes = label_kwok_nodes(core)
    assert len(nodes) >= 6, "tp16 (2 pods) and pp2 x dp2 (4 pods) need six 8-GPU nodes"
    custom = client.CustomObjectsApi(node_api)
    wait_for(lambda: core.read_namespaced_service_account("default", node_ns), timeout=30,
             ignore=lambda e: getattr(e, "status", None) == 404, what="default ServiceAccount")
    pvc_bound_to_a_volume(core, node_ns, "models-405b")
    for example in ("multinode-tp16.yaml", "pipeline-pp2.yaml"):
        custom.create_namespaced_custom_object(GROUP, VERSION, node_ns, PLURAL, example_on_kwok(example))

    # tp=16: one group of two 8-GPU pods, both in one rack, on different nodes
    tp = running_pods(core, node_ns, "llama-405b", 2)
    by_index = {p.metadata.labels[f"{LWS_LABEL}/worker-index"]: p for p in tp}
    assert sorted(by_index) == ["0", "1"]
    assert len({p.spec.node_name for p in tp}) == 2
    racks = {core.read_node(p.spec.node_name).metadata.labels[RACK] for p in tp}
    assert len(racks) == 1
    for idx, pod in by_index.items():
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "8"
        env = env_of(pod)
        assert env["LWS_GROUP_SIZE"] == "2" and env["LWS_WORKER_INDEX"] == idx
        assert env["LWS_LEADER_ADDRESS"] == f"llama-405b-0.llama-405b.{node_ns}"
        assert pod.metadata.labels[f"{LWS_LABEL}/group-index"] == "0"
    assert "--tp-size" in " ".join(by_index["0"].spec.containers[0].args or by_index["0"].spec.containers[0].command)

    # pp=2, dp=2: two groups of two pods, four nodes
    pp = running_pods(core, node_ns, "qwen-72b-pp", 4)
    groups = collections.Counter(p.metadata.labels[f"{LWS_LABEL}/group-index"] for p in pp)
    assert groups == {"0": 2, "1": 2}
    assert len({p.spec.node_name for p in pp}) == 4
    assert all(p.spec.node_name.startswith("kwok-gpu-") for p in tp + pp)

    # the status follows the pods kwok reports Ready
    def ready(name):
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, node_ns, PLURAL, name)
        conds = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
        return conds.get("Ready") == "True" and obj["status"].get("readyReplicas") == obj["spec"]["parallelism"]["dp"]
    wait_for(lambda: ready("llama-405b") and ready("qwen-72b-pp"), timeout=60, interval=0.5,
             what="both deployments Ready")
