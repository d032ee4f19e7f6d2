"""The runtime tests' checkpoints: tiny random models written by radix_runtime.tiny_model, each
set of arguments once per session (tests/conftest.py registers the fixtures)."""
from __future__ import annotations

from pathlib import Path

import pytest

from radix_runtime.tiny_model import write_tiny_model

ARCHS = ("llama", "qwen2", "qwen3")  # untied LM head; tied + qkv bias; tied + q/k norm


class TinyModels:
    def __init__(self, root: Path):
        self.root = root
        self._written: dict[tuple, Path] = {}

    def get(self, arch: str = "llama", **kw) -> Path:
        """The checkpoint for write_tiny_model(arch=arch, **kw); the seed defaults to the arch's
        index in ARCHS, so the three default checkpoints differ."""
        kw.setdefault("seed", ARCHS.index(arch))
        key = (arch, *sorted((k, repr(v)) for k, v in kw.items()))
        if key not in self._written:
            out = self.root / f"{arch}-{len(self._written)}"
            self._written[key] = Path(write_tiny_model(str(out), arch=arch, **kw))
        return self._written[key]

    def __getitem__(self, arch: str) -> Path:
        return self.get(arch)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_model(tiny_models) -> Path:
    """The default checkpoint (llama) most tests serve."""
    return tiny_models["llama"]
