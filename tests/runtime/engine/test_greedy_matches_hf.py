"""Greedy decoding through the Engine API equals HF transformers token for token on the same
tiny checkpoints: single requests, 32 concurrent requests sharing prefixes, cache hits, chunked
prefill and scaled RoPE."""
from __future__ import annotations

import asyncio
import random

import pytest

from radix_runtime.core.request import EngineRequest

from tests.support.hf import hf_greedy

from .helpers import collect, greedy, make_engine, run_all, shutdown

async def _stream(engine, req):
    return [out async for out in engine.generate(req)]


PROMPTS = ["Hello world", "The quick brown fox", "def fibonacci(n):", "Once upon a time there was",
           "Kubernetes runs containers in pods", "1 2 3 4 5"]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_single_requests_match_hf(arch, tiny_models, hf_models):
    engine = make_engine(tiny_models[arch], max_total_tokens=4096)
    try:
        for i, p in enumerate(PROMPTS):
            ids = engine.tokenizer.encode(p)
            stream = asyncio.run(_stream(engine, EngineRequest(f"{arch}-{i}", ids, greedy(20))))
            out = stream[-1]
            ref = hf_greedy(hf_models[arch], ids, 20)
            assert out.output_ids == ref, (p, out.output_ids, ref)
            assert out.finished and out.completion_tokens == len(ref) and out.prompt_tokens == len(ids)
            # streamed updates are cumulative: each extends the one before (a slow reader may
            # skip some, never the last)
            assert 1 <= len(stream) <= len(ref) and not any(o.finished for o in stream[:-1])
            for a, b in zip(stream, stream[1:]):
                assert b.output_ids[:len(a.output_ids)] == a.output_ids and b.text.startswith(a.text)
            assert out.text == engine.tokenizer.decode(ref) or out.finish_reason["type"] == "stop"
        engine.check_integrity()
    finally:
        shutdown(engine)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_32_concurrent_shared_prefixes_match_hf(arch, tiny_models, hf_models):
    rng = random.Random(7)
    engine = make_engine(tiny_models[arch], max_total_tokens=8192, chunked_prefill_size=256)
    tok = engine.tokenizer
    systems = [tok.encode(f"System {k}: you are a helpful assistant number {k}. " * 3) for k in range(4)]
    prompts = [systems[i % 4] + [rng.randrange(5, tok.vocab_size) for _ in range(rng.randrange(1, 40))]
               for i in range(32)]
    try:
        outs = asyncio.run(run_all(engine, [EngineRequest(f"c{i}", p, greedy(12)) for i, p in enumerate(prompts)]))
        for p, out in zip(prompts, outs):
            assert out.output_ids == hf_greedy(hf_models[arch], p, 12)
        assert sum(o.cached_tokens for o in outs) > 0  # members of a group reused its system prompt
        engine.check_integrity()
    finally:
        shutdown(engine)


def test_second_request_hits_cache(tiny_models, hf_models):
    engine = make_engine(tiny_models["llama"], max_total_tokens=4096)
    tok = engine.tokenizer
    first = tok.encode("You are a helpful assistant. Answer the question briefly and honestly.")
    second = first + tok.encode(" What is the capital of France?", add_special_tokens=False)
    try:
        a, _ = asyncio.run(collect(engine, EngineRequest("a", first, greedy(8))))
        b, _ = asyncio.run(collect(engine, EngineRequest("b", second, greedy(8))))
        assert a.cached_tokens == 0
        assert b.cached_tokens == len(first)
        assert a.output_ids == hf_greedy(hf_models["llama"], first, 8)
        assert b.output_ids == hf_greedy(hf_models["llama"], second, 8)
        # the very same prompt again: everything but the last token comes from the cache
        c, _ = asyncio.run(collect(engine, EngineRequest("c", second, greedy(8))))
        assert c.cached_tokens == len(second) - 1 and c.output_ids == b.output_ids
        st = engine.stats()
        assert st.cached_tokens_total == b.cached_tokens + c.cached_tokens
        assert st.computed_prefill_tokens_total == st.prompt_tokens_total - st.cached_tokens_total
        engine.check_integrity()
    finally:
        shutdown(engine)


def test_chunked_prefill_matches_hf(tiny_models, hf_models):
    engine = make_engine(tiny_models["qwen2"], max_total_tokens=4096, chunked_prefill_size=48)
    rng = random.Random(3)
    prompts = [[rng.randrange(5, engine.tokenizer.vocab_size) for _ in range(n)] for n in (150, 97, 49, 10)]
    try:
        outs = asyncio.run(run_all(engine, [EngineRequest(f"k{i}", p, greedy(10)) for i, p in enumerate(prompts)]))
        for p, out in zip(prompts, outs):
            assert out.output_ids == hf_greedy(hf_models["qwen2"], p, 10)
        engine.check_integrity()
    finally:
        shutdown(engine)


@pytest.mark.parametrize("arch,scaling", [
    ("llama", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}),
    ("llama", {"rope_type": "linear", "factor": 2.0}),
    ("qwen2", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}),
])
def test_rope_scaling_matches_hf(arch, scaling, tiny_models):
    from transformers import AutoModelForCausalLM
    import torch

    d = tiny_models.get(arch, seed=11, rope_scaling=scaling)
    hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    engine = make_engine(d, max_total_tokens=2048)
    rng = random.Random(5)
    prompt = [rng.randrange(5, engine.tokenizer.vocab_size) for _ in range(120)]
    try:
        out, _ = asyncio.run(collect(engine, EngineRequest("r", prompt, greedy(12))))
        assert out.output_ids == hf_greedy(hf, prompt, 12)
    finally:
        shutdown(engine)


def _with_config(src: str, dst: str, **changes) -> str:
    import json
    import shutil

    shutil.copytree(src, dst)
    with open(f"{dst}/config.json") as f:
        cfg = json.load(f)
    cfg.update(changes)
    with open(f"{dst}/config.json", "w") as f:
        json.dump(cfg, f)
    return dst


@pytest.mark.parametrize("arch,changes", [
    ("llama", dict(architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=16)),
    ("qwen2", dict(use_sliding_window=True, sliding_window=16, max_window_layers=1)),
])
def test_sliding_window_matches_hf(arch, changes, tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM
    import torch

    d = _with_config(tiny_models[arch], str(tmp_path / "sw"), **changes)
    hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    engine = make_engine(d, max_total_tokens=2048, chunked_prefill_size=24)
    rng = random.Random(9)
    prompts = [[rng.randrange(5, engine.tokenizer.vocab_size) for _ in range(n)] for n in (60, 9)]
    try:
        outs = asyncio.run(run_all(engine, [EngineRequest(f"w{i}", p, greedy(24)) for i, p in enumerate(prompts)]))
        for p, out in zip(prompts, outs):
            assert out.output_ids == hf_greedy(hf, p, 24)
        # and the window matters: the same weights without it decode differently
        full = make_engine(tiny_models[arch], max_total_tokens=2048)
        try:
            ref = asyncio.run(collect(full, EngineRequest("f", prompts[0], greedy(24))))[0]
            assert ref.output_ids != outs[0].output_ids
        finally:
            shutdown(full)
    finally:
        shutdown(engine)
