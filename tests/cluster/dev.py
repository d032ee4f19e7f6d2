"""`make dev-cluster` / `make dev-cluster-down`: the node test bed (control plane, a real node that
runs our images, the LWS controller, CoreDNS, kwok GPU nodes), left running for people.

    python -m tests.cluster.dev up      # prints the export KUBECONFIG=... line
    python -m tests.cluster.dev down
    python -m tests.cluster.dev status
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from .controlplane import REPO, Binaries
from .node import NodeCluster

STATE = Path(os.environ.get("SGLANG_FLEET_DEV_CLUSTER", REPO / ".dev-cluster"))


def _pids() -> dict[str, int]:
    """{process: pid}, newest first (the stop order); the mount-namespace holder last, whose end
    starts the janitor that puts the host back."""
    files = sorted(STATE.glob("*.pid"), key=lambda f: f.stat().st_mtime, reverse=True)
    out = {f.stem: int(f.read_text()) for f in files if f.stem != "holder"}
    if (STATE / "holder.pid").exists():
        out["holder"] = int((STATE / "holder.pid").read_text())
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def up() -> int:
    if any(_alive(p) for p in _pids().values()):
        print(f"dev cluster already running (state in {STATE})")
    else:
        if STATE.exists():
            import shutil
            shutil.rmtree(STATE)
        bed = NodeCluster(STATE, detached=True).start()
        print(f"dev cluster running; logs in {STATE / 'logs'}")
        print(f"images on the node: {', '.join(bed.images.values()) or '(none: run make images)'}")
        print(f"pods can mount {bed.share_pod_path} (hostPath); on this machine it is {bed.share_dir}")
    print(f"export KUBECONFIG={STATE / 'admin.kubeconfig'}")
    print(f"# kubectl built for this cluster: {Binaries.expected().kubectl}")
    return 0


def down() -> int:
    pids = _pids()
    for name, pid in pids.items():
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for name, pid in pids.items():
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        (STATE / f"{name}.pid").unlink(missing_ok=True)
    if pids:
        _wait_janitor()
    print("dev cluster stopped" if pids else "no dev cluster was running")
    return 0


def _wait_janitor(timeout: float = 120) -> None:
    log = STATE / "logs" / "janitor.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and "host restored" in log.read_text():
            return
        time.sleep(0.2)
    print(f"the janitor did not report the host restored; see {log}", file=sys.stderr)


def status() -> int:
    pids = _pids()
    for name, pid in pids.items():
        print(f"{name:<24} pid {pid:<8} {'running' if _alive(pid) else 'dead'}")
    if not pids:
        print("no dev cluster")
    return 0 if pids and all(_alive(p) for p in pids.values()) else 1


def main(argv: list[str]) -> int:
    cmds = {"up": up, "down": down, "status": status}
    if len(argv) != 1 or argv[0] not in cmds:
        print(f"usage: python -m tests.cluster.dev {{{'|'.join(cmds)}}}", file=sys.stderr)
        return 2
    return cmds[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
