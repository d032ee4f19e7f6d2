"""Speculative decoding without a model: the flags' resolution, the n-gram lookup, the rejection
rule's output distribution, and the scheduler with stub target and draft "models" that read each
sequence's context back from their KV pools (any slot mix-up between the two pools, a draft KV left
unwritten or a rejected slot not freed changes outputs, acceptance or the KV accounting)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from radix_runtime.cache.kv_pool import KVPool
from radix_runtime.core.config import EngineConfig
from radix_runtime.core.forward_batch import SeqInput
from radix_runtime.core.spec_config import NGRAM, STANDALONE, resolve_speculative
from radix_runtime.scheduler.scheduler import Scheduler
from radix_runtime.scheduler.speculative import (DraftModelProposer, NgramProposer, ngram_lookup,
                                                 verify)
from tests.unit.runtime.test_scheduler import StubTokenizer, expected, req, run_to_end

V = 50


# -- flags ----------------------------------------------------------------------------------------
def spec(**kw):
    return resolve_speculative(EngineConfig(model_path="m", **kw))


def test_flags_resolve_as_sglang_does():
    assert spec() is None
    s = spec(speculative_algorithm="STANDALONE", speculative_draft_model_path="d")
    assert (s.algorithm, s.num_drafts, s.draft_model_path) == (STANDALONE, 3, "d")
    # topk 1: num_draft_tokens follows num_steps (+1), as SGLang adjusts it
    assert spec(speculative_algorithm="STANDALONE", speculative_draft_model_path="d",
                speculative_num_steps=5, speculative_num_draft_tokens=3).num_drafts == 5
    assert spec(speculative_algorithm="STANDALONE", speculative_draft_model_path="d",
                speculative_num_draft_tokens=3).num_drafts == 2
    n = spec(speculative_algorithm="NGRAM", speculative_ngram_max_match_window_size=4)
    assert (n.algorithm, n.num_drafts, n.ngram_max_window) == (NGRAM, 11, 4)
    assert spec(speculative_algorithm="NGRAM", speculative_num_draft_tokens=5).num_drafts == 4


@pytest.mark.parametrize("kw, flag", [
    ({"speculative_algorithm": "EAGLE"}, "--speculative-algorithm: EAGLE needs upstream SGLang"),
    ({"speculative_algorithm": "MEDUSA"}, "allowed: STANDALONE, NGRAM"),
    ({"speculative_algorithm": "STANDALONE"}, "--speculative-draft-model-path"),
    ({"speculative_draft_model_path": "d"}, "--speculative-draft-model-path: needs --speculative-algorithm"),
    ({"speculative_algorithm": "NGRAM", "speculative_eagle_topk": 4}, "--speculative-eagle-topk: 4"),
    ({"speculative_algorithm": "NGRAM", "speculative_num_draft_tokens": 1}, "--speculative-num-draft-tokens: 1"),
    ({"speculative_algorithm": "NGRAM", "speculative_accept_threshold_single": 0.5},
     "--speculative-accept-threshold-single: 0.5"),
    ({"speculative_algorithm": "NGRAM", "speculative_draft_model_path": "d"}, "NGRAM needs no draft model"),
    ({"speculative_algorithm": "STANDALONE", "speculative_draft_model_path": "d", "tp_size": 2},
     "--tp-size 1 --pp-size 1"),
])
def test_unsupported_settings_name_the_flag(kw, flag):
    with pytest.raises(ValueError, match=flag.replace("(", r"\(")):
        spec(**kw)


# -- n-gram lookup --------------------------------------------------------------------------------
def test_ngram_lookup_takes_the_longest_most_recent_match():
    assert ngram_lookup([1, 2, 3, 9, 2, 3, 8, 7, 1, 2, 3], 3, 1, 4) == [9, 2, 3]  # "1 2 3" beats "2 3"
    assert ngram_lookup([5, 1, 6, 1, 7, 1], 2, 1, 4) == [7, 1]  # most recent "1"
    assert ngram_lookup([1, 2, 3, 4], 3, 1, 4) == []
    assert ngram_lookup([4, 2, 9, 4, 2], 5, 3, 4) == []  # "4 2" is shorter than min window 3
    assert ngram_lookup([7, 7, 7, 7], 5, 1, 2) == [7]  # the continuation runs to the end at most


# -- the rejection rule keeps the target's distribution -------------------------------------------
def _chi2(counts: torch.Tensor, probs: torch.Tensor) -> float:
    n = float(counts.sum())
    exp = probs * n
    m = exp > 0
    assert counts[~m].sum() == 0, "a token the target never samples was emitted"
    return float(((counts[m] - exp[m]) ** 2 / exp[m]).sum())


@pytest.mark.parametrize("one_hot_draft", [False, True])
def test_verify_emits_the_targets_distribution(one_hot_draft):
    g = torch.Generator().manual_seed(0)
    vocab, k, trials = 6, 2, 6000
    p = torch.softmax(torch.randn(k + 1, vocab, generator=g) * 1.5, -1)
    p[0, 5] = 0.0  # a token the target never picks
    p[0] /= p[0].sum()
    q = torch.softmax(torch.randn(k, vocab, generator=g) * 1.5, -1)
    first, second = torch.zeros(vocab), torch.zeros(vocab)
    for _ in range(trials):
        if one_hot_draft:  # NGRAM: a fixed proposal
            drafts = torch.randint(vocab, (k,), generator=g).tolist()
            a, nxt = verify(p, drafts, None, False, g)
        else:
            drafts = [int(torch.multinomial(q[j], 1, generator=g)) for j in range(k)]
            a, nxt = verify(p, drafts, q, False, g)
        emitted = [*drafts[:a], nxt]
        first[emitted[0]] += 1
        if a >= 1:
            second[emitted[1]] += 1
    # 5 degrees of freedom: chi2 > 20.5 has probability 0.001
    assert _chi2(first, p[0]) < 20.5
    assert _chi2(second, p[1]) < 20.5


def test_verify_greedy_is_the_argmax():
    p = torch.zeros(3, 4)
    p[0, 2] = p[1, 1] = p[2, 3] = 1.0
    assert verify(p, [2, 1], None, True, None) == (2, 3)
    assert verify(p, [2, 0], None, True, None) == (1, 1)
    assert verify(p, [0, 1], None, True, None) == (0, 2)


# -- the scheduler with stub models -----------------------------------------------------------------
class StubModel:
    """Predicts rule(sum of the context's tokens) for every position, reading the context back from
    its own KV pool through the sequence's slots; logits for all positions where asked."""

    def __init__(self, pool: KVPool, rule=lambda s: s % V):
        self.pool, self.rule, self.forwards = pool, rule, 0

    def _onehot(self, kv, slots):
        row = torch.zeros(V)
        row[self.rule(int(kv[slots, 0, 0].long().sum()))] = 1.0
        return row

    def forward(self, seqs: list[SeqInput]):
        self.forwards += 1
        kv = self.pool.k[0]
        last, full = torch.zeros(len(seqs), V), {}
        for i, s in enumerate(seqs):
            n = len(s.token_ids)
            assert s.kv_slots.numel() == s.start_pos + n and s.kv_slots.unique().numel() == s.kv_slots.numel()
            kv[s.kv_slots[s.start_pos:], 0, 0] = torch.tensor(s.token_ids, dtype=kv.dtype)
            rows = [self._onehot(kv, s.kv_slots[:s.start_pos + j + 1]) for j in range(n)]
            last[i] = rows[-1]
            if s.all_logits:
                full[i] = torch.stack(rows) * 10
        return last, full

    def logits(self, last_hidden, rows):
        return last_hidden[rows].float() * 10


def make_spec(pool_size: int, chunk: int, proposer: str, max_running: int = 64, cache: bool = True,
              k: int = 3) -> tuple[Scheduler, StubModel | None]:
    pool = KVPool(pool_size, 1, 1, 1, torch.float64, "cpu")
    cfg = EngineConfig(model_path="stub", chunked_prefill_size=chunk, max_running_requests=max_running,
                       disable_radix_cache=not cache)
    draft = None
    if proposer == "ngram":
        prop = NgramProposer(k, 1, 3)
    else:
        rule = (lambda s: s % V) if proposer == "same" else (lambda s: (s + (s % 3 == 0)) % V)
        draft = StubModel(KVPool(pool_size, 1, 1, 1, torch.float64, "cpu"), rule)
        prop = DraftModelProposer(draft, k)
    s = Scheduler(StubModel(pool), pool, StubTokenizer(), eos_ids=set(), config=cfg,
                  context_length=4096, spec=prop)
    return s, draft


def test_target_as_its_own_draft_accepts_everything():
    s, _ = make_spec(pool_size=400, chunk=16, proposer="same", k=4)
    base = list(range(1, 40))
    s.add(req("first", base + [7], 12))
    assert run_to_end(s)["first"].output_ids == expected(base + [7], 12)
    s.add(req("second", base + [9, 9], 12))  # its prefix and the draft's KV come from the cache
    finals = run_to_end(s)
    assert finals["second"].output_ids == expected(base + [9, 9], 12)
    assert finals["second"].cached_tokens == len(base)
    assert s.spec_draft_tokens_total > 0 and s.spec_accepted_tokens_total == s.spec_draft_tokens_total
    # 1 prefill + ceil(11 / 5) verify rounds per request
    assert s.forward_passes_total <= 2 * (1 + 3) + 2  # (+ prefill chunks)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), pool_size=st.integers(60, 300), chunk=st.integers(4, 64), cache=st.booleans(),
       optimistic=st.booleans(), proposer=st.sampled_from(["same", "other", "ngram"]),
       k=st.integers(1, 5))
def test_random_workloads_with_speculation(data, pool_size, chunk, cache, optimistic, proposer, k):
    s, _ = make_spec(pool_size, chunk, proposer, max_running=data.draw(st.integers(1, 12)),
                     cache=cache, k=k)
    if optimistic:  # admit aggressively to provoke retraction
        s.new_token_ratio = s.init_new_token_ratio = s.min_new_token_ratio = 0.0
    prefixes = data.draw(st.lists(st.lists(st.integers(0, V - 1), min_size=1, max_size=30), min_size=1, max_size=3))
    reqs, aborts = {}, {}
    for i in range(data.draw(st.integers(1, 12))):
        prompt = data.draw(st.sampled_from(prefixes)) + data.draw(st.lists(st.integers(0, V - 1), max_size=20))
        max_new = data.draw(st.integers(0, 24))
        if len(prompt) + max_new > pool_size:
            continue
        reqs[f"r{i}"] = (prompt, max_new)
        s.add(req(f"r{i}", prompt, max_new))
        if data.draw(st.integers(0, 4)) == 0:
            aborts.setdefault(data.draw(st.integers(0, 20)), []).append(f"r{i}")
    finals = run_to_end(s, abort_at=aborts)
    assert set(finals) == set(reqs)
    for rid, (prompt, max_new) in reqs.items():
        out = finals[rid]
        want = expected(prompt, max_new)
        if out.finish_reason["type"] == "abort":
            assert out.output_ids == want[:len(out.output_ids)]
        else:
            assert out.output_ids == want
    assert s.tree.protected_size == 0
    if proposer == "same":  # the draft's KV is complete wherever the target's is
        assert s.spec_accepted_tokens_total == s.spec_draft_tokens_total
    if not cache:
        assert s.alloc.available() == pool_size
