"""Decode-only batches at a few fixed batch sizes: torch.compile'd on CPU, CUDA graphs on GPU.

A decode batch of B sequences is padded to the smallest bucket >= B (SGLang's capture sizes: 1, 2,
4, 8, then steps of 8 up to the max), so a bucket's compiled code or captured graph serves every B
it covers. Padded rows are token 0 at position 0 and their outputs are dropped; under CUDA graphs
they write and read KV slot 0, the pool's scratch slot that no sequence owns (the compiled CPU
decode leaves them out of attention altogether).

- CPU (`CompiledDecode`, --enable-torch-compile): the ~35 small ops of a layer outside attention
  are fused by inductor: the whole forward and the LM head are one compiled graph per bucket, in
  which attention is an opaque op that runs the torch backend eagerly on the unpadded rows, over
  the dense decode K/V it keeps (their length changes every step, which static shapes cannot
  follow). One graph rather than a region per layer: each compiled call costs a guard check.
- CUDA (`executor/cuda_graph.py`, --cuda-graph-max-bs): the whole forward, attention included,
  captured per bucket over static input buffers (`StaticDecodeInputs`) and replayed.
"""
from __future__ import annotations

import bisect
import logging
import threading
import time

import torch

from ..core.forward_batch import ForwardBatch
from ..models.llama import LlamaForCausalLM

log = logging.getLogger(__name__)


def capture_sizes(max_bs: int) -> list[int]:
    """The buckets up to max_bs: 1, 2, 4, 8, then every multiple of 8, and max_bs itself."""
    if max_bs < 1:
        raise ValueError(f"max batch size must be >= 1, got {max_bs}")
    sizes = [s for s in (1, 2, 4, 8) if s < max_bs] + list(range(16, max_bs, 8))
    return [*sizes, max_bs]


def bucket_for(n: int, sizes: list[int]) -> int | None:
    """The smallest bucket holding n rows; None when n exceeds the largest (run eager)."""
    i = bisect.bisect_left(sizes, n)
    return sizes[i] if i < len(sizes) else None


def pad_rows(t: torch.Tensor, bs: int, value: int = 0) -> torch.Tensor:
    """t [B, ...] with rows B..bs filled with value."""
    if t.shape[0] == bs:
        return t
    return torch.cat((t, t.new_full((bs - t.shape[0], *t.shape[1:]), value)))


def decode_model(model):
    """The Llama-family decoder that runs a decode batch (a vision model's language model; no
    images in a decode batch), or None when the model is another kind."""
    lm = getattr(model, "language_model", model)
    return lm if isinstance(lm, LlamaForCausalLM) else None


def supports(model) -> str | None:
    """Why the decode graphs cannot run this model (None: they can)."""
    lm = decode_model(model)
    if lm is None:
        return f"{type(model).__name__} is not a Llama-family decoder"
    m = lm.model
    if not (m.first and m.last) or m.embed_tokens.tp_size != 1:
        return "not with tensor or pipeline parallelism"
    return None


# -- CPU: one compiled graph, attention an opaque op in it --------------------------------------
class _Current(threading.local):
    """The decode batch the compiled graph's attention op runs on, set around each run (the op
    takes tensors only; the batch, a Python object, stays outside the graph). Per thread: each
    engine steps in its own."""
    fb: ForwardBatch | None = None
    layers: list = []


_Batch = _Current()


@torch.library.custom_op("radix_runtime::decode_attention", mutates_args=())
def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: int) -> torch.Tensor:
    """Layer `layer`'s attention for the padded rows q, k, v: the real rows go to the backend
    (which writes their K/V to the pool); the pad rows' output is zeros."""
    fb = _Batch.fb
    b = fb.num_decode
    return pad_rows(_Batch.layers[layer].self_attn.attend(q[:b], k[:b], v[:b], fb), q.shape[0])


@_attention.register_fake
def _(q, k, v, layer):
    return torch.empty_like(q)


def _decode(lm, ids: torch.Tensor, positions: torch.Tensor):
    """The decode forward with attention as _attention: what CompiledDecode compiles."""
    m = lm.model
    x = m.embed_tokens(ids)
    for i, layer in enumerate(m.layers[m.start:m.end]):
        x = layer.finish(x, _attention(*layer.start(x, positions), i))
    x = m.norm(x)
    return x, lm.logits(x)


class CompiledDecode:
    """--enable-torch-compile: a decode batch of at most max_bs sequences runs padded to its bucket
    through one torch.compile'd graph of the whole forward and LM head (static shapes, compiled
    on the bucket's first use). Attention is an opaque op in that graph (_attention), run eagerly
    on the real rows only, over the dense decode K/V the torch backend keeps: its context length
    changes every step, which static shapes cannot follow."""

    def __init__(self, model, max_bs: int):
        self.lm = decode_model(model)
        self.sizes = capture_sizes(max_bs)
        dyn = torch._dynamo.config  # one compiled entry per bucket
        dyn.cache_size_limit = max(dyn.cache_size_limit, 2 * len(self.sizes))
        self._fn = torch.compile(_decode, dynamic=False, fullgraph=True)
        self.compiled: dict[int, float] = {}  # bucket -> seconds its first run took (compiling)

    def bucket(self, n: int) -> int | None:
        return bucket_for(n, self.sizes)

    def run(self, fb: ForwardBatch, bs: int) -> tuple[torch.Tensor, torch.Tensor]:
        """fb: a decode-only batch of B <= bs rows -> (final hidden [B, hidden], logits [B, V])."""
        t0 = time.perf_counter()
        m = self.lm.model
        _Batch.fb, _Batch.layers = fb, m.layers[m.start:m.end]
        try:
            x, logits = self._fn(self.lm, pad_rows(fb.input_ids, bs), pad_rows(fb.positions, bs))
        finally:
            _Batch.fb = None
        if bs not in self.compiled:
            self.compiled[bs] = time.perf_counter() - t0
            log.info("compiled the decode graph for batch size %d in %.1f s", bs, self.compiled[bs])
        b = fb.num_decode
        return x[:b], logits[:b]


# -- CUDA graphs: static inputs ------------------------------------------------------------------
class StaticDecodeInputs:
    """The captured graphs' inputs, allocated once for the largest bucket; bucket bs's graph reads
    their first bs rows. Each step copies the batch in (fill); nothing a graph reads is a host
    value. The page table is as wide as the context length, so one capture serves every step."""

    def __init__(self, max_bs: int, max_ctx: int, device):
        def zeros(*shape, dtype=torch.int64):
            return torch.zeros(shape, dtype=dtype, device=device)

        self.max_ctx = max_ctx
        self.input_ids, self.positions, self.out_loc = zeros(max_bs), zeros(max_bs), zeros(max_bs)
        self.lens = torch.ones(max_bs, dtype=torch.int64, device=device)
        self.table = zeros(max_bs, max_ctx)  # row b: its slots; padded rows read slot 0 only
        self.mask = zeros(max_bs, max_ctx, dtype=torch.bool)
        self._cols = torch.arange(max_ctx, device=device)[None, :]
        self._update_mask(max_bs)
        self._batches: dict[int, ForwardBatch] = {}

    def _update_mask(self, bs: int) -> None:
        torch.lt(self._cols, self.lens[:bs, None], out=self.mask[:bs])

    def batch(self, bs: int) -> ForwardBatch:
        """The static ForwardBatch of bucket bs (the same object every time: a graph holds it)."""
        if bs not in self._batches:
            self._batches[bs] = ForwardBatch(
                input_ids=self.input_ids[:bs], positions=self.positions[:bs],
                out_loc=self.out_loc[:bs], num_decode=bs, decode_table=self.table[:bs],
                decode_mask=self.mask[:bs], decode_lens=self.lens[:bs])
        return self._batches[bs]

    def fill(self, fb: ForwardBatch, bs: int) -> None:
        """Copy decode batch fb (B <= bs rows) in; rows B..bs become padding: token 0 at position
        0, writing and reading scratch slot 0. Table columns past a row's length keep stale slots
        that the lengths and the mask hide."""
        b, width = fb.decode_table.shape
        if width > self.max_ctx:
            raise ValueError(f"decode context {width} exceeds the graphs' page table ({self.max_ctx})")
        for buf, src in ((self.input_ids, fb.input_ids), (self.positions, fb.positions),
                         (self.out_loc, fb.out_loc)):
            buf[:b].copy_(src, non_blocking=True)
            buf[b:bs].zero_()
        self.lens[:b].copy_(fb.positions + 1, non_blocking=True)  # a decode row's table: pos + 1
        self.lens[b:bs].fill_(1)
        self.table[:b, :width].copy_(fb.decode_table, non_blocking=True)
        self.table[b:bs, 0] = 0
        self._update_mask(bs)
