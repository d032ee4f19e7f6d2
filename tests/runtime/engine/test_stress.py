"""Randomized stress on a deliberately small KV pool: shared prefixes, long decodes, aborts (by
closing the stream and by rid) force eviction and retraction. Afterwards every slot is accounted
for, and the requests that ran to the end produced exactly what an unconstrained engine produces."""
from __future__ import annotations

import asyncio
import random
from contextlib import aclosing

import pytest

from radix_runtime.core.request import EngineRequest, SamplingParams

from .helpers import greedy, make_engine, run_all, shutdown


def _requests(seed: int, vocab: int, n: int = 36):
    rng = random.Random(seed)
    prefixes = [[rng.randrange(5, vocab) for _ in range(rng.randrange(30, 80))] for _ in range(3)]
    reqs = []
    for i in range(n):
        prompt = rng.choice(prefixes) + [rng.randrange(5, vocab) for _ in range(rng.randrange(1, 60))]
        n_new = rng.randrange(5, 45)
        kind = rng.choice(["greedy", "greedy", "penalties", "seeded"])
        if kind == "greedy":
            params = greedy(n_new, ignore_eos=True)
        elif kind == "penalties":
            params = greedy(n_new, ignore_eos=True, repetition_penalty=1.3, frequency_penalty=0.5,
                            presence_penalty=0.3, logit_bias={7: 2.0})
        else:  # seeded sampling: the request's own generator makes it batch-independent
            params = SamplingParams(max_new_tokens=n_new, temperature=0.8, top_p=0.9, top_k=40,
                                    min_p=0.02, seed=rng.randrange(1000), ignore_eos=True)
        reqs.append(EngineRequest(f"x{seed}-{i}", prompt, params))
    fate = [rng.choice(["run", "run", "run", "close", "abort"]) for _ in range(n)]
    return reqs, fate


async def _drive(engine, req, fate, rng):
    stop_after = rng.randrange(1, 6)
    seen = 0
    last = None
    async with aclosing(engine.generate(req)) as stream:
        async for out in stream:
            last, seen = out, seen + 1
            if fate == "close" and seen >= stop_after:
                return None  # closing the stream aborts the request
            if fate == "abort" and seen == stop_after:
                engine.abort(req.rid)
    return last


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_pool_stress(seed, tiny_models):
    small = make_engine(tiny_models["llama"], max_total_tokens=400, chunked_prefill_size=64)
    big = make_engine(tiny_models["llama"], max_total_tokens=16384)
    # admit optimistically (reserve almost nothing for future decode) so decode runs out of KV
    sch = small.scheduler
    sch.init_new_token_ratio = sch.new_token_ratio = sch.min_new_token_ratio = 0.02
    try:
        reqs, fates = _requests(seed, small.tokenizer.vocab_size)
        rng = random.Random(seed)

        async def main():
            return await asyncio.gather(*(_drive(small, r, f, rng) for r, f in zip(reqs, fates)))

        outs = asyncio.run(main())
        small.check_integrity()
        st = small.stats()
        assert st.num_running_reqs == st.num_waiting_reqs == 0
        assert st.num_retractions_total > 0, "the pool was meant to run short during decode"
        assert small.scheduler.evicted_tokens_total > 0, "the cache was meant to be evicted"
        done = [(r, o) for r, f, o in zip(reqs, fates, outs) if f == "run"]
        ref = asyncio.run(run_all(big, [EngineRequest(r.rid, r.input_ids, r.sampling) for r, _ in done]))
        for (r, o), want in zip(done, ref):
            assert o.finish_reason == {"type": "length", "length": r.sampling.max_new_tokens}
            assert o.output_ids == want.output_ids, r.rid
        aborted = [o for f, o in zip(fates, outs) if f == "abort"]
        assert all(o.finish_reason["type"] in ("abort", "length") for o in aborted)
        assert any(o.finish_reason["type"] == "abort" for o in aborted)
        big.check_integrity()
    finally:
        shutdown(small)
        shutdown(big)
