"""What a node test bed changes on the host, read before it starts so that tests/cluster/janitor.py can
put it back: kernel parameters, iptables tables, cgroups, network links, mounts, processes.

`HostSnapshot.take()` is also what the hygiene test compares before and after a killed run.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Kernel parameters the kubelet, kube-proxy and the CNI plugins are known to write (kubelet's
# setupKernelTunables, kube-proxy's conntrack and route_localnet, the bridge plugin's forwarding).
SYSCTLS = [
    "kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv4/conf/default/forwarding",
    "net/ipv6/conf/all/forwarding", "net/ipv6/conf/default/forwarding",
    "net/ipv4/conf/all/route_localnet", "net/ipv4/conf/all/rp_filter",
    "net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max", "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait", "net/netfilter/nf_conntrack_tcp_be_liberal",
]
CGROUP_ROOT = Path("/sys/fs/cgroup")


def read_sysctls() -> dict[str, str]:
    out = {}
    for name in SYSCTLS:
        try:
            out[name] = Path("/proc/sys", name).read_text().strip()
        except OSError:
            pass  # that module is not loaded: nothing to restore
    return out


def iptables_save(cmd: str = "iptables-save") -> str:
    try:
        proc = subprocess.run([cmd], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return ""
    # counters and the timestamp comments change on their own
    return "\n".join(line for line in proc.stdout.splitlines() if not line.startswith("#"))


def iptables_rules(dump: str) -> set[str]:
    """The rules and chains of a dump, without counters: what "changed" means for the hygiene test."""
    out, table = set(), ""
    for line in dump.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            out.add(f"{table} {line.split()[0]}")
        elif line.startswith("-"):
            out.add(f"{table} {line}")
    return out


def cgroup_dirs(depth: int = 1) -> list[str]:
    """Cgroup directories down to `depth` below each hierarchy's root (kubelet makes `kubepods`)."""
    out = []
    if not CGROUP_ROOT.is_dir():
        return out
    for hier in sorted(CGROUP_ROOT.iterdir()):
        if not hier.is_dir() or hier.is_symlink():
            continue
        stack = [(hier, 0)]
        while stack:
            d, lvl = stack.pop()
            if lvl >= depth:
                continue
            try:
                children = [c for c in d.iterdir() if c.is_dir()]
            except OSError:
                continue
            for c in children:
                out.append(str(c))
                stack.append((c, lvl + 1))
    return sorted(out)


def links() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir())


def mounts() -> list[str]:
    return sorted({" ".join(line.split()[1:3]) for line in Path("/proc/self/mounts").read_text().splitlines()})


def processes() -> dict[int, str]:
    out = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                out[int(p.name)] = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                pass
    return out


@dataclass
class HostSnapshot:
    sysctls: dict[str, str] = field(default_factory=dict)
    iptables: str = ""
    ip6tables: str = ""
    cgroups: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)

    @classmethod
    def take(cls) -> "HostSnapshot":
        return cls(read_sysctls(), iptables_save("iptables-save"), iptables_save("ip6tables-save"),
                   cgroup_dirs(), links(), mounts())

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> "HostSnapshot":
        return cls(**json.loads(path.read_text()))

    def differences(self, other: "HostSnapshot") -> list[str]:
        """What `other` (taken later) has that this one did not, as readable lines."""
        out = [f"sysctl {k}: {v!r} -> {other.sysctls.get(k)!r}" for k, v in self.sysctls.items()
               if other.sysctls.get(k) != v]
        for label, a, b in (("iptables", self.iptables, other.iptables), ("ip6tables", self.ip6tables, other.ip6tables)):
            ra, rb = iptables_rules(a), iptables_rules(b)
            out += [f"{label} added: {r}" for r in sorted(rb - ra)]
            out += [f"{label} removed: {r}" for r in sorted(ra - rb)]
        out += [f"cgroup added: {c}" for c in sorted(set(other.cgroups) - set(self.cgroups))]
        out += [f"link added: {x}" for x in sorted(set(other.links) - set(self.links))]
        out += [f"mount added: {m}" for m in sorted(set(other.mounts) - set(self.mounts))]
        return out


def is_root() -> bool:
    return os.geteuid() == 0
