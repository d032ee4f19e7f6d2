"""Prefix sharing at scale: 16 groups x 8 requests with a 512-token common prefix per group, all
submitted at once. The radix cache should serve 7 of every 8 prefixes (the ideal hit rate) and the
model should only compute what was not cached; with the cache off nothing is shared."""
from __future__ import annotations

import asyncio
import random

from radix_runtime.core.request import EngineRequest

from .helpers import greedy, make_engine, run_all, shutdown


def _workload(vocab: int, groups: int, per_group: int, prefix_len: int, suffix_len: int):
    rng = random.Random(1)
    prompts = []
    for _ in range(groups):
        prefix = [rng.randrange(5, vocab) for _ in range(prefix_len)]
        prompts += [prefix + [rng.randrange(5, vocab) for _ in range(suffix_len)] for _ in range(per_group)]
    rng.shuffle(prompts)  # arrival order interleaves the groups
    return prompts


def test_shared_prefix_hit_rate_near_ideal(tiny_models):
    groups, per_group, prefix_len, suffix_len = 16, 8, 512, 16
    engine = make_engine(tiny_models["llama"], max_total_tokens=32768)
    try:
        prompts = _workload(engine.tokenizer.vocab_size, groups, per_group, prefix_len, suffix_len)
        reqs = [EngineRequest(f"s{i}", p, greedy(4, ignore_eos=True)) for i, p in enumerate(prompts)]
        outs = asyncio.run(run_all(engine, reqs))
        st = engine.stats()
        total = sum(len(p) for p in prompts)
        ideal = groups * (per_group - 1) * prefix_len / total
        hit = st.cached_tokens_total / st.prompt_tokens_total
        assert st.prompt_tokens_total == total
        assert abs(hit - ideal) <= 0.05, (hit, ideal)
        assert sum(o.cached_tokens for o in outs) == st.cached_tokens_total
        assert st.computed_prefill_tokens_total == total - st.cached_tokens_total
        assert all(o.completion_tokens == 4 for o in outs)
        engine.check_integrity()
        assert engine.flush_cache()
        assert engine.stats().cache_usage == 0
        engine.check_integrity()
    finally:
        shutdown(engine)


def test_cache_off_shares_nothing(tiny_models):
    engine = make_engine(tiny_models["llama"], max_total_tokens=8192, disable_radix_cache=True)
    try:
        prompts = _workload(engine.tokenizer.vocab_size, 4, 4, 128, 8)
        reqs = [EngineRequest(f"n{i}", p, greedy(4)) for i, p in enumerate(prompts)]
        outs = asyncio.run(run_all(engine, reqs))
        st = engine.stats()
        assert st.cached_tokens_total == 0 and all(o.cached_tokens == 0 for o in outs)
        assert st.computed_prefill_tokens_total == st.prompt_tokens_total == sum(map(len, prompts))
        assert st.cache_usage == 0
        engine.check_integrity()
    finally:
        shutdown(engine)
