"""A real SMG router (`smg launch`, pinned in the test extra) on a free loopback port, in front
of runtime servers (used by tests/runtime/routing and bench/routing.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.net import free_port
from tests.support.process import terminate
from tests.support.waiting import wait_for


def smg_binary() -> str | None:
    here = Path(sys.executable).with_name("smg")
    return str(here) if here.exists() else shutil.which("smg")


class SmgRouter:
    def __init__(self, policy: str, log_path: Path, *, worker_urls: list[str] = (),
                 discovery_file: Path | None = None, extra: list[str] = ()):
        exe = smg_binary()
        if exe is None:
            raise RuntimeError("smg is not installed: pip install -e '.[test]'")
        self.port, self.metrics_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        args = [exe, "launch", "--host", "127.0.0.1", "--port", str(self.port),
                "--prometheus-host", "127.0.0.1", "--prometheus-port", str(self.metrics_port),
                "--policy", policy, "--health-check-interval-secs", "1",
                "--health-failure-threshold", "1", "--log-level", "info"]
        if discovery_file is not None:
            args += ["--discovery-provider", "file", "--discovery-file", str(discovery_file),
                     "--discovery-check-interval-secs", "1"]
        else:
            args += ["--worker-urls", *worker_urls]
        self.proc = subprocess.Popen([*args, *extra], stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "NO_COLOR": "1"})

    def workers(self) -> list[dict]:
        return httpx.get(self.url + "/workers", timeout=5).json()["workers"]

    def wait_workers(self, n: int, timeout: float = 60) -> "SmgRouter":
        """Until the router lists exactly `n` healthy workers."""
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"smg exited with {self.proc.returncode}:\n{self.log()}")
            ws = self.workers()
            return len(ws) == n and all(w.get("is_healthy") for w in ws)

        try:
            wait_for(ready, timeout, interval=0.1, what=f"{n} healthy workers in {self.url}",
                     ignore=lambda e: isinstance(e, (httpx.TransportError, KeyError, ValueError)))
        except AssertionError as e:
            raise RuntimeError(f"{e}\n{self.log()}") from None
        return self

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 10) -> int:
        code = terminate(self.proc, timeout)
        self._log.close()
        return code
