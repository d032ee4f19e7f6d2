"""Linear layers sharded for tensor parallelism (Megatron style, as SGLang).

Column-parallel layers keep rows [rank*n/tp, (rank+1)*n/tp) of each (fused) output and need no
communication; row-parallel layers keep the matching input columns and all-reduce their partial
sums. The vocabulary is split in ceil(V/tp) ranges: embedding lookups are masked and all-reduced,
LM-head logits all-gathered. Each layer owns a `weight_loader(param, loaded, shard_id)` (the model
loader looks it up on the module owning the parameter); `loaded` may be a lazy safetensors slice,
so a rank reads only its shard from disk.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..parallel.group import current


def shape_of(loaded) -> list[int]:
    return list(loaded.shape) if isinstance(loaded, torch.Tensor) else loaded.get_shape()


def narrow(loaded, dim: int, start: int, length: int) -> torch.Tensor:
    """loaded[start:start+length] along dim 0 or 1, reading only that part of a lazy slice."""
    if isinstance(loaded, torch.Tensor):
        return loaded.narrow(dim, start, length)
    return loaded[start:start + length] if dim == 0 else loaded[:, start:start + length]


def read_all(loaded) -> torch.Tensor:
    return loaded if isinstance(loaded, torch.Tensor) else loaded[:]


def _split(n: int, tp: int, what: str) -> int:
    if n % tp:
        raise ValueError(f"{what} ({n}) is not divisible by the tensor-parallel size {tp}")
    return n // tp


class LinearBase(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        g = current()
        self.tp_rank, self.tp_size = g.tp_rank, g.tp_size
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features), requires_grad=False)
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class RowParallelLinear(LinearBase):
    """Input features split across TP ranks; forward all-reduces the partial sums."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__(_split(in_features, current().tp_size, "input size"), out_features, bias)

    def weight_loader(self, param, loaded, shard_id=None):
        if param.dim() == 1:  # bias: whole, added once after the reduction
            return param.data.copy_(read_all(loaded))
        n = param.shape[1]
        param.data.copy_(narrow(loaded, 1, self.tp_rank * n, n))

    def forward(self, x):
        y = current().all_reduce(F.linear(x, self.weight))
        return y if self.bias is None else y + self.bias


class MergedColumnParallelLinear(LinearBase):
    """Several column-parallel matrices fused along the output dim (gate_proj + up_proj)."""

    def __init__(self, in_features: int, out_sizes: list[int], bias: bool = False):
        tp = current().tp_size
        self.local_sizes = [_split(n, tp, "output size") for n in out_sizes]
        super().__init__(in_features, sum(self.local_sizes), bias)

    def weight_loader(self, param, loaded, shard_id=None):
        n = self.local_sizes[shard_id]
        dst = param.data.narrow(0, sum(self.local_sizes[:shard_id]), n)
        dst.copy_(narrow(loaded, 0, self.tp_rank * n, n))


def local_kv_heads(num_kv_heads: int, tp: int) -> int:
    """KV heads per rank; with fewer KV heads than ranks each is replicated (SGLang's rule)."""
    if num_kv_heads >= tp:
        return _split(num_kv_heads, tp, "num_key_value_heads")
    if tp % num_kv_heads:
        raise ValueError(f"tensor-parallel size {tp} is not a multiple of num_key_value_heads {num_kv_heads}")
    return 1


class QKVParallelLinear(LinearBase):
    """q_proj, k_proj and v_proj fused so attention runs one matmul; shard ids 'q', 'k', 'v'.
    Rank r holds q heads [r*H/tp, (r+1)*H/tp) and the KV heads those attend to."""

    def __init__(self, hidden: int, head_dim: int, num_heads: int, num_kv_heads: int, bias: bool):
        g = current()
        self.head_dim = head_dim
        self.num_heads = _split(num_heads, g.tp_size, "num_attention_heads")
        self.num_kv_heads = local_kv_heads(num_kv_heads, g.tp_size)
        self.kv_head_start = g.tp_rank * num_kv_heads // g.tp_size
        q, kv = self.num_heads * head_dim, self.num_kv_heads * head_dim
        self.offsets = {"q": (0, q), "k": (q, kv), "v": (q + kv, kv)}
        super().__init__(hidden, q + 2 * kv, bias)

    def weight_loader(self, param, loaded, shard_id=None):
        start, n = self.offsets[shard_id]
        head0 = self.tp_rank * self.num_heads if shard_id == "q" else self.kv_head_start
        param.data.narrow(0, start, n).copy_(narrow(loaded, 0, head0 * self.head_dim, n))


class VocabParallelEmbedding(nn.Module):
    """Token embedding; rank r holds vocab rows [r*per, (r+1)*per), per = ceil(V/tp), the last
    range padded with zero rows."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        g = current()
        self.tp_size, self.vocab_size = g.tp_size, vocab_size
        self.per = -(-vocab_size // g.tp_size)
        self.start = g.tp_rank * self.per
        self.weight = nn.Parameter(torch.empty(self.per, dim), requires_grad=False)

    def weight_loader(self, param, loaded, shard_id=None):
        n = max(0, min(self.per, self.vocab_size - self.start))
        param.data.zero_()
        if n:
            param.data[:n].copy_(narrow(loaded, 0, self.start, n))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.tp_size == 1:
            return F.embedding(ids, self.weight)
        mine = (ids >= self.start) & (ids < self.start + self.per)
        x = F.embedding((ids - self.start) * mine, self.weight) * mine[:, None]
        return current().all_reduce(x)


class ParallelLMHead(VocabParallelEmbedding):
    """Output projection over this rank's vocab range (see logits())."""


def parallel_logits(hidden: torch.Tensor, weight: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Full-vocabulary float32 logits from a vocab-parallel weight shard (gathered over TP)."""
    return current().all_gather_last(F.linear(hidden, weight).float())[:, :vocab_size]
