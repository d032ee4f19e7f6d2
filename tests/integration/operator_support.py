"""Helpers for the operator's integration tests: the operator as a real subprocess
(`python -m sglang_operator.cli run ...`), SGLangDeployment manifests, polling, and a TCP proxy
that can cut the operator off from the API server."""
from __future__ import annotations

import copy
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "sglangfleet.dev", "v1alpha1", "sglangdeployments"
LWS = ("leaderworkerset.x-k8s.io", "v1", "leaderworkersets")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout: float = 10, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll until `check()` returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except ApiException as e:
            last = e
            if e.status not in (404, 409):
                raise
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class Operator:
    """`sglang-operator run` as a subprocess (its logs go to a file kept for the failure report)."""

    def __init__(self, kubeconfig: Path, log_dir: Path, *args: str, name: str = "operator"):
        self.metrics_port = free_port()
        self.log_path = log_dir / f"{name}-{self.metrics_port}.log"
        self.argv = [sys.executable, "-m", "sglang_operator.cli", "run", *args,
                     f"--metrics-port={self.metrics_port}", "--metrics-addr=127.0.0.1", "--log-format=full",
                     "--watch-timeout=10"]
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        """Samples of our own metrics: (name, labels, value)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text
        return [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(text)
                for s in fam.samples if s.name.startswith("sglang_operator_")]

    def metric_sum(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels` (0 when the endpoint is down)."""
        try:
            samples = self.metrics()
        except httpx.HTTPError:
            return 0.0
        return sum(v for n, lab, v in samples if n == name and labels.items() <= lab.items())

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()


def example(name: str, path: str = "examples/cpu-tiny.yaml") -> dict[str, Any]:
    m = yaml.safe_load((REPO / path).read_text())
    m["metadata"] = {"name": name}
    return m


class Api:
    """Typed-client shortcuts used by the tests (admin credentials unless given others)."""

    def __init__(self, api_client: client.ApiClient, namespace: str):
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.policy = client.PolicyV1Api(api_client)
        self.api_client = api_client

    def create(self, manifest: dict) -> dict:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, manifest)

    def sgld(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def patch_sgld(self, name: str, patch: dict) -> dict:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, patch)

    def delete_sgld(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def delete_all_sglds(self, timeout: float = 20) -> None:
        """Delete this namespace's SGLangDeployments and wait until they are gone. Call it while an
        operator still runs: finalizers (kopf adds one for daemons) need it to let go."""
        for item in self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL)["items"]:
            _or_none(lambda: self.delete_sgld(item["metadata"]["name"]))
        wait_for(lambda: not self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL)["items"],
                 timeout=timeout, interval=0.3, what="SGLangDeployments to be deleted")

    def lws(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(*LWS[:2], self.ns, LWS[2], name)

    def lws_or_none(self, name: str) -> dict | None:
        return _or_none(lambda: self.lws(name))

    def patch_lws(self, name: str, patch: dict) -> dict:
        return self.custom.patch_namespaced_custom_object(*LWS[:2], self.ns, LWS[2], name, patch)

    def patch_lws_status(self, name: str, status: dict) -> dict:
        return self.custom.patch_namespaced_custom_object_status(*LWS[:2], self.ns, LWS[2], name, {"status": status})

    def service(self, name: str) -> dict | None:
        return _or_none(lambda: self.api_client.sanitize_for_serialization(
            self.core.read_namespaced_service(name, self.ns)))

    def pdb(self, name: str) -> dict | None:
        return _or_none(lambda: self.api_client.sanitize_for_serialization(
            self.policy.read_namespaced_pod_disruption_budget(name, self.ns)))

    def children(self, name: str) -> dict[str, dict | None]:
        return {"LeaderWorkerSet": self.lws_or_none(name), "Service": self.service(f"{name}-api"),
                "PodDisruptionBudget": self.pdb(name)}

    def condition(self, name: str, type_: str) -> dict | None:
        st = self.sgld(name).get("status") or {}
        return next((c for c in st.get("conditions") or [] if c["type"] == type_), None)

    def events(self, involved: str | None = None) -> list[dict]:
        items = self.core.list_namespaced_event(self.ns).items
        return [{"type": e.type, "reason": e.reason, "message": e.message, "object": e.involved_object.name}
                for e in items if involved is None or e.involved_object.name == involved]


def _or_none(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def subset(live: Any, want: Any, path: str = "") -> list[str]:
    """Where `live` lacks what `want` has (the renderer's output must be in the live object)."""
    if isinstance(want, dict):
        if not isinstance(live, dict):
            return [path or "."]
        return [p for k, v in want.items() for p in (subset(live[k], v, f"{path}.{k}") if k in live else [f"{path}.{k}"])]
    if isinstance(want, list):
        if not isinstance(live, list) or len(live) != len(want):
            return [path]
        return [p for i, (lv, wv) in enumerate(zip(live, want)) for p in subset(lv, wv, f"{path}[{i}]")]
    return [] if live == want else [f"{path}: {live!r} != {want!r}"]


def resource_versions(api: Api, name: str) -> dict[str, str | None]:
    out = {"SGLangDeployment": api.sgld(name)["metadata"]["resourceVersion"]}
    for kind, obj in api.children(name).items():
        out[kind] = obj["metadata"]["resourceVersion"] if obj else None
    return out


def settled_versions(api: Api, name: str, quiet: float = 2.0, timeout: float = 30) -> dict[str, str | None]:
    """resourceVersions once nothing has changed for `quiet` seconds: a first Ready condition can be
    followed by more status writes (child events arrive one by one), which a test must not blame on
    whatever it does next."""
    deadline = time.monotonic() + timeout
    last, since = resource_versions(api, name), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = resource_versions(api, name)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return last
    raise AssertionError(f"{name} and its children kept changing for {timeout}s: {last}")


def token_kubeconfig(cluster, token: str, path: Path, server: str | None = None) -> Path:
    from tests.cluster.controlplane import kubeconfig_dict

    path.write_text(yaml.safe_dump(kubeconfig_dict(server or cluster.server, cluster.pki.ca_cert, {"token": token})))
    return path


def admin_kubeconfig_via(cluster, server: str, path: Path) -> Path:
    """The admin kubeconfig, pointed at another address (the proxy)."""
    cfg = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    cfg = copy.deepcopy(cfg)
    cfg["clusters"][0]["cluster"]["server"] = server
    path.write_text(yaml.safe_dump(cfg))
    return path


class Proxy:
    """A TCP relay to the API server that can be cut (listener closed, live connections reset) and
    restored on the same port: the operator sees the API server vanish and come back. TLS passes
    through untouched (the serving cert is for 127.0.0.1, whatever the port)."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            with self._lock:
                self._conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            return
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def down(self) -> None:
        if self._listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone would leave it accepting
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"
