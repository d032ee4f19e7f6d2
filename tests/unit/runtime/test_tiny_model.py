"""tiny_model writes checkpoints HF transformers loads (tokenizer, chat template, model) whose
random weights still tell prompts apart."""
from __future__ import annotations

import json
import os

import pytest
import torch

from radix_runtime.tiny_model import main

torch.set_num_threads(1)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_cli_writes_a_loadable_checkpoint(arch, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = str(tmp_path / arch)
    main(["--out", out, "--arch", arch, "--seed", "3", "--num-layers", "2"])
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json"} <= set(os.listdir(out))
    tok = AutoTokenizer.from_pretrained(out)
    assert 256 < len(tok) <= 1024 and tok.bos_token and tok.eos_token and tok.pad_token
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["model_type"] == arch
    firsts = set()
    for p in ["Hello world", "The quick brown fox", "def f(x):", "Once upon a time", "1 2 3", "Paris"]:
        ids = tok(p, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = model(ids).logits[0, -1]
        top2 = logits.topk(2).values
        assert top2[0] - top2[1] > 1e-3  # greedy never hinges on a float tie
        firsts.add(int(logits.argmax()))
    assert len(firsts) >= 4  # different prompts, different continuations
