"""Loading HF directories: sharded safetensors with an index, progress output, clear errors."""
from __future__ import annotations

import asyncio
import json
import os
import shutil

import pytest
from safetensors.torch import load_file, save_file

from radix_runtime.core.request import EngineRequest

from tests.support.hf import hf_greedy

from .helpers import collect, greedy, make_engine, shutdown


def _shard(src: str, dst: str) -> None:
    shutil.copytree(src, dst)
    os.remove(os.path.join(dst, "model.safetensors"))
    tensors = load_file(os.path.join(src, "model.safetensors"))
    names = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((names[::2], names[1::2])):
        fname = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, os.path.join(dst, fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    with open(os.path.join(dst, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)


def test_sharded_checkpoint_loads_and_matches_hf(tiny_models, hf_models, tmp_path, capfd):
    d = str(tmp_path / "sharded")
    _shard(tiny_models["qwen2"], d)
    engine = make_engine(d, max_total_tokens=1024)
    try:
        assert "loaded weights 2/2" in capfd.readouterr().err  # progress while loading
        ids = engine.tokenizer.encode("Sharded weights load the same")
        out, _ = asyncio.run(collect(engine, EngineRequest("sh", ids, greedy(10))))
        assert out.output_ids == hf_greedy(hf_models["qwen2"], ids, 10)
    finally:
        shutdown(engine)


def test_context_length_override_beyond_trained_length(tiny_models):
    engine = make_engine(tiny_models["llama"], max_total_tokens=4096, context_length=3000)
    try:
        assert engine.context_length == 3000
        out, _ = asyncio.run(collect(engine, EngineRequest("cl", [5] * 2100, greedy(3, ignore_eos=True))))
        assert out.completion_tokens == 3
    finally:
        shutdown(engine)


def test_missing_weight_and_unknown_architecture_fail_clearly(tiny_models, tmp_path):
    d = str(tmp_path / "broken")
    shutil.copytree(tiny_models["llama"], d)
    tensors = load_file(os.path.join(d, "model.safetensors"))
    del tensors["model.norm.weight"]
    save_file(tensors, os.path.join(d, "model.safetensors"))
    with pytest.raises(KeyError, match="model.norm.weight"):
        make_engine(d)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    cfg["architectures"] = ["GPT2LMHeadModel"]
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    with pytest.raises(ValueError, match="unsupported architecture"):
        make_engine(d)
