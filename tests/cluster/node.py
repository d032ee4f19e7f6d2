"""The node test bed: the control plane plus what a cluster has, on one machine without Docker, a
registry or a GPU.

- kube-scheduler; the node-lifecycle controller (it clears the not-ready taint); ServiceAccount
  tokens; the API server on an address pods reach, behind the `kubernetes` Service.
- the LeaderWorkerSet controller, its admission webhooks served on loopback and registered;
- one real node: containerd and runc (Debian packages), kubelet and kube-proxy (built like the
  control plane), a CNI bridge, CoreDNS as cluster DNS, a locally built pause image; nothing is
  pulled: images come from `make images` (OCI archives imported into containerd);
- kwok nodes with `nvidia.com/gpu` capacity, for GPU-shaped groups.

Host hygiene: every node process runs in one private mount namespace (overlays on /var/lib,
/var/log and /run keep the paths kubelet and containerd hard-code off the host), and
tests/cluster/janitor.py puts back what is shared (cgroups, the bridge, iptables, kernel
parameters) when the bed ends, even when the test run is killed. One bed per host at a time.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

from tests.support.net import free_port

from .certs import _key, _name, _pem_cert, _pem_key, _sign, make_pki
from .controlplane import (KUBERNETES_SERVICE_IP, REPO, ControlPlane, ControlPlaneError, cache_dir, die_with_parent,
                           ensure_binaries, read_versions)
from .hostsnapshot import HostSnapshot, is_root

# Addresses. The node's address is the CNI bridge's gateway: pods reach the API server and DNS at
# their own default gateway, and nothing leaves the machine.
NODE_IP = "10.244.0.1"
POD_SUBNET = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
KWOK_POD_CIDR = "10.245.0.0/16"
DNS_SERVICE_IP = "10.96.0.10"
BRIDGE = "fleet0"
NODE_NAME = "fleet-node"
DNS_PORT = 1053
# Host directory shared with pods: the test writes under `node.share_dir`, pods mount this path
# as a hostPath (it exists only inside the bed's mount namespace).
POD_SHARE = "/run/sglang-fleet"
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"


def node_binaries() -> dict[str, Path]:
    v, bin_dir = read_versions(), cache_dir() / "bin"
    k8s = bin_dir / f"kubernetes-{v['KUBERNETES_VERSION']}"
    return {
        "kubelet": k8s / "kubelet", "kube-proxy": k8s / "kube-proxy",
        "lws": bin_dir / f"lws-{v['LWS_VERSION']}" / "lws-controller-manager",
        "kwok": bin_dir / f"kwok-{v['KWOK_VERSION']}" / "kwok",
        "coredns": bin_dir / f"coredns-{v['COREDNS_VERSION']}" / "coredns",
        "pause": bin_dir / f"pause-{v['KUBERNETES_VERSION']}" / "pause",
    }


def ensure_node_binaries() -> dict[str, Path]:
    bins = node_binaries()
    missing = [n for n, p in bins.items() if not os.access(p, os.X_OK)]
    if missing:
        print(f"node bed: building {missing}", file=sys.stderr, flush=True)
        deps = subprocess.run([str(REPO / "tests/cluster/node-deps.sh")])
        build = subprocess.run([str(REPO / "tests/cluster/build.sh"), "node"], stdout=subprocess.DEVNULL)
        if deps.returncode or build.returncode:
            raise ControlPlaneError("tests/cluster/node-deps.sh or build.sh node failed (see above)")
    return bins


def built_images() -> dict[str, str]:
    """{short name: image reference} of what `make images` built last (tests/cluster/images.sh)."""
    d = cache_dir() / "images"
    out = {}
    for f in sorted(d.glob("*.current")):
        ref = f.read_text().strip()
        archive = d / "archives" / f"{f.stem}-{ref.rsplit(':', 1)[1]}.tar"
        if archive.exists():
            out[f.stem] = ref
    return out


def pause_archive(pause: Path, ref: str, dest: Path) -> Path:
    """An OCI image archive holding only the static pause binary (containerd's sandbox image)."""
    def blob(data: bytes) -> tuple[str, bytes]:
        return "sha256:" + hashlib.sha256(data).hexdigest(), data

    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as t:
        info = tarfile.TarInfo("pause")
        data = pause.read_bytes()
        info.size, info.mode = len(data), 0o755
        t.addfile(info, io.BytesIO(data))
    layer_digest, layer = blob(layer_buf.getvalue())
    config_digest, config = blob(json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode())
    manifest_digest, manifest = blob(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                    "size": len(layer)}]}).encode())
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": len(manifest), "annotations": {"io.containerd.image.name": ref,
                                               "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]}}]})
    with tarfile.open(dest, "w") as t:
        files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": index.encode()}
        for digest, data in ((layer_digest, layer), (config_digest, config), (manifest_digest, manifest)):
            files[f"blobs/sha256/{digest.split(':')[1]}"] = data
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return dest


class NodeCluster(ControlPlane):
    """`start()` / `stop()` like ControlPlane. `images`: archives from `make images` to import (the
    pause image is always imported); `kwok_gpu_nodes`: how many fake 8-GPU nodes to create."""

    host = NODE_IP

    def __init__(self, workdir: Path, *, detached: bool = False, kwok_gpu_nodes: int = 2,
                 import_images: bool = True):
        super().__init__(workdir, detached=detached)
        self.kwok_gpu_nodes = kwok_gpu_nodes
        self.import_images = import_images
        self.node_bins: dict[str, Path] = {}
        self.share_dir = self.workdir / "share"  # on the host; pods see it at share_pod_path
        self.share_pod_path = POD_SHARE
        self.ctd_dir = self.workdir / "ctd"
        self.ctd_sock = self.ctd_dir / "containerd.sock"
        self.ctd_root = cache_dir() / "node" / "containerd"  # images persist across beds
        self.images: dict[str, str] = {}
        self._lock_fd: int | None = None
        self._holder: subprocess.Popen | None = None
        self._janitor: subprocess.Popen | None = None
        self._state: dict = {"pids": {}}

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "NodeCluster":
        if not is_root():
            raise ControlPlaneError("the node test bed needs root (kubelet, containerd, iptables)")
        t0 = time.monotonic()
        self.bins = ensure_binaries()
        self.node_bins = ensure_node_binaries()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self._lock_host()
        try:
            self._start_janitor()
            self._prepare_host()
            self.pki = make_pki(self.workdir / "pki", extra_ips=[self.host, KUBERNETES_SERVICE_IP])
            self._start_etcd()
            self._start_apiserver()
            self._write_admin_kubeconfig()
            self._start_controller_manager()
            self.install_crds()
            self._start_scheduler()
            self._start_lws()
            self._start_containerd()
            self._start_kubelet()
            self._start_kube_proxy()
            self._start_coredns()
            self._start_kwok()
        except BaseException:
            self.stop()
            raise
        print(f"node test bed up in {time.monotonic() - t0:.1f}s at {self.server}", file=sys.stderr, flush=True)
        return self

    def stop(self, grace: float = 3) -> None:
        # every process we started, last first; the janitor kills what is left (containers, shims)
        super().stop(grace)
        if self._holder and self._holder.poll() is None:
            self._holder.kill()
            self._holder.wait()
        if self._janitor:
            try:
                self._janitor.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self._janitor.kill()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _lock_host(self) -> None:
        path = cache_dir() / "node" / "host.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + 180
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise ControlPlaneError(
                        f"another node test bed holds {path} (a dev cluster? `make dev-cluster-down` stops it)")
                time.sleep(1)
        os.set_inheritable(fd, True)
        self._lock_fd = fd

    def _start_janitor(self) -> None:
        snap = self.workdir / "host-before.json"
        HostSnapshot.take().save(snap)
        self._state.update(snapshot=str(snap), bridge=BRIDGE)
        self._write_state()
        read_end, write_end = os.pipe()
        self._janitor = subprocess.Popen(
            [sys.executable, "-m", "tests.cluster.janitor", str(self.workdir / "janitor-state.json")],
            stdin=read_end, stdout=open(self.workdir / "logs" / "janitor.log", "ab"), stderr=subprocess.STDOUT,
            cwd=REPO, start_new_session=True, pass_fds=(self._lock_fd,))
        os.close(read_end)
        # The holder of the mount namespace also holds the pipe: when it dies, the janitor runs.
        self._holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sleep", "infinity"],
            pass_fds=(write_end,), start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=None if self.detached else die_with_parent)
        os.close(write_end)
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{self._holder.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            if time.monotonic() > deadline:
                raise ControlPlaneError("unshare did not enter a new mount namespace")
            time.sleep(0.01)
        self._state["mount_ns"] = os.readlink(f"/proc/{self._holder.pid}/ns/mnt")
        (self.workdir / "holder.pid").write_text(str(self._holder.pid))
        self._write_state()

    def _write_state(self) -> None:
        path = self.workdir / "janitor-state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state))
        tmp.replace(path)

    def _in_ns(self, *argv: str) -> list[str]:
        return ["nsenter", "-t", str(self._holder.pid), "-m", "--", *argv]

    def _sh_in_ns(self, *argv: str) -> None:
        subprocess.run(self._in_ns(*argv), check=True, capture_output=True)

    def _prepare_host(self) -> None:
        # overlays over the paths kubelet, containerd and the CNI plugins hard-code
        for path in ("/var/lib", "/var/log", "/run"):
            d = self.workdir / "overlay" / path.strip("/").replace("/", "-")
            (d / "upper").mkdir(parents=True, exist_ok=True)
            (d / "work").mkdir(parents=True, exist_ok=True)
            self._sh_in_ns("mount", "-t", "overlay", "overlay", "-o",
                           f"lowerdir={path},upperdir={d / 'upper'},workdir={d / 'work'}", path)
        self.share_dir.mkdir(exist_ok=True)
        self.share_dir.chmod(0o755)
        self._sh_in_ns("mkdir", "-p", POD_SHARE)
        self._sh_in_ns("mount", "--bind", str(self.share_dir), POD_SHARE)
        # the bridge exists before the API server binds its address
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE], check=True)
        subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        proc = super()._spawn(name, argv)
        self._state["pids"][name] = [proc.pid, argv[0] if argv[0] != "nsenter" else argv[5]]
        self._write_state()
        return proc

    # -- control plane in node mode --------------------------------------------------------------
    def apiserver_flags(self) -> list[str]:
        client_cert, client_key = self.pki.admin_cert, self.pki.admin_key
        out = [f for f in super().apiserver_flags()
               if not f.startswith(("--endpoint-reconciler-type", "--disable-admission-plugins"))]
        return out + [
            # the `kubernetes` Service gets this address as its endpoint, so pods reach the API
            "--endpoint-reconciler-type=lease",
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={client_cert}", f"--kubelet-client-key={client_key}",
        ]

    def controller_manager_flags(self, port: int) -> list[str]:
        out = [f for f in super().controller_manager_flags(port) if not f.startswith("--controllers")]
        # the node-lifecycle controller clears the not-ready taint new nodes get; more QPS so
        # StatefulSet pods of 1,000 groups are created at the rate a real cluster manages
        return out + ["--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
                      "--kube-api-qps=200", "--kube-api-burst=400"]

    def _start_scheduler(self) -> None:
        port, kc = free_port(), str(self.kubeconfig)
        self._spawn("kube-scheduler", [
            str(self.bins.kube_scheduler), f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}", "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={port}", "--kube-api-qps=200", "--kube-api-burst=400", "--v=0"])
        import httpx
        self._wait("kube-scheduler",
                   lambda: httpx.get(f"https://127.0.0.1:{port}/healthz", verify=False, timeout=2).status_code == 200, 60)

    # -- LeaderWorkerSet controller --------------------------------------------------------------
    def _start_lws(self) -> None:
        cert_dir = self.workdir / "lws-certs"
        cert_dir.mkdir(exist_ok=True)
        cert, key = self._serving_cert(cert_dir, "lws-webhook", ["127.0.0.1"])
        (cert_dir / "tls.crt").write_bytes(cert)
        (cert_dir / "tls.key").write_bytes(key)
        webhook_port, health_port = free_port(), free_port()
        config = self.workdir / "lws-config.yaml"
        config.write_text(yaml.safe_dump({
            "apiVersion": "config.lws.x-k8s.io/v1alpha1", "kind": "Configuration",
            "leaderElection": {"leaderElect": False}, "internalCertManagement": {"enable": False},
            "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
            "metrics": {"bindAddress": "0"},
            "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        }))
        self._spawn("lws-controller", [str(self.node_bins["lws"]), f"--config={config}", "--leader-elect=false",
                                       f"--kubeconfig={self.kubeconfig}"])
        import httpx
        self._wait("lws-controller",
                   lambda: httpx.get(f"http://127.0.0.1:{health_port}/readyz", timeout=2).status_code == 200, 60)
        import ssl
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        self._wait("lws-controller",
                   lambda: httpx.post(f"https://127.0.0.1:{webhook_port}/validate--v1-pod", verify=ctx,
                                      timeout=2).status_code < 500, 30)
        self._register_lws_webhooks(webhook_port)

    def _serving_cert(self, directory: Path, cn: str, ips: list[str]) -> tuple[bytes, bytes]:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        ca_key = serialization.load_pem_private_key(self.pki.ca_key.read_bytes(), None)
        ca = x509.load_pem_x509_certificate(self.pki.ca_cert.read_bytes())
        key = _key()
        cert = _sign(_name(cn), key, ca.subject, ca_key, ca=False, extensions=[
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(i)) for i in ips]),
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])])
        return _pem_cert(cert), _pem_key(key)

    def _register_lws_webhooks(self, port: int) -> None:
        import base64
        ca = base64.b64encode(self.pki.ca_cert.read_bytes()).decode()
        docs = [d for d in yaml.safe_load_all(self.node_bins["lws"].with_name("webhooks.yaml").read_text()) if d]
        for doc in docs:
            doc["metadata"]["name"] = "lws-" + doc["metadata"]["name"]
            for hook in doc["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca}
                # as upstream's kustomize patches do: only LWS pods go through the pod webhooks
                if hook["name"] in ("mpod.kb.io", "vpod.kb.io"):
                    hook["objectSelector"] = {"matchExpressions": [{"key": LWS_NAME_LABEL, "operator": "Exists"}]}
        self.kubectl("apply", "--server-side", "--field-manager=sglang-fleet-tests", "-f", "-",
                     input=yaml.safe_dump_all(docs))

    # -- the real node -----------------------------------------------------------------------------
    def _start_containerd(self) -> None:
        d = self.ctd_dir
        for sub in ("state", "runc", "opt"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self.ctd_root.mkdir(parents=True, exist_ok=True)
        cni = self.workdir / "cni"
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        (cni / "net.d" / "10-fleet.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "fleet", "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(cni / "ipam"),
                          "ranges": [[{"subnet": POD_SUBNET, "gateway": NODE_IP, "rangeStart": "10.244.0.10"}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": True}}]}))
        v = read_versions()
        self.pause_ref = f"localhost/sglang-fleet/pause:{v['KUBERNETES_VERSION']}"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        (d / "config.toml").write_text(f'''version = 2
root = "{self.ctd_root}"
state = "{d / 'state'}"
oom_score = 0
[grpc]
  address = "{self.ctd_sock}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'opt'}"
[{cri}]
  sandbox_image = "{self.pause_ref}"
  netns_mounts_under_state_dir = true
  # root's bounding set lacks CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
        Root = "{d / 'runc'}"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni / 'net.d'}"
    max_conf_num = 1
''')
        self._spawn("containerd", self._in_ns("containerd", f"--config={d / 'config.toml'}"))
        self._wait("containerd", lambda: self.ctr("version", check=False).returncode == 0, 30)
        self._clear_stale_containers()
        self._import_images()

    def ctr(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run(["ctr", "--address", str(self.ctd_sock), "--namespace", "k8s.io", *args],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode:
            raise ControlPlaneError(f"ctr {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def _clear_stale_containers(self) -> None:
        # the image store persists between beds; containers of an earlier, killed bed do not
        for cid in self.ctr("containers", "list", "-q").stdout.split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
            self.ctr("tasks", "delete", "-f", cid, check=False)
            self.ctr("containers", "delete", cid, check=False)

    def _import_images(self) -> None:
        have = set(self.ctr("images", "list", "-q").stdout.split())
        wanted = {self.pause_ref: None}
        if self.import_images:
            images = built_images()
            self.images = images
            for short, ref in images.items():
                wanted[ref] = cache_dir() / "images" / "archives" / f"{short}-{ref.rsplit(':', 1)[1]}.tar"
        if self.import_images:
            self._drop_stale_images(set(wanted))
        for ref, archive in wanted.items():
            if ref in have:
                continue
            t0 = time.monotonic()
            if archive is None:
                archive = pause_archive(self.node_bins["pause"], ref, self.workdir / "pause.tar")
            print(f"node bed: importing {ref} into containerd (large images take a minute)", file=sys.stderr,
                  flush=True)
            self.ctr("images", "import", "--no-unpack=false", str(archive))
            if ref not in self.ctr("images", "list", "-q").stdout.split():
                raise ControlPlaneError(f"imported {archive} but containerd has no image named {ref}")
            print(f"node bed: imported {ref} in {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)

    def _drop_stale_images(self, wanted: set[str]) -> None:
        """Earlier builds of our images, and the `sha256:<id>` names the CRI plugin adds for
        them: the store persists between beds, so without this it grows by an image per build."""
        rows = [line.split() for line in self.ctr("images", "list").stdout.splitlines()[1:]]
        digest = {r[0]: r[2] for r in rows if len(r) > 2}
        keep = {digest[ref] for ref in wanted if ref in digest}
        for ref, d in digest.items():
            ours = ref.startswith("localhost/sglang-fleet/") or ref.startswith("sha256:")
            if ours and d not in keep:
                self.ctr("images", "remove", ref, check=False)

    def _start_kubelet(self) -> None:
        port = free_port(NODE_IP)
        config = self.workdir / "kubelet.yaml"
        config.write_text(yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "failCgroupV1": False, "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.ctd_sock}",
            "podLogsDir": str(self.workdir / "podlogs"),
            "address": NODE_IP, "port": port, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": free_port(),
            # only holders of our CA's client certs (the API server) may call the kubelet
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(self.pki.ca_cert)}},
            "authorization": {"mode": "AlwaysAllow"},
            "clusterDomain": "cluster.local", "clusterDNS": [DNS_SERVICE_IP],
            "failSwapOn": False, "nodeStatusUpdateFrequency": "5s",
            "evictionHard": {"memory.available": "200Mi", "nodefs.available": "2%", "imagefs.available": "2%",
                             "nodefs.inodesFree": "2%"},
            "imageGCHighThresholdPercent": 99, "imageGCLowThresholdPercent": 98,
            "oomScoreAdj": 0, "serializeImagePulls": False, "maxPods": 110,
        }))
        self._spawn("kubelet", self._in_ns(
            str(self.node_bins["kubelet"]), f"--config={config}", f"--kubeconfig={self.kubeconfig}",
            f"--root-dir={self.workdir / 'kubelet'}", f"--node-ip={NODE_IP}", f"--hostname-override={NODE_NAME}",
            "--node-labels=sglang-fleet.dev/node=real", "--v=1"))
        self._wait("kubelet", lambda: self._node_ready(NODE_NAME), 90)

    def _node_ready(self, name: str) -> bool:
        out = self.kubectl("get", "node", name, "-o", "json", check=False)
        if out.returncode:
            return False
        node = json.loads(out.stdout)
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
        tainted = any(t["key"] == "node.kubernetes.io/not-ready" for t in node["spec"].get("taints", []))
        return ready and not tainted

    def _start_kube_proxy(self) -> None:
        config = self.workdir / "kube-proxy.yaml"
        health = free_port()
        config.write_text(yaml.safe_dump({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.kubeconfig)}, "hostnameOverride": NODE_NAME,
            "mode": "iptables", "clusterCIDR": CLUSTER_CIDR, "detectLocalMode": "ClusterCIDR",
            "metricsBindAddress": f"127.0.0.1:{free_port()}", "healthzBindAddress": f"127.0.0.1:{health}",
            "oomScoreAdj": 0, "iptables": {"localhostNodePorts": False},
            # leave the host's conntrack settings alone
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        }))
        self._spawn("kube-proxy", self._in_ns(str(self.node_bins["kube-proxy"]), f"--config={config}", "--v=0"))
        import httpx
        self._wait("kube-proxy", lambda: httpx.get(f"http://127.0.0.1:{health}/healthz", timeout=2).status_code == 200,
                   60)

    def _start_coredns(self) -> None:
        ready = free_port(NODE_IP)
        corefile = self.workdir / "Corefile"
        corefile.write_text(f""".:{DNS_PORT} {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{free_port()}
    ready {NODE_IP}:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {self.kubeconfig} sglang-fleet-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    forward . /etc/resolv.conf
    cache 30
}}
""")
        self._spawn("coredns", [str(self.node_bins["coredns"]), "-conf", str(corefile)])
        import httpx
        self._wait("coredns", lambda: httpx.get(f"http://{NODE_IP}:{ready}/ready", timeout=2).status_code == 200, 60)
        # cluster DNS: a Service without selector, its endpoint the CoreDNS on the node address
        ports = [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": DNS_PORT},
                 {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": DNS_PORT}]
        self.kubectl("apply", "--server-side", "--field-manager=sglang-fleet-tests", "-f", "-", input=yaml.safe_dump_all([
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system"},
             "spec": {"clusterIP": DNS_SERVICE_IP, "ports": ports}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "kube-dns-node", "namespace": "kube-system",
                          "labels": {"kubernetes.io/service-name": "kube-dns"}},
             "addressType": "IPv4", "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
             "ports": [{"name": p["name"], "port": DNS_PORT, "protocol": p["protocol"]} for p in ports]},
        ]))

    # -- kwok GPU nodes ------------------------------------------------------------------------------
    def _start_kwok(self) -> None:
        stage = self.node_bins["kwok"].with_name("stage")
        # the module's "fast" stages: nodes Ready at once with a lease heartbeat, pods Ready at once
        configs = [stage / f for f in ("node/fast/node-initialize.yaml",
                                       "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
                                       "pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml",
                                       "pod/fast/pod-delete.yaml")]
        self._spawn("kwok", [
            str(self.node_bins["kwok"]), f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--cidr={KWOK_POD_CIDR}", "--node-ip=10.245.255.254", f"--server-address=127.0.0.1:{free_port()}",
            "--node-lease-duration-seconds=40",
            *(f"--config={c}" for c in configs)])
        docs = [self.gpu_node(f"kwok-gpu-{i}") for i in range(self.kwok_gpu_nodes)]
        if docs:
            self.kubectl("create", "-f", "-", input=yaml.safe_dump_all(docs))
            self._wait("kwok", lambda: all(self._node_ready(d["metadata"]["name"]) for d in docs), 60)

    @staticmethod
    def gpu_node(name: str, gpus: int = 8) -> dict:
        """A fake node that kwok keeps Ready, with 8 GPUs; pods need the kwok taint's toleration."""
        capacity = {"cpu": "96", "memory": "1Ti", "pods": "110", "nvidia.com/gpu": str(gpus)}
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                             "labels": {"type": "kwok", "kubernetes.io/hostname": name,
                                        "nvidia.com/gpu.present": "true"}},
                "spec": {"taints": [KWOK_TAINT]},
                "status": {"capacity": capacity, "allocatable": capacity}}
