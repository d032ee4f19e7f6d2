"""Engine-level fixtures: HF transformers on the session's tiny checkpoints (`tiny_models`,
tests/support/tiny_models.py) as the correctness oracle."""
from __future__ import annotations

import pytest
import torch

from tests.support.tiny_models import ARCHS

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def hf_models(tiny_models):
    from transformers import AutoModelForCausalLM

    return {arch: AutoModelForCausalLM.from_pretrained(tiny_models[arch], dtype=torch.float32).eval()
            for arch in ARCHS}
