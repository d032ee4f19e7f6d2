"""What the operator renders, run for real: an SGLangDeployment of the bundled runtime on CPU becomes
a LeaderWorkerSet, StatefulSets and pods on the real node, turns Ready through the rendered probes,
and answers through its Service; a tp=2 group spans two pods that find their leader through DNS."""
from __future__ import annotations

import subprocess

import httpx
import yaml
from kubernetes import client

from tests.cluster.controlplane import REPO
from tests.cluster.node import NODE_NAME
from tests.support.waiting import wait_for

GROUP, VERSION, PLURAL = "sglangfleet.dev", "v1alpha1", "sglangdeployments"
LWS = ("leaderworkerset.x-k8s.io", "v1", "leaderworkersets")
PROMPT_IDS = [5, 17, 33, 2, 90, 41, 8]


def cpu_fleet(name: str, image: str, models_dir: str, **parallelism) -> dict:
    """examples/cpu-tiny.yaml as written, pointed at the node's model directory and our image, with
    requests small enough that several pods share the node's two cores."""
    doc = yaml.safe_load((REPO / "examples" / "cpu-tiny.yaml").read_text())
    doc["metadata"]["name"] = name
    spec = doc["spec"]
    spec["image"] = image
    spec["imagePullPolicy"] = "IfNotPresent"
    spec["model"]["volume"]["hostPath"]["path"] = models_dir
    spec["resources"] = {"requests": {"cpu": "100m", "memory": "256Mi"},
                         "limits": {"nvidia.com/gpu": 0, "memory": "3Gi"}, "sharedMemory": "256Mi"}
    spec["parallelism"] = {"gpusPerPod": 1, **parallelism}
    spec["runtimeArgs"] = spec["runtimeArgs"] + ["--max-total-tokens", "4096"]
    return doc


def custom(api) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def ready_condition(api, ns: str, name: str) -> dict:
    obj = custom(api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    conds = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
    return conds.get("Ready", {})


def wait_ready(api, ns: str, name: str, timeout: float = 300) -> dict:
    return wait_for(lambda: (c := ready_condition(api, ns, name)).get("status") == "True" and c, timeout=timeout,
                    interval=1, what=f"{name} Ready (pods, probes, status)")


def generate(url: str) -> list[int]:
    r = httpx.post(f"{url}/generate", timeout=120, json={
        "input_ids": PROMPT_IDS, "sampling_params": {"max_new_tokens": 12, "temperature": 0}})
    r.raise_for_status()
    return r.json()["output_ids"]


def service_url(api, ns: str, name: str) -> str:
    svc = client.CoreV1Api(api).read_namespaced_service(f"{name}-api", ns)
    return f"http://{svc.spec.cluster_ip}:{svc.spec.ports[0].port}"


def printer_columns(table: str) -> dict[str, str]:
    """kubectl's table as {header: cell} for the first row (cells are cut at the headers' offsets,
    so an empty cell stays empty)."""
    header, row = table.splitlines()[:2]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    bounds = list(zip(starts, starts[1:] + [None]))
    return {header[a:b].strip(): row[a:b].strip() for a, b in bounds}


def leader_pods(api, ns: str, name: str) -> list:
    return client.CoreV1Api(api).list_namespaced_pod(
        ns, label_selector=f"leaderworkerset.sigs.k8s.io/name={name}").items


def test_cpu_fleet_runs_on_the_node_and_answers_through_its_service(
        node, node_api, node_ns, tiny_model_on_node, operator_on_host):
    tiny = node.share_dir / "models" / "tiny llama"
    if not tiny.exists():
        (node.share_dir / "models" / "tiny").rename(tiny)
    body = cpu_fleet("tiny", node.images["radix-runtime"], tiny_model_on_node, dp=1)
    custom(node_api).create_namespaced_custom_object(GROUP, VERSION, node_ns, PLURAL, body)
    cond = wait_ready(node_api, node_ns, "tiny")
    assert cond["reason"]

    # the LWS controller made a StatefulSet and a pod that runs on the real node
    sts = client.AppsV1Api(node_api).list_namespaced_stateful_set(node_ns).items
    assert [s.metadata.name for s in sts] == ["tiny"]
    pods = leader_pods(node_api, node_ns, "tiny")
    assert len(pods) == 1 and pods[0].spec.node_name == NODE_NAME
    status = pods[0].status.container_statuses[0]
    assert status.ready and status.image.endswith(node.images["radix-runtime"].split("/", 1)[1])
    env = {e.name: e.value for e in pods[0].spec.containers[0].env or []}
    assert env["LWS_GROUP_SIZE"] == "1" and env["LWS_WORKER_INDEX"] == "0"

    # chat through the Service (kube-proxy's rules, from the host)
    url = service_url(node_api, node_ns, "tiny")
    r = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
        "model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8, "temperature": 0})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] is not None
    assert r.json()["usage"]["completion_tokens"] > 0

    # the printer columns tell the story
    kubectl = [str(node.bins.kubectl), f"--kubeconfig={node.kubeconfig}", "-n", node_ns]
    out = subprocess.run([*kubectl, "get", "sgld", "tiny"], capture_output=True, text=True, check=True).stdout
    columns = printer_columns(out)
    assert columns["READY"] == "1" and columns["REPLICAS"] == "1" and columns["STATUS"] == "AllGroupsReady", out
    single = generate(url)

    # a tp=2 group spans two pods: the worker finds its leader by the LWS DNS name
    tp = cpu_fleet("tiny-tp2", node.images["radix-runtime"], tiny_model_on_node, tp=2, dp=1)
    custom(node_api).create_namespaced_custom_object(GROUP, VERSION, node_ns, PLURAL, tp)
    wait_ready(node_api, node_ns, "tiny-tp2")
    pods = sorted(leader_pods(node_api, node_ns, "tiny-tp2"), key=lambda p: p.metadata.name)
    assert len(pods) == 2 and all(p.status.phase == "Running" for p in pods)
    worker_env = {e.name: e.value for e in pods[1].spec.containers[0].env or []}
    assert worker_env["LWS_LEADER_ADDRESS"] == f"tiny-tp2-0.tiny-tp2.{node_ns}"
    assert worker_env["LWS_WORKER_INDEX"] == "1"
    assert generate(service_url(node_api, node_ns, "tiny-tp2")) == single


def test_images_come_from_make_images_not_a_registry(node):
    """Both images of this checkout are in the node's containerd, and no pod event says Pulling."""
    out = node.ctr("images", "list", "-q").stdout.split()
    assert node.images["radix-runtime"] in out and node.images["sglang-operator"] in out
    events = node.kubectl("get", "events", "-A", "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert "Pulling" not in events and "Failed" not in events
