"""The scheduler without a model: a stub runner whose "model" reads each sequence's context back
from the KV pool through its page table and predicts sum(context) % V. Any page-table or cache
mistake (wrong slot, stale KV, a shared slot overwritten) changes the outputs, which are checked
against the same rule computed in plain Python. Hypothesis drives random workloads with shared
prefixes, tiny pools, small chunks and aborts; the KV accounting is checked after every step."""
from __future__ import annotations

import torch
from hypothesis import given, settings, strategies as st

from radix_runtime.cache.kv_pool import KVPool
from radix_runtime.core.config import EngineConfig
from radix_runtime.core.request import SamplingParams
from radix_runtime.scheduler.request import Req
from radix_runtime.scheduler.scheduler import Scheduler

V = 50


class StubTokenizer:
    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(ord("a") + i % 26) for i in ids)


class StubRunner:
    def __init__(self, pool: KVPool):
        self.pool = pool

    def forward(self, seqs):
        kv = self.pool.k[0]
        last = torch.zeros(len(seqs), V)
        for i, s in enumerate(seqs):
            n = len(s.token_ids)
            assert s.kv_slots.numel() == s.start_pos + n and s.kv_slots.unique().numel() == s.kv_slots.numel()
            kv[s.kv_slots[s.start_pos:], 0, 0] = torch.tensor(s.token_ids, dtype=kv.dtype)
            context = kv[s.kv_slots, 0, 0].long()
            last[i, int(context.sum()) % V] = 1.0
        return last, {}

    def logits(self, last_hidden, rows):
        return last_hidden[rows].float() * 10


class DecodeBatchStubRunner(StubRunner):
    """The same model, also taking the scheduler's pure-decode batches (scheduler/decode_batch.py)
    the way ModelRunner does: each row's context is the first pos + 1 slots of its slot-table
    row, the last of them the slot just appended."""

    def __init__(self, pool: KVPool):
        super().__init__(pool)
        self.decode_batches = 0

    def table_decode_batch(self, ids, pos, table, rows, addr, new):
        return ids.clone(), pos.clone(), table.index_select(0, rows), new.clone()

    def forward_decode(self, fb):
        ids, pos, table, new = fb
        self.decode_batches += 1
        kv = self.pool.k[0]
        last = torch.zeros(len(ids), V)
        for i in range(len(ids)):
            slots = table[i, :int(pos[i]) + 1]
            assert int(slots[-1]) == int(new[i]) and slots.unique().numel() == slots.numel()
            kv[new[i], 0, 0] = float(ids[i])
            last[i, int(kv[slots, 0, 0].long().sum()) % V] = 1.0
        return last, last * 10


def expected(prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    for _ in range(n):
        ids.append(sum(ids) % V)
    return ids[len(prompt):]


def make(pool_size: int, chunk: int, max_running: int = 64, cache: bool = True,
         decode_batches: bool = False) -> Scheduler:
    pool = KVPool(pool_size, 1, 1, 1, torch.float64, "cpu")
    cfg = EngineConfig(model_path="stub", chunked_prefill_size=chunk, max_running_requests=max_running,
                       disable_radix_cache=not cache)
    runner = (DecodeBatchStubRunner if decode_batches else StubRunner)(pool)
    return Scheduler(runner, pool, StubTokenizer(), eos_ids=set(), config=cfg, context_length=4096)


def run_to_end(s: Scheduler, max_steps: int = 5000, abort_at: dict | None = None) -> dict:
    finals, step = {}, 0
    while s.has_work():
        for rid in (abort_at or {}).get(step, []):
            out = s.abort(rid)
            if out is not None:
                finals[rid] = out
        for out in s.step():
            if out.finished:
                finals[out.rid] = out
        s.check_integrity()
        step += 1
        assert step < max_steps, "no progress"
    return finals


def req(rid, prompt, max_new):
    return Req(rid, list(prompt), SamplingParams(max_new_tokens=max_new, temperature=0.0, ignore_eos=True))


def test_requests_that_do_not_fit_together_are_retracted_and_recomputed():
    s = make(pool_size=100, chunk=40)
    s.new_token_ratio = s.init_new_token_ratio = s.min_new_token_ratio = 0.0  # admit greedily
    # a decodes while b's chunks fill the pool: b is retracted, then recomputed from the cache
    prompts = {"a": [1] * 50, "b": [2] * 90}
    for rid, p in prompts.items():
        s.add(req(rid, p, 5))
    finals = run_to_end(s)
    for rid, p in prompts.items():
        assert finals[rid].output_ids == expected(p, 5)
    assert s.num_retractions_total > 0


def test_prefix_hits_and_canonical_slots():
    s = make(pool_size=400, chunk=16)
    base = list(range(1, 40))
    s.add(req("first", base + [7], 3))
    run_to_end(s)
    s.add(req("second", base + [9, 9], 3))
    finals = run_to_end(s)
    assert finals["second"].cached_tokens == len(base)
    assert finals["second"].output_ids == expected(base + [9, 9], 3)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    pool_size=st.integers(60, 300),
    chunk=st.integers(4, 64),
    cache=st.booleans(),
    optimistic=st.booleans(),
    decode_batches=st.booleans(),
)
def test_random_workloads_keep_kv_consistent_and_outputs_right(data, pool_size, chunk, cache, optimistic,
                                                              decode_batches):
    s = make(pool_size, chunk, max_running=data.draw(st.integers(1, 12)), cache=cache,
             decode_batches=decode_batches)
    if optimistic:  # admit aggressively to provoke retraction
        s.new_token_ratio = s.init_new_token_ratio = s.min_new_token_ratio = 0.0
    prefixes = data.draw(st.lists(st.lists(st.integers(0, V - 1), min_size=1, max_size=30), min_size=1, max_size=3))
    n = data.draw(st.integers(1, 14))
    reqs, aborts = {}, {}
    for i in range(n):
        prompt = data.draw(st.sampled_from(prefixes)) + data.draw(st.lists(st.integers(0, V - 1), max_size=20))
        if not prompt:
            prompt = [1]
        max_new = data.draw(st.integers(0, 20))
        if len(prompt) + max_new > pool_size:
            continue
        rid = f"r{i}"
        reqs[rid] = (prompt, max_new)
        s.add(req(rid, prompt, max_new))
        if data.draw(st.integers(0, 4)) == 0:
            aborts.setdefault(data.draw(st.integers(0, 30)), []).append(rid)
    finals = run_to_end(s, abort_at=aborts)
    assert set(finals) == set(reqs)
    for rid, (prompt, max_new) in reqs.items():
        out = finals[rid]
        if out.finish_reason["type"] == "abort":
            assert out.output_ids == expected(prompt, max_new)[:len(out.output_ids)]
        else:
            assert out.output_ids == expected(prompt, max_new)
            assert out.finish_reason == {"type": "length", "length": max_new}
    assert s.tree.protected_size == 0
    if not cache:
        assert s.alloc.available() == pool_size and s.cached_tokens_total == 0


def test_pure_decode_steps_run_as_one_decode_batch_kept_across_changes():
    s = make(pool_size=400, chunk=64, decode_batches=True)
    prompts = {f"r{i}": [i + 1] * (5 + i) for i in range(4)}
    for rid, p in prompts.items():
        s.add(req(rid, p, 12 if rid != "r3" else 4))  # r3 finishes early: the batch shrinks
    finals, step = {}, 0
    while s.has_work():
        if step == 6:  # a newcomer: admitted by a planned step, then decoding with the others
            s.add(req("late", [9] * 7, 5))
        if step == 8:
            finals["r1"] = s.abort("r1")
        for out in s.step():
            if out.finished:
                finals[out.rid] = out
        s.check_integrity()
        step += 1
    for rid, p in prompts.items():
        n = {"r3": 4}.get(rid, 12)
        got = finals[rid].output_ids
        assert got == expected(p, n)[:len(got)] and (rid == "r1" or len(got) == n)
    assert finals["late"].output_ids == expected([9] * 7, 5)
    # all but the prefill steps, the step after each change and the finishing ones ran batched
    assert s.runner.decode_batches >= 10


def test_a_non_streaming_request_gets_its_first_token_and_the_end_only():
    s = make(pool_size=400, chunk=64, decode_batches=True)
    sp = SamplingParams(max_new_tokens=120, temperature=0.0, ignore_eos=True)
    s.add(Req("quiet", [3] * 5, sp, stream=False))
    s.add(Req("loud", [3] * 5, sp))
    updates = {"quiet": [], "loud": []}
    while s.has_work():
        for out in s.step():
            updates[out.rid].append(out)
    quiet, loud = updates["quiet"], updates["loud"]
    assert len(loud) == 120 and [o.completion_tokens for o in quiet] == [1, 50, 100, 120]
    for o in quiet:  # each update whole: ids and the text of those ids
        assert o.output_ids == loud[o.completion_tokens - 1].output_ids
        assert o.text == loud[o.completion_tokens - 1].text == StubTokenizer().decode(o.output_ids)
    assert quiet[-1].finished and quiet[-1].output_ids == expected([3] * 5, 120)
