"""The operator as the integration tests run it: `python -m sglang_operator.cli run ...` as a real
subprocess, example manifests, kubeconfigs for other credentials or addresses, and a TCP proxy that
can cut the operator off from the API server."""
from __future__ import annotations

import copy
import os
import select
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import yaml

from .net import free_port
from .process import terminate

REPO = Path(__file__).resolve().parents[2]


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
        code = terminate(self.proc, timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()


def example(name: str, path: str = "examples/cpu-tiny.yaml") -> dict[str, Any]:
    m = yaml.safe_load((REPO / path).read_text())
    m["metadata"] = {"name": name}
    return m


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
