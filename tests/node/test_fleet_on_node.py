"""What the operator renders, run for real: an SGLangDeployment of the bundled runtime on CPU becomes
a LeaderWorkerSet, StatefulSets and pods on the real node, turns Ready through the rendered probes,
and answers through its Service; a tp=2 group spans two pods that find their leader through DNS."""
from __future__ import annotations

import httpx
from kubernetes import client

from tests.cluster.node import NODE_NAME
from tests.support import fleet

GROUP, VERSION, PLURAL = "sglangfleet.dev", "v1alpha1", "sglangdeployments"


def test_cpu_fleet_runs_on_the_node_and_answers_through_its_service(
        node, node_api, node_ns, tiny_model_on_node, operator_on_host):
    body = fleet.cpu_fleet("tiny", node.images["radix-runtime"], tiny_model_on_node, dp=1)
    client.CustomObjectsApi(node_api).create_namespaced_custom_object(GROUP, VERSION, node_ns, PLURAL, body)
    fleet.wait_ready(node, node_ns, "tiny")

    # the LWS controller made a StatefulSet and a pod that runs on the real node
    sts = client.AppsV1Api(node_api).list_namespaced_stateful_set(node_ns).items
    assert [s.metadata.name for s in sts] == ["tiny"]
    pods = fleet.lws_pods(node, node_ns, "tiny")
    assert len(pods) == 1 and pods[0].spec.node_name == NODE_NAME
    status = pods[0].status.container_statuses[0]
    assert status.ready and status.image.endswith(node.images["radix-runtime"].split("/", 1)[1])
    env = {e.name: e.value for e in pods[0].spec.containers[0].env or []}
    assert env["LWS_GROUP_SIZE"] == "1" and env["LWS_WORKER_INDEX"] == "0"

    # chat through the Service (kube-proxy's rules, from the host)
    url = fleet.service_url(node, node_ns, "tiny")
    r = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
        "model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8, "temperature": 0})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] is not None
    assert r.json()["usage"]["completion_tokens"] > 0

    # the printer columns tell the story
    out = fleet.get_sgld(node, node_ns, "tiny")
    (columns,) = fleet.printer_columns(out)
    assert columns["READY"] == "1" and columns["REPLICAS"] == "1" and columns["STATUS"] == "AllGroupsReady", out
    single = fleet.generate(url)

    # a tp=2 group spans two pods: the worker finds its leader by the LWS DNS name
    tp = fleet.cpu_fleet("tiny-tp2", node.images["radix-runtime"], tiny_model_on_node, tp=2, dp=1)
    client.CustomObjectsApi(node_api).create_namespaced_custom_object(GROUP, VERSION, node_ns, PLURAL, tp)
    fleet.wait_ready(node, node_ns, "tiny-tp2")
    pods = sorted(fleet.lws_pods(node, node_ns, "tiny-tp2"), key=lambda p: p.metadata.name)
    assert len(pods) == 2 and all(p.status.phase == "Running" for p in pods)
    worker_env = {e.name: e.value for e in pods[1].spec.containers[0].env or []}
    assert worker_env["LWS_LEADER_ADDRESS"] == f"tiny-tp2-0.tiny-tp2.{node_ns}"
    assert worker_env["LWS_WORKER_INDEX"] == "1"
    assert fleet.generate(fleet.service_url(node, node_ns, "tiny-tp2")) == single


def test_images_come_from_make_images_not_a_registry(node):
    """Both images of this checkout are in the node's containerd, and no pod event says Pulling."""
    out = node.ctr("images", "list", "-q").stdout.split()
    assert node.images["radix-runtime"] in out and node.images["sglang-operator"] in out
    events = node.kubectl("get", "events", "-A", "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert "Pulling" not in events and "Failed" not in events
