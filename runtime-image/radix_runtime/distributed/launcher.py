"""Where this process sits in its group, and starting the rank processes of this pod.

LeaderWorkerSet gives every pod of a group `LWS_LEADER_ADDRESS`, `LWS_GROUP_SIZE` and
`LWS_WORKER_INDEX`; SGLang's flags (`--dist-init-addr`, `--nnodes`, `--node-rank`) say the same and
win when given. World size is tp x pp; a pod (node) runs world / nnodes ranks, one process each
(one GPU each; on CPU `--gpus-per-node` or RADIX_GPUS_PER_NODE sets the count for tests). The
launcher process itself is local rank 0 and starts the others with RADIX_LOCAL_RANK set; they die
with it (PDEATHSIG). `--engine sglang` execs upstream `python3 -m sglang.launch_server` instead,
with the same flags plus the ones LWS implies (`sglang_argv`).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Mapping

DIST_INIT_PORT = 20000  # the operator's default too (operator/sglang_operator/render/engines.py)
ENV_LOCAL_RANK = "RADIX_LOCAL_RANK"
ENV_GPUS_PER_NODE = "RADIX_GPUS_PER_NODE"
ENV_PARENT_PID = "RADIX_PARENT_PID"  # lets a child notice a launcher that died before PDEATHSIG
# our flags that upstream SGLang does not know: never forwarded to it (name -> takes a value)
LAUNCHER_ONLY = {"--engine": True, "--gpus-per-node": True, "--dist-init-port": True,
                 "--dist-heartbeat-timeout": True}


@dataclass(frozen=True)
class Placement:
    tp: int
    pp: int
    nnodes: int
    node_rank: int
    local_ranks: int  # rank processes per node
    host: str  # rank 0's address: rendezvous store, group health
    port: int

    @property
    def world_size(self) -> int:
        return self.tp * self.pp

    def rank(self, local_rank: int) -> int:
        return self.node_rank * self.local_ranks + local_rank


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--dist-init-addr {addr!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def placement(args, env: Mapping[str, str]) -> Placement:
    """Pure: flags first, LWS variables second, one node otherwise. Raises ValueError."""
    tp, pp = args.tp_size or 1, args.pp_size or 1
    nnodes = args.nnodes if args.nnodes is not None else int(env.get("LWS_GROUP_SIZE", 1))
    node_rank = args.node_rank if args.node_rank is not None else int(env.get("LWS_WORKER_INDEX", 0))
    if args.dist_init_addr:
        host, port = split_addr(args.dist_init_addr)
    else:
        host, port = env.get("LWS_LEADER_ADDRESS", "127.0.0.1"), args.dist_init_port
    if nnodes > 1 and not args.dist_init_addr and "LWS_LEADER_ADDRESS" not in env:
        raise ValueError("--nnodes > 1 needs --dist-init-addr (or LWS_LEADER_ADDRESS)")
    if nnodes < 1 or not 0 <= node_rank < nnodes:
        raise ValueError(f"--node-rank {node_rank} must be in [0, --nnodes {nnodes})")
    world = tp * pp
    per_node = args.gpus_per_node or int(env.get(ENV_GPUS_PER_NODE, 0)) or world // nnodes
    if per_node * nnodes != world:
        raise ValueError(f"tp x pp = {world} ranks do not fill {nnodes} node(s) x {per_node} "
                         "rank(s) per node (--gpus-per-node)")
    return Placement(tp, pp, nnodes, node_rank, per_node, host, port)


def _strip_launcher_flags(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        name, eq, _ = a.partition("=")
        if name in LAUNCHER_ONLY:
            skip = LAUNCHER_ONLY[name] and not eq
            continue
        out.append(a)
    return out


def sglang_argv(argv: list[str], args, env: Mapping[str, str]) -> list[str]:
    """Pure: upstream SGLang's command line for our command line. Flags pass through verbatim
    (SGLang has the same names); the distributed flags LWS implies are added when missing."""
    p = placement(args, env)
    out = ["python3", "-m", "sglang.launch_server", *_strip_launcher_flags(argv)]
    if p.nnodes > 1:
        if not args.dist_init_addr:
            out += ["--dist-init-addr", f"{p.host}:{p.port}"]
        if args.nnodes is None:
            out += ["--nnodes", str(p.nnodes)]
        if args.node_rank is None:
            out += ["--node-rank", str(p.node_rank)]
    return out


# -- starting the ranks of this node -----------------------------------------------------------
def die_with_parent() -> None:
    """Linux: SIGKILL this process when the launcher that started it dies, however it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def spawn_local_ranks(p: Placement, argv: list[str]) -> list[subprocess.Popen]:
    """Local ranks 1.. as children running this same command line."""
    procs = []
    for local in range(1, p.local_ranks):
        env = {**os.environ, ENV_LOCAL_RANK: str(local), ENV_PARENT_PID: str(os.getpid())}
        procs.append(subprocess.Popen([sys.executable, "-m", "radix_runtime.launch_server", *argv], env=env))
    return procs


def watch_children(procs: list[subprocess.Popen], on_failure) -> None:
    """A rank process of this node that fails takes the node (and so the group) down at once."""
    def wait(proc):
        if proc.wait() != 0:
            on_failure(f"local rank process {proc.pid} exited with {proc.returncode}")
    for proc in procs:
        threading.Thread(target=wait, args=(proc,), daemon=True).start()
