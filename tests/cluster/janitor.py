"""Puts the host back after a node test bed, however the bed ended.

The bed starts `python -m tests.cluster.janitor STATE` in its own session with a pipe on stdin, and
hands the pipe's other end to the process that holds the bed's mount namespace (and nothing else).
That holder dies with the test process (or, for `make dev-cluster`, when `down` kills it), and the
kernel then closes the pipe, so cleanup never depends on the test process surviving. On EOF the
janitor:
  1. kills every process in the bed's private mount namespace (containerd, its shims, kubelet,
     kube-proxy) and in the kubelet's `kubepods` cgroups (the containers), and the bed's other
     processes it recorded by pid (checked against their command line);
  2. removes the cgroups the kubelet made, the CNI bridge, the iptables chains and rules added
     since the snapshot, and restores the kernel parameters it changed;
  3. releases the host lock (an inherited flock on fd 3), so the next bed can start.
STATE is a JSON file the bed rewrites as it starts things; see NodeCluster._write_state.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .hostsnapshot import CGROUP_ROOT, HostSnapshot, cgroup_dirs, iptables_save


def log(msg: str) -> None:
    print(f"[janitor {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mount_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def pids_in_cgroups(prefixes: list[Path]) -> set[int]:
    out = set()
    for root in prefixes:
        if not root.is_dir():
            continue
        for procs in root.rglob("cgroup.procs"):
            try:
                out.update(int(x) for x in procs.read_text().split())
            except OSError:
                pass
    return out


def kill_all(find, what: str, timeout: float = 20) -> None:
    """SIGKILL whatever `find()` returns until it returns nothing."""
    deadline = time.monotonic() + timeout
    while True:
        pids = find() - {os.getpid()}
        if not pids:
            return
        if time.monotonic() > deadline:
            log(f"could not kill all {what}: {sorted(pids)}")
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def cleanup(state: dict) -> None:
    snap = HostSnapshot.load(Path(state["snapshot"]))
    ns = state.get("mount_ns")
    kubepods = [h / "kubepods" for h in CGROUP_ROOT.iterdir()] if CGROUP_ROOT.is_dir() else []

    def in_bed() -> set[int]:
        out = pids_in_cgroups(kubepods)
        if ns:
            out.update(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and mount_ns(int(p.name)) == ns)
        return out
    kill_all(in_bed, "node processes and containers")

    def recorded() -> set[int]:
        alive = set()
        for pid, exe in state.get("pids", {}).values():
            try:
                if exe in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    alive.add(pid)
            except OSError:
                pass
        return alive
    kill_all(recorded, "control-plane processes")

    # cgroups: the deepest first (a cgroup with children cannot be removed)
    before = set(snap.cgroups)
    for top in sorted(set(cgroup_dirs()) - before):
        for d in sorted(Path(top).rglob("*"), key=lambda p: -len(p.parts)) + [Path(top)]:
            if d.is_dir():
                try:
                    d.rmdir()
                except OSError as e:
                    log(f"cgroup {d}: {e}")

    bridge = state.get("bridge")
    if bridge and Path("/sys/class/net", bridge).exists():
        subprocess.run(["ip", "link", "delete", bridge], check=False)

    for save, restore, dump in (("iptables-save", "iptables-restore", snap.iptables),
                                ("ip6tables-save", "ip6tables-restore", snap.ip6tables)):
        restore_tables(save, restore, dump)

    for name, value in snap.sysctls.items():
        path = Path("/proc/sys", name)
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
        except OSError as e:
            log(f"sysctl {name}: {e}")


def restore_tables(save: str, restore: str, dump: str) -> None:
    """Back to the snapshot: tables it had are restored whole; tables added since are emptied."""
    now = iptables_save(save)
    if now == dump:
        return
    had = {line[1:] for line in dump.splitlines() if line.startswith("*")}
    if dump.strip():
        subprocess.run([restore], input=dump + "\n", text=True, check=False)
    family = "ip6" if save.startswith("ip6") else "ip"
    for table in {line[1:] for line in now.splitlines() if line.startswith("*")} - had:
        # iptables-nft can empty a table but not remove it; nft removes it
        subprocess.run(["nft", "delete", "table", family, table], check=False, capture_output=True)


def main() -> None:
    state_path = Path(sys.argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a Ctrl-C meant for pytest must not stop cleanup
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sys.stdin.buffer.read()  # returns when the holder of the pipe's other end is gone
    state = json.loads(state_path.read_text())
    t0 = time.monotonic()
    cleanup(state)
    log(f"host restored in {time.monotonic() - t0:.1f}s")


if __name__ == "__main__":
    main()
