"""Grammar state through the scheduler's hard paths: on a deliberately small KV pool with 8-token
prefill chunks, constrained requests (seeded, temperature 1.0) are retracted and re-prefilled, some
are aborted, yet every finished one is valid and identical to its output on a roomy engine, and
every KV slot is accounted for."""
from __future__ import annotations

import asyncio
import json
from contextlib import aclosing

from radix_runtime.core.request import EngineRequest, GrammarSpec, SamplingParams
from tests.runtime.engine.helpers import make_engine, run_all, shutdown
from tests.support.structured import SCHEMAS, validate


def _requests(engine, n: int = 16) -> list[EngineRequest]:
    spec = GrammarSpec("json_schema", json.dumps(SCHEMAS["order"]), "json_schema")
    prefix = engine.tokenizer.encode("A radix tree shares the common prefix of many keys, so")
    return [EngineRequest(f"g{i}", prefix + engine.tokenizer.encode(f" request {i}", add_special_tokens=False),
                          SamplingParams(max_new_tokens=320, temperature=1.0, seed=i, grammar=spec))
            for i in range(n)]


async def _drive(engine, req: EngineRequest, abort: bool):
    last = None
    async with aclosing(engine.generate(req)) as stream:
        async for out in stream:
            last = out
            if abort and len(out.output_ids) >= 5:
                return None  # closing the stream aborts it mid-JSON
    return last


def test_retraction_chunked_prefill_and_abort_keep_grammar_state(tiny_model):
    small = make_engine(tiny_model, max_total_tokens=700, chunked_prefill_size=8)
    big = make_engine(tiny_model, max_total_tokens=16384)
    sch = small.scheduler  # admit optimistically so decode runs out of KV and retracts
    sch.init_new_token_ratio = sch.new_token_ratio = sch.min_new_token_ratio = 0.02
    try:
        reqs = _requests(small)
        aborts = [i % 5 == 4 for i in range(len(reqs))]

        async def main():
            return await asyncio.gather(*(_drive(small, r, a) for r, a in zip(reqs, aborts)))

        outs = asyncio.run(main())
        small.check_integrity()
        assert small.stats().num_retractions_total > 0, "the pool was meant to run short"
        done = [(r, o) for r, a, o in zip(reqs, aborts, outs) if not a]
        ref = asyncio.run(run_all(big, [r for r, _ in done]))
        for (r, o), want in zip(done, ref):
            assert o.finish_reason["type"] == "stop", (r.rid, o.finish_reason)
            validate(o.text, SCHEMAS["order"])
            assert o.output_ids == want.output_ids, r.rid
        big.check_integrity()
    finally:
        shutdown(small)
        shutdown(big)
