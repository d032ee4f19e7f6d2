"""HF transformers as the correctness oracle for the runtime's outputs."""
from __future__ import annotations

import torch


def hf_greedy(model, ids: list[int], max_new_tokens: int) -> list[int]:
    """The token ids `model.generate` continues `ids` with, greedily."""
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
                             attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out[0, len(ids):].tolist()
