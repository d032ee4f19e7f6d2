"""The session's tiny checkpoints by arch, a single-process reference server per checkpoint, and
LWS-style groups."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.server import RuntimeServer
from tests.support.tiny_models import ARCHS

from .pods import Pods
from .workload import run_workload


@pytest.fixture(scope="session")
def models(tiny_models) -> dict[str, Path]:
    return {arch: tiny_models[arch] for arch in ARCHS}


@pytest.fixture(scope="session")
def reference(models, tmp_path_factory):
    """arch -> the workload's results on one process (computed once per arch)."""
    cache: dict[str, list] = {}

    def get(arch: str) -> list:
        if arch not in cache:
            s = RuntimeServer(models[arch], [], tmp_path_factory.mktemp("ref") / "server.log")
            try:
                cache[arch] = run_workload(s.wait_ready().url)
            finally:
                assert s.stop() == 0
        return cache[arch]

    return get


@pytest.fixture
def start_pods(models, tmp_path):
    started: list[Pods] = []

    def start(arch: str, tp: int, pp: int, pods: int, *flags: str) -> Pods:
        p = Pods(models[arch], tp, pp, pods, tmp_path, *flags)
        started.append(p)
        return p.wait_ready()

    yield start
    for p in started:
        p.stop()
