"""--enable-torch-compile through the engine: concurrent greedy requests decode the same tokens as
the eager engine and as HF transformers (up to HF's EOS: ours ignore it), on the Llama and Qwen3
(qk-norm) layer shapes."""
from __future__ import annotations

import asyncio

import pytest

from radix_runtime.core.request import EngineRequest

from tests.support.hf import hf_greedy

from .helpers import greedy, make_engine, run_all, shutdown


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_compiled_decode_matches_hf(arch, tiny_models, hf_models):
    engines = [make_engine(tiny_models[arch], max_total_tokens=2048, **kw)
               for kw in ({}, dict(enable_torch_compile=True, torch_compile_max_bs=4))]
    tok = engines[0].tokenizer
    prompts = [tok.encode(p) for p in ("Hello world", "The quick brown fox jumps", "1 2 3")]
    try:
        # every bucket compiled at start; ignore_eos: all three decode together to the end, in
        # bucket 4 (3 rows + a pad)
        assert set(engines[1].runner.graphs.compiled) == {1, 2, 4}
        eager, compiled = ([o.output_ids for o in asyncio.run(run_all(e, [
            EngineRequest(f"{arch}-{i}", p, greedy(10, ignore_eos=True)) for i, p in enumerate(prompts)]))]
            for e in engines)
        assert compiled == eager and all(len(ids) == 10 for ids in compiled)
        for p, ids in zip(prompts, compiled):
            ref = hf_greedy(hf_models[arch], p, 10)
            assert ids[:len(ref)] == ref
        assert engines[1].runner.graphs.runs == {1: 0, 2: 0, 4: 9}  # 10 tokens: 1 prefill + 9 decodes
        engines[1].check_integrity()
    finally:
        for e in engines:
            shutdown(e)
