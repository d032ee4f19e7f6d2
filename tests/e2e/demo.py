"""`make demo`: a real fleet on this machine, run by the operator that `helm install` put in the
local cluster.

Starts the local cluster (tests/cluster/node.py: control plane, a real node, the LWS controller,
CoreDNS), writes a tiny checkpoint where the node's pods read it, installs the operator with helm
(the image `make images` built), applies a dp=2 fleet with the built-in autoscaler and a tp=2 group
(two pods), waits until both are Ready while showing `kubectl get sgld`, sends chat requests
through each fleet's Service and prints the answers, runs a short load that makes the autoscaler
add a group and later remove it, then tears everything down. `KEEP=1 make demo` leaves it running
and prints how to use it.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import httpx
import yaml

from tests.cluster.dev import STATE
from tests.cluster.node import NodeCluster
from tests.support import fleet

NS = "demo"


def step(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def manifests(bed: NodeCluster, models: str) -> list[dict]:
    chat = fleet.cpu_fleet("chat", bed.images["radix-runtime"], models, dp=2,
                           runtime_args=["--max-running-requests", "1"])
    chat["spec"]["autoscaling"] = {
        "enabled": True, "minReplicas": 1, "maxReplicas": 3, "targetPerReplica": 1, "pollIntervalSeconds": 2,
        "scaleUp": {"stabilizationWindowSeconds": 0}, "scaleDown": {"stabilizationWindowSeconds": 20}}
    tp2 = fleet.cpu_fleet("tp2", bed.images["radix-runtime"], models, tp=2, dp=1)
    fast = {"startup": {"periodSeconds": 2, "failureThreshold": 150}, "readiness": {"periodSeconds": 5}}
    for doc in (chat, tp2):
        doc["spec"]["probes"] = fast
    return [chat, tp2]


def load(url: str, stop: threading.Event, clients: int = 6) -> None:
    def run():
        with httpx.Client(timeout=120) as c:
            while not stop.is_set():
                try:
                    c.post(f"{url}/generate", json={"input_ids": fleet.PROMPT_IDS, "sampling_params": {
                        "max_new_tokens": 64, "temperature": 0, "ignore_eos": True}})
                except httpx.HTTPError:
                    time.sleep(0.2)
    threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()


def replicas(bed: NodeCluster, name: str) -> int:
    return int(fleet.sgld(bed, NS, name).get("status", {}).get("replicas") or 0)


def main() -> int:
    keep = os.environ.get("KEEP") == "1"
    t0 = time.monotonic()
    if not bed_images_ready():
        print("make demo: no images yet; `make images` builds them (make demo runs it first)", file=sys.stderr)
        return 1
    step("starting the local cluster (control plane, real node, LWS controller, CoreDNS)")
    workdir = STATE if keep else Path(os.environ.get("TMPDIR", "/tmp")) / f"sglang-fleet-demo-{os.getpid()}"
    if keep and (STATE / "holder.pid").exists():
        print(f"a dev cluster is running in {STATE}: `make dev-cluster-down` first", file=sys.stderr)
        return 1
    bed = NodeCluster(workdir, detached=keep, kwok_gpu_nodes=0)
    bed.start()
    try:
        step("writing a tiny random-weight checkpoint where the node's pods read it")
        fleet.write_tiny_model(bed.share_dir)
        models = f"{bed.share_pod_path}/models"
        print(f"  {bed.share_dir / 'models'} (pods: hostPath {models})")

        step(f"helm install sglang-operator charts/sglang-operator (image {bed.images['sglang-operator']})")
        fleet.install_operator(bed)
        print(fleet.kubectl(bed, "get", "pods", "-n", "sglang-system").rstrip())

        step("kubectl apply: a dp=2 fleet with the autoscaler (chat) and a tp=2 group over two pods (tp2)")
        fleet.kubectl(bed, "create", "namespace", NS)
        docs = manifests(bed, models)
        path = bed.workdir / "demo-fleets.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        print(fleet.kubectl(bed, "apply", "-n", NS, "-f", str(path)).rstrip())

        step("waiting until both are Ready (model load in the pods, probes, status)")
        fleet.watch_table(bed, NS, lambda: all(fleet.condition(fleet.sgld(bed, NS, d["metadata"]["name"]))
                                               .get("status") == "True" for d in docs), timeout=600)
        print(fleet.kubectl(bed, "get", "pods", "-n", NS, "-o", "wide").rstrip())

        step("chat through each fleet's Service")
        for name in ("chat", "tp2"):
            url = fleet.service_url(bed, NS, name)
            for q in ("What is a radix tree?", "Say hello to Kubernetes."):
                answer = fleet.chat(url, q)["choices"][0]["message"]["content"]
                print(f"  [{name} @ {url}] {q!r} -> {answer!r}")
        print("  (random weights: the words are noise; the tokens come from the real model code)")

        step("a short load on chat: the autoscaler adds a group (queue > 1 per group)...")
        stop = threading.Event()
        load(fleet.service_url(bed, NS, "chat"), stop)
        try:
            fleet.watch_table(bed, NS, lambda: replicas(bed, "chat") >= 3
                              and fleet.sgld(bed, NS, "chat")["status"].get("readyReplicas", 0) >= 3, timeout=300)
        finally:
            stop.set()
        step("...and removes groups once the load stops (after its 20 s scale-down window)")
        fleet.watch_table(bed, NS, lambda: replicas(bed, "chat") == 1, timeout=300)
        print(fleet.kubectl(bed, "get", "events", "-n", NS, "--field-selector", "reason=Autoscaled").rstrip())

        if keep:
            kubectl = bed.bins.kubectl
            print(f"""
== left running (KEEP=1), {time.monotonic() - t0:.0f}s after the start. Try:
  export KUBECONFIG={bed.kubeconfig}
  {kubectl} get sgld -n {NS} -o wide
  {kubectl} get pods -A -o wide
  curl -s {fleet.service_url(bed, NS, 'chat')}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{{"model": "tiny", "messages": [{{"role": "user", "content": "hi"}}], "max_tokens": 8}}'
  {kubectl} scale sgld/tp2 -n {NS} --replicas=2
Stop it (and put the host back as it was): make dev-cluster-down""")
            return 0
        step("tearing down")
        fleet.kubectl(bed, "delete", "namespace", NS, "--wait=false")
        fleet.helm(bed, "uninstall", "sglang-operator", "-n", "sglang-system")
    finally:
        if not keep:
            bed.stop()
    print(f"\ndemo done in {time.monotonic() - t0:.0f}s; the host is as it was")
    return 0


def bed_images_ready() -> bool:
    from tests.cluster.node import built_images
    return {"radix-runtime", "sglang-operator"} <= set(built_images())


if __name__ == "__main__":
    sys.exit(main())
