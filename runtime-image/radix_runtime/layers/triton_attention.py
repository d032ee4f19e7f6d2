"""Attention over the paged KV pool in Triton: the `--attention-backend triton` backend.

Kernels read K/V straight from the pool through each sequence's slot list (page size 1, so the
slot list is the page table); nothing is gathered into a dense copy first.

- decode (`decode_attention`): split-KV ("flash-decoding"). Stage 1 runs one program per
  (sequence, KV head, split); it holds the query rows of all heads of that KV head's group, so each
  K/V row of the split is loaded once per group (GQA) and used by a [group x block] dot. Each split
  writes its partial output and log-sum-exp; stage 2 merges the splits per (sequence, head).
- extend / prefill (`extend_attention`): one program per (sequence, head, block of new tokens).
  It first attends to the cached prefix through the page table (no causal mask: the whole prefix
  precedes every new token), then causally to the new tokens, read from the step's own K/V tensors,
  with one online softmax across both.

Both take an optional sliding window (key j visible to query i iff i - j < window). Scores and
accumulators are float32 whatever the storage dtype; float32 inputs use IEEE dots (not TF32);
16-bit inputs go to the dots as they are (tensor cores), except bfloat16 under the interpreter
(upcast to float32 there: the interpreter's bfloat16 tl.dot is wrong).

This module imports triton at import time and is imported only when the triton backend is chosen
(layers/attention.py's `make_backend`). Tests run the kernels on CPU tensors under Triton's
interpreter: TRITON_INTERPRET=1 must be set before this module is imported (Triton reads it when
a kernel is decorated).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..cache.kv_pool import KVPool
from ..core.forward_batch import ForwardBatch

_LOG2E = 1.4426950408889634


@triton.jit
def _load(ptrs, mask, UPCAST: tl.constexpr):
    x = tl.load(ptrs, mask=mask, other=0.0)
    if UPCAST:
        x = x.to(tl.float32)
    return x


@triton.jit
def _empty_state(ROWS: tl.constexpr, BLOCK_D: tl.constexpr):
    """Online-softmax state of ROWS query rows: running max, running sum, unnormalized output."""
    return (tl.full([ROWS], float("-inf"), dtype=tl.float32), tl.zeros([ROWS], dtype=tl.float32),
            tl.zeros([ROWS, BLOCK_D], dtype=tl.float32))


@triton.jit
def _online_step(s, m_i, l_i, acc, v, PRECISION: tl.constexpr):
    """One block of the online softmax: s [M, N] scores in log2 units (-inf = masked), v [N, D]."""
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with nothing visible yet
    alpha = tl.exp2(m_i - m_safe)
    p = tl.exp2(s - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit
def _decode_stage1(Q, K, V, Table, Lens, Mid_O, Mid_Lse,
                   stride_qb, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_tb,
                   sm_scale_log2, window, num_heads,
                   GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, NUM_SPLITS: tl.constexpr,
                   BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   HAS_WINDOW: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(Lens + b).to(tl.int32)
    lo = 0
    if HAS_WINDOW:
        lo = tl.maximum(seq_len - window, 0)
    # this split's share of [lo, seq_len), in whole blocks
    per_split = tl.cdiv(tl.cdiv(seq_len - lo, BLOCK_N), NUM_SPLITS) * BLOCK_N
    start = lo + split * per_split
    end = tl.minimum(start + per_split, seq_len)

    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    head = kvh * GROUP + offs_h
    mask_h = offs_h < GROUP
    mask_d = offs_d < HEAD_DIM
    q = _load(Q + b * stride_qb + head[:, None] * stride_qh + offs_d[None, :],
              mask_h[:, None] & mask_d[None, :], UPCAST)

    m_i, l_i, acc = _empty_state(BLOCK_H, BLOCK_D)
    for n0 in range(start, end, BLOCK_N):
        pos = n0 + offs_n
        mask_n = pos < end
        slot = tl.load(Table + b * stride_tb + pos, mask=mask_n, other=0).to(tl.int64)
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k = _load(K + slot[:, None] * stride_kt + kvh * stride_kh + offs_d[None, :], kv_mask, UPCAST)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * sm_scale_log2
        s = tl.where(mask_n[None, :], s, float("-inf"))
        v = _load(V + slot[:, None] * stride_vt + kvh * stride_vh + offs_d[None, :], kv_mask, UPCAST)
        m_i, l_i, acc = _online_step(s, m_i, l_i, acc, v, PRECISION)

    # Mid_O [B, H, splits, BLOCK_D] and Mid_Lse [B, H, splits], contiguous
    row = (b * num_heads + head) * NUM_SPLITS + split
    if end > start:
        tl.store(Mid_O + row[:, None] * BLOCK_D + offs_d[None, :], acc / l_i[:, None], mask=mask_h[:, None])
        tl.store(Mid_Lse + row, m_i + tl.log2(l_i), mask=mask_h)
    else:  # an empty split (a short sequence): weight 0 in the merge
        tl.store(Mid_Lse + row, tl.full([BLOCK_H], float("-inf"), dtype=tl.float32), mask=mask_h)


@triton.jit
def _decode_stage2(Mid_O, Mid_Lse, Out, stride_ob, stride_oh, num_heads,
                   HEAD_DIM: tl.constexpr, NUM_SPLITS: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    offs_d = tl.arange(0, BLOCK_D)
    row0 = (b * num_heads + h) * NUM_SPLITS
    offs_s = tl.arange(0, NUM_SPLITS)
    lse = tl.load(Mid_Lse + row0 + offs_s)  # [S]
    m = tl.max(lse, 0)  # finite: split 0 is never empty
    w = tl.exp2(lse - m)  # 0 for empty splits
    o = tl.load(Mid_O + (row0 + offs_s)[:, None] * BLOCK_D + offs_d[None, :],
                mask=(lse > float("-inf"))[:, None], other=0.0)
    out = tl.sum(o * w[:, None], 0) / tl.sum(w, 0)
    tl.store(Out + b * stride_ob + h * stride_oh + offs_d, out.to(Out.dtype.element_ty), mask=offs_d < HEAD_DIM)


@triton.jit
def _extend_kernel(Q, K_new, V_new, K, V, Out, Slots, Meta,
                   stride_qt, stride_qh, stride_knt, stride_knh, stride_vnt, stride_vnh,
                   stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
                   num_seqs, sm_scale_log2, window,
                   GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   HAS_WINDOW: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    e = tl.program_id(0)
    h = tl.program_id(1)
    mblk = tl.program_id(2)
    # Meta [4, num_seqs]: q_start, q_len, prefix_len, offset of the prefix's slots in Slots
    q_start = tl.load(Meta + e).to(tl.int64)
    q_len = tl.load(Meta + num_seqs + e).to(tl.int32)
    prefix = tl.load(Meta + 2 * num_seqs + e).to(tl.int32)
    slot0 = tl.load(Meta + 3 * num_seqs + e).to(tl.int64)
    m0 = mblk * BLOCK_M
    if m0 >= q_len:
        return
    kvh = h // GROUP
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < q_len
    mask_d = offs_d < HEAD_DIM
    q = _load(Q + (q_start + offs_m)[:, None] * stride_qt + h * stride_qh + offs_d[None, :],
              mask_m[:, None] & mask_d[None, :], UPCAST)

    m_i, l_i, acc = _empty_state(BLOCK_M, BLOCK_D)

    # 1) the cached prefix, through the page table: every position precedes every new token
    lo = 0
    if HAS_WINDOW:  # the block's first query (position prefix + m0) sees keys from here on
        lo = tl.maximum(prefix + m0 - window + 1, 0)
    for n0 in range(lo, prefix, BLOCK_N):
        pos = n0 + offs_n
        mask_n = pos < prefix
        slot = tl.load(Slots + slot0 + pos, mask=mask_n, other=0).to(tl.int64)
        kv_mask = mask_n[:, None] & mask_d[None, :]
        k = _load(K + slot[:, None] * stride_kt + kvh * stride_kh + offs_d[None, :], kv_mask, UPCAST)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * sm_scale_log2
        visible = mask_n[None, :]
        if HAS_WINDOW:
            visible = visible & (pos[None, :] > (prefix + offs_m)[:, None] - window)
        s = tl.where(visible, s, float("-inf"))
        v = _load(V + slot[:, None] * stride_vt + kvh * stride_vh + offs_d[None, :], kv_mask, UPCAST)
        m_i, l_i, acc = _online_step(s, m_i, l_i, acc, v, PRECISION)

    # 2) the new tokens, causally, from this step's K/V (already in the pool too, but contiguous here)
    lo = 0
    if HAS_WINDOW:
        lo = tl.maximum(m0 - window + 1, 0)
    hi = tl.minimum(m0 + BLOCK_M, q_len)
    for n0 in range(lo, hi, BLOCK_N):
        pos = n0 + offs_n
        mask_n = pos < hi
        kv_mask = mask_n[:, None] & mask_d[None, :]
        tok = q_start + pos
        k = _load(K_new + tok[:, None] * stride_knt + kvh * stride_knh + offs_d[None, :], kv_mask, UPCAST)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * sm_scale_log2
        visible = mask_n[None, :] & (pos[None, :] <= offs_m[:, None])
        if HAS_WINDOW:
            visible = visible & (pos[None, :] > offs_m[:, None] - window)
        s = tl.where(visible, s, float("-inf"))
        v = _load(V_new + tok[:, None] * stride_vnt + kvh * stride_vnh + offs_d[None, :], kv_mask, UPCAST)
        m_i, l_i, acc = _online_step(s, m_i, l_i, acc, v, PRECISION)

    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]  # 0 only in padding rows (not stored)
    tl.store(Out + (q_start + offs_m)[:, None] * stride_ot + h * stride_oh + offs_d[None, :],
             out.to(Out.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])


def _dot_flags(dtype: torch.dtype) -> dict:
    """IEEE float32 dots for float32 (not TF32); bfloat16 dots upcast to float32 under the
    interpreter only, whose bfloat16 tl.dot is wrong (triton 3.9: it multiplies the raw bits)."""
    upcast = dtype == torch.bfloat16 and bool(triton.knobs.runtime.interpret)
    return {"PRECISION": "ieee" if dtype == torch.float32 or upcast else "tf32", "UPCAST": upcast}


def _block_d(head_dim: int) -> int:
    return max(16, triton.next_power_of_2(head_dim))


def _check_last_dim(*ts: torch.Tensor) -> None:
    for t in ts:
        if t.stride(-1) != 1:
            raise ValueError("attention tensors need a contiguous head_dim")


def default_num_splits(batch: int, num_kv_heads: int, max_len: int, block_n: int,
                       device: torch.device) -> int:
    """Splits per sequence so that (batch x KV heads x splits) programs fill the GPU, capped by
    the longest sequence's blocks (a power of two, at most 16)."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    want = triton.cdiv(2 * sms, max(1, batch * num_kv_heads))
    want = min(want, triton.cdiv(max_len, block_n), 16)
    return triton.next_power_of_2(max(1, want))


def decode_attention(q: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor, table: torch.Tensor,
                     lens: torch.Tensor, scale: float, window: int | None = None,
                     num_splits: int | None = None, block_n: int = 32,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """One new token per sequence. q [B, H, D]; k_buf/v_buf [slots, KVH, D] (the pool's layer);
    table [B, max_len] slots (row b's first lens[b] are its context, new token last); -> [B, H, D].
    lens must all be >= 1."""
    b, h, d = q.shape
    kvh = k_buf.shape[1]
    group = h // kvh
    if out is None:
        out = torch.empty_like(q)
    if b == 0:
        return out
    _check_last_dim(q, k_buf, v_buf, table, out)
    if num_splits is None:
        num_splits = default_num_splits(b, kvh, table.shape[1], block_n, q.device)
    num_splits = triton.next_power_of_2(num_splits)  # tl.arange in stage 2
    block_d = _block_d(d)
    mid_o = torch.empty((b, h, num_splits, block_d), dtype=torch.float32, device=q.device)
    mid_lse = torch.empty((b, h, num_splits), dtype=torch.float32, device=q.device)
    _decode_stage1[(b, kvh, num_splits)](
        q, k_buf, v_buf, table, lens, mid_o, mid_lse,
        q.stride(0), q.stride(1), k_buf.stride(0), k_buf.stride(1), v_buf.stride(0), v_buf.stride(1),
        table.stride(0), scale * _LOG2E, window or 0, h,
        GROUP=group, HEAD_DIM=d, NUM_SPLITS=num_splits, BLOCK_H=max(16, triton.next_power_of_2(group)),
        BLOCK_N=block_n, BLOCK_D=block_d, HAS_WINDOW=window is not None, **_dot_flags(q.dtype),
        num_warps=4, num_stages=2)
    _decode_stage2[(b, h)](mid_o, mid_lse, out, out.stride(0), out.stride(1), h,
                           HEAD_DIM=d, NUM_SPLITS=num_splits, BLOCK_D=block_d)
    return out


def extend_meta(q_starts: list[int], q_lens: list[int], kv_slots: list[torch.Tensor],
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The extend kernel's per-sequence table [4, E] (q_start, q_len, prefix_len, prefix slots'
    offset), the prefix slots back to back, and the longest q_len."""
    prefixes = [s.numel() - n for s, n in zip(kv_slots, q_lens)]
    offsets = [0]
    for p in prefixes[:-1]:
        offsets.append(offsets[-1] + p)
    meta = torch.tensor([q_starts, q_lens, prefixes, offsets], dtype=torch.int64).to(device)
    parts = [s[:p].to(device) for s, p in zip(kv_slots, prefixes) if p]
    slots = torch.cat(parts) if parts else torch.zeros(1, dtype=torch.int64, device=device)
    return meta, slots, max(q_lens)


def extend_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_buf: torch.Tensor,
                     v_buf: torch.Tensor, meta: torch.Tensor, slots: torch.Tensor, max_q_len: int,
                     scale: float, window: int | None = None, out: torch.Tensor | None = None,
                     block_m: int | None = None, block_n: int | None = None) -> torch.Tensor:
    """q [T, H, D], k/v [T, KVH, D]: the step's tokens (extend sequences at meta's q_start rows);
    k_buf/v_buf [slots, KVH, D] hold each sequence's cached prefix at `slots` (extend_meta).
    Writes the extend rows of out [T, H, D] (allocated if not given) and returns it. Blocks: 64 x 64
    for 16-bit heads up to 128 wide, else 32 x 32 (shared memory stays under ~100 KB)."""
    t, h, d = q.shape
    kvh = k.shape[1]
    if out is None:
        out = torch.empty_like(q)
    num_seqs = meta.shape[1]
    if num_seqs == 0:
        return out
    _check_last_dim(q, k, v, k_buf, v_buf, out)
    block_d = _block_d(d)
    small = q.element_size() > 2 or block_d > 128
    block_m = block_m or (32 if small else 64)
    block_n = block_n or (32 if small else 64)
    grid = (num_seqs, h, triton.cdiv(max_q_len, block_m))
    _extend_kernel[grid](
        q, k, v, k_buf, v_buf, out, slots, meta,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_buf.stride(0), k_buf.stride(1), v_buf.stride(0), v_buf.stride(1), out.stride(0), out.stride(1),
        num_seqs, scale * _LOG2E, window or 0,
        GROUP=h // kvh, HEAD_DIM=d, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
        HAS_WINDOW=window is not None, **_dot_flags(q.dtype), num_warps=4 if block_d <= 64 else 8,
        num_stages=2)
    return out


class TritonPagedAttention:
    """The same `forward` as TorchPagedAttention, with the Triton kernels. Per-batch metadata
    (decode lengths, the extends' table) is built once per ForwardBatch and reused by every layer."""

    def __init__(self, pool: KVPool, scale: float):
        self.pool = pool
        self.scale = scale
        self._fb: ForwardBatch | None = None
        self._meta = None

    def _metadata(self, fb: ForwardBatch):
        if fb is not self._fb:
            dec_lens = fb.decode_lens
            if dec_lens is None and fb.num_decode:
                dec_lens = fb.decode_mask.sum(1)
            ext = None
            if fb.extends:
                ext = extend_meta([s.q_start for s in fb.extends], [s.q_len for s in fb.extends],
                                  [s.kv_slots for s in fb.extends], fb.out_loc.device)
            self._fb, self._meta = fb, (dec_lens, ext)
        return self._meta

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: int,
                fb: ForwardBatch, window: int | None = None) -> torch.Tensor:
        self.pool.write(layer, fb.out_loc, k, v)
        kbuf, vbuf = self.pool.k[layer], self.pool.v[layer]
        dec_lens, ext = self._metadata(fb)
        out = torch.empty_like(q)
        nd = fb.num_decode
        if nd:
            decode_attention(q[:nd], kbuf, vbuf, fb.decode_table, dec_lens, self.scale, window, out=out[:nd])
        if ext is not None:
            meta, slots, max_q = ext
            extend_attention(q, k, v, kbuf, vbuf, meta, slots, max_q, self.scale, window, out=out)
        return out
