"""Real radix_runtime server processes on loopback serving a tiny checkpoint written per session.

`launch(tiny_model, *flags)` starts `python -m radix_runtime.launch_server` on a free port and
waits until /health says 200; `Server.stop()` sends SIGTERM and returns the exit code. The
module-scoped `server` fixture is shared by tests that do not need special flags.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from radix_runtime.tiny_model import write_tiny_model

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: Path, flags: tuple[str, ...], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "radix_runtime.launch_server", "--model-path", str(model),
             "--host", "127.0.0.1", "--port", str(self.port), *flags],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        self.health_seen: list[int] = []  # /health statuses observed while starting

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                r = httpx.get(self.url + "/health", timeout=2)
                self.health_seen.append(r.status_code)
                if r.status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def metrics(self) -> dict[str, float]:
        """Unlabelled view of /metrics: metric name -> value (label sets are single here)."""
        out = {}
        for line in httpx.get(self.url + "/metrics").text.splitlines():
            if line and not line.startswith("#"):
                name_labels, value = line.rsplit(" ", 1)
                name = name_labels.split("{", 1)[0]
                if "_bucket" not in name:
                    out[name] = float(value)
        return out

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return Path(write_tiny_model(str(tmp_path_factory.mktemp("tiny-llama")), arch="llama", seed=0))


@pytest.fixture(scope="session")
def launch(tmp_path_factory):
    started: list[Server] = []

    def start(model: Path, *flags: str, wait: bool = True) -> Server:
        log = tmp_path_factory.mktemp("server") / "server.log"
        s = Server(model, flags, log)
        started.append(s)
        return s.wait_ready() if wait else s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def server(launch, tiny_model) -> Server:
    return launch(tiny_model)
