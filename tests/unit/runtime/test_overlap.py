"""Overlap scheduling (scheduler/overlap.py) against the synchronous scheduler, on the stub model
of test_scheduler.py: the same outputs, texts and finish reasons (greedy, and seeded sampling)
through stop tokens, stop strings, length limits, aborts, retraction and requests arriving
mid-decode, with the KV accounting checked after every step; and the pipeline really runs."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from radix_runtime.cache.kv_pool import KVPool
from radix_runtime.core.config import EngineConfig
from radix_runtime.core.request import SamplingParams
from radix_runtime.scheduler.request import Req
from radix_runtime.scheduler.scheduler import Scheduler
from tests.unit.runtime.test_scheduler import V, StubRunner, StubTokenizer, expected, req


def make(overlap: bool, pool_size: int, chunk: int, max_running: int, cache: bool) -> Scheduler:
    pool = KVPool(pool_size, 1, 1, 1, torch.float64, "cpu")
    cfg = EngineConfig(model_path="stub", chunked_prefill_size=chunk, max_running_requests=max_running,
                       disable_radix_cache=not cache)
    return Scheduler(StubRunner(pool), pool, StubTokenizer(), eos_ids={3}, config=cfg,
                     context_length=4096, overlap=overlap)


def run(s: Scheduler, arrivals: dict[int, list[Req]], aborts: dict[int, list[str]]) -> dict:
    finals, step = {}, 0
    try:
        while s.has_work() or any(k >= step for k in arrivals):
            for r in arrivals.get(step, []):
                s.add(r)
            for rid in aborts.get(step, []):
                out = s.abort(rid)
                if out is not None:
                    finals[rid] = out
            for out in s.step():
                assert not out.finished or out.rid not in finals, out.rid
                if out.finished:
                    finals[out.rid] = out
            s.check_integrity()
            step += 1
            assert step < 5000, "no progress"
    finally:
        s.close()
    return finals


@settings(max_examples=60, deadline=None)
@given(data=st.data(), pool_size=st.integers(80, 300), chunk=st.integers(4, 64), cache=st.booleans())
def test_overlap_gives_the_synchronous_outputs(data, pool_size, chunk, cache):
    max_running = data.draw(st.integers(1, 8))
    specs = []
    for i in range(data.draw(st.integers(1, 10))):
        prompt = data.draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=30))
        max_new = data.draw(st.integers(0, 24))
        if len(prompt) + max_new > pool_size:
            continue
        # the stub's logits are 10 at one token: temperature 5 samples for real
        temperature = data.draw(st.sampled_from([0.0, 0.0, 5.0]))
        sp = SamplingParams(max_new_tokens=max_new, temperature=temperature,
                            seed=data.draw(st.integers(0, 1000)) if temperature else None,
                            ignore_eos=data.draw(st.booleans()),
                            min_new_tokens=data.draw(st.integers(0, 3)),
                            stop_token_ids=data.draw(st.lists(st.integers(0, V - 1), max_size=3)),
                            stop=data.draw(st.lists(st.sampled_from(["a", "bc", "xyz"]), max_size=2)))
        specs.append((f"r{i}", prompt, sp, data.draw(st.integers(0, 6))))
    aborts = {}
    for rid, *_ in specs:
        if data.draw(st.integers(0, 5)) == 0:
            aborts.setdefault(data.draw(st.integers(0, 30)), []).append(rid)
    results = []
    for overlap in (False, True):
        s = make(overlap, pool_size, chunk, max_running, cache)
        arrivals: dict[int, list[Req]] = {}
        for rid, prompt, sp, at in specs:
            r = Req(rid, list(prompt), sp)
            if sp.seed is not None:  # what the engine does for sampling_seed
                r.seed_gen = torch.Generator().manual_seed(sp.seed)
            arrivals.setdefault(at, []).append(r)
        finals = run(s, arrivals, aborts)
        assert s.tree.protected_size == 0 and s.slots.rows_in_use == 0
        results.append({rid: (o.output_ids, o.text, o.finish_reason) for rid, o in finals.items()})
    sync, over = results
    assert set(sync) == set(over) == {rid for rid, *_ in specs}
    for rid in sync:
        if sync[rid][2]["type"] != "abort" and over[rid][2]["type"] != "abort":
            assert over[rid] == sync[rid], rid
        else:  # an abort lands a step later or earlier with the pipeline: same tokens up to it
            a, b = sync[rid][0], over[rid][0]
            assert a[:len(b)] == b[:len(a)], rid


def test_a_steady_decode_batch_is_pipelined_and_timed():
    s = make(True, pool_size=2000, chunk=256, max_running=8, cache=False)
    for i in range(8):
        s.add(Req(f"r{i}", [i + 1] * 20, SamplingParams(max_new_tokens=30, temperature=0.0, ignore_eos=True)))
    finals = run(s, {}, {})
    assert all(len(o.output_ids) == 30 for o in finals.values())
    tm = s.timing
    assert tm.overlapped_s > 0 and tm.decode_steps >= 29 and tm.decode_step_s >= tm.decode_model_s > 0
    assert s.forward_passes_total == tm.steps  # one step per forward, pipelined or not


def test_unseeded_sampling_is_pipelined_and_stays_valid():
    """Unseeded rows share the scheduler's generator (spare rows draw from it too): the samples
    differ from the synchronous run's, but every request completes with its own KV right."""
    s = make(True, pool_size=2000, chunk=256, max_running=8, cache=True)
    for i in range(8):
        s.add(Req(f"r{i}", [i + 1] * 20, SamplingParams(max_new_tokens=25, temperature=5.0, ignore_eos=True)))
    finals = run(s, {}, {})
    assert sorted(finals) == [f"r{i}" for i in range(8)]
    assert all(len(o.output_ids) == 25 and all(0 <= t < V for t in o.output_ids) for o in finals.values())
    assert s.timing.overlapped_s > 0
    assert len({tuple(o.output_ids) for o in finals.values()}) > 1  # it sampled


def test_a_failed_forward_fails_its_batch_and_the_pipeline_starts_clean():
    """A forward failing on the model thread: the step raises (the engine then aborts what runs),
    the job planned from it does not run, nothing stays in flight, later requests complete."""
    s = make(True, pool_size=2000, chunk=256, max_running=8, cache=True)
    real, calls = s.runner.forward, {"n": 0}

    def flaky(seqs):
        calls["n"] += 1
        if calls["n"] == 5:  # mid-decode, pipelined
            raise RuntimeError("simulated device failure")
        return real(seqs)

    s.runner.forward = flaky
    for i in range(4):
        s.add(req(f"r{i}", [i + 1] * 10, 20))
    with pytest.raises(RuntimeError, match="simulated device failure"):
        for _ in range(50):
            s.step()
    assert s._inflight is None and calls["n"] == 5  # the job planned from the failed one never ran
    for r in list(s.running) + list(s.waiting):  # what the engine does after a failed step
        s.abort(r.rid)
    s.check_integrity()
    finals = run(s, {0: [req("after", [7] * 10, 20)]}, {})
    assert finals["after"].output_ids == expected([7] * 10, 20)
