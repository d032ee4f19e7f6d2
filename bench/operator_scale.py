"""`python -m bench.operator_scale`: the operator at scale on the node test bed.

N SGLangDeployments (one single-pod group each, on kwok nodes) are created before the operator
starts; then the operator runs and we measure
  - the time until every one is converged (children applied and status written for the current
    generation), and until every one is Ready (pods scheduled and Ready on kwok nodes, through the
    LWS controller and the StatefulSet controller);
  - the operator's peak RSS (VmHWM);
  - the operator's API writes during a quiet minute after convergence (its own write counter);
  - the reconcile passes by trigger and the reconciler's API requests by method until then (the
    API server is what a pass waits on);
  - the API server's time spent allocating ClusterIPs until convergence: every object needs a
    Service with a cluster IP, and the API server allocates them in effect one at a time.
Not a test: the numbers depend on the machine. Needs root (the node bed). Results: a table on
stdout and a JSON file.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from kubernetes import client

from tests.cluster.controlplane import REPO
from tests.cluster.node import KWOK_TAINT, NodeCluster
from tests.support.net import free_port

GROUP, VERSION, PLURAL = "sglangfleet.dev", "v1alpha1", "sglangdeployments"


def manifest(i: int) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SGLangDeployment", "metadata": {"name": f"s{i:04d}"},
            "spec": {"model": {"path": "/models/tiny"}, "image": "localhost/sglang-fleet/none:scale",
                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"nvidia.com/gpu": 0}},
                     "scheduling": {"tolerations": [{"key": KWOK_TAINT["key"], "operator": "Exists",
                                                     "effect": "NoSchedule"}]}}}


def create_all(api, ns: str, n: int, workers: int = 16) -> None:
    custom = client.CustomObjectsApi(api)
    todo = list(range(n))
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest(i))
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def state(o: dict) -> tuple[bool, bool]:
    """(converged, ready): children applied and status written for the current generation."""
    st = o.get("status") or {}
    conv = st.get("observedGeneration") == o["metadata"]["generation"] and bool(st.get("conditions"))
    return conv, conv and any(c["type"] == "Ready" and c["status"] == "True" for c in st["conditions"])


class Tally:
    """(converged, ready) counts kept from a watch: a LIST of 1,000 objects every 2 s would load the
    API server the operator is being measured against."""

    def __init__(self, api, ns: str):
        self.api, self.ns, self._by_name = api, ns, {}
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        from kubernetes import watch

        custom = client.CustomObjectsApi(self.api)
        while not self._stop.is_set():
            listed = custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL)
            self._by_name = {o["metadata"]["name"]: state(o) for o in listed["items"]}
            try:
                for ev in watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION, self.ns,
                                               PLURAL, resource_version=listed["metadata"]["resourceVersion"],
                                               timeout_seconds=60):
                    o = ev["object"]
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self._by_name[o["metadata"]["name"]] = state(o)
                    elif ev["type"] == "DELETED":
                        self._by_name.pop(o["metadata"]["name"], None)
                    if self._stop.is_set():
                        return
            except Exception:  # noqa: BLE001 - expired or dropped watch: list again
                time.sleep(1)

    def counts(self) -> tuple[int, int]:
        states = list(self._by_name.values())
        return sum(c for c, _ in states), sum(r for _, r in states)

    def stop(self) -> None:
        self._stop.set()


def metric_sum(metrics_url: str, name: str, by: str | None = None) -> float | dict[str, float]:
    """The sum of a counter's samples, or sums per value of the label `by`."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(metrics_url, timeout=60).text  # a busy operator answers slowly
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                key = s.labels.get(by, "") if by else ""
                out[key] = out.get(key, 0.0) + s.value
    return out if by else out.get("", 0.0)


def clusterip_allocation(api) -> dict:
    """The API server's ClusterIP allocations so far: count and seconds spent. It allocates them in
    effect one at a time (on an idle control plane here, 300 Services are created at ~85/s by 4
    clients and by 24 alike), so their total time is a floor under the convergence of N objects
    that each need a Service with a cluster IP."""
    from prometheus_client.parser import text_string_to_metric_families

    resp = api.call_api("GET", f"{api.configuration.host}/metrics", header_params={"Accept": "text/plain"})
    resp.read()
    out = {"count": 0.0, "seconds": 0.0}
    for fam in text_string_to_metric_families(resp.data.decode()):
        for smp in fam.samples:
            if smp.name == "kube_apiserver_clusterip_allocator_allocation_duration_seconds_count":
                out["count"] += smp.value
            elif smp.name == "kube_apiserver_clusterip_allocator_allocation_duration_seconds_sum":
                out["seconds"] += smp.value
    return {k: round(v, 1) for k, v in out.items()}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(n: int, nodes: int, quiet: float, workdir: Path, wait: float = 420) -> dict:
    bed = NodeCluster(workdir, kwok_gpu_nodes=nodes, import_images=False).start()
    try:
        api = bed.api_client()
        ns = "scale"
        client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
        t0 = time.monotonic()
        create_all(api, ns, n)
        print(f"created {n} SGLangDeployments in {time.monotonic() - t0:.1f}s", file=sys.stderr)
        port = free_port()
        log = open(workdir / "operator.log", "wb")
        op = subprocess.Popen([sys.executable, "-m", "sglang_operator.cli", "run", "--all-namespaces",
                               f"--metrics-port={port}", "--metrics-addr=127.0.0.1", "--log-format=plain"],
                              stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                              env={**os.environ, "KUBECONFIG": str(bed.kubeconfig)})
        try:
            tally = Tally(api, ns)
            t_start, t_conv, t_ready, alloc = time.monotonic(), None, None, None
            conv = ready = 0
            while t_ready is None and time.monotonic() - t_start < wait:
                conv, ready = tally.counts()
                now = time.monotonic() - t_start
                if t_conv is None and conv == n:
                    t_conv = now
                    alloc = clusterip_allocation(api)
                if ready == n:
                    t_ready = now
                print(f"  {now:6.1f}s converged {conv}/{n} ready {ready}/{n}", file=sys.stderr, flush=True)
                time.sleep(1)
            tally.stop()
            metrics = f"http://127.0.0.1:{port}/metrics"
            passes = metric_sum(metrics, "sglang_operator_reconciles_total", by="kind")
            requests = metric_sum(metrics, "sglang_operator_api_requests_total", by="method")
            w0 = metric_sum(metrics, "sglang_operator_api_writes_total")
            time.sleep(quiet)
            quiet_writes = metric_sum(metrics, "sglang_operator_api_writes_total") - w0
            rss = peak_rss_mb(op.pid)
        finally:
            op.terminate()
            try:
                op.wait(timeout=30)
            except subprocess.TimeoutExpired:
                op.kill()
                op.wait()
        return {"deployments": n, "kwok_nodes": nodes, "converged_s": t_conv, "ready_s": t_ready,
                "converged_at_end": conv, "ready_at_end": ready,
                "operator_peak_rss_mb": round(rss, 1), "quiet_window_s": quiet, "writes_in_quiet_window": quiet_writes,
                "passes_by_trigger": passes, "api_requests_by_method": requests,
                "clusterip_allocation_until_converged": alloc}
    finally:
        bed.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.operator_scale", description=__doc__.splitlines()[0])
    p.add_argument("--deployments", type=int, default=1000)
    p.add_argument("--kwok-nodes", type=int, default=12, help="fake nodes (110 pods each)")
    p.add_argument("--quiet-seconds", type=float, default=60)
    p.add_argument("--wait-seconds", type=float, default=420, help="give up waiting for convergence/readiness")
    p.add_argument("--out", default=os.path.join(
        os.environ.get("SGLANG_FLEET_CACHE", os.path.expanduser("~/.cache/sglang-fleet")), "bench", "operator_scale.json"))
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="operator-scale-") as d:
        try:
            r = run(a.deployments, a.kwok_nodes, a.quiet_seconds, Path(d), a.wait_seconds)
        finally:  # the operator's log outlives the bed: where its passes went
            log = Path(a.out).with_suffix(".log")
            log.parent.mkdir(parents=True, exist_ok=True)
            if (Path(d) / "operator.log").exists():
                shutil.copyfile(Path(d) / "operator.log", log)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(r, indent=2))
    print("| deployments | all converged (s) | all Ready (s) | Ready at the end | operator peak RSS (MB) | "
          "operator writes in a quiet minute |")
    print("|---|---|---|---|---|---|")
    print(f"| {r['deployments']} | {r['converged_s']} | {r['ready_s']} | {r['ready_at_end']} | "
          f"{r['operator_peak_rss_mb']} | {r['writes_in_quiet_window']:.0f} |")
    print("reconcile passes until Ready, by trigger: " +
          ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["passes_by_trigger"].items())))
    reqs = r["api_requests_by_method"]
    print(f"reconciler API requests until Ready: {sum(reqs.values()):.0f} ({sum(reqs.values()) / r['deployments']:.1f} "
          "per object): " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(reqs.items())))
    if r["clusterip_allocation_until_converged"]:
        al = r["clusterip_allocation_until_converged"]
        print(f"API server ClusterIP allocations until converged: {al['count']:.0f}, {al['seconds']:.1f} s in all "
              "(allocated in effect one at a time: a floor under the convergence time)")
    print(f"(JSON: {a.out}; the operator's log beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
