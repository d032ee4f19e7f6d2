"""Tiny checkpoints, a single-process reference server per checkpoint, and LWS-style groups."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.server import Server
from radix_runtime.tiny_model import write_tiny_model

from .pods import Pods
from .workload import run_workload


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parallel-models")
    # llama: untied LM head; qwen2: tied embeddings + qkv bias; qwen3: tied + q/k norm
    return {arch: Path(write_tiny_model(str(root / arch), arch=arch, seed=10 + i))
            for i, arch in enumerate(("llama", "qwen2", "qwen3"))}


@pytest.fixture(scope="session")
def reference(models, tmp_path_factory):
    """arch -> the workload's results on one process (computed once per arch)."""
    cache: dict[str, list] = {}

    def get(arch: str) -> list:
        if arch not in cache:
            s = Server(models[arch], [], tmp_path_factory.mktemp("ref") / "server.log")
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
