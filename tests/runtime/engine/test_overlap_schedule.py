"""--enable-overlap-schedule on the tiny checkpoint: the same outputs as the synchronous engine for
greedy rows (stop ids taken from the synchronous run's own outputs, stop strings, length limits)
and seeded sampling, submitted all at once and staggered; the pipeline ran; KV accounting holds."""
from __future__ import annotations

import asyncio
import random

from radix_runtime.core.request import EngineRequest, SamplingParams
from radix_runtime.engine.radix_engine import OVERLAP_ENV
from radix_runtime.launch_server import engine_config, parse_args

from .helpers import collect, greedy, make_engine, shutdown


def test_the_flags():
    flag = lambda *a: engine_config(parse_args(["--model-path", "/m", *a], env={})).enable_overlap_schedule
    assert flag() is False and flag("--enable-overlap-schedule") is True
    assert flag("--disable-overlap-schedule") is False  # SGLang's flag: off is our default anyway


def _requests(engine, stops: dict[int, int]) -> list[EngineRequest]:
    rng = random.Random(0)
    reqs = []
    for i in range(16):
        ids = [rng.randrange(5, engine.vocab_size) for _ in range(rng.randrange(8, 60))]
        if i % 4 == 3:  # seeded sampling: the same draws with the pipeline on or off
            sp = SamplingParams(max_new_tokens=20, temperature=1.5, seed=i, ignore_eos=True)
        else:
            sp = greedy(rng.randrange(4, 30), ignore_eos=True,
                        stop_token_ids=[stops[i]] if i in stops else [],
                        stop=["e"] if i % 4 == 2 else [])
        reqs.append(EngineRequest(f"r{i}", ids, sp))
    return reqs


async def _staggered(engine, reqs):
    async def one(k, r):
        await asyncio.sleep(0.01 * (k % 5))  # some join while others decode
        return (await collect(engine, r))[0]
    return await asyncio.gather(*(one(k, r) for k, r in enumerate(reqs)))


def test_overlap_gives_the_synchronous_outputs(tiny_models, monkeypatch):
    monkeypatch.delenv(OVERLAP_ENV, raising=False)  # the synchronous engine is synchronous
    sync = make_engine(tiny_models["llama"], max_total_tokens=4096)
    over = make_engine(tiny_models["llama"], max_total_tokens=4096, enable_overlap_schedule=True)
    try:
        first = asyncio.run(_staggered(sync, _requests(sync, {})))
        # a stop id from the middle of each greedy output: those requests stop early
        stops = {i: o.output_ids[len(o.output_ids) // 2] for i, o in enumerate(first) if i % 4 == 1}
        want, got = (asyncio.run(_staggered(e, _requests(e, stops))) for e in (sync, over))
        sync.check_integrity()
        over.check_integrity()
        for w, g in zip(want, got):
            assert (g.output_ids, g.text, g.finish_reason) == (w.output_ids, w.text, w.finish_reason), w.rid
        assert {o.finish_reason["type"] for o in want} == {"stop", "length"}
        assert over.scheduler.timing.overlapped_s > 0 and sync.scheduler.timing.overlapped_s == 0
    finally:
        shutdown(sync)
        shutdown(over)
