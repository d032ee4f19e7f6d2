"""A real `python -m radix_runtime.launch_server` process on a free loopback port (used by the
runtime's server tests and by the benchmark)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.net import free_port
from tests.support.process import terminate
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


class RuntimeServer:
    def __init__(self, model: Path | str, flags: tuple[str, ...] | list[str], log_path: Path,
                 threads: int = 1, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "radix_runtime.launch_server", "--model-path", str(model),
             "--host", "127.0.0.1", "--port", str(self.port), *flags],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        self.health_seen: list[int] = []  # /health statuses observed while starting

    def wait_ready(self, timeout: float = 120) -> "RuntimeServer":
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            self.health_seen.append(httpx.get(self.url + "/health", timeout=2).status_code)
            return self.health_seen[-1] == 200

        try:
            wait_for(ready, timeout, interval=0.02, what=f"/health 200 from {self.url}",
                     ignore=lambda e: isinstance(e, httpx.TransportError))
        except AssertionError as e:
            raise RuntimeError(f"{e}\n{self.log()}") from None
        return self

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def metrics(self) -> dict[str, float]:
        """/metrics as metric name -> value (each server exports one label set)."""
        out = {}
        for line in httpx.get(self.url + "/metrics").text.splitlines():
            if line and not line.startswith("#"):
                name_labels, value = line.rsplit(" ", 1)
                name = name_labels.split("{", 1)[0]
                if "_bucket" not in name:
                    out[name] = float(value)
        return out

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (graceful drain) and the exit code."""
        code = terminate(self.proc, timeout)
        self._log.close()
        return code
