"""Dense decode K/V kept across steps, so the torch backend does not re-gather every decoding
sequence's whole context from the paged pool each step (CPU: the gather was a third of the step).

The pool stays the source of truth. Each layer keeps its decode batch's K/V dense as
[B, KVH, capacity, D]. When a forward's decode batch is the previous forward's, row for row, with
one more token each (the same slots, each table one slot longer), the layer only appends the new
token's K/V; anything else (a sequence joined or left, slots changed, a forward without decodes in
between, a layer that missed the previous forward) re-gathers that layer from the pool. A slot's
K/V never changes while it is in a live slot table (new K/V go only to freshly allocated slots), so
the dense copy equals the pool's for every position it holds.
"""
from __future__ import annotations

import torch

from ..core.forward_batch import ForwardBatch

_SPARE = 128  # positions of headroom when a buffer is (re)made


class DenseDecodeKV:
    def __init__(self, num_layers: int):
        self._fb: ForwardBatch | None = None  # the forward being run (layers share its batch)
        self._forward = 0  # forwards seen
        self._extends = False  # this forward's decode batch extends the previous one's
        self._table: torch.Tensor | None = None  # the last forward's decode table (None: none)
        self._mask: torch.Tensor | None = None
        self._k: list[torch.Tensor | None] = [None] * num_layers
        self._v: list[torch.Tensor | None] = [None] * num_layers
        self._at = [-1] * num_layers  # the forward each layer's buffers are up to date with

    def begin(self, fb: ForwardBatch) -> None:
        """Called by every layer; the first call of a new forward decides whether it extends."""
        if fb is self._fb:
            return
        self._fb = fb
        self._forward += 1
        table, mask = fb.decode_table, fb.decode_mask
        prev, pmask = self._table, self._mask
        self._extends = (
            fb.num_decode > 0 and prev is not None and table.shape[0] == prev.shape[0]
            and table.shape[1] >= prev.shape[1]
            and torch.equal(mask.sum(1), pmask.sum(1) + 1)
            and torch.equal(table[:, :prev.shape[1]] * pmask, prev))
        self._table, self._mask = (table, mask) if fb.num_decode else (None, None)

    def kv(self, layer: int, kbuf: torch.Tensor, vbuf: torch.Tensor, fb: ForwardBatch,
           k_new: torch.Tensor, v_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This layer's decode K/V [B, KVH, L, D] (views) for fb, after its new tokens were written
        to the pool; k_new, v_new [B, KVH, D] are those tokens' K/V."""
        self.begin(fb)
        table = fb.decode_table
        b, lk = table.shape
        kd, vd = self._k[layer], self._v[layer]
        if self._extends and self._at[layer] == self._forward - 1 and kd.shape[2] >= lk:
            pos = fb.decode_mask.sum(1) - 1  # each row's new position
            rows = torch.arange(b, device=pos.device)
            kd[rows, :, pos] = k_new
            vd[rows, :, pos] = v_new
        else:
            flat = table.reshape(-1)
            shape = (b, kbuf.shape[1], lk + _SPARE, kbuf.shape[2])
            kd = self._k[layer] = kbuf.new_zeros(shape)
            vd = self._v[layer] = vbuf.new_zeros(shape)
            kd[:, :, :lk] = kbuf.index_select(0, flat).view(b, lk, *kbuf.shape[1:]).transpose(1, 2)
            vd[:, :, :lk] = vbuf.index_select(0, flat).view(b, lk, *vbuf.shape[1:]).transpose(1, 2)
        self._at[layer] = self._forward
        return kd[:, :, :lk], vd[:, :, :lk]
