"""The torch backend's dense decode K/V (layers/decode_kv.py) gives what re-gathering the pool
gives, step after step, whatever the batch does: grow by one token, lose or gain a sequence,
change a slot, skip a forward, run a forward without decodes."""
from __future__ import annotations

import torch

from radix_runtime.cache.kv_pool import KVPool
from radix_runtime.core.forward_batch import ExtendSeq, ForwardBatch
from radix_runtime.layers.attention import TorchPagedAttention

H, KVH, D, LAYERS = 4, 2, 8, 2


def decode_fb(tables: list[list[int]]) -> ForwardBatch:
    t = torch.nn.utils.rnn.pad_sequence([torch.tensor(x) for x in tables], batch_first=True)
    lens = torch.tensor([len(x) for x in tables])
    return ForwardBatch(input_ids=torch.zeros(len(tables), dtype=torch.long),
                        positions=lens - 1, out_loc=torch.tensor([x[-1] for x in tables]),
                        num_decode=len(tables), decode_table=t,
                        decode_mask=torch.arange(t.shape[1])[None, :] < lens[:, None])


def test_dense_decode_kv_equals_the_gather_through_batch_changes():
    g = torch.Generator().manual_seed(0)
    pools = [KVPool(400, LAYERS, KVH, D, torch.float32, "cpu") for _ in range(2)]
    dense, gather = (TorchPagedAttention(p, D ** -0.5) for p in pools)
    assert dense.dense is not None
    gather.dense = None
    seqs = {0: list(range(1, 11)), 1: list(range(20, 25)), 2: list(range(40, 60))}
    nxt = iter(range(100, 400))

    def step(fb: ForwardBatch, n_new: int):
        q = torch.randn(n_new, H, D, generator=g)
        k, v = torch.randn(n_new, KVH, D, generator=g), torch.randn(n_new, KVH, D, generator=g)
        for layer in range(LAYERS):
            a = dense.forward(q, k, v, layer, fb)
            b = gather.forward(q, k, v, layer, fb)
            assert torch.allclose(a, b, atol=1e-6), layer

    def decode():
        for s in seqs.values():
            s.append(next(nxt))
        step(decode_fb(list(seqs.values())), len(seqs))

    for _ in range(3):
        decode()  # extends the dense copy
    del seqs[1]
    decode()  # a sequence left
    seqs[3] = list(range(70, 75))
    decode()  # one joined
    decode()
    seqs[0][3] = next(nxt)  # a slot replaced (the cache's canonical slot)
    decode()
    # a forward without decodes: an extend writing fresh slots
    slots = torch.tensor([next(nxt) for _ in range(6)])
    step(ForwardBatch(input_ids=torch.zeros(6, dtype=torch.long), positions=torch.arange(6),
                      out_loc=slots, extends=[ExtendSeq(0, 6, slots)]), 6)
    decode()
    decode()
