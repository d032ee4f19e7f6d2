"""A LeaderWorkerSet group on loopback: one `python -m radix_runtime.launch_server` process per
"pod", configured only through the LWS variables, each pod on its own HTTP port (they would share
one port on separate pod IPs). Pods with several ranks start their other ranks as children."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.net import free_port
from tests.support.server import REPO
from tests.support.waiting import wait_for


def descendants(pid: int) -> set[int]:
    """All live processes below pid, from /proc."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class Pods:
    def __init__(self, model: Path, tp: int, pp: int, pods: int, log_dir: Path, *flags: str,
                 heartbeat_timeout: float = 3.0):
        self.ports = [free_port() for _ in range(pods)]
        self.url = f"http://127.0.0.1:{self.ports[0]}"
        dist_port = free_port()
        self.logs = [log_dir / f"pod{i}.log" for i in range(pods)]
        self.procs = []
        for i in range(pods):
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
                   "LWS_LEADER_ADDRESS": "127.0.0.1", "LWS_GROUP_SIZE": str(pods), "LWS_WORKER_INDEX": str(i)}
            with open(self.logs[i], "wb") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "radix_runtime.launch_server", "--model-path", str(model),
                     "--host", "127.0.0.1", "--port", str(self.ports[i]), "--tp-size", str(tp),
                     "--pp-size", str(pp), "--dist-init-port", str(dist_port),
                     "--gpus-per-node", str(tp * pp // pods),
                     "--dist-heartbeat-timeout", str(heartbeat_timeout), *flags],
                    stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env))
        self.pids: set[int] = set()  # every process of the group, children included
        self.left: list[int] = []

    def health(self, pod: int) -> int:
        try:
            return httpx.get(f"http://127.0.0.1:{self.ports[pod]}/health", timeout=2).status_code
        except httpx.TransportError:
            return 0

    def wait_ready(self, timeout: float = 90) -> "Pods":
        def ready() -> bool:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"pod exited with {p.returncode}:\n{self.log()}")
            return all(self.health(i) == 200 for i in range(len(self.procs)))

        try:
            wait_for(ready, timeout, what="/health 200 from every pod")
        except AssertionError as e:
            raise RuntimeError(f"{e}\n{self.log()}") from None
        for p in self.procs:
            self.pids |= {p.pid} | descendants(p.pid)
        return self

    def log(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs)

    def leftovers(self) -> list[int]:
        return [p for p in self.pids if alive(p)]

    def stop(self, timeout: float = 30) -> list[int | None]:
        """SIGTERM every pod (as Kubernetes deletes a group); the exit codes. Processes of the
        group still alive afterwards are recorded in `self.left` (then killed)."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        self.left = self.leftovers()
        for pid in self.left:  # nothing may outlive the test
            os.kill(pid, signal.SIGKILL)
        return codes
