"""`make dev-cluster` / `make dev-cluster-down`: the test control plane, left running for people.

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

from .controlplane import REPO, Binaries, ControlPlane

STATE = Path(os.environ.get("SGLANG_FLEET_DEV_CLUSTER", REPO / ".dev-cluster"))
ORDER = ["kube-controller-manager", "kube-apiserver", "etcd"]  # stop order


def _pids() -> dict[str, int]:
    out = {}
    for name in ORDER:
        f = STATE / f"{name}.pid"
        if f.exists():
            out[name] = int(f.read_text())
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
        ControlPlane(STATE, detached=True).start()
        print(f"dev cluster running; logs in {STATE / 'logs'}")
    print(f"export KUBECONFIG={STATE / 'admin.kubeconfig'}")
    print(f"# kubectl built for this cluster: {Binaries.expected().kubectl}")
    return 0


def down() -> int:
    pids = _pids()
    for name in ORDER:
        if name in pids and _alive(pids[name]):
            os.kill(pids[name], signal.SIGTERM)
    deadline = time.monotonic() + 10
    for name, pid in pids.items():
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        (STATE / f"{name}.pid").unlink(missing_ok=True)
    print("dev cluster stopped" if pids else "no dev cluster was running")
    return 0


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
