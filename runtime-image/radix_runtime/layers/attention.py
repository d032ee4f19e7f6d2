"""Attention over the paged KV pool.

`TorchPagedAttention` is the reference backend: it writes the new K/V into the pool, then reads each
sequence's context back through its slot list. Decode tokens of all sequences go through one
batched, masked, grouped-query matmul (K/V are not expanded per head); extend (prefill) sequences
each run torch's scaled_dot_product_attention (flash / memory-efficient kernels on GPU, so long
prompts never materialize a full score matrix). `make_backend` picks it or the Triton kernels
(layers/triton_attention.py, reading the pool directly), which have the same `forward` signature.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ..cache.kv_pool import KVPool
from ..core.config import ATTENTION_BACKENDS
from ..core.forward_batch import ForwardBatch
from . import cpu_decode_attention
from .decode_kv import DenseDecodeKV



def make_backend(name: str | None, pool: KVPool, scale: float, device: torch.device):
    """The --attention-backend: torch_native (the reference, also the default) or triton. The
    Triton kernels are opt-in until they have run on a GPU (they are tested under Triton's
    interpreter and compiled for sm_90 only). triton needs a CUDA device, or the interpreter
    (TRITON_INTERPRET=1, CPU tensors, for tests)."""
    if name not in (None, *ATTENTION_BACKENDS):
        raise ValueError(f"--attention-backend {name!r}: one of {', '.join(ATTENTION_BACKENDS)}")
    if name in (None, "torch_native"):
        return TorchPagedAttention(pool, scale)
    if torch.device(device).type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("--attention-backend triton needs a CUDA device (--device cuda)")
    from .triton_attention import TritonPagedAttention  # GPU-only code: imported when chosen

    return TritonPagedAttention(pool, scale)


class TorchPagedAttention:
    def __init__(self, pool: KVPool, scale: float):
        self.pool = pool
        self.scale = scale
        # CPU: decode K/V kept dense across steps instead of re-gathered (layers/decode_kv.py);
        # a GPU has the memory bandwidth for the gather, not the memory for a second copy
        on_cpu = bool(pool.k) and pool.k[0].device.type == "cpu"
        self.dense = DenseDecodeKV(len(pool.k)) if on_cpu else None
        self.kernel = None  # the C decode kernel, once use_cpu_kernel() succeeded
        self._rows: tuple[ForwardBatch | None, tuple | None] = (None, None)

    def use_cpu_kernel(self) -> bool:
        """Decode through the C kernel (layers/cpu_decode_attention.py), reading the pool through
        the page table, instead of the dense copy and SDPA; False (nothing changes) where it
        cannot: not a float32 CPU pool, head_dim not a multiple of 8, or no kernel built."""
        k = self.pool.k[0] if self.pool.k else None
        if self.dense is None or k is None or k.dtype != torch.float32 or k.shape[-1] % 8:
            return False
        self.kernel = cpu_decode_attention.load()
        if self.kernel is not None:
            self.dense = None
        return self.kernel is not None

    def _decode_rows(self, fb: ForwardBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(row addresses, context lengths) of fb's decode table, once per batch (every layer
        reads them)."""
        if self._rows[0] is not fb:
            lens = fb.decode_lens if fb.decode_lens is not None else fb.decode_mask.sum(1)
            self._rows = (fb, (cpu_decode_attention.table_rows(fb.decode_table), lens))
        return self._rows[1]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: int,
                fb: ForwardBatch, window: int | None = None) -> torch.Tensor:
        """q: [T, H, D]; k, v: [T, KVH, D] for the new tokens. window: sliding-window layers see
        only the last `window` positions (Mistral style: key j visible to query i if i - j < window)."""
        kbuf, vbuf = self.pool.k[layer], self.pool.v[layer]
        if fb.decode_rows is not None:  # a decode-only batch for the kernel: no table, no out_loc
            cda = cpu_decode_attention
            cda.write_kv(self.kernel, kbuf, vbuf, fb.decode_rows, fb.decode_lens, k, v)
            return cda.decode_attention(self.kernel, q, kbuf, vbuf, fb.decode_rows, fb.decode_lens,
                                        self.scale, window)
        self.pool.write(layer, fb.out_loc, k, v)
        out = torch.empty_like(q)
        nd = fb.num_decode
        if nd and self.kernel is not None:
            rows = self._decode_rows(fb)
            out[:nd] = cpu_decode_attention.decode_attention(
                self.kernel, q[:nd], kbuf, vbuf, rows[0], rows[1], self.scale, window)
            nd = 0  # done
        if self.dense is not None:
            self.dense.begin(fb)  # every forward, so one without decodes invalidates the copy
        if nd and self.dense is not None:
            ks, vs = self.dense.kv(layer, kbuf, vbuf, fb, k[:nd], v[:nd])  # [B, KVH, L, D]
        elif nd:
            # one index_select of the flat slot table per buffer (2-D advanced indexing costs ~4x
            # that on CPU)
            b, lk = fb.decode_table.shape
            flat = fb.decode_table.reshape(-1)
            ks = kbuf.index_select(0, flat).view(b, lk, *kbuf.shape[1:]).transpose(1, 2)  # [B, KVH, L, D]
            vs = vbuf.index_select(0, flat).view(b, lk, *vbuf.shape[1:]).transpose(1, 2)
        if nd:  # one SDPA call over the batch: GQA without expanding K/V
            mask = fb.decode_mask
            if window is not None:
                lens = mask.sum(1, keepdim=True)
                mask = mask & (torch.arange(mask.shape[1], device=mask.device)[None, :] > lens - 1 - window)
            o = F.scaled_dot_product_attention(q[:nd, :, None], ks, vs, attn_mask=mask[:, None, None],
                                               scale=self.scale, enable_gqa=ks.shape[1] != q.shape[1])
            out[:nd] = o[:, :, 0]
        for s in fb.extends:
            out[s.q_start:s.q_start + s.q_len] = self._extend(q[s.q_start:s.q_start + s.q_len],
                                                              kbuf[s.kv_slots], vbuf[s.kv_slots], window)
        return out

    def _extend(self, q, k, v, window: int | None):
        """q [Lq, H, D] are the last Lq of Lk positions; k, v [Lk, KVH, D]."""
        lq, h, _ = q.shape
        lk, kvh = k.shape[0], k.shape[1]
        if kvh != h:
            k, v = k.repeat_interleave(h // kvh, dim=1), v.repeat_interleave(h // kvh, dim=1)
        q, k, v = q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None]
        if lq == lk and (window is None or lk <= window):
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        else:  # query i sits at position lk - lq + i and sees keys up to there (and the window)
            qpos = torch.arange(lk - lq, lk, device=q.device)[:, None]
            kpos = torch.arange(lk, device=q.device)[None, :]
            mask = kpos <= qpos
            if window is not None:
                mask &= kpos > qpos - window
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return o[0].transpose(0, 1)
