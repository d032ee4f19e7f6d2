"""Batched sampling: greedy, filters, seeds, penalties, logit_bias, min_new_tokens."""
from __future__ import annotations

import torch

from radix_runtime.core.request import SamplingParams
from radix_runtime.scheduler.sampling import (SampleRow, apply_penalties, logprobs_of, plain_greedy,
                                             sample)

torch.set_num_threads(1)


def _row(prompt=(), out=(), stop=(), seed=None, **kw):
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return SampleRow(SamplingParams(**kw), list(prompt), list(out), set(stop), gen)


def test_greedy_and_filters_that_leave_one_token():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    best = logits.argmax(-1)
    rows = [_row(temperature=0.0), _row(temperature=1.0, top_k=1), _row(temperature=1.0, top_p=1e-6),
            _row(temperature=1.0, min_p=1.0)]
    assert sample(logits.clone(), rows).tolist() == best.tolist()


def test_seeded_rows_do_not_depend_on_the_batch():
    logits = torch.randn(3, 100, generator=torch.Generator().manual_seed(1))
    alone = sample(logits[1:2].clone(), [_row(seed=42, temperature=0.8)])
    batched = sample(logits.clone(), [_row(temperature=0.5), _row(seed=42, temperature=0.8), _row(temperature=2.0)])
    assert alone.item() == batched[1].item()


def test_sampling_follows_the_distribution_and_respects_top_k():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2, 0.0]])).repeat(4000, 1)
    gen = torch.Generator().manual_seed(0)
    ids = sample(logits.clone(), [_row(temperature=1.0) for _ in range(4000)], gen)
    freq = torch.bincount(ids, minlength=4).float() / 4000
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.2, 0.0]), atol=0.03)
    ids = sample(logits.clone(), [_row(temperature=1.0, top_k=2) for _ in range(4000)], gen)
    assert set(ids.tolist()) == {0, 1}


def test_penalties_bias_and_min_new_tokens():
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5, 0.0]])
    out = apply_penalties(logits.clone(), [_row(prompt=[0], out=[1], repetition_penalty=2.0)])
    assert out[0, :2].tolist() == [1.0, -4.0]  # positive divided, negative multiplied
    out = apply_penalties(logits.clone(), [_row(out=[2, 2, 3], frequency_penalty=0.5, presence_penalty=0.25)])
    assert torch.allclose(out[0], torch.tensor([2.0, -2.0, 1.0 - 1.0 - 0.25, 0.5 - 0.5 - 0.25, 0.0]))
    out = apply_penalties(logits.clone(), [_row(logit_bias={4: 10.0})])
    assert out[0, 4] == 10.0
    row = _row(out=[1], stop=[0], min_new_tokens=3, temperature=0.0)
    assert sample(logits.clone(), [row]).item() == 2  # 0 is masked until 3 tokens exist
    row = _row(out=[1, 1, 1], stop=[0], min_new_tokens=3, temperature=0.0)
    assert sample(logits.clone(), [row]).item() == 0


def test_logprobs():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    chosen, (vals, ids) = logprobs_of(logits, torch.tensor([1]), top_n=2)
    lp = torch.log_softmax(logits, -1)
    assert torch.isclose(chosen[0], lp[0, 1]) and ids[0].tolist() == [2, 1]


def test_plain_greedy_rows_are_exactly_the_argmax_sample_picks():
    # the scheduler's fast path (one argmax for the batch) applies to these rows only
    plain = SamplingParams(temperature=0.0)
    assert plain_greedy(plain)
    for kw in ({"temperature": 0.7}, {"repetition_penalty": 1.1}, {"frequency_penalty": 0.5},
               {"presence_penalty": 0.5}, {"logit_bias": {"3": 5.0}}):
        assert not plain_greedy(SamplingParams(**{"temperature": 0.0, **kw})), kw
    logits = torch.randn(16, 300, generator=torch.Generator().manual_seed(3))
    rows = [_row(prompt=[1, 2], out=[5] * i, stop=[7], temperature=0.0) for i in range(16)]
    assert sample(logits.clone(), rows).tolist() == logits.argmax(-1).tolist()
