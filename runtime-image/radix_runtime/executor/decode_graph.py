"""Decode-only batches at a few fixed batch sizes: inductor-compiled on CPU, CUDA graphs on GPU.

A decode batch of B sequences is padded to the smallest bucket >= B (SGLang's capture sizes: 1, 2,
4, 8, then steps of 8 up to the max), so a bucket's compiled code or captured graph serves every B
it covers. Padded rows are token 0 at position 0 and their outputs are dropped; under CUDA graphs
they write and read KV slot 0, the pool's scratch slot that no sequence owns (the compiled CPU
decode leaves them out of attention altogether).

- CPU (`CompiledDecode`, --enable-torch-compile): the ~35 small ops of a layer outside attention
  are fused by inductor, in three compiled regions per bucket (before the first attention,
  between two, after the last with the LM head); attention runs between them eagerly on the
  unpadded rows (its context length changes every step, which static shapes cannot follow).
  The regions are FX graphs handed to inductor directly, not torch.compile'd functions: dynamo's
  guard check and a custom op's dispatch cost more per call than the fused arithmetic.
- CUDA (`executor/cuda_graph.py`, --cuda-graph-max-bs): the whole forward, attention included,
  captured per bucket over static input buffers (`StaticDecodeInputs`) and replayed.
"""
from __future__ import annotations

import bisect
import logging
import time

import torch
from torch import nn

from ..core.forward_batch import ForwardBatch
from ..layers.linear import parallel_logits
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


# -- CPU: compiled regions between the attention calls --------------------------------------
class _Head(nn.Module):
    """The embedding and the first layer up to its attention."""

    def __init__(self, m, first):
        super().__init__()
        self.embed, self.layer = m.embed_tokens, first

    def forward(self, ids, positions):
        x = self.embed(ids)
        return (x, *self.layer.start(x, positions))


class _Between(nn.Module):
    """Layer i after its attention, then layer i + 1 up to its attention."""

    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x, o, positions):
        x = self.a.finish(x, o)
        return (x, *self.b.start(x, positions))


class _Tail(nn.Module):
    """The last layer after its attention, the final norm and the LM head."""

    def __init__(self, lm, last):
        super().__init__()
        self.layer, self.norm = last, lm.model.norm
        # the LM head's weight (the embedding's when tied), not lm: its parameters are inputs
        self.head = lm.model.embed_tokens if lm.lm_head is None else lm.lm_head
        self.vocab_size = lm.args.vocab_size

    def forward(self, x, o):
        x = self.norm(self.layer.finish(x, o))
        return x, parallel_logits(x, self.head.weight, self.vocab_size)


class _Region:
    """One region's modules (one instance per place it runs: _Between per layer pair) and their
    parameters in a fixed order; the compiled code per bucket is shared by the instances, which
    hand their own parameters in."""

    def __init__(self, instances: list[nn.Module]):
        self.instances = instances
        self.names = [n for n, _ in instances[0].named_parameters()]
        self.params = [[dict(m.named_parameters())[n] for n in self.names] for m in instances]
        self.code: dict[int, object] = {}  # bucket -> compiled callable

    def compile(self, bs: int, args: tuple) -> None:
        """Trace instance 0 at these (bucket-shaped) inputs, parameters as inputs, and compile."""
        from torch._inductor import compile as inductor_compile
        from torch.fx.experimental.proxy_tensor import make_fx

        mod, names, n = self.instances[0], self.names, len(args)

        def fn(*xs):
            return torch.func.functional_call(mod, dict(zip(names, xs[n:])), xs[:n])

        inputs = [*args, *self.params[0]]
        self.code[bs] = inductor_compile(make_fx(fn)(*inputs), inputs)

    def __call__(self, bs: int, i: int, *args):
        return self.code[bs](*args, *self.params[i])


class CompiledDecode:
    """--enable-torch-compile: a decode batch of at most max_bs sequences runs padded to its bucket
    through inductor-compiled code (static shapes; the engine compiles every bucket at start,
    compile_all, else a bucket compiles on its first use) for
    everything between the attention calls: the embedding and the first layer's projections, each
    layer's output, MLP and the next one's projections, the last layer's rest with the final norm
    and the LM head. Three regions, whatever the depth: the layers share one compiled region and
    pass their weights in. Attention runs between them eagerly on the real rows only (its context
    length changes every step, which static shapes cannot follow). The regions are FX graphs
    compiled by inductor directly (no dynamo): no guards to check per call, which at these sizes
    cost as much as the arithmetic."""

    def __init__(self, model, max_bs: int):
        self.lm = lm = decode_model(model)
        m = lm.model
        self.layers = layers = list(m.layers[m.start:m.end])
        self.sizes = capture_sizes(max_bs)
        self.head = _Region([_Head(m, layers[0])])
        self.between = _Region([_Between(a, b) for a, b in zip(layers, layers[1:])]) if len(layers) > 1 else None
        self.tail = _Region([_Tail(lm, layers[-1])])
        self._attn_out: dict[int, torch.Tensor] = {}  # bucket -> attention output [bs, H, D]
        self.compiled: dict[int, float] = {}  # bucket -> seconds its compile took
        self.runs: dict[int, int] = dict.fromkeys(self.sizes, 0)  # bucket -> decode steps run

    def bucket(self, n: int) -> int | None:
        return bucket_for(n, self.sizes)

    def compile_all(self, progress=None) -> None:
        """Compile every bucket now (at start, as SGLang compiles its graphs), largest first, so
        that no decode step stalls for a compile while serving. progress(i, n, bs, seconds) is
        called after each."""
        for i, bs in enumerate(sorted(self.sizes, reverse=True)):
            if bs not in self.compiled:
                self._compile(bs)
                if progress is not None:
                    progress(i + 1, len(self.sizes), bs, self.compiled[bs])

    def _compile(self, bs: int) -> None:
        """Bucket bs's regions, traced on stand-in inputs of its shapes: attention is outside
        them, so nothing touches the KV pool."""
        t0 = time.perf_counter()
        dev = self.lm.model.embed_tokens.weight.device
        ids = torch.zeros(bs, dtype=torch.int64, device=dev)
        pos = torch.zeros(bs, dtype=torch.int64, device=dev)
        self.head.compile(bs, (ids, pos))
        x, q, _, _ = self.head(bs, 0, ids, pos)
        o = torch.zeros(q.shape, dtype=q.dtype, device=dev)  # as attention returns it: dense
        if self.between is not None:
            self.between.compile(bs, (x, o, pos))
        self.tail.compile(bs, (x, o))
        self.compiled[bs] = time.perf_counter() - t0
        log.info("compiled the decode graph for batch size %d in %.1f s", bs, self.compiled[bs])

    def _attend(self, i: int, q, k, v, fb: ForwardBatch, bs: int) -> torch.Tensor:
        """Layer i's attention for the real rows; the pad rows' output stays zeros."""
        b = fb.num_decode
        o = self.layers[i].self_attn.attend(q[:b], k[:b], v[:b], fb)
        if b == bs:
            return o.contiguous()
        buf = self._attn_out.get(bs)
        if buf is None:
            buf = self._attn_out[bs] = o.new_zeros(bs, *o.shape[1:])
        buf[:b] = o
        return buf

    def run(self, fb: ForwardBatch, bs: int) -> tuple[torch.Tensor, torch.Tensor]:
        """fb: a decode-only batch of B <= bs rows -> (final hidden [B, hidden], logits [B, V])."""
        if bs not in self.compiled:
            self._compile(bs)
        ids, pos = pad_rows(fb.input_ids, bs), pad_rows(fb.positions, bs)
        x, q, k, v = self.head(bs, 0, ids, pos)
        for i in range(len(self.layers) - 1):
            x, q, k, v = self.between(bs, i, x, self._attend(i, q, k, v, fb, bs), pos)
        x, logits = self.tail(bs, 0, x, self._attend(len(self.layers) - 1, q, k, v, fb, bs))
        self.runs[bs] += 1
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
