"""Real radix_runtime server processes on loopback serving the session's tiny checkpoint
(`tiny_model`, tests/support/tiny_models.py).

`launch(tiny_model, *flags, env=...)` starts `python -m radix_runtime.launch_server` on a free port and
waits until /health says 200; `RuntimeServer.stop()` sends SIGTERM and returns the exit code. The
module-scoped `server` fixture is shared by tests that do not need special flags.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.server import RuntimeServer


@pytest.fixture(scope="session")
def launch(tmp_path_factory):
    started: list[RuntimeServer] = []

    def start(model: Path, *flags: str, wait: bool = True, env: dict[str, str] | None = None) -> RuntimeServer:
        s = RuntimeServer(model, flags, tmp_path_factory.mktemp("server") / "server.log", env=env)
        started.append(s)
        return s.wait_ready() if wait else s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def server(launch, tiny_model) -> RuntimeServer:
    return launch(tiny_model)
