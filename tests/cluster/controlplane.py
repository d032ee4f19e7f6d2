"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager
built from Go modules (tests/cluster/build.sh), with generated certs and an admin kubeconfig.

Used by the pytest fixtures (tests/conftest.py) and by `make dev-cluster` (tests/cluster/dev.py).
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support.net import free_port

from .certs import Pki, make_pki

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


class ControlPlaneError(RuntimeError):
    pass


def read_versions() -> dict[str, str]:
    out = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def cache_dir() -> Path:
    return Path(os.environ.get("SGLANG_FLEET_CACHE", Path.home() / ".cache" / "sglang-fleet"))


@dataclass
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    helm: Path
    lws_crds: list[Path]

    @classmethod
    def expected(cls) -> "Binaries":
        v, cache = read_versions(), cache_dir()
        k8s = cache / "bin" / f"kubernetes-{v['KUBERNETES_VERSION']}"
        return cls(
            etcd=cache / "bin" / f"etcd-{v['ETCD_VERSION']}" / "etcd",
            kube_apiserver=k8s / "kube-apiserver",
            kube_controller_manager=k8s / "kube-controller-manager",
            kube_scheduler=k8s / "kube-scheduler",
            kubectl=k8s / "kubectl",
            helm=cache / "bin" / f"helm-{v['HELM_VERSION']}" / "helm",
            lws_crds=sorted((cache / "crds" / f"lws-{v['LWS_VERSION']}").glob("*.yaml")),
        )

    def missing(self) -> list[str]:
        paths = [self.etcd, self.kube_apiserver, self.kube_controller_manager, self.kube_scheduler, self.kubectl,
                 self.helm]
        out = [str(p) for p in paths if not os.access(p, os.X_OK)]
        return out + ([] if self.lws_crds else ["LeaderWorkerSet CRD"])


def ensure_binaries() -> Binaries:
    """The cached binaries; builds what is missing (progress goes to stderr)."""
    bins = Binaries.expected()
    if bins.missing():
        print(f"control plane: building missing parts: {bins.missing()}", file=sys.stderr, flush=True)
        proc = subprocess.run([str(HERE / "build.sh")], stdout=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise ControlPlaneError(f"tests/cluster/build.sh failed with exit code {proc.returncode}")
        bins = Binaries.expected()
        if bins.missing():
            raise ControlPlaneError(f"build finished but these are still missing: {bins.missing()}")
    return bins


# Service and pod address ranges, sized for scale tests (a /24 stops at about 250 Services).
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"


def die_with_parent() -> None:
    # Children get SIGKILL if the test process dies, so a crashed run leaves no strays.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def kubeconfig_dict(server: str, ca: Path, user: dict, name: str = "sglang-fleet-test") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "user"}}],
        "current-context": name,
    }


class ControlPlane:
    """Start with `start()`, stop with `stop()`. `detached=True` leaves the processes running after
    this Python process exits (dev cluster); otherwise they die with it."""

    host = "127.0.0.1"  # where the API server listens; the node bed moves it to an address pods reach

    def __init__(self, workdir: Path, *, detached: bool = False, with_controller_manager: bool = True):
        self.workdir = Path(workdir).resolve()
        self.detached = detached
        self.with_controller_manager = with_controller_manager
        self.procs: dict[str, subprocess.Popen] = {}
        self.bins: Binaries | None = None
        self.pki: Pki | None = None
        self.api_port = 0
        self.kubeconfig = self.workdir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.api_port}"

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "ControlPlane":
        t0 = time.monotonic()
        self.bins = ensure_binaries()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.pki = make_pki(self.workdir / "pki", extra_ips=[self.host, KUBERNETES_SERVICE_IP])
        try:
            self._start_etcd()
            self._start_apiserver()
            self._write_admin_kubeconfig()
            if self.with_controller_manager:
                self._start_controller_manager()
            self.install_crds()
        except BaseException:
            self.stop()
            raise
        print(f"control plane up in {time.monotonic() - t0:.1f}s at {self.server}", file=sys.stderr, flush=True)
        return self

    def stop(self, grace: float = 10) -> None:
        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.workdir / "logs" / f"{name}.log", "ab")
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
            start_new_session=True, preexec_fn=None if self.detached else die_with_parent,
        )
        log.close()
        self.procs[name] = proc
        (self.workdir / f"{name}.pid").write_text(str(proc.pid))
        return proc

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / "logs" / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _wait(self, name: str, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | str = "no answer yet"
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with code {proc.returncode} during start-up; log tail:\n{self.log_tail(name)}")
            try:
                if check():
                    return
                last = "health endpoint answered but not ready"
            except Exception as e:  # not listening yet, TLS not up yet, ...
                last = e
            time.sleep(0.25)
        raise ControlPlaneError(
            f"{name} was not healthy after {timeout:.0f}s (last check: {last!r}); log tail:\n{self.log_tail(name)}")

    # -- components -----------------------------------------------------------------------------
    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn("etcd", [
            str(self.bins.etcd), "--name=default", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}", "--unsafe-no-fsync=true",
            "--log-level=warn", "--listen-metrics-urls=",
        ])
        import httpx
        self._wait("etcd", lambda: httpx.get(f"{self.etcd_url}/health", timeout=1).status_code == 200, 30)

    def apiserver_flags(self) -> list[str]:
        p = self.pki
        return [
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={self.host}", f"--secure-port={self.api_port}", f"--advertise-address={self.host}",
            # no default route here: without this the endpoint reconciler rejects loopback
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={p.serving_cert}", f"--tls-private-key-file={p.serving_key}",
            f"--client-ca-file={p.ca_cert}", f"--cert-dir={self.workdir / 'pki'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p.sa_pub}", f"--service-account-signing-key-file={p.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
            # no controller creates default service accounts before the controller-manager runs
            "--disable-admission-plugins=ServiceAccount",
            "--profiling=false", "--v=0",
        ]

    def _start_apiserver(self) -> None:
        self.api_port = free_port(self.host)
        p = self.pki
        self._spawn("kube-apiserver", [str(self.bins.kube_apiserver), *self.apiserver_flags()])
        import ssl

        import httpx
        ctx = ssl.create_default_context(cafile=str(p.ca_cert))
        ctx.load_cert_chain(str(p.admin_cert), str(p.admin_key))

        def ready() -> bool:
            return httpx.get(f"{self.server}/readyz", verify=ctx, timeout=2).status_code == 200
        self._wait("kube-apiserver", ready, 120)

    def _write_admin_kubeconfig(self) -> None:
        user = {"client-certificate": str(self.pki.admin_cert), "client-key": str(self.pki.admin_key)}
        self.kubeconfig.write_text(yaml.safe_dump(kubeconfig_dict(self.server, self.pki.ca_cert, user)))

    def controller_manager_flags(self, port: int) -> list[str]:
        kc = str(self.kubeconfig)
        return [
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--leader-elect=false", f"--root-ca-file={self.pki.ca_cert}",
            f"--service-account-private-key-file={self.pki.sa_key}",
            "--bind-address=127.0.0.1", f"--secure-port={port}",
            "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-route",
            "--concurrent-gc-syncs=5", "--v=0",
        ]

    def _start_controller_manager(self) -> None:
        port = free_port()
        self._spawn("kube-controller-manager", [str(self.bins.kube_controller_manager),
                                                *self.controller_manager_flags(port)])
        import httpx
        self._wait("kube-controller-manager",
                   lambda: httpx.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=2).status_code == 200,
                   60)

    # -- helpers ----------------------------------------------------------------------------------
    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.bins.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def api_client(self):
        from kubernetes import client, config
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        return client.ApiClient(cfg)

    def install_crds(self) -> None:
        files = sorted((REPO / "crds").glob("*.yaml")) + list(self.bins.lws_crds)
        for path in files:
            # server-side: the LWS CRD is larger than client-side apply's annotation limit
            self.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=sglang-fleet-tests",
                         "-f", str(path))
        names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in files]
        self.wait_crds_established(names)

    def wait_crds_established(self, names: list[str], timeout: float = 60) -> None:
        from kubernetes import client
        deadline = time.monotonic() + timeout
        with self.api_client() as api:
            ext = client.ApiextensionsV1Api(api)
            pending = list(names)
            while pending:
                crd = ext.read_custom_resource_definition(pending[0])
                conds = {c.type: c.status for c in (crd.status.conditions or [])} if crd.status else {}
                if conds.get("Established") == "True":
                    pending.pop(0)
                    continue
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"CRD {pending[0]} not established after {timeout}s: {conds}")
                time.sleep(0.2)

    def copy_logs(self, dest: Path) -> None:
        shutil.copytree(self.workdir / "logs", dest, dirs_exist_ok=True)
