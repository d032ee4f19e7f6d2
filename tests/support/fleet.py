"""Running a real fleet on the node test bed: manifests of the bundled runtime on CPU, the operator
installed by helm, waiting on what `kubectl get sgld` shows, requests through a fleet's Service.
Shared by tests/node, tests/e2e and `make demo`."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client

from sglang_operator.api.names import GROUP, PLURAL, VERSION

from .waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "sglang-operator"
PROMPT_IDS = [5, 17, 33, 2, 90, 41, 8]


def write_tiny_model(share_dir: Path, name: str = "tiny llama") -> Path:
    """A tiny random-weight checkpoint in the directory the node shares with pods (readable by the
    runtime's uid); returns its host path."""
    out = share_dir / "models" / name
    if not (out / "config.json").exists():
        subprocess.run([sys.executable, "-m", "radix_runtime.tiny_model", "--out", str(out)], check=True, cwd=REPO,
                       stdout=subprocess.DEVNULL)
    for p in [out.parent, out, *out.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return out


def cpu_fleet(name: str, image: str, models_dir: str, *, runtime_args: list[str] = (), **parallelism) -> dict:
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
    spec["runtimeArgs"] = spec["runtimeArgs"] + ["--max-total-tokens", "4096", *runtime_args]
    return doc


def kubectl(bed, *args: str, check: bool = True, input: str | None = None) -> str:
    return bed.kubectl(*args, check=check, input=input).stdout


def helm(bed, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(bed.bins.helm), f"--kubeconfig={bed.kubeconfig}", *args],
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode:
        raise RuntimeError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def install_operator(bed, *, release: str = "sglang-operator", namespace: str = "sglang-system",
                     chart: Path = CHART, extra: list[str] = (), upgrade: bool = False) -> None:
    """`helm install` (or upgrade) of the chart with the operator image `make images` built; waits
    until a replica leads."""
    repo, tag = bed.images["sglang-operator"].rsplit(":", 1)
    helm(bed, "upgrade" if upgrade else "install", release, str(chart), "-n", namespace, "--create-namespace",
         "--set", f"image.repository={repo}", "--set", f"image.tag={tag}", "--set", "logFormat=full",
         "--wait", "--timeout=180s", *extra)
    apps = client.AppsV1Api(bed.api_client())
    wait_for(lambda: (d := apps.read_namespaced_deployment(f"{release}", namespace)).status.updated_replicas
             == d.spec.replicas == d.status.available_replicas, timeout=120, interval=0.5,
             what="the operator Deployment to roll out")
    coordination = client.CoordinationV1Api(bed.api_client())
    wait_for(lambda: coordination.read_namespaced_lease("sglang-operator", namespace).spec.holder_identity,
             timeout=60, interval=0.5, ignore=lambda e: getattr(e, "status", None) == 404,
             what="an operator replica to take the leader Lease")


def custom(bed) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(bed.api_client())


def apply(bed, namespace: str, manifest: dict) -> None:
    kubectl(bed, "apply", "-n", namespace, "--server-side", "--field-manager=kubectl", "-f", "-",
            input=yaml.safe_dump(manifest))


def sgld(bed, namespace: str, name: str) -> dict:
    return custom(bed).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def condition(obj: dict, kind: str = "Ready") -> dict:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}.get(kind, {})


def wait_ready(bed, namespace: str, name: str, timeout: float = 300, ready: bool = True) -> dict:
    want = "True" if ready else "False"
    return wait_for(lambda: condition(o := sgld(bed, namespace, name)).get("status") == want and o, timeout=timeout,
                    interval=0.5, what=f"{name} Ready={want}")


def printer_columns(table: str) -> list[dict[str, str]]:
    """kubectl's table as rows of {header: cell} (cells cut at the headers' offsets, so an empty
    cell stays empty)."""
    lines = table.splitlines()
    header = lines[0]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    bounds = list(zip(starts, starts[1:] + [None]))
    return [{header[a:b].strip(): row[a:b].strip() for a, b in bounds} for row in lines[1:] if row.strip()]


def get_sgld(bed, namespace: str, *names: str) -> str:
    return kubectl(bed, "get", "sgld", "-n", namespace, *names)


def service_url(bed, namespace: str, name: str) -> str:
    svc = client.CoreV1Api(bed.api_client()).read_namespaced_service(f"{name}-api", namespace)
    return f"http://{svc.spec.cluster_ip}:{svc.spec.ports[0].port}"


def generate(url: str, ids: list[int] = PROMPT_IDS, max_new_tokens: int = 12, timeout: float = 120) -> list[int]:
    r = httpx.post(f"{url}/generate", timeout=timeout, json={
        "input_ids": ids, "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0}})
    r.raise_for_status()
    return r.json()["output_ids"]


def chat(url: str, text: str, max_tokens: int = 16, timeout: float = 120) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/chat/completions", timeout=timeout, json={
        "model": "tiny", "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
        "temperature": 0})
    r.raise_for_status()
    return r.json()


def lws_pods(bed, namespace: str, name: str) -> list:
    return client.CoreV1Api(bed.api_client()).list_namespaced_pod(
        namespace, label_selector=f"leaderworkerset.sigs.k8s.io/name={name}").items


def watch_table(bed, namespace: str, until, timeout: float, out=sys.stdout, every: float = 1.0) -> None:
    """Print `kubectl get sgld` each time it changes until `until()` is true (AGE column ignored)."""
    deadline, last = time.monotonic() + timeout, None
    while True:
        table = get_sgld(bed, namespace)
        shown = [{k: v for k, v in row.items() if k != "AGE"} for row in printer_columns(table)] if table else []
        if shown != last:
            print(table.rstrip(), file=out, flush=True)
            last = shown
        if until():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f}s")
        time.sleep(every)
