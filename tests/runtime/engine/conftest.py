"""Engine-level fixtures: tiny random checkpoints (written once per session), engines over them,
and HF transformers on the same weights as the correctness oracle."""
from __future__ import annotations

import pytest
import torch

from radix_runtime.tiny_model import write_tiny_model

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: write_tiny_model(str(root / arch), arch=arch, seed=i)
            for i, arch in enumerate(("llama", "qwen2", "qwen3"))}


@pytest.fixture(scope="session")
def hf_models(tiny_dirs):
    from transformers import AutoModelForCausalLM

    return {arch: AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
            for arch, d in tiny_dirs.items()}
