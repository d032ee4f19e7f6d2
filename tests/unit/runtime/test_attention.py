"""The reference paged attention against dense causal attention computed per sequence, on a mixed
batch (decodes + extends with and without a cached prefix) whose KV sits in scattered slots."""
from __future__ import annotations

import torch

from radix_runtime.cache.kv_pool import KVPool
from radix_runtime.core.forward_batch import ExtendSeq, ForwardBatch
from radix_runtime.layers.attention import TorchPagedAttention

torch.set_num_threads(1)


def dense(q, k, v, scale):
    """q [Lq, H, D] = the last Lq positions of k, v [Lk, KVH, D]."""
    h, kvh = q.shape[1], k.shape[1]
    k, v = k.repeat_interleave(h // kvh, 1), v.repeat_interleave(h // kvh, 1)
    lq, lk = q.shape[0], k.shape[0]
    s = torch.einsum("qhd,khd->hqk", q, k) * scale
    allowed = torch.arange(lk)[None, :] <= torch.arange(lk - lq, lk)[:, None]
    s = s.masked_fill(~allowed, float("-inf"))
    return torch.einsum("hqk,khd->qhd", s.softmax(-1), v)


def test_paged_attention_equals_dense():
    g = torch.Generator().manual_seed(0)
    h, kvh, d, size = 4, 2, 8, 200
    pool = KVPool(size, 1, kvh, d, torch.float64, "cpu")
    attn = TorchPagedAttention(pool, d ** -0.5)
    perm = torch.randperm(size, generator=g) + 1  # scattered slots
    # (context length, new tokens): two decodes, an extend over a cached prefix, a fresh prefill
    shapes = [(17, 1), (40, 1), (30, 12), (25, 25)]
    full_k, full_v, slots, off = [], [], [], 0
    for lk, n in shapes:
        slots.append(perm[off:off + lk])
        off += lk
        full_k.append(torch.randn(lk, kvh, d, generator=g, dtype=torch.float64))
        full_v.append(torch.randn(lk, kvh, d, generator=g, dtype=torch.float64))
        cached = slots[-1][:lk - n]  # the cached context; forward writes the new tokens' K/V
        pool.k[0][cached], pool.v[0][cached] = full_k[-1][:lk - n], full_v[-1][:lk - n]
    qs = [torch.randn(n, h, d, generator=g, dtype=torch.float64) for _, n in shapes]
    # decode-first layout, as the model runner builds it
    new_k = torch.cat([k[-n:] for k, (_, n) in zip(full_k, shapes)])
    new_v = torch.cat([v[-n:] for v, (_, n) in zip(full_v, shapes)])
    out_loc = torch.cat([s[-n:] for s, (_, n) in zip(slots, shapes)])
    table = torch.nn.utils.rnn.pad_sequence(slots[:2], batch_first=True)
    mask = torch.arange(table.shape[1])[None, :] < torch.tensor([17, 40])[:, None]
    fb = ForwardBatch(input_ids=torch.zeros(len(out_loc), dtype=torch.long), positions=None,
                      out_loc=out_loc, num_decode=2, decode_table=table, decode_mask=mask,
                      extends=[ExtendSeq(2, 12, slots[2]), ExtendSeq(14, 25, slots[3])])
    out = attn.forward(torch.cat(qs), new_k, new_v, 0, fb)
    want = torch.cat([dense(q, k, v, d ** -0.5) for q, k, v in zip(qs, full_k, full_v)])
    assert torch.allclose(out, want, atol=1e-10)
