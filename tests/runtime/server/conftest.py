"""Real radix_runtime server processes on loopback serving a tiny checkpoint written per session.

`launch(tiny_model, *flags)` starts `python -m radix_runtime.launch_server` on a free port and
waits until /health says 200; `Server.stop()` sends SIGTERM and returns the exit code. The
module-scoped `server` fixture is shared by tests that do not need special flags.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.server import Server
from radix_runtime.tiny_model import write_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return Path(write_tiny_model(str(tmp_path_factory.mktemp("tiny-llama")), arch="llama", seed=0))


@pytest.fixture(scope="session")
def launch(tmp_path_factory):
    started: list[Server] = []

    def start(model: Path, *flags: str, wait: bool = True) -> Server:
        s = Server(model, flags, tmp_path_factory.mktemp("server") / "server.log")
        started.append(s)
        return s.wait_ready() if wait else s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def server(launch, tiny_model) -> Server:
    return launch(tiny_model)
