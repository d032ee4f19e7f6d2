"""Attention over the paged KV pool.

`TorchPagedAttention` is the reference backend: it writes the new K/V into the pool, then reads each
sequence's context back through its slot list. Decode tokens of all sequences go through one
batched, masked matmul; extend (prefill) sequences each run one causal attention. A fast GPU
backend (FlashInfer / Triton paged kernels) plugs in with the same `forward` signature.
"""
from __future__ import annotations

import torch

from ..cache.kv_pool import KVPool
from ..engine.forward_batch import ForwardBatch


def _grouped_attention(q, k, v, mask, scale):
    """q [B, Lq, H, D], k/v [B, Lk, KVH, D], mask [B, Lq, Lk] (True = attend) -> [B, Lq, H, D]."""
    b, lq, h, d = q.shape
    kvh = k.shape[2]
    q = q.view(b, lq, kvh, h // kvh, d).permute(0, 2, 3, 1, 4)  # [B, KVH, G, Lq, D]
    k = k.permute(0, 2, 1, 3).unsqueeze(2)  # [B, KVH, 1, Lk, D]
    v = v.permute(0, 2, 1, 3).unsqueeze(2)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # [B, KVH, G, Lq, Lk]
    scores = scores.float().masked_fill(~mask[:, None, None], float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(v.dtype)
    out = torch.matmul(probs, v)  # [B, KVH, G, Lq, D]
    return out.permute(0, 3, 1, 2, 4).reshape(b, lq, h, d)


class TorchPagedAttention:
    def __init__(self, pool: KVPool, scale: float):
        self.pool = pool
        self.scale = scale

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: int,
                fb: ForwardBatch) -> torch.Tensor:
        # q: [T, H, D]; k, v: [T, KVH, D] for the new tokens
        self.pool.write(layer, fb.out_loc, k, v)
        kbuf, vbuf = self.pool.k[layer], self.pool.v[layer]
        out = torch.empty_like(q)
        nd = fb.num_decode
        if nd:
            ks, vs = kbuf[fb.decode_table], vbuf[fb.decode_table]  # [B, L, KVH, D]
            out[:nd] = _grouped_attention(q[:nd, None], ks, vs, fb.decode_mask[:, None], self.scale)[:, 0]
        for s in fb.extends:
            kv_len = s.kv_slots.numel()
            qs = q[s.q_start:s.q_start + s.q_len]
            # query i sits at position kv_len - q_len + i and sees keys up to there
            qpos = torch.arange(kv_len - s.q_len, kv_len, device=q.device)
            mask = torch.arange(kv_len, device=q.device)[None, :] <= qpos[:, None]
            o = _grouped_attention(qs[None], kbuf[s.kv_slots][None], vbuf[s.kv_slots][None],
                                   mask[None], self.scale)
            out[s.q_start:s.q_start + s.q_len] = o[0]
        return out
