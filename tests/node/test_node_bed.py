"""The node test bed itself: a real node that runs our images without pulling anything, pods that
reach the API server under their own ServiceAccount and resolve cluster DNS, kwok GPU nodes."""
from __future__ import annotations

import json
import textwrap

from kubernetes import client

from tests.cluster.node import KWOK_TAINT, NODE_NAME
from tests.support.waiting import wait_for

# Runs inside a pod of the operator image (python + httpx): DNS, then the API server with the
# pod's own ServiceAccount token, through the `kubernetes` Service.
IN_POD = textwrap.dedent("""
    import json, socket, ssl, httpx
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    token = open(f"{sa}/token").read()
    ip = socket.getaddrinfo("kubernetes.default.svc.cluster.local", 443)[0][4][0]
    ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
    r = httpx.post("https://kubernetes.default.svc/apis/authentication.k8s.io/v1/selfsubjectreviews",
                   json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                   headers={"Authorization": f"Bearer {token}"}, verify=ctx, timeout=10)
    print(json.dumps({"kubernetes_ip": ip, "status": r.status_code,
                      "user": r.json().get("status", {}).get("userInfo", {}).get("username")}))
""")


def test_real_node_is_ready_without_taints(node, node_api):
    n = client.CoreV1Api(node_api).read_node(NODE_NAME)
    assert {c.type: c.status for c in n.status.conditions}["Ready"] == "True"
    assert not [t for t in (n.spec.taints or []) if t.key.startswith("node.kubernetes.io/")]
    assert n.status.node_info.kubelet_version == "v1.36.3"
    assert n.status.node_info.container_runtime_version.startswith("containerd://")


def test_kwok_nodes_offer_gpus(node, node_api):
    nodes = [n for n in client.CoreV1Api(node_api).list_node().items if n.metadata.name.startswith("kwok-gpu-")]
    assert len(nodes) == node.kwok_gpu_nodes
    for n in nodes:
        assert n.status.allocatable["nvidia.com/gpu"] == "8"
        assert {c.type: c.status for c in n.status.conditions}["Ready"] == "True"
        assert any(t.key == KWOK_TAINT["key"] for t in n.spec.taints)


def test_pod_reaches_api_server_as_its_service_account_through_cluster_dns(node, node_api, node_ns):
    image = node.images["sglang-operator"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
           "spec": {"restartPolicy": "Never", "nodeName": None,
                    "containers": [{"name": "probe", "image": image, "imagePullPolicy": "Never",
                                    "command": ["python", "-c", IN_POD],
                                    "securityContext": {"allowPrivilegeEscalation": False,
                                                        "capabilities": {"drop": ["ALL"]}}}]}}
    del pod["spec"]["nodeName"]  # the scheduler places it
    core = client.CoreV1Api(node_api)
    # the ServiceAccount admission needs the namespace's default account, which a controller makes
    wait_for(lambda: core.read_namespaced_service_account("default", node_ns), timeout=30,
             ignore=lambda e: getattr(e, "status", None) == 404, what="default ServiceAccount")
    core.create_namespaced_pod(node_ns, pod)
    done = wait_for(lambda: (p := core.read_namespaced_pod("probe", node_ns)).status.phase in ("Succeeded", "Failed")
                    and p, timeout=120, what="probe pod to finish")
    logs = core.read_namespaced_pod_log("probe", node_ns)  # API server -> kubelet, with its client cert
    assert done.status.phase == "Succeeded", logs
    assert done.spec.node_name == NODE_NAME
    out = json.loads(logs.strip().splitlines()[-1])
    assert out == {"kubernetes_ip": "10.96.0.1", "status": 201,
                   "user": f"system:serviceaccount:{node_ns}:default"}


def test_nothing_was_pulled(node):
    log = (node.workdir / "logs" / "containerd.log").read_text(errors="replace")
    assert "PullImage" not in log
